"""Pruned models: ncc's sparse kernel against ncc's dense GEMM and onnxruntime, in one run.

    python benchmarks/bench_sparse.py                 # the MLP at 90 % sparsity, batch 1 and 64
    python benchmarks/bench_sparse.py --crossover     # + one layer at densities 2-60 %: where dense wins

The MLP is 784-512-512-10 (relu, relu, logits) with random weights, pruned
by `ncc.prune(sparsity=0.9)` (unstructured, per layer). Three runs of the same
function: ncc compiled from the pruned model (its matmuls become
nn.packed_sparse_matmul), ncc compiled with the sparse kernel turned off (the
dense GEMM on the masked weights), and onnxruntime (one intra-op thread) on
the exported pruned model (dense MatMuls holding the zeros). All on one
thread; outputs are compared before anything is timed; times are the median
of blocks of calls, per call, from Python.

--crossover times one 512 x 512 layer (and 784 x 512) at batch 1 and 64 for
densities from 2 % to 60 %, sparse against dense: the densest weight where
sparse is still faster at both batches is the crossover that
pack_weights.SPARSE_MAX_DENSITY should hold on this host.

Goals (issue 13; checked here, never in tests): at 90 % sparsity the sparse
MLP is >= 3x ncc's dense and >= 2x onnxruntime's speed at batch 1 and 64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.passes import pack_weights
from ncc.runtime.engine import host_summary


def per_call(f, min_block: float = 0.1, blocks: int = 7) -> float:
    f()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        if time.perf_counter() - t0 >= min_block:
            break
        n *= 2
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def mlp(sizes, rng):
    """An ONNX MLP (MatMul + Add + Relu per layer, logits last) with random weights."""
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
        w, b = f"w{i}", f"b{i}"
        inits += [numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), w),
                  numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(np.float32), b)]
        nodes += [helper.make_node("MatMul", [prev, w], [f"m{i}"]), helper.make_node("Add", [f"m{i}", b], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    return model


def compiled(module_text: str, sparse: bool):
    """ncc's native code of the pruned module, with the sparse kernel or without it."""
    saved = pack_weights.SPARSE_MAX_DENSITY
    pack_weights.SPARSE_MAX_DENSITY = 1.0 if sparse else -1.0
    try:
        return ncc.compile(ncc.parse_module(module_text), threads=1, cache=False)
    finally:
        pack_weights.SPARSE_MAX_DENSITY = saved


def pruned(model, sparsity: float):
    module = ncc.import_onnx(model)
    report = ncc.prune(module, sparsity=sparsity)
    return ncc.print_module(module), report, module


def compare(model, sparsity: float, batches, rng, label: str):
    text, report, module = pruned(model, sparsity)
    sparse, dense = compiled(text, True), compiled(text, False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(ncc.export_onnx(module).SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    rows = []
    for batch in batches:
        x = rng.standard_normal((batch, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value))
        x = x.astype(np.float32)
        want = session.run(None, {"x": x})[0]
        for f in (sparse, dense):
            np.testing.assert_allclose(f(x), want, rtol=1e-3, atol=1e-3)
        t_sparse = per_call(lambda: sparse(x))
        t_dense = per_call(lambda: dense(x))
        t_ort = per_call(lambda: session.run(None, {"x": x}))
        rows.append((batch, t_sparse, t_dense, t_ort))
        print(f"{label:<22} batch {batch:<5} sparse {t_sparse * 1e6:9.2f} us   dense {t_dense * 1e6:9.2f} us   "
              f"ort {t_ort * 1e6:9.2f} us   sparse vs dense {t_dense / t_sparse:5.2f}x   vs ort {t_ort / t_sparse:5.2f}x")
    return rows, report


def crossover(rng) -> None:
    print("\none layer, sparse kernel vs dense GEMM on the same pruned weight (speed-up > 1: sparse wins)")
    densities = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    print(f"{'layer':>10} {'batch':>6} " + " ".join(f"{d:>6.0%}" for d in densities))
    best = {}
    for k, n in ((512, 512), (784, 512)):
        model = mlp([k, n], rng)
        for batch in (1, 64):
            x = rng.standard_normal((batch, k)).astype(np.float32)
            line = []
            for d in densities:
                text, _, _ = pruned(model, 1 - d)
                sparse, dense = compiled(text, True), compiled(text, False)
                ratio = per_call(lambda: dense(x), 0.05, 5) / per_call(lambda: sparse(x), 0.05, 5)
                line.append(ratio)
                if ratio > 1:
                    best[(k, n, batch)] = d
            print(f"{f'{k}x{n}':>10} {batch:>6} " + " ".join(f"{r:>5.2f}x" for r in line))
    print("densest weight where sparse wins, per layer and batch: "
          + ", ".join(f"{k}x{n} batch {b}: {d:.0%}" for (k, n, b), d in best.items()))
    print(f"crossover (sparse wins at every layer and batch up to): {min(best.values()):.0%}; "
          f"pack_weights.SPARSE_MAX_DENSITY = {pack_weights.SPARSE_MAX_DENSITY:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crossover", action="store_true", help="also sweep one layer's density")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"host: {host_summary()}")
    print(f"ncc sparse / ncc dense / onnxruntime {ort.__version__}, 1 thread each\n")
    rows, report = compare(mlp([784, 512, 512, 10], rng), 0.9, (1, 64), rng, "mlp 784-512-512-10 90%")
    size, _, nonzero, macs, macs_after = report.totals()
    print(f"  (pruned: {nonzero:,} of {size:,} weights; {2 * macs_after:,} of {2 * macs:,} FLOPs per sample)")
    if args.crossover:
        crossover(rng)
    print("\ngoals (issue 13), 90 % sparsity, 1 thread:")
    for batch, t_sparse, t_dense, t_ort in rows:
        for what, ratio, goal in (("ncc dense", t_dense / t_sparse, 3.0), ("onnxruntime", t_ort / t_sparse, 2.0)):
            print(f"  batch {batch}: sparse vs {what} {ratio:.2f}x (goal >= {goal:g}x): "
                  f"{'MET' if ratio >= goal else 'NOT MET'}")


if __name__ == "__main__":
    main()
