"""ncc-stats: count a model exactly -- parameters, MACs, FLOPs, memory -- and
extrapolate it: Amdahl's speed-up and a scaling law.

    ncc-stats model.onnx                          the report (text tables)
    ncc-stats model.onnx --json                   the same as plain numbers
    ncc-stats gpt2.onnx --dim sequence=128        fix a symbolic dimension
    ncc-stats model.onnx --profile --processors 8 time per op, Amdahl from it
    ncc-stats model.onnx --parallel-fraction 0.9755 --step-time 0.25
    ncc-stats model.onnx --tokens 2e10 --plot report.svg
    ncc-stats model.onnx --params 1e8,1e9,1e10 --tokens 2e10,2e11   the scaling law over a family

MODEL is what `ncc.compile` takes from a path: .mlir, .onnx or an adjacency
file. Conventions (one MAC = 2 FLOPs, what each op counts) are in the
README's table and passes/stats.py. Errors are one line on stderr and exit
code 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import ncc
from ncc.diagnostics import NccError
from ncc.laws import ScalingLaw
from ncc.tools.common import run_tool, write_output


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncc-stats", description="Count a model's parameters, multiply-accumulates, FLOPs and memory, "
        "and extrapolate its speed-up on n processors (Amdahl) and its loss with scale (Chinchilla).")
    p.add_argument("model", help="a .mlir file, an ONNX file or an adjacency file (list, matrix, edge list)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (default: stdout)")
    p.add_argument("--json", action="store_true", help="a JSON report of plain numbers (every op included)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="the batch: every `?` dimension (default 1)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                   help="size of an ONNX graph input's symbolic dimension (repeatable)")
    p.add_argument("--function", default=None, help="the function to count when there are several")
    p.add_argument("--name", default="net", help="name of a net read from an adjacency file")
    p.add_argument("--per-op", action="store_true", help="one row per op (default: one per op kind)")
    p.add_argument("--no-fuse", action="store_true", help="plan memory and profile without the fuse pass")
    p.add_argument("--no-memory", action="store_true", help="skip the memory plan (it lowers the model twice)")
    p.add_argument("--no-training-memory", action="store_true",
                   help="plan the forward's memory only (no autodiff)")
    amdahl = p.add_argument_group("Amdahl's law: P(n) = 1 / ((1 - f) + f / n)")
    amdahl.add_argument("--profile", action="store_true",
                        help="time every op natively (as ncc-run --profile) and a training step; "
                             "f is then the share of time in ops ncc splits over threads")
    amdahl.add_argument("--parallel-fraction", type=float, default=None, metavar="F",
                        help="the parallel fraction f in [0, 1] (instead of measuring it)")
    amdahl.add_argument("--processors", type=int, default=64, metavar="N",
                        help="speed-ups for 1, 2, 4, ... up to N processors (default 64)")
    amdahl.add_argument("--step-time", type=float, default=None, metavar="SECONDS",
                        help="one training step's time on one processor (default: measured by --profile); "
                             "gives the throughput in samples/s")
    amdahl.add_argument("--threads", type=int, default=1, metavar="N",
                        help="with --profile and N > 1: also time the whole model on N threads and take f "
                             "from its speed-up (Karp-Flatt) rather than from which ops split (default 1)")
    amdahl.add_argument("--seed", type=int, default=0, help="seed of the profile's generated inputs")
    law = p.add_argument_group("scaling law: L(N, D) = E + A / N^alpha + B / D^beta, C = 6 N D")
    law.add_argument("--tokens", default=None, metavar="D[,D...]",
                     help="training tokens D: the loss at N (several: a table over the family)")
    law.add_argument("--params", default=None, metavar="N[,N...]",
                     help="the law's parameter count N (default: the model's trainable parameters); several "
                          "make a model family: the loss at every N and D")
    law.add_argument("--budget", type=float, default=None, metavar="C",
                     help="a compute budget in FLOPs: the compute-optimal N and D")
    law.add_argument("--law", default=None, metavar="K=V,...",
                     help="constants of the law (default Chinchilla's: E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28)")
    p.add_argument("--plot", metavar="FILE.svg|png",
                   help="draw the Amdahl curve and the scaling-law curve (needs matplotlib: pip install 'ncc[plot]')")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the compile cache (--profile)")
    return p


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise NccError(f"{option} takes NAME=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def _number(value: str, option: str, kind: type = float) -> float:
    try:
        return kind(value)
    except ValueError:
        raise NccError(f"{option}: '{value}' is not {'an integer' if kind is int else 'a number'}") from None


def scaling_law(spec: str | None) -> ScalingLaw | None:
    if spec is None:
        return None
    given = _pairs(spec.split(","), "--law")
    known = set(ScalingLaw.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise NccError(f"--law: unknown constant {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return ScalingLaw(**{k: _number(v, f"--law {k}") for k, v in given.items()})


def source_of(args: argparse.Namespace):
    if not args.dim:
        return args.model
    if not args.model.endswith(".onnx"):
        raise NccError("--dim names an ONNX graph input's symbolic dimension; the model is not .onnx", args.model)
    dims = {k: int(_number(v, f"--dim {k}", int)) for k, v in _pairs(args.dim, "--dim").items()}
    model, where = ncc.onnx.load_model(args.model)
    return ncc.onnx.with_dims(model, dims, where)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        args = make_parser().parse_args(argv)
        if args.threads < 1:
            raise NccError(f"--threads must be >= 1, got {args.threads}")
        for option in ("step_time", "budget"):
            value = getattr(args, option)
            if value is not None and not value > 0:
                raise NccError(f"--{option.replace('_', '-')} must be positive, got {value}")
        family = {option: None if getattr(args, option) is None else
                  [_number(v, f"--{option}") for v in getattr(args, option).split(",")]
                  for option in ("params", "tokens")}
        for option, values in family.items():
            if values is not None and not all(v > 0 for v in values):
                raise NccError(f"--{option} must be positive, got {getattr(args, option)}")
        if args.plot and not args.plot.lower().endswith((".svg", ".png")):
            raise NccError("--plot writes an .svg or .png file", args.plot)
        if args.plot:
            from ncc.plot import need_matplotlib
            need_matplotlib()
        report = ncc.stats(source_of(args), batch=args.batch, function=args.function, fuse=not args.no_fuse,
                           per_op=args.per_op, memory=not args.no_memory,
                           training_memory=not args.no_training_memory, profile=args.profile,
                           threads=args.threads, parallel_fraction=args.parallel_fraction,
                           processors=args.processors, step_seconds=args.step_time, law=scaling_law(args.law),
                           law_params=family["params"], tokens=family["tokens"], budget=args.budget, name=args.name,
                           cache=not args.no_cache, seed=args.seed)
        report.model = args.model
        if args.plot:
            from ncc.plot import plot_report
            plot_report(report, args.plot)
            report.notes.append(f"wrote the plot to {args.plot}")
        text = json.dumps(report.to_dict(), indent=1) + "\n" if args.json else str(report)
        write_output(text, args.output)
        return 0

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
