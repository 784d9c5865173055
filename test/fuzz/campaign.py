"""A fuzz campaign: mutated inputs for every frontend and run-time call, each
outcome classified (ok, error, traceback, crash, hang), and the table printed.

    python test/fuzz/campaign.py [--inputs 20000] [--targets adjacency,mlir,onnx,runtime]
                                 [--seed 0] [--timeout 10] [--show 5]

The inputs are split evenly between the targets. Exit status 1 if anything
but ok and error happened; `--show N` prints that many inputs of each bad
signature (text, or the ONNX model's nodes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import TARGETS, run_campaign, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20000, help="inputs in all (default 20000)")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated of {', '.join(TARGETS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before an input counts as a hang")
    ap.add_argument("--show", type=int, default=0, help="inputs to print per bad signature")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {', '.join(unknown)} (known: {', '.join(TARGETS)})")
    start = time.time()
    done = [0]

    def progress(outcome):
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"  {done[0]} inputs, {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    outcomes = run_campaign(targets, max(1, args.inputs // len(targets)), args.seed, args.timeout, progress)
    print(table(outcomes))
    print(f"\n{len(outcomes)} inputs in {time.time() - start:.0f} s (seed {args.seed})")
    bad = [o for o in outcomes if o.kind in ("traceback", "crash", "hang")]
    if args.show:
        shown: dict = {}
        for o in bad:
            if shown.setdefault((o.target, o.detail), 0) < args.show:
                shown[o.target, o.detail] += 1
                print(f"\n--- {o.target} {o.kind}: {o.detail}")
                print(o.payload if isinstance(o.payload, (str, int)) else _describe(o.payload))
    return 1 if bad else 0


def _describe(model_bytes: bytes) -> str:
    import onnx

    m = onnx.ModelProto()
    m.ParseFromString(model_bytes)
    return onnx.printer.to_text(m.graph)


if __name__ == "__main__":
    sys.exit(main())
