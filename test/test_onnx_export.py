"""ONNX export: every nn op family becomes a model that passes onnx.checker
(full_check) and that onnxruntime runs with the reference interpreter's results."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from xdsl.dialects.builtin import f64

import ncc
from ncc.dialects import nn

from test_lower_to_loops import T, build  # noqa: E402  (pytest puts test/ on sys.path)

rng = np.random.default_rng(7)
EXAMPLES = __import__("pathlib").Path(__file__).parent.parent / "examples"


def randn(*shape, dtype=np.float32):
    return rng.normal(size=shape).astype(dtype)


def ort_run(model, inputs):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs)))


def check(module, inputs, *, tol=2e-5, **kw):
    """Export, check the model, run it with onnxruntime, compare with the reference."""
    model = ncc.export_onnx(module, **kw)
    onnx.checker.check_model(model, full_check=True)
    ref = ncc.reference.run(module, inputs, function=kw.get("function"))
    got = ort_run(model, inputs)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)
    return model


def op_types(model):
    return [n.op_type for n in model.graph.node if n.op_type != "Constant"]


# ---------------------------------------------------------------------------
# Every op family


CONVS = [dict(), dict(strides=[2, 1], pads=[1, 0, 1, 2]), dict(dilations=[2, 2], pads=[2, 2, 2, 2]),
         dict(group=2)]


def test_float64_and_constants():
    def make(e, x):
        return e(nn.AddOp(x, e(nn.ConstantOp(np.arange(3.0), T(3, elt=f64)))))
    check(build([T(2, 3, elt=f64)], make), [rng.normal(size=(2, 3))], tol=1e-12)


# ---------------------------------------------------------------------------
# Names, calls, edge cases, errors


def test_names_from_attributes_and_outputs_that_are_not_computed():
    m = ncc.parse_module("""
    nn.weight @w : tensor<2xf32> = dense<[1.0, 2.0]>
    func.func @main(%x: tensor<?x2xf32> {ncc.name = "image"}) -> (tensor<?x2xf32> {ncc.name = "probs"},
                                                                 tensor<?x2xf32>, tensor<2xf32>, tensor<?x2xf32>) {
      %w = nn.weight_ref @w : tensor<2xf32>
      %0 = nn.mul %x, %w : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
      func.return %0, %x, %w, %0 : tensor<?x2xf32>, tensor<?x2xf32>, tensor<2xf32>, tensor<?x2xf32>
    }""")
    model = check(m, [randn(3, 2)])
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probs", "out1", "out2", "out3"]
    assert op_types(model) == ["Mul", "Identity", "Identity", "Identity"]


def test_calls_are_inlined_and_function_selects():
    m = ncc.parse_module("""
    func.func @act(%x: tensor<3xf32>) -> tensor<3xf32> {
      %0 = nn.tanh %x : tensor<3xf32>
      func.return %0 : tensor<3xf32>
    }
    func.func @main(%x: tensor<3xf32>) -> tensor<3xf32> {
      %0 = func.call @act(%x) : (tensor<3xf32>) -> tensor<3xf32>
      %1 = func.call @act(%0) : (tensor<3xf32>) -> tensor<3xf32>
      func.return %1 : tensor<3xf32>
    }""")
    assert op_types(check(m, [randn(3)])) == ["Tanh", "Tanh", "Identity"]
    assert op_types(check(m, [randn(3)], function="act")) == ["Tanh"]


def test_file_is_written(tmp_path):
    m = build([T(2)], lambda e, x: e(nn.ReluOp(x)))
    model = ncc.export_onnx(m, tmp_path / "m.onnx")
    assert onnx.load(str(tmp_path / "m.onnx")) == model


@pytest.mark.parametrize("source,kw,message", [
    ("nn.weight @w : tensor<2xf32>\nfunc.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
     "  %w = nn.weight_ref @w : tensor<2xf32>\n  %0 = nn.add %x, %w : tensor<2xf32>\n"
     "  func.return %0 : tensor<2xf32>\n}", {},
     "<text>:3:3: error: weight @w has no data to export (a run-time parameter or elided)"),
    ("func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n  func.return %x : tensor<2xf32>\n}",
     {"opset": 12}, "error: ONNX export supports opsets 17.."),
    ("func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n  func.return %x : tensor<2xf32>\n}",
     {"function": "nope"}, "error: no function 'nope' in the module (has: main)"),
])
def test_errors(source, kw, message):
    with pytest.raises(ncc.NccError) as e:
        ncc.export_onnx(ncc.parse_module(source, "<text>"), **kw)
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------------------
# Whole nets after passes


@pytest.mark.parametrize("example", ["xor_values.txt", "seed_list.txt", "seed_matrix.txt",
                                     "seed_edges.txt", "ncp19.txt"])
@pytest.mark.parametrize("passes", ["", "layerize", "layerize,fuse"])
def test_nets_after_passes(example, passes):
    m = ncc.import_adjacency(str(EXAMPLES / example))
    x = randn(6, len(next(iter(m.ops)).graph().input_indices))
    if passes:
        ncc.run_passes(m, passes)
    ref = ncc.reference.run(m, [x])[0]
    model = ncc.export_onnx(m)
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(ort_run(model, [x])[0], ref, rtol=1e-4, atol=1e-5)


def test_xor_is_exact():
    m = ncc.import_adjacency(str(EXAMPLES / "xor_values.txt"))
    ncc.run_passes(m, "layerize,fuse")
    x = np.load(EXAMPLES / "xor_x.npy").astype(np.float32)
    (y,) = ort_run(ncc.export_onnx(m), [x])
    assert y.reshape(-1).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_ncc_translate_pipeline(tmp_path):
    out = tmp_path / "x.onnx"
    bin_dir = __import__("pathlib").Path(sys.executable).parent

    def tool(name, *args, stdin=None):
        r = subprocess.run([str(bin_dir / name), *args], input=stdin, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout
    text = tool("ncc-translate", "--import-adjacency", str(EXAMPLES / "xor_values.txt"))
    text = tool("ncc-opt", "--layerize", "--fuse", stdin=text)
    tool("ncc-translate", "--export-onnx", "-o", str(out), stdin=text)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    x = np.load(EXAMPLES / "xor_x.npy").astype(np.float32)
    assert ort_run(model, [x])[0].reshape(-1).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_ncc_translate_needs_an_output_file():
    r = subprocess.run([sys.executable, "-c", "import sys; from ncc.tools.ncc_translate import main; "
                        "sys.exit(main(['--export-onnx', sys.argv[1]]))", str(EXAMPLES / "xor_values.txt")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: --export-onnx writes a binary model: give the file with -o FILE"


