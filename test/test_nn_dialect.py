"""The nn dialect: Python construction, shape inference, verifier messages, syntax round trips."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, f16, f32, f64, i1, i32, i64
from xdsl.ir import Block, Region
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from ncc.diagnostics import NccError
from ncc.dialects import activations, nn
from ncc.dialects.nn import DYN, tensor_type as T
from ncc.ir import parse_module, print_module, verify_module


def values(*types):
    """Fresh SSA values of the given types (block arguments)."""
    return Block(arg_types=list(types)).args


def shape(v) -> tuple:
    s = (v.results[0] if hasattr(v, "results") else v).type.get_shape()
    return tuple(None if d == DYN else d for d in s)


# ---------------------------------------------------------------------------
# Shape inference through the Python API


small_shape = st.lists(st.integers(1, 5), min_size=0, max_size=4)


@st.composite
def broadcastable(draw):
    out = draw(st.lists(st.sampled_from([1, 2, 3, 7]), min_size=0, max_size=4))
    def operand():
        k = draw(st.integers(0, len(out)))
        return [draw(st.sampled_from([d, 1])) for d in out[len(out) - k:]]
    return operand(), operand()


@given(broadcastable())
def test_binary_shapes_match_numpy(shapes):
    a, b = shapes
    x, y = values(T(a), T(b))
    for cls in nn.BINARY_OPS.values():
        assert shape(cls(x, y)) == np.broadcast_shapes(tuple(a), tuple(b))


@pytest.mark.parametrize("a, b, out", [
    ((None, 3), (3,), (None, 3)),
    ((None, 1), (1, 4), (None, 4)),
    ((1,), (None,), (None,)),
    ((None, 5), (7, 1), (7, 5)),   # a '?' against 7 can only be 7 (or 1)
    ((None,), (None,), (None,)),
])
def test_binary_dynamic_dims(a, b, out):
    x, y = values(T(a), T(b))
    assert shape(nn.AddOp(x, y)) == out


def test_binary_errors():
    x, y = values(T((2, 3)), T((4,)))
    with pytest.raises(VerifyException, match=r"shapes \[2, 3\], \[4\] are not broadcastable \(dimension 3 vs 4\)"):
        nn.AddOp(x, y)
    a, b = values(T((2,), f32), T((2,), f64))
    with pytest.raises(VerifyException, match="operands must have one element type"):
        nn.MulOp(a, b)
    i, j = values(T((2,), i64), T((2,), i64))
    assert nn.AddOp(i, j).result.type == T((2,), i64)  # integer arithmetic is fine
    assert nn.DivOp(i, j).result.type == T((2,), i64)  # truncating, as ONNX Div
    with pytest.raises(VerifyException, match="operands must have a float element type"):
        nn.PowOp(i, j)
    p, q = values(T((2,), i1), T((2,), i1))
    with pytest.raises(VerifyException, match="operands must have a numeric element type, got tensor<2xi1>"):
        nn.AddOp(p, q)


def test_comparisons_and_logical_ops():
    x, y, i, j, p, q = values(T((None, 3)), T((3,)), T((2, 1), i64), T((4,), i64), T((3,), i1), T((2, 1), i1))
    for cls in nn.COMPARE_OPS.values():
        assert cls(x, y).result.type == T((None, 3), i1)
        assert cls(i, j).result.type == T((2, 4), i1)
    assert nn.EqualOp(p, q).result.type == T((2, 3), i1)  # equality of bools
    with pytest.raises(VerifyException, match="operands must have a numeric element type"):
        nn.LessOp(p, q)
    with pytest.raises(VerifyException, match="operands must have one element type"):
        nn.GreaterOp(x, j)
    with pytest.raises(VerifyException, match="not broadcastable"):
        nn.LessEqualOp(x, values(T((4,)))[0])
    for cls in nn.LOGICAL_OPS.values():
        assert cls(p, q).result.type == T((2, 3), i1)
    assert nn.NotOp(p).result.type == T((3,), i1)
    with pytest.raises(VerifyException, match=r"operands must have element type i1 \(bool\), got tensor<3xf32>"):
        nn.AndOp(y, p)
    with pytest.raises(VerifyException, match="operand must have element type i1"):
        nn.NotOp(y)
    names = {cls.name for cls in (*nn.COMPARE_OPS.values(), *nn.LOGICAL_OPS.values())}
    assert names == {"nn.equal", "nn.less", "nn.less_equal", "nn.greater", "nn.greater_equal",
                     "nn.and", "nn.or", "nn.xor"}
    assert nn.LessEqualOp.name == "nn.less_equal" and nn.XorOp.name == "nn.xor"


def test_select_and_float_predicates():
    c, x, y, i = values(T((2, 1), i1), T((None, 1, 3)), T((3,)), T((3,), i64))
    assert nn.SelectOp(c, x, y).result.type == T((None, 2, 3))
    with pytest.raises(VerifyException, match="the condition must have element type i1"):
        nn.SelectOp(x, x, y)
    with pytest.raises(VerifyException, match="the two values must have one element type"):
        nn.SelectOp(c, x, i)
    assert nn.IsNanOp(x).result.type == T((None, 1, 3), i1)
    inf = nn.IsInfOp(y, detect_negative=0)
    assert inf.result.type == T((3,), i1) and inf.params.detect_positive == 1
    assert "detect_positive" not in inf.properties and inf.params.detect_negative == 0
    with pytest.raises(VerifyException, match="detect_positive must be 0 or 1, got 2"):
        nn.IsInfOp(y, detect_positive=2)
    with pytest.raises(VerifyException, match="operand must have a float element type"):
        nn.IsNanOp(i)


def test_reduce_and_matmul_refuse_bools():
    p, q, i = values(T((2, 2), i1), T((2, 2), i1), T((2, 2), i64))
    with pytest.raises(VerifyException, match="numeric element type"):
        nn.ReduceSumOp(p)
    with pytest.raises(VerifyException, match="numeric element type"):
        nn.MatmulOp(p, q)
    for make in (lambda: nn.ArgmaxOp(p, 1), lambda: nn.ArgminOp(p), lambda: nn.CumSumOp(p, 0),
                 lambda: nn.ScatterElementsOp(p, i, q, reduction="add")):
        with pytest.raises(VerifyException, match="numeric element type"):
            make()
    # moving bools around is fine
    assert nn.ScatterElementsOp(p, i, q).result.type == T((2, 2), i1)
    assert nn.GatherElementsOp(p, i, 1).result.type == T((2, 2), i1)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.lists(st.integers(1, 4), min_size=1, max_size=4),
       st.integers(1, 5))
def test_matmul_shapes_match_numpy(a, b, k):
    a, b = [*a[:-1], k], [*b[:-2], k, b[-1]] if len(b) > 1 else [k]
    # Make batch dims broadcastable by replacing clashes with 1.
    la, lb = a[:-2], b[:-2]
    for i in range(1, min(len(la), len(lb)) + 1):
        if la[-i] != lb[-i]:
            lb[-i] = 1
    b = [*lb, *b[len(b) - min(len(b), 2):]]
    x, y = values(T(a), T(b))
    assert shape(nn.MatmulOp(x, y)) == np.matmul(np.zeros(a), np.zeros(b)).shape


def test_matmul_dynamic_and_errors():
    x, w = values(T((None, 784)), T((784, 10)))
    assert shape(nn.MatmulOp(x, w)) == (None, 10)
    a, b = values(T((2, 3)), T((4, 5)))
    with pytest.raises(VerifyException, match=r"contraction dimensions differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)"):
        nn.MatmulOp(a, b)
    s, = values(T(()))
    with pytest.raises(VerifyException, match="matmul operands must have rank >= 1"):
        nn.MatmulOp(s, s)


@pytest.mark.parametrize("x, w, kw, out", [
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1]), (1, 4, 4, 4)),
    ((2, 6, 7, 5), (4, 3, 3, 1), dict(group=2), (2, 4, 5, 5)),
    ((1, 1, 11, 11), (1, 1, 3, 3), dict(dilations=[2, 3]), (1, 1, 7, 5)),
    ((1, 2, 13), (3, 2, 4), dict(strides=[3], pads=[0, 2]), (1, 3, 4)),          # 1-D
    ((1, 2, 5, 5, 5), (3, 2, 2, 2, 2), {}, (1, 3, 4, 4, 4)),                     # 3-D
    ((None, 3, None, 32), (8, 3, 3, 3), dict(pads=[1, 1, 1, 1]), (None, 8, None, 32)),
])
def test_conv_shapes(x, w, kw, out):
    a, b = values(T(x), T(w))
    assert shape(nn.ConvOp(a, b, **kw)) == out
    assert shape(nn.FusedConvOp(a, b, None, "relu", **kw)) == out


@pytest.mark.parametrize("x, w, kw, msg", [
    ((1, 3, 8), (4, 3), {}, r"weight \(M, C/group, kernel...\) must have rank 3"),
    ((3, 8), (4, 3), {}, r"input \(N, C, spatial...\) must have rank >= 3"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[1]), "strides must have 2 entries, got 1"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(pads=[1, 1]), r"pads \(begin..., end...\) must have 4 entries, got 2"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(dilations=[1, 1, 1]), "dilations must have 2 entries, got 3"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[0, 1]), "strides and dilations must be >= 1 and pads >= 0"),
    ((1, 4, 8, 8), (6, 2, 3, 3), dict(group=4), "6 output channels are not divisible by group 4"),
    ((1, 4, 8, 8), (4, 3, 3, 3), {}, r"input has 4 channels but the weight expects 3 x group 1 = 3"),
    ((1, 3, 2, 2), (4, 3, 3, 3), {}, r"the output would be empty: spatial size \[0, 0\]"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(group=0), "group must be >= 1, got 0"),
])
def test_conv_errors(x, w, kw, msg):
    a, b = values(T(x), T(w))
    with pytest.raises(VerifyException, match=msg):
        nn.ConvOp(a, b, **kw)


def test_conv_params_defaults_are_not_stored():
    a, b = values(T((1, 3, 8, 8)), T((4, 3, 3, 3)))
    op = nn.ConvOp(a, b, strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    assert not op.properties
    assert op.params.strides == (1, 1) and op.params.pads == (0, 0, 0, 0) and op.params.group == 1
    op2 = nn.ConvOp(a, b, strides=[2, 1])
    assert set(op2.properties) == {"strides"} and op2.params.dilations == (1, 1)


def test_fused_errors():
    x, w, b, bad = values(T((5, 3)), T((3, 4)), T((4,)), T((5,)))
    assert shape(nn.FusedMatmulOp(x, w, b, "tanh")) == (5, 4)
    with pytest.raises(VerifyException, match=r"unknown activation 'swish' \(known: identity, relu"):
        nn.FusedMatmulOp(x, w, b, "swish")
    with pytest.raises(VerifyException, match=r"bias tensor<5xf32> does not broadcast to the matmul result shape \[5, 4\]"):
        nn.FusedMatmulOp(x, w, bad, "relu")
    img, k, cb, cbad = values(T((1, 3, 8, 8)), T((4, 3, 3, 3)), T((4,)), T((3,)))
    op = nn.FusedConvOp(img, k, cb, "relu", pads=[1, 1, 1, 1])
    assert shape(op) == (1, 4, 8, 8) and op.params.activation == "relu"
    with pytest.raises(VerifyException, match=r"bias \(one per output channel\) must have shape \[4\], got tensor<3xf32>"):
        nn.FusedConvOp(img, k, cbad, "relu")
    with pytest.raises(VerifyException, match="unknown activation 'gelu'"):
        nn.FusedConvOp(img, k, cb, "gelu")


@pytest.mark.parametrize("cls", [nn.MaxPoolOp, nn.AvgPoolOp])
def test_pool_shapes_and_errors(cls):
    x, = values(T((2, 3, 9, 8)))
    assert shape(cls(x, [3, 2], strides=[2, 2], pads=[1, 0, 1, 0])) == (2, 3, 5, 4)
    assert shape(cls(x, [2, 2])) == (2, 3, 8, 7)
    with pytest.raises(VerifyException, match="kernel must have 2 entries, got 1"):
        cls(x, [2])
    with pytest.raises(VerifyException, match=r"pads \[2, 0, 0, 0\] must be smaller than the kernel \[2, 2\]"):
        cls(x, [2, 2], pads=[2, 0, 0, 0])
    with pytest.raises(VerifyException, match="kernel, strides and dilations must be >= 1 and pads >= 0"):
        cls(x, [2, 2], strides=[0, 1])
    with pytest.raises(VerifyException, match=r"the output would be empty"):
        cls(x, [10, 2])
    i, = values(T((1, 1, 4, 4), i64))
    with pytest.raises(VerifyException, match="input must have a float element type"):
        cls(i, [2, 2])


def test_avg_pool_flag():
    x, = values(T((1, 1, 4, 4)))
    op = nn.AvgPoolOp(x, [3, 3], pads=[1, 1, 1, 1], count_include_pad=True)
    assert op.params.count_include_pad and "count_include_pad" in op.properties
    assert not nn.AvgPoolOp(x, [3, 3]).params.count_include_pad


@pytest.mark.parametrize("axes, keepdims, out", [
    (None, False, ()), (None, True, (1, 1, 1)), ([1], False, (2, 5)), ([-1, 0], True, (1, 4, 1)),
    ([], False, (2, 4, 5)),
])
def test_reduce_shapes(axes, keepdims, out):
    x, = values(T((2, 4, 5)))
    for cls in nn.REDUCE_OPS.values():
        assert shape(cls(x, axes, keepdims)) == out
        assert shape(cls(x, axes, keepdims)) == np.sum(np.empty((2, 4, 5)), axis=None if axes is None else tuple(axes),
                                                    keepdims=keepdims).shape


def test_reduce_errors():
    x, = values(T((2, 4)))
    with pytest.raises(VerifyException, match=r"axis 2 is out of range for rank 2 \(expected -2..1\)"):
        nn.ReduceSumOp(x, [2])
    with pytest.raises(VerifyException, match=r"axes \[1, -1\] name an axis twice"):
        nn.ReduceMaxOp(x, [1, -1])
    i, = values(T((2,), i64))
    assert nn.ReduceSumOp(i).result.type == T((), i64)
    with pytest.raises(VerifyException, match="operand must have a float element type"):
        nn.ReduceMeanOp(i)


def test_softmax_norms():
    x, c, bad = values(T((2, 3, 4, 4)), T((3,)), T((4,)))
    assert shape(nn.SoftmaxOp(x, axis=1)) == (2, 3, 4, 4) and nn.SoftmaxOp(x).params.axis == -1
    assert shape(nn.LogSoftmaxOp(x)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"axis 4 is out of range for rank 4"):
        nn.SoftmaxOp(x, axis=4)
    assert shape(nn.BatchNormOp(x, c, c, c, c)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"var \(one per channel\) must have shape \[3\], got tensor<4xf32>"):
        nn.BatchNormOp(x, c, c, c, bad)
    with pytest.raises(VerifyException, match="epsilon must be >= 0, got -1.0"):
        nn.BatchNormOp(x, c, c, c, c, epsilon=-1.0)
    s, s2 = values(T((4, 4)), T((4,)))
    assert shape(nn.LayerNormOp(x, s, s, axis=2)) == (2, 3, 4, 4)
    assert shape(nn.LayerNormOp(x, s2, s2)) == (2, 3, 4, 4)
    with pytest.raises(VerifyException, match=r"scale \(the normalized shape\) must have shape \[3, 4, 4\], got tensor<4x4xf32>"):
        nn.LayerNormOp(x, s, s, axis=1)


def test_reshape():
    x, d = values(T((2, 3, 4)), T((None, 28, 28)))
    assert shape(nn.ReshapeOp(x, [6, -1])) == (6, 4)
    assert shape(nn.ReshapeOp(x, [24])) == (24,)
    assert shape(nn.ReshapeOp(d, [-1, 784])) == (None, 784)
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((5, 5))])
    with pytest.raises(VerifyException, match=r"cannot reshape 24 elements \(tensor<2x3x4xf32>\) into 25"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((None, 5))])
    with pytest.raises(VerifyException, match=r"cannot reshape 24 elements \(tensor<2x3x4xf32>\) into tensor<\?x5xf32>"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[d], result_types=[T((None, None))])
    with pytest.raises(VerifyException, match="at most one '\\?' dimension"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((24,), f64)])
    with pytest.raises(VerifyException, match="element type changes from f32 to f64"):
        op.verify()


def test_transpose_concat():
    x, y, z = values(T((2, 3, 4)), T((2, 5, 4)), T((None, 1, 4)))
    assert shape(nn.TransposeOp(x, [2, 0, 1])) == (4, 2, 3)
    with pytest.raises(VerifyException, match=r"perm \[0, 0, 1\] is not a permutation of 0..2"):
        nn.TransposeOp(x, [0, 0, 1])
    assert shape(nn.ConcatOp([x, y], axis=1)) == (2, 8, 4)
    assert shape(nn.ConcatOp([x, y, z], axis=-2)) == (2, 9, 4)
    assert shape(nn.ConcatOp([z, z], axis=0)) == (None, 1, 4)
    with pytest.raises(VerifyException, match=r"inputs differ in dimension 1 \(3, 5\); only the axis 0 may differ"):
        nn.ConcatOp([x, y], axis=0)
    w, = values(T((2, 3)))
    with pytest.raises(VerifyException, match="every input must have rank 3, got tensor<2x3xf32>"):
        nn.ConcatOp([x, w], axis=0)
    with pytest.raises(VerifyException, match="needs at least one input"):
        nn.ConcatOp([], axis=0)


@given(st.integers(1, 9), st.integers(-12, 12), st.integers(-12, 12),
       st.sampled_from([1, 2, 3, -1, -2, 2**62]))
def test_slice_length_matches_python(dim, start, end, step):
    # Within [-dim, dim] ONNX's clamping agrees with Python's slices.
    start, end = max(min(start, dim), -dim), max(min(end, dim), -dim)
    x, = values(T((dim, 2)))
    op = nn.SliceOp(x, [start], [end], [0], [step])
    assert shape(op) == (len(range(dim)[start:end:step]), 2)


def test_slice_onnx_extremes_and_errors():
    x, = values(T((10, 7, None)))
    big = 2**63 - 1
    assert shape(nn.SliceOp(x, [1, -3], [big, big], [0, 1])) == (9, 3, None)
    assert shape(nn.SliceOp(x, [-1], [-big], [0], [-1])) == (10, 7, None)   # full reversal
    assert shape(nn.SliceOp(x, [-big], [-big], [0], [-1])) == (1, 7, None)   # ONNX: start clamps to 0
    assert shape(nn.SliceOp(x, [0], [5], [2])) == (10, 7, None)            # dynamic axis stays '?'
    op = nn.SliceOp(x, [0, 0], [2, 3])
    assert op.params.axes == (0, 1) and op.params.steps == (1, 1) and shape(op) == (2, 3, None)
    with pytest.raises(VerifyException, match="steps must be nonzero"):
        nn.SliceOp(x, [0], [1], [0], [0])
    with pytest.raises(VerifyException, match=r"ends \(one per start\) must have 1 entries, got 2"):
        nn.SliceOp(x, [0], [1, 2])
    with pytest.raises(VerifyException, match=r"axes \[0, 0\] name an axis twice"):
        nn.SliceOp(x, [0, 0], [1, 1], [0, 0])


def test_gather():
    x, idx, idx0, bad = values(T((5, 4, 3)), T((2, 6), i64), T((), i32), T((2,), f32))
    assert shape(nn.GatherOp(x, idx, axis=1)) == (5, 2, 6, 3)
    assert shape(nn.GatherOp(x, idx0)) == (4, 3)
    with pytest.raises(VerifyException, match="indices must be i64 or i32, got tensor<2xf32>"):
        nn.GatherOp(x, bad)
    with pytest.raises(VerifyException, match="axis -4 is out of range for rank 3"):
        nn.GatherOp(x, idx, axis=-4)


def test_pad():
    x, = values(T((2, 3)))
    assert shape(nn.PadOp(x, [0, 1, 2, 3])) == (4, 7)
    assert shape(nn.PadOp(x, [1, 2, 1, 2], mode="reflect")) == (4, 7)
    op = nn.PadOp(x, [0, 1, 0, 1], value=-1.5)
    assert op.params.value == -1.5 and op.params.mode == "constant"
    with pytest.raises(VerifyException, match=r"pads \(begin..., end...\) must have 4 entries, got 2"):
        nn.PadOp(x, [1, 1])
    with pytest.raises(VerifyException, match=r"unknown pad mode 'wrap' \(known: constant, reflect, edge\)"):
        nn.PadOp(x, [0, 0, 0, 0], mode="wrap")
    with pytest.raises(VerifyException, match=r"reflect padding of axis 0 needs pads < its size 2, got 2, 0"):
        nn.PadOp(x, [2, 0, 0, 0], mode="reflect")
    with pytest.raises(VerifyException, match=r"pads must be >= 0, got \[-1, 0, 0, 0\]"):
        nn.PadOp(x, [-1, 0, 0, 0])
    with pytest.raises(VerifyException, match="a pad value only applies to mode constant, not edge"):
        nn.PadOp(x, [1, 0, 0, 0], mode="edge", value=2.0)


def test_cast():
    x, i = values(T((None, 3)), T((2,), i64))
    assert nn.CastOp(x, f64).result.type == T((None, 3), f64)
    assert nn.CastOp(x, np.float16).result.type == T((None, 3), f16)
    assert nn.CastOp(x, i64).result.type == T((None, 3), i64)  # between all numeric types
    assert nn.CastOp(i, f32).result.type == T((2,), f32)
    b, = values(T((2,), i1))
    with pytest.raises(VerifyException, match=r"the result must have a numeric element type, got tensor<\?x3xi1>"):
        nn.CastOp(x, i1)  # to and from bool: comparisons and selects
    with pytest.raises(VerifyException, match="operand must have a numeric element type, got tensor<2xi1>"):
        nn.CastOp(b, f32)
    op = nn.CastOp.create(operands=[x], result_types=[T((None, 4), f64)])
    with pytest.raises(VerifyException, match=r"the result must have the operand's shape \[\?, 3\], got tensor<\?x4xf64>"):
        op.verify()


def test_sparse_matmul():
    x, v = values(T((None, 3)), T((4,)))
    op = nn.SparseMatmulOp(x, v, rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], in_features=3, out_features=2)
    assert shape(op) == (None, 2)
    w = op.dense_weight(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    assert w.tolist() == [[0, 1], [2, 0], [4, 3]]
    cases = [
        (dict(rows=[0, 1, 2], cols=[1, 0, 1, 0]), r"cols \(one per row index\) must have 3 entries, got 4"),
        (dict(rows=[0, 1, 3, 2], cols=[1, 0, 1, 0]), r"entry 2: row 3 is out of range \[0, 3\)"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 2]), r"entry 3: col 2 is out of range \[0, 2\)"),
        (dict(rows=[0, 1, 2, 0], cols=[1, 0, 1, 1]), r"entries 0 and 3 both set \(row 0, col 1\)"),
        (dict(rows=[0, 1], cols=[1, 0]), r"values \(one per nonzero\) must have shape \[2\], got tensor<4xf32>"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], in_features=5), "input's last dimension must be in_features = 5"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], out_features=0), "in_features and out_features must be >= 1"),
    ]
    y, = values(T((7, 3)))
    for kw, msg in cases:
        args = dict(in_features=3, out_features=2) | kw
        with pytest.raises(VerifyException, match=msg):
            nn.SparseMatmulOp(y, v, **args)


def test_unary_table_covers_activations():
    x, = values(T((2, 3)))
    for a in activations.ACTIVATIONS:
        cls = nn.UNARY_OPS[a.name]
        assert cls.name == f"nn.{a.name}" and getattr(nn, cls.__name__) is cls
        assert cls(x).result.type == T((2, 3))
    assert nn.LeakyReluOp.name == "nn.leaky_relu" and nn.IdentityOp.name == "nn.identity"
    for name in ("exp", "log", "neg", "sqrt", "reciprocal", "erf", "floor", "ceil", "cos", "acos",
                 "asin", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "round", "sign"):
        assert nn.UNARY_OPS[name].name == f"nn.{name}"
    i, = values(T((2,), i64))
    with pytest.raises(VerifyException, match="operand must have a float element type, got tensor<2xi64>"):
        nn.ExpOp(i)


def test_given_result_type_is_checked():
    x, y = values(T((2, 3)), T((3,)))
    op = nn.AddOp.create(operands=[x, y], result_types=[T((3, 3))])
    with pytest.raises(VerifyException, match=r"result type tensor<3x3xf32> does not match the inferred type tensor<2x3xf32>"):
        op.verify()
    nn.AddOp.create(operands=[x, y], result_types=[T((None, 3))]).verify()  # '?' is compatible
    op = nn.ReluOp.create(operands=[x], result_types=[T((2, 3), f64)])
    with pytest.raises(VerifyException, match="does not match the inferred type"):
        op.verify()


# ---------------------------------------------------------------------------
# Constants and weights


def test_constant():
    c = nn.ConstantOp(np.array([[1, 2], [3, 4]], np.int64))
    assert c.result.type == T((2, 2), i64) and c.data.dtype == np.int64
    assert nn.ConstantOp(1.5).result.type == T(())
    assert nn.ConstantOp([0.5, 1.0]).result.type == T((2,))          # Python floats: f32
    assert nn.ConstantOp(0.0, T((3, 2))).data.shape == (3, 2)          # a splat
    with pytest.raises(ValueError, match=r"data of shape \[3\] does not fit tensor<2xf32>"):
        nn.ConstantOp([1.0, 2.0, 3.0], T((2,)))


def test_weight_holds_data_by_reference_read_only():
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    w = nn.WeightOp("w", data)
    assert w.type == T((4, 3)) and np.shares_memory(w.data, data)
    assert not w.data.flags.writeable
    with pytest.raises(ValueError):
        w.data[0, 0] = 1.0
    ref = nn.WeightRefOp(w)
    assert ref.sym == "w" and ref.result.type == w.type
    p = nn.WeightOp("p", None, T((3,)))
    assert p.data is None
    p.data = np.ones(3)
    assert p.data.dtype == np.float32
    with pytest.raises(ValueError, match="needs data or a type"):
        nn.WeightOp("q", None)
    with pytest.raises(ValueError, match=r"data of shape \[2\] does not fit tensor<3xf32>"):
        nn.WeightOp("q", np.ones(2), T((3,)))


def _main(ops, arg_types, ret):
    block = Block(arg_types=arg_types)
    body = ops(*block.args) if callable(ops) else ops
    block.add_ops([*body, func.ReturnOp(*ret(body))])
    return func.FuncOp("main", FunctionType.from_lists(arg_types, [r.type for r in ret(body)]), Region(block))


def test_weight_ref_verifier():
    w = nn.WeightOp("w", np.zeros((2, 2), np.float32))

    def check(ref, msg):
        m = ModuleOp([w.clone(), _main([ref], [], lambda b: [b[0].result])])
        with pytest.raises(NccError, match=msg):
            verify_module(m)

    check(nn.WeightRefOp("w", T((2, 3))), r"type tensor<2x3xf32> does not match weight @w of type tensor<2x2xf32>")
    check(nn.WeightRefOp("v", T((2, 2))), "refers to an unknown weight @v")
    check(nn.WeightRefOp("main", T((2, 2))), "@main is a 'func.func', not an nn.weight")
    with pytest.raises(VerifyException, match="not inside a module"):
        nn.WeightRefOp("w", T((2, 2))).verify()


def test_weight_verifier():
    w = nn.WeightOp.create(properties={"sym_name": nn.StringAttr("w"), "type": T((None, 2))})
    with pytest.raises(VerifyException, match=r"type must be a tensor type with a static shape, got tensor<\?x2xf32>"):
        w.verify()
    w = nn.WeightOp.create(properties={"sym_name": nn.StringAttr("w"), "type": T((3,)),
                                       "value": nn.TensorData(np.zeros(2, np.float32))})
    with pytest.raises(VerifyException, match="data of type tensor<2xf32> does not match the declared type tensor<3xf32>"):
        w.verify()
    w = nn.WeightOp("w", None, nn.TensorType(nn.IntegerType(16), [2]))
    with pytest.raises(VerifyException, match="no numpy dtype for element type i16"):
        w.verify()


# ---------------------------------------------------------------------------
# Text: every op, print -> parse -> print is a fixed point

EVERY_OP = """
nn.weight @w : tensor<3x2xf32> = dense<[[0.1, -0.2], [1.0e-05, 3.5], [0x7FC00000, 0xFF800000]]>
nn.weight @b : tensor<2xf32> = dense<0.5>
nn.weight @p : tensor<2xf32>
nn.weight @e : tensor<2x2xf32> = dense_resource<__elided__>
nn.weight @idx : tensor<2xi64> = dense<[2, -1]>
nn.weight @d : tensor<2xf64> = dense<[0.1, 3.141592653589793]>
func.func @main(%x: tensor<?x3xf32>, %img: tensor<1x3x8x8xf32>, %k: tensor<4x3x3x3xf32>, %s: tensor<4xf32>, %v: tensor<3xf32>) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %b = nn.weight_ref @b : tensor<2xf32>
  %i = nn.weight_ref @idx : tensor<2xi64>
  %y = nn.matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %fm = nn.fused_matmul %x, %w, %b activation leaky_relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %fm2 = nn.fused_matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %sp = nn.sparse_matmul %x, %v rows [0, 1, 2] cols [1, 0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x2xf32>
  %c = nn.conv %img, %k strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %c2 = nn.conv %img, %k dilations [2, 2] group 1 : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %fc = nn.fused_conv %img, %k, %s activation relu pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
  %mp = nn.max_pool %c kernel [2, 2] strides [2, 2] : tensor<1x4x4x4xf32> -> tensor<1x4x2x2xf32>
  %ap = nn.avg_pool %c kernel [3, 3] pads [1, 1, 1, 1] count_include_pad : tensor<1x4x4x4xf32>
  %rs = nn.reduce_sum %mp axes [2, 3] keepdims : tensor<1x4x2x2xf32> -> tensor<1x4x1x1xf32>
  %rm = nn.reduce_mean %mp axes [-1] : tensor<1x4x2x2xf32> -> tensor<1x4x2xf32>
  %rx = nn.reduce_max %mp : tensor<1x4x2x2xf32> -> tensor<f32>
  %rn = nn.reduce_min %mp axes [1] : tensor<1x4x2x2xf32> -> tensor<1x2x2xf32>
  %rp = nn.reduce_prod %mp axes [0] {note = "kept"} : tensor<1x4x2x2xf32> -> tensor<4x2x2xf32>
  %sm = nn.softmax %y : tensor<?x2xf32>
  %ls = nn.log_softmax %c axis 1 : tensor<1x4x4x4xf32>
  %bn = nn.batch_norm %c, %s, %s, %s, %s epsilon 1.0e-03 : tensor<1x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<1x4x4x4xf32>
  %ln = nn.layer_norm %c, %s, %s : tensor<1x4x4x4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<1x4x4x4xf32>
  %ln2 = nn.layer_norm %x, %v, %v axis 1 epsilon 1.0e-06 : tensor<?x3xf32>, tensor<3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %rh = nn.reshape %c : tensor<1x4x4x4xf32> -> tensor<4x16xf32>
  %tr = nn.transpose %rh perm [1, 0] : tensor<4x16xf32> -> tensor<16x4xf32>
  %cc = nn.concat %y, %sm, %fm axis 0 : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xf32>
  %sl = nn.slice %tr starts [1, -1] ends [9223372036854775807, -5] axes [0, 1] steps [3, -1] : tensor<16x4xf32> -> tensor<5x4xf32>
  %ga = nn.gather %tr, %i axis 1 : tensor<16x4xf32>, tensor<2xi64> -> tensor<16x2xf32>
  %pd = nn.pad %tr pads [1, 0, 1, 0] mode reflect : tensor<16x4xf32> -> tensor<18x4xf32>
  %pc = nn.pad %tr pads [0, 0, 0, 2] value 0xFFF0000000000000 : tensor<16x4xf32> -> tensor<16x6xf32>
  %am = nn.argmax %tr axis 1 keepdims : tensor<16x4xf32> -> tensor<16x1xi64>
  %an = nn.argmin %tr select_last_index : tensor<16x4xf32> -> tensor<4xi64>
  %csum = nn.cumsum %tr axis 0 reverse : tensor<16x4xf32>
  %tu = nn.triu %tr k 1 : tensor<16x4xf32>
  %tl = nn.tril %tr : tensor<16x4xf32>
  %ge = nn.gather_elements %tr, %am axis 1 : tensor<16x4xf32>, tensor<16x1xi64> -> tensor<16x1xf32>
  %se = nn.scatter_elements %tr, %am, %ge axis 1 reduction max : tensor<16x4xf32>, tensor<16x1xi64>, tensor<16x1xf32> -> tensor<16x4xf32>
  %sn = nn.scatter_nd %tr, %am, %tr : tensor<16x4xf32>, tensor<16x1xi64>, tensor<16x4xf32> -> tensor<16x4xf32>
  %ctp = nn.conv_transpose %c, %k strides [2, 2] pads [1, 1, 0, 0] output_padding [1, 0] : tensor<1x4x4x4xf32>, tensor<4x3x3x3xf32> -> tensor<1x3x9x8xf32>
  %mpi = nn.max_pool_indices %c kernel [2, 2] strides [2, 2] column_major : tensor<1x4x4x4xf32> -> tensor<1x4x2x2xi64>
  %cwg = nn.conv_weight_grad %img, %c kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<1x4x4x4xf32> -> tensor<4x3x3x3xf32>
  %rz = nn.resize %c mode linear scales [1.0, 1.0, 1.5, 0.5] coordinate_transformation_mode tf_crop_and_resize roi [0.0, 0.0, 0.1, 0.2, 1.0, 1.0, 0.9, 1.1] extrapolation_value -1.0 : tensor<1x4x4x4xf32> -> tensor<1x4x6x2xf32>
  %ct = nn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %ci = nn.constant dense<7> : tensor<3xi64>
  %cs = nn.cast %x : tensor<?x3xf32> -> tensor<?x3xf64>
  %bx = nn.broadcast %ct : tensor<2x2xf32> -> tensor<?x2x2xf32>
  %mta = nn.matmul_transpose_a %x, %x : tensor<?x3xf32>, tensor<?x3xf32> -> tensor<3x3xf32>
  %u0 = nn.identity %y : tensor<?x2xf32>
  %u1 = nn.relu %u0 : tensor<?x2xf32>
  %u2 = nn.sigmoid %u1 : tensor<?x2xf32>
  %u3 = nn.tanh %u2 : tensor<?x2xf32>
  %u4 = nn.leaky_relu %u3 : tensor<?x2xf32>
  %u5 = nn.elu %u4 : tensor<?x2xf32>
  %u6 = nn.softplus %u5 : tensor<?x2xf32>
  %u7 = nn.silu %u6 : tensor<?x2xf32>
  %u8 = nn.sin %u7 : tensor<?x2xf32>
  %u9 = nn.gaussian %u8 : tensor<?x2xf32>
  %u10 = nn.abs %u9 : tensor<?x2xf32>
  %u11 = nn.step %u10 : tensor<?x2xf32>
  %u12 = nn.exp %u11 : tensor<?x2xf32>
  %u13 = nn.log %u12 : tensor<?x2xf32>
  %u14 = nn.neg %u13 : tensor<?x2xf32>
  %u15 = nn.sqrt %u14 : tensor<?x2xf32>
  %u16 = nn.reciprocal %u15 : tensor<?x2xf32>
  %u17 = nn.erf %u16 : tensor<?x2xf32>
  %u18 = nn.floor %u17 : tensor<?x2xf32>
  %u19 = nn.ceil %u18 : tensor<?x2xf32>
  %u20 = nn.cos %u19 : tensor<?x2xf32>
  %b0 = nn.add %u20, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b1 = nn.sub %b0, %b0 : tensor<?x2xf32>
  %b2 = nn.mul %b1, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b3 = nn.div %b2, %b2 : tensor<?x2xf32>
  %b4 = nn.max %b3, %b3 : tensor<?x2xf32>
  %b5 = nn.min %b4, %b3 : tensor<?x2xf32>
  %b6 = nn.pow %b5, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b7 = nn.mod %b6, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b8 = nn.fmod %ci, %ci : tensor<3xi64>
  %u21 = nn.acos %b7 : tensor<?x2xf32>
  %u22 = nn.asin %u21 : tensor<?x2xf32>
  %u23 = nn.atan %u22 : tensor<?x2xf32>
  %u24 = nn.sinh %u23 : tensor<?x2xf32>
  %u25 = nn.cosh %u24 : tensor<?x2xf32>
  %u26 = nn.asinh %u25 : tensor<?x2xf32>
  %u27 = nn.acosh %u26 : tensor<?x2xf32>
  %u28 = nn.atanh %u27 : tensor<?x2xf32>
  %u29 = nn.round %u28 : tensor<?x2xf32>
  %u30 = nn.sign %u29 : tensor<?x2xf32>
  %q0 = nn.equal %u30, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xi1>
  %q1 = nn.less %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q2 = nn.less_equal %ci, %ci : tensor<3xi64>, tensor<3xi64> -> tensor<3xi1>
  %q3 = nn.greater %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q4 = nn.greater_equal %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q5 = nn.is_nan %u30 : tensor<?x2xf32> -> tensor<?x2xi1>
  %q6 = nn.is_inf %u30 detect_negative 0 : tensor<?x2xf32> -> tensor<?x2xi1>
  %l0 = nn.and %q0, %q1 : tensor<?x2xi1>
  %l1 = nn.or %l0, %q3 : tensor<?x2xi1>
  %l2 = nn.xor %l1, %q4 : tensor<?x2xi1>
  %l3 = nn.not %l2 : tensor<?x2xi1>
  %l4 = nn.and %l3, %q5 : tensor<?x2xi1>
  %l5 = nn.or %l4, %q6 : tensor<?x2xi1>
  %bc = nn.constant dense<[true, false]> : tensor<2xi1>
  %l6 = nn.xor %l5, %bc : tensor<?x2xi1>, tensor<2xi1> -> tensor<?x2xi1>
  %sel = nn.select %l6, %u30, %b : tensor<?x2xi1>, tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return %sel : tensor<?x2xf32>
}
"""


def test_every_op_round_trips():
    m = parse_module(EVERY_OP)
    text = print_module(m)
    assert print_module(parse_module(text)) == text
    used = {op.name for op in m.walk()}
    assert {op.name for op in nn.NN.operations} <= used  # the text above really uses every op


def test_syntax_details():
    text = print_module(parse_module(EVERY_OP))
    # All-equal types print once; defaults are left out; flags are bare words.
    assert "%b1 = nn.sub %b0, %b0 : tensor<?x2xf32>\n" in text
    assert "nn.conv %img, %k dilations [2, 2] group 1 :" in text  # explicitly given defaults stay
    assert "count_include_pad :" in text and "{note = \"kept\"}" in text
    assert "value 0xFFF0000000000000" in text and "epsilon 0.001" in text
    assert "= dense_resource<__elided__>" in text and "nn.weight @p : tensor<2xf32>\n" in text


def test_generic_format_round_trips():
    m = parse_module(EVERY_OP)
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(m)
    generic = out.getvalue()
    assert '"nn.conv"' in generic and "#nn.data<dense<" in generic
    assert print_module(parse_module(generic)) == print_module(m)


def test_elision():
    m = parse_module(EVERY_OP)
    text = print_module(m, elide_weights_if_larger=3)
    assert "nn.weight @w : tensor<3x2xf32> = dense_resource<__elided__>" in text
    assert "nn.weight @b : tensor<2xf32> = dense<0.5>" in text
    assert "@b : tensor<2xf32> = dense_resource<__elided__>" in print_module(m, elide_weights_if_larger=1)
    assert "@b : tensor<2xf32> = dense<0.5>" in print_module(m)
    w = next(op for op in parse_module(text).ops if isinstance(op, nn.WeightOp) and op.sym == "w")
    assert w.data is None and w.elided is not None


def test_parse_errors():
    def err(src, msg):
        with pytest.raises(NccError, match=msg):
            parse_module(src)
    err("nn.weight @w : tensor<2xf32> = dense<[1.0, 2.0, 3.0]>",
        r"<stdin>:1:37: error: literal has shape \[3\] but the type is tensor<2xf32>")
    err("nn.weight @w : tensor<2xf32> = dense<[1.0, ]>", "invalid dense literal")
    err("nn.weight @w : tensor<2xi64> = dense<[1.5, 2]>", "an integer literal may only hold integers")
    err("nn.weight @w : tensor<2xf32> = dense_resource<blob>", "only dense_resource<__elided__> is supported")
    err("nn.weight @w : tensor<?xf32> = dense<[1.0]>", r"a literal needs a static shape, got tensor<\?xf32>")
    body = "func.func @f(%a: tensor<2x8x8xf32>) {{\n  %r = {} \n  func.return\n}}"
    err(body.format("nn.max_pool %a strides [1] : tensor<2x8x8xf32>"), "2:.*expected parameter 'kernel'")
    err(body.format("nn.softmax %a axis 1 axis 2 : tensor<2x8x8xf32>"), "parameter 'axis' is given twice")
    err(body.format("nn.add %a, %a : tensor<2x8x8xf32>, tensor<2x8x8xf32>"), "expected '->' and the result type")
    err(body.format("nn.add %a, %a : tensor<2x8x8xf32> -> tensor<2x8x8xf32>"), "expected 2 operand types, got 1")
    err(body.format("nn.pad %a pads [0, 0, 0, 0, 0, 0] mode reflect value 1.0 : tensor<2x8x8xf32>"),
        "3:3|2:.*a pad value only applies to mode constant")


# ---------------------------------------------------------------------------
# Literals: bit-exact for every float


finite_or_not = st.integers(0, 2**32 - 1).map(lambda b: np.uint32(b).view(np.float32))


@given(st.lists(finite_or_not, min_size=1, max_size=12))
@settings(max_examples=200)
def test_f32_literals_round_trip_bit_exactly(vals):
    data = np.array(vals, dtype=np.float32)
    m = ModuleOp([nn.WeightOp("w", data)])
    text = print_module(m)
    back = parse_module(text).ops.first.data
    assert back.view(np.uint32).tolist() == data.view(np.uint32).tolist()
    assert print_module(parse_module(text)) == text
    assert re.search(r"dense<(\[.*\]|[^\[].*)>", text)


@given(st.lists(st.floats(allow_nan=True, width=64), min_size=1, max_size=6))
def test_f64_literals_round_trip_bit_exactly(vals):
    data = np.array(vals, dtype=np.float64)
    back = parse_module(print_module(ModuleOp([nn.WeightOp("w", data)]))).ops.first.data
    assert back.view(np.uint64).tolist() == data.view(np.uint64).tolist()


def test_literal_special_values_and_shapes():
    data = np.array([[0.0, -0.0, 1e-45, 3.4028235e38], [np.inf, -np.inf, 0.1, 16777217]], np.float32)
    text = print_module(ModuleOp([nn.WeightOp("w", data)]))
    assert "[[0.0, -0.0, 1.0e-45, 3.4028235e+38], [0x7F800000, 0xFF800000, 0.1, 1.6777216e+07]]" in text
    assert "dense<-0.0>" in print_module(ModuleOp([nn.WeightOp("z", np.full((2, 2), -0.0, np.float32))]))
    mixed = np.array([0.0, -0.0], np.float32)  # equal but not bit-identical: no splat
    assert "dense<[0.0, -0.0]>" in print_module(ModuleOp([nn.WeightOp("z", mixed)]))
    scalar = parse_module("nn.weight @s : tensor<f32> = dense<2.5>").ops.first
    assert scalar.data.shape == () and float(scalar.data) == 2.5
    empty = parse_module("nn.weight @s : tensor<2x0xf32> = dense<[[], []]>").ops.first
    assert empty.data.shape == (2, 0)
    splat = parse_module("nn.weight @s : tensor<1000x1000xf32> = dense<0.25>").ops.first
    assert splat.data.shape == (1000, 1000) and splat.data.strides == (0, 0)  # no copy per element
