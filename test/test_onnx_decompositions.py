"""ONNX ops the importer decomposes into nn ops (normalizations, losses,
attention, rotary embeddings, einsum, ...): each checked against onnxruntime
in the reference interpreter and as native code, and the exported import
passes onnx.checker (full_check) and gives onnxruntime's results again."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import onnx_model
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.diagnostics import NccError
from ncc.onnx import import_onnx

F, D, I64, B = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL
RNG = np.random.default_rng(3)


model = onnx_model


def ort_run(m, feeds):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feeds[n] for n in names})


def same(got, want, rtol, atol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check(m, feeds, rtol=1e-4, atol=1e-5, native=True):
    """onnxruntime's results = the reference run of the import = native code
    (ncc.compile) = onnxruntime on the exported import (after onnx.checker)."""
    want = ort_run(m, feeds)
    module = import_onnx(m)
    same(ncc.reference.run(module, feeds), want, rtol, atol)
    exported = ncc.export_onnx(module)
    onnx.checker.check_model(exported, full_check=True)
    same(ort_run(exported, feeds), want, rtol, atol)
    if native:
        same(ncc.compile(m).run(feeds), want, rtol, atol)
    return module


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def diag(m) -> str:
    with pytest.raises(NccError) as e:
        import_onnx(m)
    return str(e.value)


# ---------------------------------------------------------------------------
# Normalizations


# ---------------------------------------------------------------------------
# Losses


# ---------------------------------------------------------------------------
# Attention and rotary embeddings


# ---------------------------------------------------------------------------
# Einsum, SwiGLU, Swish, CenterCropPad


# ---------------------------------------------------------------------------
# Opset 27's CausalConvWithState and LinearAttention (onnxruntime has neither:
# checked against onnx's reference implementation)


def check_against_onnx_reference(m, feeds, rtol=1e-4, atol=1e-5):
    from onnx.reference import ReferenceEvaluator

    want = [np.asarray(w) for w in ReferenceEvaluator(m).run(None, feeds)]
    module = import_onnx(m)
    same(ncc.reference.run(module, feeds), want, rtol, atol)
    onnx.checker.check_model(ncc.export_onnx(module), full_check=True)
    same(ncc.compile(m).run(feeds), want, rtol, atol)


# ---------------------------------------------------------------------------
# RNN, GRU, LSTM


def test_a_constant_folded_away_can_be_used_again():
    # A converter may hold a weight's value across builds (an RNN's W, per
    # direction); a fold that took the weight's last use must not break the next.
    # Only data (integer initializers) folds: an op on a float parameter stays.
    from ncc.dialects import nn
    from ncc.onnx import Importer

    def importer_holding(name, value):
        m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": (F, [3])}, inits={name: value})
        imp = Importer(m, "g")
        imp.node = m.graph.node[0]
        imp.consts[name] = value
        imp.from_initializers.add(name)
        return imp

    imp = importer_holding("p", np.arange(1, 4, dtype=np.float32))
    assert isinstance(imp.build(nn.NegOp, imp.weight("p")).owner, nn.NegOp)

    w = np.arange(1, 4, dtype=np.int64)
    imp = importer_holding("w", w)
    ref = imp.weight("w")
    double = imp.build(nn.AddOp, ref, ref)  # folded: the weight_ref of w is removed
    assert ref.owner not in imp.ops
    twice = imp.build(nn.SubOp, ref, double)  # w used again
    defined = set()
    for op in imp.ops:
        assert all(v in defined for v in op.operands)
        defined.update(op.results)
    assert twice in defined
    np.testing.assert_array_equal(imp.consts[imp.weight_source[twice.owner.sym]], -w)


# ---------------------------------------------------------------------------
# FlexAttention (domain ai.onnx.preview; onnxruntime has none): its modifier
# subgraphs are imported in place


# ---------------------------------------------------------------------------
# Control flow: Scan (unrolled) and If (on a constant condition)


# ---------------------------------------------------------------------------
# Fourier transforms


# ---------------------------------------------------------------------------
# Indexing and grids


def test_a_node_of_constants_giving_a_sequence_is_not_folded_into_a_tensor():
    seq = helper.make_tensor_sequence_value_info("s", F, [3])
    branch = helper.make_graph([helper.make_node("SequenceConstruct", ["k"], ["s"])], "b", [], [seq])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    make = helper.make_node("SequenceConstruct", ["k"], ["y2"], name="make")
    for nodes, out in (([node], "y"), ([make], "y2")):
        graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_sequence_value_info(out, F, [3])],
                                  [numpy_helper.from_array(np.array(True), "c"),
                                   numpy_helper.from_array(np.ones(3, np.float32), "k")])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
        assert diag(m) == ("g: error: node 'if' (If): the then_branch subgraph returns a sequence ('s'); "
                           "ncc imports tensors only" if out == "y" else
                           "g: error: node 'make' (SequenceConstruct): evaluates to a sequence or an "
                           "optional; ncc imports tensors only")
