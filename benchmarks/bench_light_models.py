"""The light models shipped with onnx: ncc's native code vs onnxruntime, in one run.

    python benchmarks/bench_light_models.py                      # resnet50, squeezenet
    python benchmarks/bench_light_models.py --models all         # all nine
    python benchmarks/bench_light_models.py --models vgg19,shufflenet --repeat 3

For each model (onnx/backend/test/data/light/light_<name>.onnx, batch 1):
  compile   ncc: .onnx -> native code, cold (no cache), with its stages
            (import, lower-to-loops, lower-to-llvm, llvm); then the same compile
            from the on-disk cache; onnxruntime: creating the session;
  latency   one inference at batch 1, median over blocks of calls, ncc vs
            onnxruntime with one intra-op thread (ncc's kernels are
            single-threaded), ratio printed (> 1: ncc is faster).
Outputs are checked against onnxruntime's before anything is timed.

Goal (issue 4, checked here, never in tests): light_resnet50 compiles from
.onnx to native code in under 20 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

import ncc
from ncc.runtime.engine import host_summary

LIGHT = ["resnet50", "squeezenet", "inception_v1", "inception_v2", "densenet121", "shufflenet",
         "bvlc_alexnet", "vgg19", "zfnet512"]
RESNET50_COMPILE_GOAL = 20.0


def light_path(name: str) -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")


def per_call(f, min_block: float = 0.2, blocks: int = 5) -> float:
    """Median seconds per call over `blocks` blocks of at least `min_block` s."""
    f()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        t = time.perf_counter() - t0
        if t >= min_block:
            break
        n *= 2
    samples = [t / n]
    for _ in range(blocks - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def bench(name: str, repeat: int) -> dict:
    path = light_path(name)
    cold = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model = ncc.compile(path, cache=False)
        cold.append(time.perf_counter() - t0)
    stages = model.compile_info["seconds"]
    with tempfile.TemporaryDirectory() as d:
        ncc.compile(path, cache=d)
        t0 = time.perf_counter()
        ncc.compile(path, cache=d)
        cached = time.perf_counter() - t0

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    ort_session = time.perf_counter() - t0
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).normal(size=[d if isinstance(d, int) else 1 for d in inp.shape]
                                        ).astype(np.float32)
    (want,) = sess.run(None, {inp.name: x})
    (got,) = model.run({model.input_names[0]: x})
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)

    feeds = {inp.name: x}
    ncc_feeds = {model.input_names[0]: x}
    return {"name": name, "compile": min(cold), "stages": stages, "cached": cached,
            "ort_session": ort_session,
            "ncc": per_call(lambda: model.run(ncc_feeds)),
            "ort": per_call(lambda: sess.run(None, feeds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,squeezenet",
                    help=f"comma-separated names, or 'all' ({', '.join(LIGHT)})")
    ap.add_argument("--repeat", type=int, default=1, help="cold compiles per model (the fastest is reported)")
    args = ap.parse_args()
    names = LIGHT if args.models == "all" else args.models.split(",")
    unknown = [n for n in names if n not in LIGHT]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(LIGHT)})")

    print(f"host: {host_summary()}")
    print(f"ncc vs onnxruntime {ort.__version__} (1 intra-op thread), batch 1")
    print(f"\n{'model':<14}{'compile':>9}{'import':>8}{'loops':>8}{'to-llvm':>9}{'llvm':>8}"
          f"{'cached':>8}{'ort sess':>10}{'ncc':>11}{'ort':>11}{'ncc vs ort':>12}")
    results = []
    for name in names:
        r = bench(name, args.repeat)
        results.append(r)
        s = r["stages"]
        print(f"{name:<14}{r['compile']:8.2f}s{s.get('import', 0):7.2f}s{s.get('lower-to-loops', 0):7.2f}s"
              f"{s.get('lower-to-llvm', 0):8.2f}s{s.get('llvm', 0):7.2f}s{r['cached']:7.2f}s"
              f"{r['ort_session']:9.2f}s{r['ncc'] * 1e3:8.2f} ms{r['ort'] * 1e3:8.2f} ms"
              f"{r['ort'] / r['ncc']:11.2f}x", flush=True)
    for r in results:
        if r["name"] == "resnet50":
            ok = r["compile"] < RESNET50_COMPILE_GOAL
            print(f"\ngoal: light_resnet50 .onnx -> native in < {RESNET50_COMPILE_GOAL:.0f} s: "
                  f"{r['compile']:.1f} s ({'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    main()
