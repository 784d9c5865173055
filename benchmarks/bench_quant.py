"""int8 models: ncc's integer kernels against ncc's float32 and onnxruntime, in one run.

    python benchmarks/bench_quant.py            # the MLP at batch 64 and 1, the CNN at batch 1 and 16
    python benchmarks/bench_quant.py --threads 2

MLP 784-512-512-10 (relu, relu, logits; random weights): float32 compiled by
ncc; quantized by `ncc.quantize` (static, minmax, per channel, int8
activations; calibration on 8 random batches) and compiled by ncc (its
matmuls on ncc_qgemm); the same quantized model exported as QDQ and run by
onnxruntime (which fuses it into its int8 kernels); and onnxruntime's float32.

CNN: a CIFAR-size network (four 3x3 convolutions of 32-128 channels with
relu, two max pools, a flatten and a linear layer; random weights), quantized
by onnxruntime's `quantize_static` (QDQ, per channel, int8 and uint8
activations): ncc and onnxruntime run the same file; their outputs are
compared in steps of the output's quantization scale.

The GEMM kernels alone: every int8 variant this host can run (an AVX-512
VNNI host runs them all, the AVX2 ones included) against the float32 GEMM
of the same vector width, on the MLP's first layer with both weights packed
ahead: the int8-over-float32 ratio an AVX2 host's kernels give, measured here.

Every run is on `--threads` threads (ncc's OpenMP team, onnxruntime's intra-op
pool), outputs compared before anything is timed; a time is each one's fastest
of three rounds of blocks of calls (benchmarks/timing.py), per call, from Python. The host line names the CPU, its
vector width and which int8 kernel ncc chose.

Goals (issue 14; checked here, never in tests): the int8 MLP at batch 64 >= 2x
ncc's float32 on a VNNI host (>= 1.4x on AVX2), and >= 1.0x onnxruntime on the
same QDQ model; the quantize_static CNN within one step of onnxruntime's
outputs and >= 1.0x its speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import ncc
from timing import best_of_rounds  # benchmarks/timing.py
from ncc.runtime.engine import host_summary, qgemm_variant

rng = np.random.default_rng(0)


def model(name, nodes, inits, input_shape):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = min(m.ir_version, 10)
    return m


def mlp():
    sizes = (784, 512, 512, 10)
    inits, nodes, x = {}, [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits[f"w{i}"] = (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        inits[f"b{i}"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
        y = "y" if i == len(sizes) - 2 else f"h{i}"
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"],
                                                                                        [y if y == "y" else f"a{i}"])]
        if y != "y":
            nodes.append(helper.make_node("Relu", [f"a{i}"], [y]))
        x = y
    return model("mlp", nodes, inits, ["N", 784])


def cnn():
    inits, nodes, x, c = {}, [], "x", 3
    for i, (out, pool) in enumerate([(32, False), (64, True), (128, False), (128, True)]):
        inits[f"k{i}"] = (rng.standard_normal((out, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        inits[f"c{i}"] = (rng.standard_normal(out) * 0.1).astype(np.float32)
        nodes += [helper.make_node("Conv", [x, f"k{i}", f"c{i}"], [f"v{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"v{i}"], [f"r{i}"])]
        x, c = f"r{i}", out
        if pool:
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
    nodes.append(helper.make_node("Flatten", [x], ["f"]))
    inits["wf"] = (rng.standard_normal((10, 128 * 8 * 8)) * 0.01).astype(np.float32)
    inits["bf"] = np.zeros(10, np.float32)
    nodes.append(helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1))
    return model("cnn", nodes, inits, ["N", 3, 32, 32])


def session(m, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString() if not isinstance(m, str) else m, so,
                                providers=["CPUExecutionProvider"])


def bench_mlp(threads: int) -> None:
    float_model = mlp()
    module = ncc.import_onnx(float_model)
    fp32 = ncc.compile(module.clone(), cache=False, threads=threads)
    ncc.quantize(module, [{"x": rng.standard_normal((64, 784)).astype(np.float32)} for _ in range(8)])
    int8 = ncc.compile(module, cache=False, threads=threads)
    ort_int8 = session(ncc.export_onnx(module), threads)
    ort_fp32 = session(float_model, threads)
    print("\nMLP 784-512-512-10, quantized by ncc.quantize (int8 activations, per-channel weights)")
    print(f"{'batch':>5}  {'ncc f32':>9}  {'ncc int8':>9}  {'ort int8':>9}  {'ort f32':>9}  "
          f"{'int8/f32':>8}  {'vs ort int8':>11}  {'max |ncc-ort|':>13}")
    for batch in (64, 1):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        diff = float(np.abs(int8(x) - ort_int8.run(None, {"x": x})[0]).max())
        t = best_of_rounds([lambda: fp32(x), lambda: int8(x), lambda: ort_int8.run(None, {"x": x}),
                            lambda: ort_fp32.run(None, {"x": x})])
        print(f"{batch:>5}  " + "  ".join(f"{v * 1e3:8.3f}m" for v in t)
              + f"  {t[0] / t[1]:7.2f}x  {t[2] / t[1]:10.2f}x  {diff:13.3g}")


def bench_cnn(threads: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "cnn.onnx")
        onnx.save(cnn(), src)
        batches = [{"x": rng.standard_normal((4, 3, 32, 32)).astype(np.float32)} for _ in range(8)]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(batches)

            def get_next(self):
                return next(self.it, None)

        print("\nCNN (4 convs 32-128 ch, 32x32), quantized by onnxruntime's quantize_static (QDQ, per channel)")
        print(f"{'activations':>11} {'batch':>5}  {'ncc':>9}  {'ort':>9}  {'ncc vs ort':>10}  {'max diff (steps)':>16}")
        for act in ("QInt8", "QUInt8"):
            dst = os.path.join(tmp, f"cnn_{act}.onnx")
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8)
            qmodel = onnx.load(dst)
            step = next(float(numpy_helper.to_array(i)) for n in reversed(qmodel.graph.node)
                        if n.op_type == "DequantizeLinear" for i in qmodel.graph.initializer if i.name == n.input[1])
            ours, theirs = ncc.compile(dst, cache=False, threads=threads), session(dst, threads)
            for batch in (1, 16):
                x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
                diff = float(np.abs(ours(x) - theirs.run(None, {"x": x})[0]).max()) / step
                t = best_of_rounds([lambda: ours(x), lambda: theirs.run(None, {"x": x})])
                print(f"{act:>11} {batch:>5}  " + "  ".join(f"{v * 1e3:8.3f}m" for v in t)
                      + f"  {t[1] / t[0]:9.2f}x  {diff:16.3g}")


# Each int8 variant against the float32 GEMM of its vector width (the tile an AVX-512, AVX2 or SSE host gets)
SAME_WIDTH = {"vnni512": "avx512", "madd512": "avx512", "vnni256": "avx2", "madd256": "avx2", "madd128": "sse"}


def bench_kernels() -> None:
    """Every int8 GEMM variant this host can run against the float32 GEMM of
    its width, one thread, on the MLP's first layer (64 x 784 @ 784 x 512,
    both weights packed ahead): what an AVX2 host would see, run here."""
    from ncc.dialects import nn
    from ncc.passes.lowering import gemm, qgemm
    from ncc.runtime import engine
    from ncc.runtime.calling import aligned_empty

    m, n, k = 64, 512, 784
    tm = engine.target_machine()
    a8 = rng.integers(0, 256, (m, k)).astype(np.uint8)
    w8 = rng.integers(-128, 128, (k, n)).astype(np.int8)
    af, wf = a8.astype(np.float32), w8.astype(np.float32)
    print(f"\nGEMM kernels alone, {m} x {k} @ {k} x {n}, 1 thread, weights packed ahead (int8 exact: checked)")
    print(f"{'int8 variant':>12}  {'GMAC/s':>7}  {'float32 tile':>12}  {'GMAC/s':>7}  {'int8/f32':>8}")
    for name, variant in qgemm.VARIANTS.items():
        if qgemm.REQUIRES[name] - engine.host_features() or gemm.REQUIRES[SAME_WIDTH[name]] - engine.host_features():
            print(f"{name:>12}  (this host cannot run it)")
            continue
        qlib = engine.compile_llvm_ir(str(qgemm.qgemm_module(variant, tm.triple, str(tm.target_data))))
        tile = gemm.VARIANTS[SAME_WIDTH[name]]
        flib = engine.compile_llvm_ir(str(gemm.gemm_module(tile, tm.triple, str(tm.target_data))))
        q, f = qgemm.callable_qgemm(qlib.address(qgemm.SYMBOL)), gemm.callable_gemm(flib.address(gemm.SYMBOL))
        panels = nn.pack_quads(w8)
        c8 = np.zeros((m, n), np.int32)
        ws8 = aligned_empty((qgemm.workspace_bytes(k),), np.dtype(np.uint8))
        zeros = np.zeros(1, np.int32)
        run8 = lambda: q(m, n, k, a8.ctypes.data, k, panels.ctypes.data, n, c8.ctypes.data, n, 0, 0,  # noqa: E731
                         zeros.ctypes.data, qgemm.PACKED_B, ws8.ctypes.data, 1,
                         zeros.ctypes.data, zeros.ctypes.data, 0)  # no requantize epilogue: C is the i32 product
        from ncc.dialects.nn.matmul import pack_panels
        fpanels = pack_panels(wf)
        cf = np.zeros((m, n), np.float32)
        wsf = aligned_empty((gemm.workspace_floats(m, n, k),), np.dtype(np.float32))
        runf = lambda: f(m, n, k, af.ctypes.data, k, 1, fpanels.ctypes.data, n, cf.ctypes.data, n,  # noqa: E731
                         gemm.PACKED_B, wsf.ctypes.data, 1, wsf.ctypes.data, None)
        run8()
        runf()
        assert np.array_equal(c8, a8.astype(np.int64) @ w8.astype(np.int64))
        t8, tf = best_of_rounds([run8, runf])
        macs = m * n * k / 1e9
        print(f"{name:>12}  {macs / t8:7.0f}  {tile.tag:>12}  {macs / tf:7.0f}  {tf / t8:7.2f}x")
        del qlib, flib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(f"host: {host_summary()}; int8 kernel: ncc_qgemm {qgemm_variant().tag}; threads: {args.threads}")
    bench_mlp(args.threads)
    bench_cnn(args.threads)
    bench_kernels()


if __name__ == "__main__":
    main()
