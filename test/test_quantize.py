"""quantize: calibration (the ranges each method finds, the parameters against
onnxruntime's), the QDQ form the pass writes (what is int8, the report), and
that the quantized model computes the same on every path: natively on the
integers, the reference's fake quantization (within a step), and
onnxruntime on the export (bit for bit). The IR before and after is in
test/lit/passes/quantize and test/lit/passes/fold-qdq."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import ncc
from ncc.dialects import nn
from ncc.passes.quantize.calibrate import Range, activation_parameters, weight_parameters
from onnx_models import onnx_model

rng = np.random.default_rng(3)


def _mlp():
    w = {"W1": rng.standard_normal((12, 6)).astype(np.float32) * 0.5, "B1": rng.standard_normal(12).astype(np.float32),
         "W2": rng.standard_normal((12, 4)).astype(np.float32) * 0.5, "B2": rng.standard_normal(4).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["m"]), helper.make_node("Add", ["m", "B2"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 6])}, inits=w)


def _cnn():
    w = {"K1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "C1": rng.standard_normal(8).astype(np.float32),
         "K2": rng.standard_normal((5, 8, 1, 1)).astype(np.float32) * 0.3}
    nodes = [helper.make_node("Conv", ["x", "K1", "C1"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "K2"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 3, 6, 6])}, inits=w)


def _batches(shape, n=3, batch=16):
    return [{"x": rng.standard_normal((batch, *shape)).astype(np.float32)} for _ in range(n)]


def _ort(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


# ---------------------------------------------------------------------------
# Calibration


def test_ranges_of_each_method():
    x = np.concatenate([rng.uniform(-1, 1, 100_000), [40.0]])  # one outlier
    ranges = {m: Range(m) for m in ("minmax", "percentile", "entropy")}
    for r in ranges.values():
        r.add(x[:50_000])
        r.add(x[50_000:])  # a wider batch: the histogram is widened, not restarted
    assert ranges["minmax"].bounds() == (float(x.min()), 40.0)
    lo, hi = ranges["percentile"].bounds()
    assert lo == -hi and 0.99 <= hi <= 1.05  # the outlier is past the 99.999th percentile
    lo, hi = ranges["entropy"].bounds()
    assert lo == -hi and 1.0 <= hi <= 40 * 128 / 2048  # the smallest threshold it considers
    positive = Range("percentile")
    positive.add(rng.uniform(0, 3, 1000))
    assert positive.bounds()[0] == 0.0
    assert Range("minmax").bounds() == (0.0, 0.0)  # nothing seen


@pytest.mark.parametrize("lo,hi", [(-1.5, 2.25), (0.0, 6.0), (-3.0, -1.0), (0.0, 0.0), (1e-3, 7e4)])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_activation_parameters_are_onnxruntimes(lo, hi, dtype):
    quant_utils = pytest.importorskip("onnxruntime.quantization.quant_utils")
    info = np.iinfo(dtype)
    zero, scale = quant_utils.compute_scale_zp(np.float32(lo), np.float32(hi), np.array(info.min, dtype),
                                               np.array(info.max, dtype))
    got_scale, got_zero = activation_parameters(lo, hi, np.dtype(dtype))
    assert got_scale == np.float32(scale) and int(got_zero) == int(zero) and got_zero.dtype == dtype


def test_weight_parameters_are_symmetric_per_channel():
    w = rng.standard_normal((5, 3, 2, 2)).astype(np.float32)
    w[2] = 0.0  # a channel of zeros gets scale 1, not a division by zero
    scale, q = weight_parameters(w, 0)
    assert scale.shape == (5,) and scale[2] == 1.0 and q.dtype == np.int8 and np.abs(q).max() == 127
    np.testing.assert_allclose(q * scale[:, None, None, None], w, atol=float(scale.max()) / 2 + 1e-7)
    scale1, q1 = weight_parameters(w, None)
    assert scale1.shape == () and scale1 == np.float32(np.abs(w).max() / 127)


# ---------------------------------------------------------------------------
# The pass


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
@pytest.mark.parametrize("make,shape", [(_mlp, (6,)), (_cnn, (3, 6, 6))])
def test_static_quantization_every_path_agrees(method, make, shape):
    model = make()
    module = ncc.import_onnx(model)
    float_model = ncc.compile(module.clone(), cache=False)
    report = ncc.quantize(module, _batches(shape), method=method)
    assert report.quantized == 2 and "2 of 2 ops int8" in str(report)
    x = rng.standard_normal((7, *shape)).astype(np.float32)
    native = ncc.compile(module, cache=False)(x)
    exported = ncc.export_onnx(module)
    np.testing.assert_array_equal(native, _ort(exported, x))  # onnxruntime's integer path
    step = max(d.output_range[1] - d.output_range[0] for d in report.decisions) / 255
    np.testing.assert_allclose(native, ncc.reference.run(module, [x])[0], atol=1.01 * step)
    if method == "minmax":  # within the calibrated range: close to the float model
        assert np.abs(native - float_model(x)).max() < 0.1 * np.abs(float_model(x)).max()
    ops = {n.op_type for n in exported.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_quantized_model_runs_on_integers_and_its_weights_are_int8():
    module = ncc.import_onnx(_cnn())
    ncc.quantize(module, _batches((3, 6, 6)), activation_type="uint8")
    weights = {op.sym: op.data for op in module.ops if isinstance(op, nn.WeightOp)}
    assert weights["K1_quantized"].dtype == np.int8 and weights["C1_quantized"].dtype == np.int32
    assert "K1" not in weights  # the float weight is gone
    folded = module.clone()
    ncc.run_passes(folded, "fold-qdq")
    names = [op.name for op in folded.walk()]
    assert names.count("nn.qconv") == 2 and "nn.conv" not in names and names.count("nn.requantize") == 2
    pool = next(op for op in folded.walk() if isinstance(op, nn.MaxPoolOp))
    assert isinstance(pool.input.owner, nn.RequantizeOp)  # the max pool of the integers
    assert pool.result.type.element_type == pool.input.type.element_type == nn.ui8


def test_dynamic_mode_quantizes_inputs_at_run_time():
    module = ncc.import_onnx(_mlp())
    report = ncc.quantize(module, mode="dynamic")
    assert report.quantized == 2 and report.method == "run time"
    x = rng.standard_normal((5, 6)).astype(np.float32) * 3
    native = ncc.compile(module, cache=False)(x)
    np.testing.assert_allclose(native, _ort(ncc.export_onnx(module), x), rtol=1e-5, atol=1e-5)
    names = [op.name for op in module.walk()]
    assert "nn.reduce_min" in names and "nn.requantize" not in names


def test_ops_that_stay_float_say_why():
    text = """func.func @f(%x: tensor<?x4xf32>, %w: tensor<4x3xf32>) -> tensor<?x3xf32> {
  %y = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  func.return %y : tensor<?x3xf32>
}"""
    module = ncc.parse_module(text)
    report = ncc.quantize(module, [{"x": np.ones((2, 4), np.float32), "w": np.ones((4, 3), np.float32)}])
    assert report.quantized == 0 and "its weight is not known at compile time" in str(report)
    assert ncc.print_module(module) == ncc.print_module(ncc.parse_module(text))  # untouched


def test_contractions_without_an_int8_form_are_listed():
    module = ncc.import_adjacency("examples/ncp19.txt")
    ncc.run_passes(module, "layerize")  # its layers are sparse (nn.sparse_matmul)
    report = ncc.quantize(module, mode="dynamic")
    assert report.quantized == 0 and len(report.decisions) > 0
    assert "a sparse layer: no int8 kernel" in str(report)
    fused = ncc.import_onnx(_mlp())
    ncc.run_passes(fused, "fuse")
    assert "already fused: quantize before fuse" in str(ncc.quantize(fused, mode="dynamic"))


@pytest.mark.parametrize("call,message", [
    (lambda m: ncc.quantize(m), "static quantization needs calibration data"),
    (lambda m: ncc.quantize(m, [], method="minmax"), "needs calibration data \\(at least one batch\\)"),
    (lambda m: ncc.quantize(m, [[1, 2]]), "a calibration batch must be a dict of input arrays, got list"),
    (lambda m: ncc.quantize(m, mode="dynamic", method="kl"), "option method: must be one of minmax, percentile, entropy"),
    (lambda m: ncc.quantize(m, mode="weights"), "option mode: must be static or dynamic"),
    (lambda m: ncc.quantize(m, mode="dynamic", activation_type="int4"), "option activation_type: must be int8 or uint8"),
    (lambda m: ncc.quantize(m, mode="dynamic", function="g"), r"no function @g \(functions: @main\)"),
    (lambda m: ncc.quantize("model.onnx"), "quantize takes a module"),
])
def test_errors(call, message):
    with pytest.raises(ncc.NccError, match=message):
        call(ncc.import_onnx(_mlp()))


def test_ncc_opt_quantize_with_a_calibration_file(tmp_path):
    module = ncc.import_onnx(_mlp())
    src = tmp_path / "mlp.mlir"
    src.write_text(ncc.print_module(module))
    np.savez(tmp_path / "batches.npz", x=rng.standard_normal((40, 6)).astype(np.float32))
    run = subprocess.run([sys.executable, "-m", "ncc.tools.ncc_opt", str(src),
                          f"--quantize=calibration=\"{tmp_path / 'batches.npz'}\" method=percentile report=true"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "quantize (static, percentile): 2 of 2 ops int8" in run.stderr
    assert run.stdout.count("nn.quantize") == 3 and "tensor<6x12xi8>" in run.stdout  # x, h, y; W1 as read
    bad = subprocess.run([sys.executable, "-m", "ncc.tools.ncc_opt", str(src), "--quantize"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "static quantization needs calibration=<file.npz>" in bad.stderr


@pytest.mark.slow  # trains and quantizes two models (about 15 s)
def test_digits_quantized_lose_at_most_one_point():
    """examples/quantize_digits.py: the trained MLP and CNN, int8, within a point of float32."""
    datasets = pytest.importorskip("sklearn.datasets")
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "quantize_digits.py"
    spec = importlib.util.spec_from_file_location("quantize_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.quantize_digits(datasets.load_digits())
    for name, (float_accuracy, int8_accuracy, _, report) in results.items():
        assert float_accuracy >= 0.95 and int8_accuracy >= float_accuracy - 0.01, (name, float_accuracy, int8_accuracy)
        assert report.quantized == len(report.decisions) > 0


def test_ncc_run_names_the_int8_kernel_it_chose(tmp_path, capsys):
    from ncc.runtime.engine import qgemm_variant
    from ncc.tools import ncc_run

    module = ncc.import_onnx(_cnn())
    ncc.quantize(module, _batches((3, 6, 6)))
    ncc.export_onnx(module, tmp_path / "q.onnx")
    # the tool's main in this process: the int8 GEMM library other tests compiled is reused
    assert ncc_run.main([str(tmp_path / "q.onnx"), "--batch", "2", "--no-cache"]) == 0
    assert f"kernels: ncc_qgemm {qgemm_variant().tag}" in capsys.readouterr().out
