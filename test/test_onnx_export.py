"""ONNX export: every nn op family becomes a model that passes onnx.checker
(full_check) and that onnxruntime runs with the reference interpreter's results."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from xdsl.dialects.builtin import f64, i64

import ncc
from ncc.dialects import nn
from ncc.onnx import DEFAULT_OPSET

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


@pytest.mark.parametrize("name", sorted(nn.UNARY))
def test_unary(name):
    x = randn(3, 4)
    if name in ("log", "sqrt", "reciprocal"):
        x = np.abs(x) + 0.1
    if name in ("acos", "asin", "atanh"):
        x = np.tanh(x)
    if name == "acosh":
        x = np.abs(x) + 1
    if name == "round":
        x[0] = [0.5, 1.5, 2.5, -2.5]  # ties to even
    check(build([T(None, 4)], lambda e, a: e(nn.UNARY_OPS[name](a))), [x])


@pytest.mark.parametrize("name", sorted(nn.BINARY))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 1, 3), (4, 1)), ((3,), (2, 3))])
def test_binary_broadcasting(name, shapes):
    a, b = randn(*shapes[0]), randn(*shapes[1])
    if name == "pow":
        a = np.abs(a) + 0.1
    check(build([T(*shapes[0]), T(*shapes[1])], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "max", "min", "div", "mod", "fmod"])
def test_binary_integers(name):
    a, b = rng.integers(-9, 9, (2, 3)), np.array([3, -2, 4])  # mixed signs, no zero divisor
    check(build([T(2, 3, elt=i64), T(3, elt=i64)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("src,dst", [(np.float32, np.float64), (np.float64, np.float32),
                                     (np.float32, np.float16), (np.float16, np.float64)])
def test_cast(src, dst):
    model = check(build([T(None, 3, elt=nn.element_type_of(src))], lambda e, x: e(nn.CastOp(x, dst))),
                  [randn(4, 3, dtype=src)], tol=0)
    assert op_types(model) == ["Cast"]


@pytest.mark.parametrize("name", ["mod", "fmod"])
def test_float_remainders_signs(name):
    """nn.mod on floats (ONNX Mod takes floats only with fmod=1) keeps the divisor's sign."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 4.0, -4.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, -3.0], np.float32)
    check(build([T(6), T(6)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b], tol=0)


@pytest.mark.parametrize("name", sorted(nn.COMPARE))
@pytest.mark.parametrize("elt", [nn.f32, i64])
def test_comparisons(name, elt):
    dt = nn.numpy_dtype(elt)
    a, b = rng.integers(-2, 3, (2, 3)).astype(dt), rng.integers(-2, 3, (3,)).astype(dt)
    check(build([T(2, 3, elt=elt), T(3, elt=elt)], lambda e, x, y: e(nn.COMPARE_OPS[name](x, y))), [a, b])


def test_logical_select_and_float_tests():
    def make(e, p, q, x):
        m = e(nn.XorOp(e(nn.AndOp(p, q)), e(nn.OrOp(p, e(nn.NotOp(q))))))
        bad = e(nn.OrOp(e(nn.IsNanOp(x)), e(nn.IsInfOp(x, detect_negative=0))))
        neg_inf = e(nn.IsInfOp(x, detect_positive=0))
        return (e(nn.SelectOp(m, x, e(nn.NegOp(x)))), e(nn.EqualOp(m, bad)), neg_inf,
                e(nn.SelectOp(bad, p, q)))
    x = np.array([[np.nan, np.inf, -np.inf, 1.0], [-2.0, 3.0, 0.0, -0.5]], np.float32)
    p, q = rng.integers(0, 2, (2, 4)).astype(bool), rng.integers(0, 2, (4,)).astype(bool)
    model = check(build([T(None, 4, elt=nn.i1), T(4, elt=nn.i1), T(None, 4)], make), [p, q, x])
    assert {"Xor", "And", "Or", "Not", "IsNaN", "IsInf", "Where", "Equal"} <= set(op_types(model))


@pytest.mark.parametrize("name", sorted(nn.REDUCE))
@pytest.mark.parametrize("axes,keepdims", [(None, False), ((1,), True), ((0, 2), False), ((), False)])
@pytest.mark.parametrize("opset", [17, DEFAULT_OPSET])
def test_reductions(name, axes, keepdims, opset):
    op = lambda e, x: e(nn.REDUCE_OPS[name](x, axes=axes, keepdims=keepdims))  # noqa: E731
    check(build([T(2, 3, 4)], op), [randn(2, 3, 4)], opset=opset)


@pytest.mark.parametrize("shapes", [((None, 4), (4, 3)), ((2, 3, 4), (4, 5)), ((4,), (4, 2)),
                                    ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul(shapes):
    a, b = shapes
    ins = [randn(*(2 if d is None else d for d in a)), randn(*b)]
    check(build([T(*a), T(*b)], lambda e, x, y: e(nn.MatmulOp(x, y))), ins)


@pytest.mark.parametrize("act", ["identity", "relu", "silu", "gaussian", "step", "leaky_relu", "elu"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_matmul(act, bias):
    w, b = nn.WeightOp("w", randn(4, 3)), nn.WeightOp("b", randn(3))

    def make(e, x):
        bv = [e(nn.WeightRefOp(b))] if bias else []
        return e(nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), *bv, activation=act))
    model = check(build([T(None, 4)], make, [w, b]), [randn(5, 4)])
    assert op_types(model)[0] == "MatMul"
    assert {i.name for i in model.graph.initializer} >= ({"w", "b"} if bias else {"w"})


CONVS = [dict(), dict(strides=[2, 1], pads=[1, 0, 1, 2]), dict(dilations=[2, 2], pads=[2, 2, 2, 2]),
         dict(group=2)]


@pytest.mark.parametrize("kw", CONVS)
@pytest.mark.parametrize("fused", [False, True])
def test_conv(kw, fused):
    w, b = nn.WeightOp("w", randn(4, 4 // kw.get("group", 1), 3, 3)), nn.WeightOp("b", randn(4))

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        if fused:
            return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(b)), "relu", **kw))
        return e(nn.ConvOp(x, wv, **kw))
    check(build([T(None, 4, 7, 6)], make, [w, b]), [randn(2, 4, 7, 6)], tol=1e-4)


def test_conv_1d():
    w = nn.WeightOp("w", randn(3, 2, 2))
    check(build([T(1, 2, 9)], lambda e, x: e(nn.ConvOp(x, e(nn.WeightRefOp(w)), strides=[2])), [w]),
          [randn(1, 2, 9)], tol=1e-4)


def test_sparse_matmul_constant_and_computed_values():
    vals = nn.WeightOp("v", randn(4))
    rows, cols = [0, 1, 2, 2], [1, 0, 0, 2]

    def make(e, x):
        v = e(nn.WeightRefOp(vals))
        const = e(nn.SparseMatmulOp(x, v, rows, cols, 3, 3))
        computed = e(nn.SparseMatmulOp(x, e(nn.ExpOp(v)), rows, cols, 3, 3))
        return const, computed
    model = check(build([T(None, 3)], make, [vals]), [randn(4, 3)])
    assert op_types(model).count("ScatterND") == 1  # constant values: a dense initializer instead


@pytest.mark.parametrize("kind", ["max", "avg", "avg_include_pad"])
def test_pools(kind):
    kw = dict(kernel=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    cls = nn.MaxPoolOp if kind == "max" else nn.AvgPoolOp
    if kind == "avg_include_pad":
        kw["count_include_pad"] = True
    check(build([T(None, 2, 7, 5)], lambda e, x: e(cls(x, **kw))), [randn(3, 2, 7, 5)])


@pytest.mark.parametrize("cls", [nn.SoftmaxOp, nn.LogSoftmaxOp])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax(cls, axis):
    check(build([T(3, 4, 5)], lambda e, x: e(cls(x, axis))), [randn(3, 4, 5)])


def test_batch_norm_and_layer_norm():
    s, b, m = (nn.WeightOp(n, randn(3)) for n in "sbm")
    v = nn.WeightOp("var", np.abs(randn(3)) + 0.5)
    ls, lb = nn.WeightOp("ls", randn(4, 5)), nn.WeightOp("lb", randn(4, 5))

    def make(e, x):
        r = [e(nn.WeightRefOp(w)) for w in (s, b, m, v)]
        y = e(nn.BatchNormOp(x, *r, epsilon=1e-3))
        return e(nn.LayerNormOp(y, e(nn.WeightRefOp(ls)), e(nn.WeightRefOp(lb)), axis=-2))
    check(build([T(None, 3, 4, 5)], make, [s, b, m, v, ls, lb]), [randn(2, 3, 4, 5)], tol=1e-4)


def test_data_movement():
    def make(e, x):
        r = e(nn.ReshapeOp(x, [-1, 4, 3]))                       # [?, 12] -> [?, 4, 3]
        t = e(nn.TransposeOp(r, [0, 2, 1]))
        c = e(nn.ConcatOp([t, t], axis=1))
        s = e(nn.SliceOp(c, [5, 0], [1, 100], axes=[1, 2], steps=[-2, 1]))
        p = e(nn.PadOp(s, [0, 1, 0, 0, 0, 2], "constant", 1.5))
        q = e(nn.PadOp(s, [0, 1, 1, 0, 1, 1], "reflect"))
        g = e(nn.GatherOp(q, e(nn.ConstantOp(np.array([[0, -1], [2, 1]]), T(2, 2, elt=i64))), axis=2))
        return p, e(nn.PadOp(g, [0, 0, 0, 0, 1, 1, 0, 0], "edge"))
    model = check(build([T(None, 12)], make), [randn(3, 12)])
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


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


def test_broadcast_to_the_batch_exports_as_expand_of_the_input_shape():
    m = ncc.parse_module("""func.func @main(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>, tensor<2x3xf32>) {
  %c = nn.constant dense<[1.0, 2.0, 3.0]> : tensor<3xf32>
  %b = nn.broadcast %c : tensor<3xf32> -> tensor<?x3xf32>
  %y = nn.mul %b, %x : tensor<?x3xf32>
  %s = nn.broadcast %c : tensor<3xf32> -> tensor<2x3xf32>
  func.return %y, %s : tensor<?x3xf32>, tensor<2x3xf32>
}""")
    model = ncc.export_onnx(m)
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    sess = ort.InferenceSession(model.SerializeToString())
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    for g, r in zip(got, ncc.reference.run(m, [x])):
        np.testing.assert_array_equal(g, r)
