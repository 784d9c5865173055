"""ncc-run: compile a model to native code and run it.

    ncc-run examples/xor_values.txt --input x=x.npy        inputs from .npy files
    ncc-run model.mlir --inputs in.npz -o out.npz          from an .npz (keys: input names)
    ncc-run examples/seed_list.txt --batch 1000 --seed 1   seeded random inputs
    ncc-run model.mlir --batch 64 --bench 1000             timing statistics
    ncc-run model.onnx --profile                            time per op
    ncc-run model.onnx --constant shape=shape.npy           a graph input fixed at import time

MODEL is what `ncc.compile` takes from a path: .mlir, .onnx or an adjacency
file. A line of the summary names the library kernels the model
calls and the variant chosen for this host (`kernels: ncc_qgemm vnni512`).
Inputs not given are generated: float inputs from a
seeded standard normal, integer inputs (indices) as zeros, with `--batch` rows
(default: the batch of the given inputs, else 1). The summary lists each output
(shape, dtype, min/max/mean, first values); `-o` writes them to an .npz keyed by
output name. `--bench N` times N calls (after a warm-up) and prints min, median,
mean and p90 per call and the throughput in rows per second. `--profile` times
every op alone (runtime/profile.py): a table of time per op and the parallel
fraction. Errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import ncc
from ncc.diagnostics import NccError
from ncc.runtime.build import load_source
from ncc.runtime.profile import profile
from ncc.tools.common import add_constant_option, constants_of, load_array, named_arrays, run_tool


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncc-run", description="Compile a model to native code and "
                                "run it on given or seeded random inputs.")
    p.add_argument("model", help="a .mlir file, an ONNX file or an adjacency file (list, matrix, edge list)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="one input from a .npy file (repeatable)")
    p.add_argument("--inputs", metavar="FILE.npz", help="inputs from an .npz, keyed by input name")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="batch size of generated inputs (default: the given inputs', else 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated inputs (default 0)")
    p.add_argument("-o", "--output", metavar="FILE.npz", help="write the outputs to an .npz")
    p.add_argument("--bench", type=int, default=0, metavar="N", help="time N calls")
    p.add_argument("--profile", action="store_true",
                   help="time every op alone on the same inputs (its own kernel, compiled like the model's): "
                        "time per op, its share, GFLOP/s, whether ncc splits it over threads, and the "
                        "parallel fraction of Amdahl's law (ncc-stats uses it)")
    p.add_argument("--neuron-mode", choices=("auto", "neuron", "layers"), default="auto",
                   help="neuron nets: direct neuron code, layers, or chosen by size (default)")
    p.add_argument("--no-fuse", action="store_true", help="do not run the fuse pass")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="OpenMP team of each large matmul or convolution and of the loops proven "
                        "independent (default: the cores this process may run on; 1 without the OpenMP "
                        "runtime); results do not depend on it")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the compile cache")
    p.add_argument("--function", default=None, help="the function to run when there are several")
    p.add_argument("--name", default="net", help="name of a net read from an adjacency file")
    add_constant_option(p)
    return p


def gather_inputs(model, args: argparse.Namespace) -> tuple[list[np.ndarray], list[str]]:
    """The model's inputs in order, and a note for each generated one."""
    given: dict[str, np.ndarray] = {}
    if args.inputs:
        with load_array(args.inputs) as npz:
            if not hasattr(npz, "files"):
                raise NccError("--inputs takes an .npz archive", args.inputs)
            keys = list(npz.files)
            positional = [f"arr_{k}" for k in range(len(keys))]
            if keys == positional and not set(keys) & set(model.input_names):
                keys = list(model.input_names[:len(keys)])  # np.savez(path, *arrays)
            given.update((k, npz[f]) for k, f in zip(keys, npz.files))
    given.update(named_arrays(args.input, "--input"))
    unknown = sorted(set(given) - set(model.input_names))
    if unknown:
        raise NccError(f"the model has no input {', '.join(unknown)} "
                       f"(inputs: {', '.join(model.input_names)})")
    batch = args.batch
    if batch is None:
        batches = [given[n].shape[0] for n, s in zip(model.input_names, model.input_shapes)
                   if n in given and s and s[0] == "batch" and given[n].ndim]
        batch = batches[0] if batches else 1
    if batch < 0:
        raise NccError(f"--batch must be >= 0, got {batch}")
    rng = np.random.default_rng(args.seed)
    inputs, notes = [], []
    for index, name in enumerate(model.input_names):
        if name in given:
            inputs.append(given[name])
            continue
        a = model.example_input(index, batch, rng)
        inputs.append(a)
        notes.append(f"input '{name}': generated {list(a.shape)} {a.dtype} (seed {args.seed})")
    return inputs, notes


def summarize(name: str, a: np.ndarray) -> str:
    flat = a.reshape(-1)
    head = np.array2string(flat[:6], precision=6, separator=", ", max_line_width=10**6)
    stats = ""
    if flat.size:
        with np.errstate(all="ignore"):
            stats = f"  min {flat.min():.6g}  max {flat.max():.6g}  mean {flat.mean():.6g}"
    more = " ..." if flat.size > 6 else ""
    return f"output '{name}': {list(a.shape)} {a.dtype}{stats}\n  first: {head}{more}"


def bench(model, inputs: list[np.ndarray], n: int) -> str:
    for _ in range(min(n, 10)):  # warm up caches and the arena
        model(*inputs)
    times = np.empty(n)
    clock = time.perf_counter_ns
    for k in range(n):
        t = clock()
        model(*inputs)
        times[k] = clock() - t
    us = times / 1e3
    rows = inputs[0].shape[0] if inputs and inputs[0].ndim else 1
    median = float(np.median(us))
    return (f"bench: {n} calls, batch {rows}: per call min {us.min():.2f} us  median {median:.2f} us"
            f"  mean {us.mean():.2f} us  p90 {np.percentile(us, 90):.2f} us\n"
            f"  throughput {rows / (median * 1e-6):.4g} rows/s (at the median)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        args = make_parser().parse_args(argv)
        if args.bench < 0:
            raise NccError(f"--bench must be >= 0, got {args.bench}")
        if args.constant and not args.model.endswith(".onnx"):
            raise NccError("--constant applies to ONNX models only (a .onnx file)")
        model = ncc.compile(args.model, fuse=not args.no_fuse, neuron_mode=args.neuron_mode,
                            cache=not args.no_cache, function=args.function, name=args.name,
                            threads=args.threads, constants=constants_of(args))
        info = model.compile_info
        lines = [f"model: {model!r}",
                 f"compiled in {info['seconds']['total']:.3f} s (cache: {info.get('cache')}"
                 + (f", neuron lowering: {info['neuron_mode']}" if info.get("neuron_mode") else "")
                 + f", threads: {info['threads']})"]
        if info.get("kernels"):  # the library kernels it calls, as chosen for this host
            lines.append("kernels: " + ", ".join(f"{sym} {tag}" for sym, tag in info["kernels"].items()))
        inputs, notes = gather_inputs(model, args)
        lines += notes
        outs = model.run(dict(zip(model.input_names, inputs)))
        lines += [summarize(n, a) for n, a in zip(model.output_names, outs)]
        if args.output:
            try:
                np.savez(args.output, **dict(zip(model.output_names, outs)))
            except OSError as e:
                raise NccError(f"cannot write output file: {e.strerror}", args.output) from None
            lines.append(f"wrote {len(outs)} output(s) to {args.output}")
        if args.bench:
            lines.append(bench(model, inputs, args.bench))
        if args.profile:
            source = load_source(args.model, args.name)
            lines.append(str(profile(source, inputs, function=args.function, threads=info["threads"],
                                     fuse=not args.no_fuse, cache=not args.no_cache)))
        print("\n".join(lines))
        return 0

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
