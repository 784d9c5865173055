"""The softmax op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T

import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, rand, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_softmax_norms():
    x, c, bad = dialect_tests.values(T((2, 3, 4, 4)), T((3,)), T((4,)))
    assert dialect_tests.shape(nn.SoftmaxOp(x, axis=1)) == (2, 3, 4, 4) and nn.SoftmaxOp(x).params.axis == -1
    assert dialect_tests.shape(nn.LogSoftmaxOp(x)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"axis 4 is out of range for rank 4"):
        nn.SoftmaxOp(x, axis=4)
    assert dialect_tests.shape(nn.BatchNormOp(x, c, c, c, c)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"var \(one per channel\) must have shape \[3\], got tensor<4xf32>"):
        nn.BatchNormOp(x, c, c, c, bad)
    with pytest.raises(VerifyException, match="epsilon must be >= 0, got -1.0"):
        nn.BatchNormOp(x, c, c, c, c, epsilon=-1.0)
    s, s2 = dialect_tests.values(T((4, 4)), T((4,)))
    assert dialect_tests.shape(nn.LayerNormOp(x, s, s, axis=2)) == (2, 3, 4, 4)
    assert dialect_tests.shape(nn.LayerNormOp(x, s2, s2)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"scale \(the normalized shape\) must have shape \[3, 4, 4\], got tensor<4x4xf32>"):
        nn.LayerNormOp(x, s, s, axis=1)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reference_softmax_and_log_softmax(axis):
    x = reference_tests.randn(3, 4) * 3
    x[0, 0] = 1000.0  # the max subtraction keeps this finite
    s = reference_tests.run1([x], lambda emit, a: emit(nn.SoftmaxOp(a, axis)))
    ls = reference_tests.run1([x], lambda emit, a: emit(nn.LogSoftmaxOp(a, axis)))
    moved = np.moveaxis(x, axis, -1)
    ref = np.zeros_like(moved)
    for idx in np.ndindex(*moved.shape[:-1]):
        row = [float(v) for v in moved[idx]]
        mx = max(row)
        total = math.fsum(math.exp(v - mx) for v in row)
        ref[idx] = [math.exp(v - mx) / total for v in row]
    ref = np.moveaxis(ref, -1, axis)
    np.testing.assert_allclose(s, ref, rtol=1e-12, atol=1e-300)
    # x - max - log(sum) against log(p): near p = 1 the log is tiny, its rounding absolute (~1e-17)
    np.testing.assert_allclose(ls[ref > 1e-300], np.log(ref[ref > 1e-300]), rtol=1e-12, atol=1e-15)
    assert np.isfinite(ls).all()



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


@pytest.mark.parametrize("opset,axis", [(11, 1), (11, 0), (13, 1), (13, -1), (13, 0)])
def test_import_hardmax(opset, axis):
    m = onnx_model([helper.make_node("Hardmax", ["x"], ["y"], axis=axis)], {"x": (structural_tests.F, [3, 4, 2])},
                   {"y": structural_tests.F}, opset=opset)
    x = np.round(structural_tests.randn(3, 4, 2))  # ties: the first maximum
    structural_tests.check_import(m, {"x": x}, native=opset == 13 and axis == 0)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


@pytest.mark.parametrize("op", [nn.SoftmaxOp, nn.LogSoftmaxOp])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_lowered_softmax(op, axis):
    m = loop_tests.build([loop_tests.T(DYN, 3, 7)], lambda e, x: e(op(x, axis)))
    x = loop_tests.randn(2, 3, 7, scale=10)
    x[0, 0, 0] = 80.0  # max-subtracted: no overflow
    loop_tests.check(m, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lowered_softmax_masked_and_special_rows(dtype):
    """Rows of 40 (past the lanes of the max and the sum): masked entries (a bias of the type's
    lowest, -1e9, -inf) are exactly 0; an exp under EXP_FLUSH of the row's max is 0 too (no
    subnormal result), one just above it is not; a NaN makes its row NaN; a row of -inf is NaN."""
    from ncc.passes.lowering.nn_to_loops.softmax import EXP_FLUSH

    cut = EXP_FLUSH[np.finfo(dtype).bits]
    x = loop_tests.randn(5, 40, dtype=dtype)
    x[0, 3:30] = np.finfo(dtype).min
    x[1, ::2] = -1e9
    x[1, 1] = -np.inf
    x[2, :] = [0.0, cut - 0.5, cut + 0.5] + [-2000.0] * 37
    x[3, 17] = np.nan
    x[4, :] = -np.inf
    m = loop_tests.build([loop_tests.T(5, 40, elt=nn.element_type_of(dtype))], lambda e, a: e(nn.SoftmaxOp(a, -1)))
    (got,) = loop_tests.native(m, [x], "lower-to-loops")
    with np.errstate(invalid="ignore"):
        want = np.exp(x - x.max(-1, keepdims=True))
        want = want / want.sum(-1, keepdims=True)
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-6, atol=0)
    assert np.all(got[0, 3:30] == 0) and np.all(got[1, ::2] == 0) and got[1, 1] == 0
    assert got[2, 0] == 1 and got[2, 1] == 0 and 0 < got[2, 2] < 1e-36
    assert np.isnan(got[3]).all() and np.isnan(got[4]).all()



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences and PyTorch (test_autodiff.py)


@pytest.mark.parametrize("cls,tf", [(nn.SoftmaxOp, "softmax"), (nn.LogSoftmaxOp, "log_softmax")])
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_vjp(cls, tf, axis):
    check_rule(lambda x: cls(x, axis=axis), [rand(2, 3, 4)],
               torch_fn=torch and (lambda x: getattr(torch.nn.functional, tf)(x, dim=axis)))



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, 2), (11, -1), (13, 1), (13, -1)])
def test_import_softmax_axis_semantics_by_opset(op, opset, axis):
    import_tests.check(import_tests.model([helper.make_node(op, ["x"], ["y"], axis=axis)], {"x": [2, 3, 4]}, opset=opset),
          {"x": import_tests.x_of(2, 3, 4)})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


def loss_case(op, shape, *, weight=False, ii=None, reduction="mean", batch="static",
              log_prob=False, opset=13):
    n, c, *rest = shape
    x = decomposition_tests.randn(*shape)
    if op == "NegativeLogLikelihoodLoss":
        x = np.log(np.abs(x) + 0.1)
    t = decomposition_tests.RNG.integers(0, c, size=[n, *rest]).astype(np.int64)
    if ii is not None:
        t.reshape(-1)[::3] = ii
    attrs = {"reduction": reduction, **({} if ii is None else {"ignore_index": ii})}
    outs = ("loss", "log_prob") if log_prob else ("loss",)
    lead = "N" if batch == "dynamic" else n
    inputs = {"x": (decomposition_tests.F, [lead, c, *rest]), "t": (decomposition_tests.I64, [lead, *rest])}
    feeds = {"x": x, "t": t}
    if weight:
        inputs["w"] = (decomposition_tests.F, [c])
        feeds["w"] = decomposition_tests.RNG.random(c).astype(np.float32)
    node = helper.make_node(op, list(inputs), list(outs), **attrs)
    return decomposition_tests.model([node], inputs, outs, opset=opset), feeds


LOSS_CASES = [  # shape, weight, ignore_index, reduction, batch
    ((4, 5), False, None, "mean", "static"),
    ((4, 5), True, None, "sum", "dynamic"),
    ((3, 5, 2, 3), False, None, "none", "static"),
    ((3, 5, 2, 3), True, None, "mean", "dynamic"),
    ((3, 5, 4), False, 2, "mean", "static"),     # ignore_index is a class
    ((3, 5, 4), True, -1, "mean", "dynamic"),    # below the classes
    ((6, 5), True, 9, "sum", "static"),          # above the classes
    ((3, 5, 2, 2), False, -3, "none", "dynamic"),
    ((3, 5, 2, 2), True, 4, "none", "static"),
]


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("shape,weight,ii,reduction,batch", LOSS_CASES)
def test_import_losses(op, shape, weight, ii, reduction, batch):
    m, feeds = loss_case(op, shape, weight=weight, ii=ii, reduction=reduction, batch=batch,
                         log_prob=op == "SoftmaxCrossEntropyLoss" and batch == "static")
    decomposition_tests.check(m, feeds)


def test_import_loss_of_many_classes_with_a_dynamic_batch():
    m, feeds = loss_case("SoftmaxCrossEntropyLoss", (3, 5000, 2), weight=True, ii=7, batch="dynamic")
    decomposition_tests.check(m, feeds)


def test_import_nll_loss_opset_12_and_22():
    for opset in (12, 22):
        m, feeds = loss_case("NegativeLogLikelihoodLoss", (3, 4, 2), weight=True, ii=1, opset=opset)
        decomposition_tests.check(m, feeds, native=False)


def test_import_loss_diagnostics():
    m, _ = loss_case("SoftmaxCrossEntropyLoss", (2, 3), reduction="max")
    assert decomposition_tests.diag(m).endswith("(SoftmaxCrossEntropyLoss): unknown reduction 'max' (known: none, sum, mean)")
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="nll")
    m = decomposition_tests.model([node], {"x": (decomposition_tests.F, [2, 3, 4]), "t": (decomposition_tests.I64, [2, 5])})
    assert decomposition_tests.diag(m) == ("g: error: node 'nll' (NegativeLogLikelihoodLoss): the input (N, C, d...) and "
                       "the target (N, d...) do not match: tensor<2x3x4xf32> and tensor<2x5xi64>")



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("cls", [nn.SoftmaxOp, nn.LogSoftmaxOp])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_export_softmax(cls, axis):
    export_tests.check(loop_tests.build([loop_tests.T(3, 4, 5)], lambda e, x: e(cls(x, axis))), [export_tests.randn(3, 4, 5)])


