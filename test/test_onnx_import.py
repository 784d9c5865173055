"""ONNX import: each supported op against onnxruntime on the same model, the
diagnostics of unsupported ops and bad files, native runs, and the light
models shipped with onnx against their stored outputs."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.diagnostics import NccError
from ncc.onnx import import_onnx

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def model(nodes, inputs, outputs=("y",), inits=(), opset=None, name="g"):
    """A model of `nodes`; inputs: {name: shape} (float), inits: {name: array}."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    kw = {"opset_imports": [helper.make_opsetid("", opset)]} if opset else {}
    m = helper.make_model(graph, **kw)
    m.ir_version = min(m.ir_version, 10)  # what the installed onnxruntime reads
    return m


def check(m, feeds, rtol=1e-5, atol=1e-6):
    """ncc's reference run of the imported model equals onnxruntime's."""
    module = import_onnx(m)
    got = ncc.reference.run(module, feeds)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return module


def x_of(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def test_parameters_keep_the_file_shape_and_ops_on_them_stay():
    # Conv's bias is reshaped to [C, 1, 1] for the add: the reshape stays an op, so
    # the weight is the initializer (name, shape); export -> import gives the same module
    w, bias = x_of(4, 3, 3, 3), x_of(4)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    module = check(model([node], {"x": [1, 3, 5, 5]}, inits={"w": w, "b": bias}), {"x": x_of(1, 3, 5, 5)})
    weights = {o.sym: o.data.shape for o in module.ops if isinstance(o, ncc.dialects.nn.WeightOp)}
    assert weights == {"w": (4, 3, 3, 3), "b": (4,)}
    assert len([o for o in module.walk() if isinstance(o, ncc.dialects.nn.ReshapeOp)]) == 1
    assert ncc.print_module(import_onnx(ncc.export_onnx(module))) == ncc.print_module(module)


def test_integer_initializers_still_fold():
    """Shape arithmetic on integer initializers is data, evaluated at import."""
    nodes = [helper.make_node("Add", ["s", "one"], ["s1"]),
             helper.make_node("Reshape", ["x", "s1"], ["y"])]
    inits = {"s": np.array([1, 5], np.int64), "one": np.array([0, 1], np.int64)}
    module = check(model(nodes, {"x": [2, 3]}, inits=inits), {"x": x_of(2, 3)})
    assert not [o for o in module.ops if isinstance(o, ncc.dialects.nn.WeightOp)]


def test_folding_forgets_every_name_of_a_removed_literal():
    """CastLike to the same type binds a second name to a Constant's literal; when
    an op folds that literal away, a later use of either name makes it again."""
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(1.5, np.float32))),
             helper.make_node("CastLike", ["c", "x"], ["cc"]),
             helper.make_node("Neg", ["cc"], ["n"]),
             helper.make_node("Add", ["x", "n"], ["a"]),
             helper.make_node("Sub", ["a", "cc"], ["s"]),
             helper.make_node("Mul", ["s", "c"], ["y"])]
    check(model(nodes, {"x": [3]}), {"x": x_of(3)})


def test_shape_arithmetic_is_folded():
    # Reshape(x, Concat(Shape(x)[0:1], [-1])) as exporters write it; Range and
    # Cast on constants are folded though nn has no such ops.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]),
             helper.make_node("Range", ["r0", "r1", "r2"], ["rng"]),
             helper.make_node("Cast", ["rng"], ["rngf"], to=F),
             helper.make_node("Add", ["r", "rngf"], ["y"])]
    inits = {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64), "r0": np.array(0, np.int64),
             "r1": np.array(12, np.int64), "r2": np.array(1, np.int64)}
    module = check(model(nodes, {"x": [2, 3, 4]}, inits=inits, opset=13), {"x": x_of(2, 3, 4)})
    assert [o.name for o in list(module.ops)[-1].body.block.ops] == [
        "nn.reshape", "nn.weight_ref", "nn.add", "func.return"]


# ---------------------------------------------------------------------------
# Booleans, comparisons, select and the elementwise math: imported, run by the
# reference interpreter and natively, against onnxruntime (or, for what it does
# not run, onnx's reference implementation)

B, I64 = TensorProto.BOOL, TensorProto.INT64


def test_mlp_with_symbolic_batch_names_and_weights():
    w1, b1, w2, b2 = x_of(8, 16), x_of(16), x_of(16, 4), x_of(4)
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    m = model(nodes, {"input": ["N", 8]}, outputs=("probs",),
              inits={"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    module = check(m, {"input": x_of(5, 8)})
    text = ncc.print_module(module)
    assert "func.func @main(%input: tensor<?x8xf32> {ncc.name = \"input\"})" in text
    assert '{ncc.name = "probs"}' in text
    weights = {o.sym: o for o in module.ops if isinstance(o, ncc.dialects.nn.WeightOp)}
    assert sorted(weights) == ["b1", "b2", "w1", "w2"]
    np.testing.assert_array_equal(weights["w1"].data, w1)
    # natively, with a batch size of its own
    compiled = ncc.compile(m)
    x = x_of(3, 8)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-5, atol=1e-6)


def test_small_cnn_natively():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w": x_of(4, 2, 3, 3), "b": x_of(4), "s": x_of(4), "bb": x_of(4), "m": x_of(4),
             "v": x_of(4, positive=True), "fw": x_of(10, 4 * 3 * 3), "fb": x_of(10)}
    m = model(nodes, {"x": ["batch", 2, 6, 6]}, inits=inits)
    x = x_of(2, 2, 6, 6)
    check(m, {"x": x}, rtol=1e-4, atol=1e-5)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ncc.compile(m)(x), want, rtol=1e-4, atol=1e-5)


def test_path_and_bytes_sources(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [3]})
    path = tmp_path / "relu.onnx"
    onnx.save(m, str(path))
    x = x_of(3)
    for src in (str(path), path, m.SerializeToString()):
        np.testing.assert_array_equal(ncc.reference.run(import_onnx(src), [x])[0], np.maximum(x, 0))
    np.testing.assert_array_equal(ncc.compile(str(path))(x), np.maximum(x, 0))


# ---------------------------------------------------------------------------
# Diagnostics


def diag(source) -> str:
    with pytest.raises(NccError) as e:
        import_onnx(source)
    return str(e.value)


def test_every_unsupported_op_listed_at_once():
    nodes = [helper.make_node("Foo", ["x"], ["a"], name="n1"),
             helper.make_node("Relu", ["a"], ["b"], name="ok"),
             helper.make_node("Foo", ["b"], ["c"], name="n2"),
             helper.make_node("Bar", ["c"], ["y"], name="n3")]
    m = model(nodes, {"x": [3]})
    assert diag(m) == "g: error: unsupported ONNX ops: Foo (nodes n1, n2), Bar (node n3)"


def test_other_domains_are_listed_as_unsupported():
    node = helper.make_node("Binarizer", ["x"], ["y"], name="bin", domain="ai.onnx.ml")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [3])],
                              [helper.make_tensor_value_info("y", F, [3])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)])
    assert diag(m) == "g: error: unsupported ONNX ops: ai.onnx.ml.Binarizer (node bin)"


def test_bad_files(tmp_path):
    good = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [3]}).SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good[:len(good) // 2])
    assert diag(str(trunc)).startswith(f"{trunc}: error: not a valid ONNX model (malformed or truncated protobuf")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xff\xff\xff not a model")
    assert diag(str(garbage)).startswith(f"{garbage}: error: not a valid ONNX model")
    missing = tmp_path / "missing.onnx"
    assert diag(str(missing)) == f"{missing}: error: cannot read the ONNX file: No such file or directory"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert diag(str(empty)) == f"{empty}: error: not a valid ONNX model (no graph)"
    assert diag(42) == "error: import_onnx takes a ModelProto, a path or bytes, not int"


def test_missing_initializer_names_the_node():
    m = model([helper.make_node("Add", ["x", "w"], ["y"], name="add1")], {"x": [3]})
    assert diag(m) == ("g: error: node 'add1' (Add): input 'w' is not defined by any node, "
                       "graph input or initializer")


def test_non_constant_shape_input():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], {"x": [6], "s": [1]})
    assert diag(m) == ("g: error: node 'r' (Reshape): input 1 ('s') must be a constant "
                       "(an initializer or a Constant node): ncc needs it at import time; "
                       "it comes from graph input 's': give its value in constants=")


# ---------------------------------------------------------------------------
# Graph inputs imported as constants: import_onnx(model, constants=...)

I64 = TensorProto.INT64


def typed_model(nodes, inputs, outputs=("y",), opset=18):
    """A model of `nodes`; inputs: {name: (element type, shape)}."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(n, F, None) for n in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 10)
    return m


CONSTANT_CASES = {  # name: (nodes, inputs, feeds: the first is the data, the others constants, opset)
    "reshape": ([helper.make_node("Reshape", ["x", "s"], ["y"])], {"x": (F, [2, 3, 4]), "s": (I64, [3])},
                {"x": x_of(2, 3, 4), "s": np.array([0, 4, -1], np.int64)}, 14),
    "reduce_sum": ([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                   {"x": (F, [2, 3, 4]), "axes": (I64, [2])},
                   {"x": x_of(2, 3, 4), "axes": np.array([0, -1], np.int64)}, 13),
    "slice": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
              {"x": (F, [4, 3, 5]), "st": (I64, [2]), "en": (I64, [2]), "ax": (I64, [2]), "sp": (I64, [2])},
              {"x": x_of(4, 3, 5), "st": np.array([-1, 0], np.int64), "en": np.array([-100, 100], np.int64),
               "ax": np.array([0, 2], np.int64), "sp": np.array([-1, 2], np.int64)}, 13),
    "pad": ([helper.make_node("Pad", ["x", "p", "v"], ["y"], mode="constant")],
            {"x": (F, [2, 4, 5]), "p": (I64, [6]), "v": (F, [])},
            {"x": x_of(2, 4, 5), "p": np.array([0, 1, 2, 0, 2, 1], np.int64), "v": np.array(1.5, np.float32)}, 13),
}


@pytest.mark.parametrize("case", sorted(CONSTANT_CASES))
def test_graph_inputs_as_constants_against_onnxruntime(case):
    nodes, inputs, feeds, opset = CONSTANT_CASES[case]
    m = typed_model(nodes, inputs, opset=opset)
    with pytest.raises(NccError) as e:
        import_onnx(m)
    assert e.value.needs_constant == [list(feeds)[1]]  # the first one the importer needed
    x, consts = feeds["x"], {k: v for k, v in feeds.items() if k != "x"}
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    module = import_onnx(m, constants=consts)
    fn = list(module.ops)[-1]
    assert [str(t) for t in fn.function_type.inputs.data] == ["tensor<" + "x".join(map(str, x.shape)) + "xf32>"]
    (got,) = ncc.reference.run(module, [x])
    assert got.shape == want[0].shape
    np.testing.assert_allclose(got, want[0], rtol=1e-6, atol=1e-6)
    compiled = ncc.compile(m, constants=consts, cache=False)
    assert compiled.input_names == ("x",)
    np.testing.assert_allclose(compiled(x), want[0], rtol=1e-6, atol=1e-6)


def test_constants_feed_folding_and_lossless_conversions():
    """A constant input makes what is computed from it constant (folded at
    import); a list or another integer type is taken if every value is kept;
    the needs_constant of a value lists the graph inputs it comes from."""
    nodes = [helper.make_node("Concat", ["a", "b"], ["s"], axis=0),
             helper.make_node("Reshape", ["x", "s"], ["y"], name="r")]
    m = typed_model(nodes, {"x": (F, [2, 6]), "a": (I64, [1]), "b": (I64, [1])})
    with pytest.raises(NccError) as e:
        import_onnx(m)
    assert e.value.needs_constant == ["a", "b"]
    assert str(e.value).endswith("it comes from graph inputs 'a', 'b': give their values in constants=")
    with pytest.raises(NccError) as e:
        import_onnx(m, constants={"b": [-1]})
    assert e.value.needs_constant == ["a"]
    x = x_of(2, 6)
    for a in ([3], np.array([3], np.int32), np.array([3.0]).astype(np.int8)):
        module = import_onnx(m, constants={"a": a, "b": [-1]})
        np.testing.assert_array_equal(ncc.reference.run(module, [x])[0], x.reshape(3, 4))
    assert [o.name for o in list(module.ops)[-1].body.block.ops] == ["nn.reshape", "func.return"]
    assert ncc.NccError("x").needs_constant == []  # any other error


def test_constants_diagnostics():
    m = typed_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])],
                    {"x": (F, ["N", 3]), "axes": (I64, [2]), "lo": (F, [])}, opset=13)

    def d(constants):
        with pytest.raises(NccError) as e:
            import_onnx(m, constants=constants)
        return str(e.value)

    assert d([("axes", [0, 1])]) == "g: error: constants must map graph input names to arrays, not list"
    assert d({"ax": [0, 1]}) == "g: error: constants: 'ax' is not a graph input (inputs: x, axes, lo)"
    assert d({"axes": [0.0, 1.0]}) == ("g: error: constant 'axes' has dtype float64, expected int64 "
                                       "(graph input 'axes' is INT64)")
    assert d({"axes": np.array([0, 2**63], np.uint64)}) == (
        "g: error: constant 'axes': its uint64 values change when converted to int64 (graph input 'axes' is INT64)")
    assert d({"axes": [0], "lo": 1.0}) == "g: error: constant 'axes' has shape [1], the graph input's is [2]"
    assert d({"axes": [[0, 1]]}) == "g: error: constant 'axes' has shape [1, 2], the graph input's is [2]"
    assert d({"axes": ["a", "b"]}) == "g: error: constant 'axes' has dtype <U1, not a number type"
    assert d({"axes": [0, 1], "lo": 0.1}) == ("g: error: constant 'lo': its float64 values change when "
                                              "converted to float32 (graph input 'lo' is FLOAT)")
    assert d({"x": np.zeros((4, 2), np.float32), "axes": [0, 1]}) == (
        "g: error: constant 'x' has shape [4, 2], the graph input's is [?, 3]")
    module = import_onnx(m, constants={"x": np.ones((4, 3), np.float32), "axes": [0, 1], "lo": 0.5})
    fn = list(module.ops)[-1]
    assert list(fn.function_type.inputs.data) == []  # every input given: a function of no arguments
    assert ncc.reference.run(module, [])[0] == 12.0
    with pytest.raises(NccError, match=r"^error: constants= applies to ONNX models only"):
        ncc.compile("func.func @f() {\n  func.return\n}\n", constants={"a": 1})


def test_wrong_types_and_shapes():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.UINT16, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT16, None)])
    assert diag(helper.make_model(g)) == (
        "g: error: graph input 'x' has element type UINT16, which ncc does not support "
        "(supported: FLOAT, DOUBLE, FLOAT16, INT64, INT32, INT8, UINT8, BOOL)")
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", "C"]})
    assert diag(m) == ("g: error: graph input 'x': dimension 1 is symbolic ('C'); "
                       "only the first (batch) dimension may be (give it a size: ncc.onnx.with_dims, "
                       "ncc-stats --dim C=N)")
    m = model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], {"a": [2, 3], "b": [4, 5]})
    assert diag(m) == ("g: error: node 'mm' (MatMul): contraction dimensions differ: "
                       "[2, 3] @ [4, 5] (3 vs 4)")


def test_opset_range():
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [3]}, opset=5)
    newest = onnx.defs.onnx_opset_version()
    assert diag(m) == f"g: error: ONNX opset 5 is not supported (supported: 6 to {newest})"


# Opset 6 (onnxruntime runs opset 7 and later only: numpy is the reference here).


@pytest.mark.parametrize("attrs, b_shape, aligned", [
    ({"broadcast": 1, "axis": 1}, [3], [1, 3, 1]),        # B lines up with A from `axis`
    ({"broadcast": 1}, [4], [4]),                          # default: A's trailing dims
    ({"broadcast": 1, "axis": 0}, [2, 3], [2, 3, 1]),
    ({}, [2, 3, 4], [2, 3, 4]),                            # no broadcast: equal shapes
])
def test_opset6_explicit_broadcast(attrs, b_shape, aligned):
    a, b = x_of(2, 3, 4), x_of(*b_shape)
    m = model([helper.make_node("Sub", ["a", "b"], ["y"], **attrs)], {"a": [2, 3, 4], "b": b_shape}, opset=6)
    (y,) = ncc.reference.run(import_onnx(m), [a, b])
    np.testing.assert_allclose(y, a - b.reshape(aligned), rtol=1e-6)


def test_opset6_broadcast_diagnostics():
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], {"a": [2, 3], "b": [3]}, opset=6)
    assert diag(m) == "g: error: node 'add' (Add): shapes [2, 3] and [3] differ and broadcast is not set (opset 6)"
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="add", broadcast=1, axis=1)],
              {"a": [2, 3], "b": [2, 3]}, opset=6)
    assert diag(m) == "g: error: node 'add' (Add): broadcast axis 1 does not fit B [2, 3] into A [2, 3]"


def test_opset6_prelu_slope_per_channel_and_batch_norm_is_test():
    x, slope = x_of(2, 3, 4, 5), np.array([0.1, 0.2, 0.3], np.float32)
    m = model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": [2, 3, 4, 5]}, inits={"s": slope}, opset=6)
    (y,) = ncc.reference.run(import_onnx(m), [x])
    np.testing.assert_allclose(y, np.where(x < 0, x * slope.reshape(3, 1, 1), x), rtol=1e-6)
    stats = {k: np.abs(x_of(3)) + 0.5 for k in ("s", "b", "m", "v")}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn",
                            is_test=1, epsilon=1e-5)
    (y,) = ncc.reference.run(import_onnx(model([node], {"x": [2, 3, 4, 5]}, inits=stats, opset=6)), [x])
    c = lambda k: stats[k].reshape(3, 1, 1)  # noqa: E731
    np.testing.assert_allclose(y, (x - c("m")) / np.sqrt(c("v") + 1e-5) * c("s") + c("b"), rtol=1e-5, atol=1e-6)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", is_test=0)
    assert diag(model([node], {"x": [2, 3, 4, 5]}, inits=stats, opset=6)) == (
        "g: error: node 'bn' (BatchNormalization): only inference mode (one output) is supported")


def test_ncc_translate_import_onnx(tmp_path, capsys):
    from ncc.tools.ncc_translate import main

    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 3]}), str(path))
    assert main(["--import-onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nn.relu %x : tensor<?x3xf32>" in out
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08")
    assert main(["--import-onnx", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}: error: not a valid ONNX model")


# ---------------------------------------------------------------------------
# The light models shipped with onnx: import, and the reference semantics
# reproduce their stored outputs (for the reference input: zeros of the
# weights' ConstantOfShape make any input give the stored output).

LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__),
                                      "backend/test/data/light/light_*.onnx")))


# The large fully connected ones (alexnet, vgg19, zfnet512: hundreds of MB of weights) are slow
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if any(
    big in p for big in ("alexnet", "vgg19", "zfnet512")) else p for p in LIGHT],
    ids=[os.path.basename(p)[6:-5] for p in LIGHT])
def test_light_models_import_and_match(path):
    m = onnx.load(path)
    module = import_onnx(path)
    inits = {t.name for t in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in inits)
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    want = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
    got, = ncc.reference.run(module, {inp.name: x_of(*shape)})
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_a_model_onnx_checker_rejects_is_refused_with_its_message():
    """As onnxruntime on load: Split's num_outputs exists from opset 18 only."""
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=2, name="split")
    m = model([node], {"x": [4]}, outputs=("a", "b"), opset=17)
    assert diag(m) == ("g: error: node 'split' (Split) fails onnx's checker: "
                       "Unrecognized attribute: num_outputs for operator Split")
    with pytest.raises(Exception, match="Unrecognized attribute: num_outputs"):
        ort.InferenceSession(m.SerializeToString())
