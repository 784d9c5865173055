"""`ncc.backend`, the onnx.backend.base interface: prepare / run / run_model /
run_node / supports_device, on xDSL modules, on models built with onnx.helper
and on ONNX's own node test cases; import -> export -> import stability."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.dialects.nn import conv as nn_conv
import ncc.backend as backend
from ncc.dialects import nn

from test_lower_to_loops import T, build  # noqa: E402  (pytest puts test/ on sys.path)

rng = np.random.default_rng(3)
needs_import = pytest.mark.skipif(not hasattr(ncc, "import_onnx"), reason="ncc.import_onnx is not available")
MODES = ["native", "reference"]


def randn(*shape):
    return rng.normal(size=shape).astype(np.float32)


def two_outputs():
    w = nn.WeightOp("w", randn(3, 2))
    m = build([T(None, 3), T(2)], lambda e, x, b: (e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))),
                                                   e(nn.TanhOp(b))), [w])
    return m, w.data


@pytest.mark.parametrize("mode", MODES)
def test_prepare_a_module_and_run_every_input_form(mode):
    m, w = two_outputs()
    rep = backend.prepare(m, mode=mode, **({"cache": False} if mode == "native" else {}))
    x, b = randn(4, 3), randn(2)
    outs = rep.run([x, b])
    assert len(outs) == 2 and rep.output_names == ["out0", "out1"] and rep.input_names == ["arg0", "arg1"]
    np.testing.assert_allclose(outs[0], x @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["out1"], np.tanh(b), rtol=1e-5, atol=1e-6)
    by_name = rep.run({"arg1": b, "arg0": x})
    np.testing.assert_array_equal(by_name[0], outs[0])
    with pytest.raises(ncc.NccError, match=r"the model takes 2 input\(s\) \(arg0, arg1\), got 1"):
        rep.run([x])


def test_single_array_and_run_model():
    m = build([T(3)], lambda e, x: e(nn.ReluOp(x)))
    x = randn(3)
    (y,) = backend.run_model(m, x, mode="reference")
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.parametrize("kw,message", [
    ({"mode": "fast"}, "error: unknown mode 'fast' (known: native, reference)"),
    ({"threads": 2}, "error: unknown option(s) threads (known: mode, fuse, cache)"),
    ({"device": "CUDA"}, "error: ncc runs on the CPU only, not on 'CUDA'"),
])
def test_option_errors(kw, message):
    with pytest.raises(ncc.NccError) as e:
        backend.prepare(build([T(3)], lambda e, x: e(nn.ReluOp(x))), **kw)
    assert str(e.value) == message


def test_supports_device():
    assert backend.supports_device("CPU") and backend.supports_device("CPU:0")
    assert not backend.supports_device("CUDA") and not backend.supports_device("tpu?")
    assert backend.NccBackend.is_compatible(onnx.ModelProto(), "CPU")


# ---------------------------------------------------------------------------
# ONNX models (need the importer)


def mlp_model():
    w, b = randn(4, 3), randn(3)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
         helper.make_node("Relu", ["h"], ["y"], name="act")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), w, b


@needs_import
@pytest.mark.parametrize("mode", MODES)
def test_models_from_onnx_helper_by_proto_bytes_and_path(mode, tmp_path):
    model, w, b = mlp_model()
    x = randn(5, 4)
    want = np.maximum(x @ w + b, 0)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    for source in (model, model.SerializeToString(), str(path)):
        rep = backend.prepare(source, mode=mode)
        assert rep.input_names == ["x"] and rep.output_names == ["y"]
        np.testing.assert_allclose(rep.run([x])["y"], want, rtol=1e-5, atol=1e-6)


@needs_import
@pytest.mark.parametrize("mode", MODES)
def test_run_node(mode):
    a, b = randn(2, 3, 4), randn(4)
    (y,) = backend.run_node(helper.make_node("Add", ["a", "b"], ["y"]), [a, b], mode=mode)
    np.testing.assert_allclose(y, a + b, rtol=1e-6)
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])
    (y,) = backend.run_node(conv, {"x": x, "w": w}, outputs_info=[(np.float32, (1, 3, 3, 3))], mode=mode)
    want = nn_conv.conv_reference(x, w, [2, 2], [1, 1, 1, 1], [1, 1], 1)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@needs_import
def test_unsupported_model_raises_the_importers_error():
    node = helper.make_node("Unique", ["x"], ["y"], name="u")
    with pytest.raises(ncc.NccError, match="Unique"):
        backend.run_node(node, [randn(4)])


# ---------------------------------------------------------------------------
# Specialization on graph inputs the importer needs as constants


def reduce_model(op="ReduceSum"):
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "axes"], ["y"], keepdims=1, name="r")], "reduce",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@needs_import
@pytest.mark.parametrize("mode", MODES)
def test_backend_specializes_on_constant_inputs(mode):
    rep = backend.prepare(reduce_model(), mode=mode)
    assert isinstance(rep, backend.SpecializingRep)
    assert rep.input_names == ["x", "axes"] and rep.output_names == ["y"]
    assert rep.constant_names == ["axes"] and not rep.specializations
    x = randn(2, 3, 4)
    for axis in (0, 2, 0, -1):
        (y,) = rep.run([x, np.array([axis], np.int64)])
        np.testing.assert_allclose(y, x.sum(axis=axis, keepdims=True), rtol=1e-5, atol=1e-6)
        if len(rep.specializations) == 1:
            (rep0,) = rep.specializations.values()
    assert len(rep.specializations) == 3  # 0, 2, -1: the second run of 0 reused the first
    (y,) = rep.run({"axes": np.array([0]), "x": x})  # a fresh array of the same value: the same rep
    assert len(rep.specializations) == 3 and list(rep.specializations.values())[-1] is rep0  # most recent last
    np.testing.assert_allclose(y, x.sum(axis=0, keepdims=True), rtol=1e-5, atol=1e-6)
    if mode == "native":
        assert isinstance(rep0.model, ncc.CompiledModel) and rep0.model.input_names == ("x",)
    (y,) = backend.run_node(helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0),
                            [x, np.array([1, 2])], mode=mode)
    np.testing.assert_array_equal(y, x.max(axis=(1, 2)))


@needs_import
def test_specializing_rep_learns_every_input_it_needs():
    """Slice needs four inputs; the first import only reports the first one, the
    first run the others: all four become the key."""
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], "slice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])]
        + [helper.make_tensor_value_info(n, TensorProto.INT64, [1]) for n in ("st", "en", "ax", "sp")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    rep = backend.prepare(m, cache=False)
    assert rep.constant_names == ["st"]
    x = randn(4, 6)
    for st, en, sp in ((0, 6, 2), (5, 0, -2), (0, 6, 2)):
        (y,) = rep.run([x] + [np.array([v]) for v in (st, en, 1, sp)])
        np.testing.assert_array_equal(y, x[:, st:en:sp])
    assert rep.constant_names == ["st", "en", "ax", "sp"] and len(rep.specializations) == 2


@needs_import
def test_specializations_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(backend, "SPECIALIZATIONS_KEPT", 2)
    rep = backend.prepare(reduce_model(), mode="reference")
    x = randn(2, 3, 4)
    for axis in (0, 1, 2, 1):  # 0 is dropped when 2 comes; 1 is used again: most recent
        rep.run([x, np.array([axis])])
    assert [key[0][3] for key in rep.specializations] == [np.int64(2).tobytes(), np.int64(1).tobytes()]


@needs_import
def test_specializing_errors():
    # An import failing for another reason raises at prepare (here: an unsupported op).
    bad = reduce_model()
    bad.graph.node.append(helper.make_node("Unique", ["y"], ["u"], name="uq"))
    with pytest.raises(ncc.NccError, match=r"unsupported ONNX ops: Unique \(node uq\)"):
        backend.prepare(bad)
    with pytest.raises(ncc.NccError, match="unknown mode 'fast'"):
        backend.prepare(reduce_model(), mode="fast")
    rep = backend.prepare(reduce_model(), mode="reference")
    x = randn(2, 3, 4)
    # Errors that depend on the values come from run.
    with pytest.raises(ncc.NccError) as e:
        rep.run([x, np.array([3])])
    assert str(e.value) == "reduce: error: node 'r' (ReduceSum): axis 3 is out of range for rank 3 (expected -3..2)"
    with pytest.raises(ncc.NccError) as e:
        rep.run([x, np.array([0, 1])])
    assert str(e.value) == "reduce: error: constant 'axes' has shape [2], the graph input's is [1]"
    with pytest.raises(ncc.NccError) as e:
        rep.run([x, np.array([0.5])])
    assert str(e.value) == ("reduce: error: constant 'axes' has dtype float64, expected int64 "
                            "(graph input 'axes' is INT64)")
    with pytest.raises(ncc.NccError) as e:
        rep.run({"x": x})
    assert str(e.value) == "error: the model takes inputs x, axes; missing: axes"
    with pytest.raises(ncc.NccError) as e:
        rep.run([x])
    assert str(e.value) == "error: the model takes 2 input(s) (x, axes), got 1"
    assert not rep.specializations


# ONNX's own node test cases, generated in memory by the installed onnx.
NODE_CASES = ["test_relu", "test_add_bcast", "test_matmul_2d", "test_matmul_4d", "test_softmax_axis_0",
              "test_conv_with_strides_padding", "test_maxpool_2d_pads", "test_averagepool_2d_pads",
              "test_gemm_default_single_elem_vector_bias", "test_transpose_default",
              "test_concat_2d_axis_1", "test_sigmoid", "test_batchnorm_example", "test_gather_0",
              "test_exp", "test_tanh",
              # rank-0 constants and inputs; inputs the importer needs as constants (specialized)
              "test_elu", "test_gemm_alpha", "test_clip", "test_dropout_default_ratio",
              "test_reduce_sum_keepdims_example", "test_reshape_reordered_all_dims", "test_slice",
              "test_unsqueeze_axis_1", "test_expand_dim_changed", "test_constant_pad"]


@pytest.fixture(scope="module")
def node_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases()}


@needs_import
@pytest.mark.parametrize("name", NODE_CASES)
def test_onnx_node_cases(name, node_cases):
    case = node_cases[name]
    for inputs, outputs in case.data_sets:
        got = backend.run_model(case.model, inputs)
        assert len(got) == len(outputs)
        for g, o in zip(got, outputs):
            np.testing.assert_allclose(g, o, rtol=case.rtol, atol=case.atol)


# ---------------------------------------------------------------------------
# Import -> export -> import


@needs_import
@pytest.mark.parametrize("name", ["test_conv_with_strides_padding", "test_gemm_default_single_elem_vector_bias",
                                  "test_batchnorm_example", "test_maxpool_2d_pads"])
def test_import_export_import_is_stable(name, node_cases):
    first = ncc.import_onnx(node_cases[name].model)
    exported = ncc.export_onnx(first)
    onnx.checker.check_model(exported, full_check=True)
    second = ncc.import_onnx(exported)
    assert ncc.print_module(second) == ncc.print_module(first)
    inputs = node_cases[name].data_sets[0][0]
    sess = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], inputs)))
    for g, r in zip(got, ncc.reference.run(first, inputs)):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@needs_import
def test_mlp_round_trip_through_onnxruntime():
    model, _, _ = mlp_model()
    module = ncc.import_onnx(model)
    ncc.run_passes(module, "fuse")
    exported = ncc.export_onnx(module)
    onnx.checker.check_model(exported, full_check=True)
    x = randn(7, 4)
    sess = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, backend.prepare(model).run([x])[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# The light models shipped with onnx: exported, the export re-imported computes
# what the first import computes, and onnxruntime runs the exported model as
# it runs the original. (squeezenet's logits are ~7e9 for random inputs, so
# its softmax in onnxruntime only shows float32 rounding noise.)


LIGHT = ["squeezenet", "inception_v1", "resnet50", "shufflenet", "densenet121", "inception_v2",
         "bvlc_alexnet", "vgg19", "zfnet512"]
ILL_CONDITIONED = {"squeezenet"}


@needs_import
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if i >= 3 else n
                                  for i, n in enumerate(LIGHT)])
def test_light_models_export(name):
    import os

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")
    first = ncc.import_onnx(path)
    exported = ncc.export_onnx(first)
    onnx.checker.check_model(exported, full_check=True)
    second = ncc.import_onnx(exported)  # import -> export -> import is stable
    assert ncc.print_module(second, elide_weights_if_larger=16) == ncc.print_module(first, elide_weights_if_larger=16)
    data = lambda m: {o.sym: o.data for o in m.ops if isinstance(o, ncc.dialects.nn.WeightOp)}  # noqa: E731
    assert all(np.array_equal(a, data(second)[k]) for k, a in data(first).items())
    original = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = original.get_inputs()[0]
    x = rng.normal(size=[d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)
    (want,) = ncc.reference.run(first, [x])
    np.testing.assert_allclose(ncc.reference.run(second, [x])[0], want,
                               rtol=1e-5, atol=1e-6)
    if name not in ILL_CONDITIONED:
        again = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(again.run(None, {again.get_inputs()[0].name: x})[0],
                                   original.run(None, {inp.name: x})[0], rtol=1e-4, atol=1e-5)


@needs_import
@pytest.mark.slow  # BackendTest collects all ~4000 of onnx's test directories first (~20 s)
def test_onnx_backend_test_runner_drives_ncc():
    """ONNX's own runner (onnx.backend.test.BackendTest) on a few of its node tests."""
    import unittest

    import onnx.backend.test

    runner = onnx.backend.test.BackendTest(backend, "ncc_backend_check")
    runner.include(r"^test_(relu|sigmoid|matmul_2d|add_bcast|conv_with_strides_padding)_cpu$")
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case)
                               for case in runner.test_cases.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = unittest.TextTestRunner(stream=__import__("io").StringIO()).run(suite)
    assert not result.failures and not result.errors, result.failures + result.errors
    assert result.testsRun - len(result.skipped) == 5
