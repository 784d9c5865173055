"""Pruned models: ncc's sparse kernel against ncc's dense GEMM and onnxruntime, in one run.

    python benchmarks/bench_sparse.py                 # the MLP at 90 % sparsity, the CNN at half its channels
    python benchmarks/bench_sparse.py --crossover     # + one layer at densities 2-60 %: where dense wins

The MLP is 784-512-512-10 (relu, relu, logits) with random weights, pruned
by `ncc.prune(sparsity=0.9)` (unstructured, per layer). Three runs of the same
function: ncc compiled from the pruned model (its matmuls become
nn.packed_sparse_matmul), ncc compiled with the sparse kernel turned off (the
dense GEMM on the masked weights), and onnxruntime (one intra-op thread) on
the exported pruned model (dense MatMuls holding the zeros). All on one
thread; outputs are compared before anything is timed; times are the median
of blocks of calls, per call, from Python.

MobileNet's pointwise (1x1) convolutions at 50-90 % unstructured sparsity
run on the sparse kernel (nn.packed_sparse_conv, channels first, as
XNNPACK's sparse 1x1 convolutions), against the dense GEMM and onnxruntime:
where dense catches up is pack_weights.SPARSE_MAX_DENSITY_CONV.

A CIFAR-size CNN (four 3x3 convolutions of 32-128 channels, pools, a global
average and a linear layer; random weights) runs whole and with half of every
layer's channels pruned (`structure=channel`, a smaller dense model), in ncc
and in onnxruntime (the exported smaller model), batch 1 and 64.

--crossover times one 512 x 512 layer (and 784 x 512) at batch 1 and 64 for
densities from 2 % to 60 %, sparse against dense: the densest weight where
sparse is still faster at both batches is the crossover that
pack_weights.SPARSE_MAX_DENSITY should hold on this host.

Goals (issue 13; checked here, never in tests): at 90 % sparsity the sparse
MLP is >= 3x ncc's dense and >= 2x onnxruntime's speed at batch 1 and 64;
the CNN with half its channels >= 1.6x faster than whole.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import ncc
from timing import per_call  # benchmarks/timing.py
from ncc.passes import pack_weights
from ncc.runtime.engine import host_summary


def onnx_model(name: str, nodes, inits, input_shape):
    """An opset-17 model of `nodes` from input x of `input_shape` to output y."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    return model


def ort_session(model):
    """onnxruntime on one intra-op thread."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


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
    return onnx_model("mlp", nodes, inits, ["N", sizes[0]])


def compiled(module_text: str, sparse: bool):
    """ncc's native code of the pruned module, with the sparse kernel or without it."""
    saved = pack_weights.SPARSE_MAX_DENSITY, pack_weights.SPARSE_MAX_DENSITY_CONV
    pack_weights.SPARSE_MAX_DENSITY = pack_weights.SPARSE_MAX_DENSITY_CONV = 1.0 if sparse else -1.0
    try:
        return ncc.compile(ncc.parse_module(module_text), threads=1, cache=False)
    finally:
        pack_weights.SPARSE_MAX_DENSITY, pack_weights.SPARSE_MAX_DENSITY_CONV = saved


def pruned(model, sparsity: float):
    module = ncc.import_onnx(model)
    report = ncc.prune(module, sparsity=sparsity)
    return ncc.print_module(module), report, module


def compare(model, sparsity: float, batches, rng, label: str):
    text, report, module = pruned(model, sparsity)
    sparse, dense = compiled(text, True), compiled(text, False)
    session = ort_session(ncc.export_onnx(module))
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


def cnn(rng):
    """A CIFAR-size CNN: 3x32x32 -> conv 32 -> conv 64 -> pool -> conv 128 -> pool -> conv 128 ->
    global average -> 10 logits (3x3 convs, bias, relu)."""
    nodes, inits, prev, c = [], [], "x", 3
    for i, (out, pool) in enumerate(((32, False), (64, True), (128, True), (128, False))):
        inits += [numpy_helper.from_array((rng.standard_normal((out, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
                                          f"k{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(out)).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [prev, f"k{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        prev, c = f"r{i}", out
        if pool:
            nodes.append(helper.make_node("MaxPool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            prev = f"p{i}"
    inits.append(numpy_helper.from_array((rng.standard_normal((c, 10)) / np.sqrt(c)).astype(np.float32), "fc"))
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("MatMul", ["f", "fc"], ["y"])]
    return onnx_model("cnn", nodes, inits, ["N", 3, 32, 32])


def channels(rng) -> list[tuple[int, float, float, float, float]]:
    """The CNN against itself with half of every layer's channels pruned (structure=channel)."""
    model = cnn(rng)
    module = ncc.import_onnx(model)
    report = ncc.prune(module, structure="channel", sparsity=0.5)
    size, _, kept, macs, macs_after = report.totals()
    print(f"\ncnn 3x32x32, half of each layer's channels pruned (structure=channel): {kept:,} of {size:,} weights, "
          f"{2 * macs_after:,} of {2 * macs:,} FLOPs per sample")
    full, small = ncc.compile(model, threads=1, cache=False), ncc.compile(module, threads=1, cache=False)
    sessions = [ort_session(m) for m in (model, ncc.export_onnx(module))]
    rows = []
    for batch in (1, 64):
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(full(x), sessions[0].run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(small(x), sessions[1].run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
        t_full, t_small = per_call(lambda: full(x)), per_call(lambda: small(x))
        o_full, o_small = (per_call(lambda s=s: s.run(None, {"x": x})) for s in sessions)
        rows.append((batch, t_full, t_small, o_full, o_small))
        print(f"cnn batch {batch:<4} ncc {t_full * 1e3:8.3f} ms -> {t_small * 1e3:8.3f} ms ({t_full / t_small:4.2f}x)   "
              f"ort {o_full * 1e3:8.3f} ms -> {o_small * 1e3:8.3f} ms ({o_full / o_small:4.2f}x)   "
              f"pruned ncc vs pruned ort {o_small / t_small:4.2f}x")
    return rows


def pointwise(rng) -> None:
    """MobileNet's 1x1 convolutions, pruned: ncc sparse vs ncc dense vs onnxruntime (dense, the zeros)."""
    print("\n1x1 convolution + bias + relu (MobileNet's pointwise layers), batch 1, unstructured sparsity:")
    for c, m, hw in ((128, 128, 28), (256, 256, 14), (512, 512, 7)):
        w = {"k": (rng.standard_normal((m, c, 1, 1)) / np.sqrt(c)).astype(np.float32),
             "b": (0.1 * rng.standard_normal(m)).astype(np.float32)}
        model = onnx_model("pw", [helper.make_node("Conv", ["x", "k", "b"], ["c"]),
                                  helper.make_node("Relu", ["c"], ["y"])],
                           [numpy_helper.from_array(v, k) for k, v in w.items()], ["N", c, hw, hw])
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        line = []
        for sparsity in (0.5, 0.6, 0.7, 0.8, 0.9):
            text, _, module = pruned(model, sparsity)
            sparse, dense = compiled(text, True), compiled(text, False)
            session = ort_session(ncc.export_onnx(module))
            np.testing.assert_allclose(sparse(x), session.run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
            t_s, t_d = per_call(lambda: sparse(x), 0.05, 5), per_call(lambda: dense(x), 0.05, 5)
            t_o = per_call(lambda: session.run(None, {"x": x}), 0.05, 5)
            line.append(f"{sparsity:.0%}: {t_s * 1e6:7.1f} us ({t_d / t_s:4.2f}x dense, {t_o / t_s:4.2f}x ort)")
        print(f"  {c:>3} -> {m:<3} at {hw:>2}x{hw:<2}  " + "   ".join(line))


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
    cnn_rows = channels(rng)
    pointwise(rng)
    if args.crossover:
        crossover(rng)
    print("\ngoals (issue 13), 1 thread:")
    for batch, t_sparse, t_dense, t_ort in rows:
        for what, ratio, goal in (("ncc dense", t_dense / t_sparse, 3.0), ("onnxruntime", t_ort / t_sparse, 2.0)):
            print(f"  mlp 90 % sparse, batch {batch}: vs {what} {ratio:.2f}x (goal >= {goal:g}x): "
                  f"{'MET' if ratio >= goal else 'NOT MET'}")
    for batch, t_full, t_small, _, _ in cnn_rows:
        print(f"  cnn half the channels, batch {batch}: vs unpruned {t_full / t_small:.2f}x (goal >= 1.6x): "
              f"{'MET' if t_full / t_small >= 1.6 else 'NOT MET'}")


if __name__ == "__main__":
    main()
