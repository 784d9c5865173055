"""The elementwise op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f16, f32, f64, i1, i8, i32, i64
from xdsl.ir import Block, Region
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.diagnostics import NccError
from ncc.dialects import activations, nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.onnx import import_onnx

import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
from vjp_check import RNG, check_rule, rand, torch, vjp_reference

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


@st.composite
def broadcastable(draw):
    out = draw(st.lists(st.sampled_from([1, 2, 3, 7]), min_size=0, max_size=4))
    def operand():
        k = draw(st.integers(0, len(out)))
        return [draw(st.sampled_from([d, 1])) for d in out[len(out) - k:]]
    return operand(), operand()


@given(broadcastable())
def test_dialect_binary_shapes_match_numpy(shapes):
    a, b = shapes
    x, y = dialect_tests.values(T(a), T(b))
    for cls in nn.BINARY_OPS.values():
        assert dialect_tests.shape(cls(x, y)) == np.broadcast_shapes(tuple(a), tuple(b))


@pytest.mark.parametrize("a, b, out", [
    ((None, 3), (3,), (None, 3)),
    ((None, 1), (1, 4), (None, 4)),
    ((1,), (None,), (None,)),
    ((None, 5), (7, 1), (7, 5)),   # a '?' against 7 can only be 7 (or 1)
    ((None,), (None,), (None,)),
])
def test_dialect_binary_dynamic_dims(a, b, out):
    x, y = dialect_tests.values(T(a), T(b))
    assert dialect_tests.shape(nn.AddOp(x, y)) == out


def test_dialect_binary_errors():
    x, y = dialect_tests.values(T((2, 3)), T((4,)))
    with pytest.raises(VerifyException, match=r"shapes \[2, 3\], \[4\] are not broadcastable \(dimension 3 vs 4\)"):
        nn.AddOp(x, y)
    a, b = dialect_tests.values(T((2,), f32), T((2,), f64))
    with pytest.raises(VerifyException, match="operands must have one element type"):
        nn.MulOp(a, b)
    i, j = dialect_tests.values(T((2,), i64), T((2,), i64))
    assert nn.AddOp(i, j).result.type == T((2,), i64)  # integer arithmetic is fine
    assert nn.DivOp(i, j).result.type == T((2,), i64)  # truncating, as ONNX Div
    with pytest.raises(VerifyException, match="operands must have a float element type"):
        nn.PowOp(i, j)
    p, q = dialect_tests.values(T((2,), i1), T((2,), i1))
    with pytest.raises(VerifyException, match="operands must have a numeric element type, got tensor<2xi1>"):
        nn.AddOp(p, q)


def test_dialect_comparisons_and_logical_ops():
    x, y, i, j, p, q = dialect_tests.values(T((None, 3)), T((3,)), T((2, 1), i64), T((4,), i64), T((3,), i1), T((2, 1), i1))
    for cls in nn.COMPARE_OPS.values():
        assert cls(x, y).result.type == T((None, 3), i1)
        assert cls(i, j).result.type == T((2, 4), i1)
    assert nn.EqualOp(p, q).result.type == T((2, 3), i1)  # equality of bools
    with pytest.raises(VerifyException, match="operands must have a numeric element type"):
        nn.LessOp(p, q)
    with pytest.raises(VerifyException, match="operands must have one element type"):
        nn.GreaterOp(x, j)
    with pytest.raises(VerifyException, match="not broadcastable"):
        nn.LessEqualOp(x, dialect_tests.values(T((4,)))[0])
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


def test_dialect_select_and_float_predicates():
    c, x, y, i = dialect_tests.values(T((2, 1), i1), T((None, 1, 3)), T((3,)), T((3,), i64))
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


def test_dialect_cast():
    x, i = dialect_tests.values(T((None, 3)), T((2,), i64))
    assert nn.CastOp(x, f64).result.type == T((None, 3), f64)
    assert nn.CastOp(x, np.float16).result.type == T((None, 3), f16)
    assert nn.CastOp(x, i64).result.type == T((None, 3), i64)  # between all numeric types
    assert nn.CastOp(i, f32).result.type == T((2,), f32)
    b, = dialect_tests.values(T((2,), i1))
    with pytest.raises(VerifyException, match=r"the result must have a numeric element type, got tensor<\?x3xi1>"):
        nn.CastOp(x, i1)  # to and from bool: comparisons and selects
    with pytest.raises(VerifyException, match="operand must have a numeric element type, got tensor<2xi1>"):
        nn.CastOp(b, f32)
    op = nn.CastOp.create(operands=[x], result_types=[T((None, 4), f64)])
    with pytest.raises(VerifyException, match=r"the result must have the operand's shape \[\?, 3\], got tensor<\?x4xf64>"):
        op.verify()


def test_dialect_unary_table_covers_activations():
    x, = dialect_tests.values(T((2, 3)))
    for a in activations.ACTIVATIONS:
        cls = nn.UNARY_OPS[a.name]
        assert cls.name == f"nn.{a.name}" and getattr(nn, cls.__name__) is cls
        assert cls(x).result.type == T((2, 3))
    assert nn.LeakyReluOp.name == "nn.leaky_relu" and nn.IdentityOp.name == "nn.identity"
    for name in ("exp", "log", "neg", "sqrt", "reciprocal", "erf", "floor", "ceil", "cos", "acos",
                 "asin", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "round", "sign"):
        assert nn.UNARY_OPS[name].name == f"nn.{name}"
    i, = dialect_tests.values(T((2,), i64))
    with pytest.raises(VerifyException, match="operand must have a float element type, got tensor<2xi64>"):
        nn.ExpOp(i)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


# inputs inside each function's domain
DOMAIN = {"log": lambda x: np.abs(x) + 0.1, "sqrt": lambda x: np.abs(x) + 0.1,
          "acos": lambda x: np.tanh(x), "asin": lambda x: np.tanh(x), "atanh": lambda x: np.tanh(x),
          "acosh": lambda x: np.abs(x) + 1}


def test_reference_every_unary_op_has_an_independent_check():
    assert set(reference_tests.INDEPENDENT_UNARY) == set(nn.UNARY_OPS)


@pytest.mark.parametrize("name", sorted(nn.UNARY_OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_unary(name, dtype):
    x = DOMAIN.get(name, lambda v: v)(reference_tests.randn(3, 5, dtype=dtype) * 2)
    if name == "round":
        x[0] = [0.5, 1.5, 2.5, -0.5, -2.5]  # ties go to the even neighbour
    y = reference_tests.run1([x], lambda emit, a: emit(nn.UNARY_OPS[name](a)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, reference_tests.INDEPENDENT_UNARY[name](x.astype(np.float64)), rtol=tol, atol=tol)


@st.composite
def broadcast_pair(draw):
    out = draw(st.lists(st.sampled_from([1, 2, 3, 5]), max_size=4))
    def operand():
        k = draw(st.integers(0, len(out)))
        return tuple(draw(st.sampled_from([d, 1])) for d in out[len(out) - k:])
    return operand(), operand()


BINARY_FORMULAS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
                   "div": lambda a, b: a / b, "max": max, "min": min, "pow": lambda a, b: a ** b,
                   "mod": lambda a, b: a % b, "fmod": math.fmod}


@given(broadcast_pair(), st.sampled_from(sorted(nn.BINARY_OPS)))
@settings(max_examples=60, deadline=None)
def test_reference_binary_broadcasting(shapes, name):
    a = reference_tests.rng.uniform(0.5, 2.0, shapes[0]).astype(np.float32)
    b = reference_tests.rng.uniform(0.5, 2.0, shapes[1]).astype(np.float32)
    y = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.BINARY_OPS[name](x, z)))
    out = np.broadcast_shapes(a.shape, b.shape)
    assert y.shape == out
    # Broadcasting by explicit index arithmetic: size-1 dims read index 0.
    f = BINARY_FORMULAS[name]
    for idx in np.ndindex(*out):
        ia = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - a.ndim:], a.shape))
        ib = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - b.ndim:], b.shape))
        assert y[idx] == pytest.approx(f(float(a[ia]), float(b[ib])), rel=1e-5)


def test_reference_integer_binary_keeps_dtype():
    a, b = np.array([1, 2, 3], np.int64), np.array([10], np.int64)
    assert reference_tests.run1([a, b], lambda emit, x, z: emit(nn.AddOp(x, z))).tolist() == [11, 12, 13]


def _c_div(a: int, b: int) -> int:  # C's truncating division
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reference_integer_division_and_remainders(dtype):
    """div truncates toward zero (C, ONNX), mod takes the divisor's sign, fmod the
    dividend's; a zero divisor gives 0."""
    a = np.array([7, -7, 7, -7, 6, 0, 5, -5], dtype)
    b = np.array([2, 2, -2, -2, 3, 4, 0, 0], dtype)
    formulas = {"div": lambda x, y: _c_div(x, y) if y else 0,
                "mod": lambda x, y: x % y if y else 0,
                "fmod": lambda x, y: x - y * _c_div(x, y) if y else 0}
    for name, f in formulas.items():
        y = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.BINARY_OPS[name](x, z)))
        assert y.dtype == dtype and y.tolist() == [f(int(x), int(z)) for x, z in zip(a, b)], name


def test_reference_float_remainders_keep_signs():
    a = np.array([5.5, -5.5, 5.5, -5.5, 4.0, -4.0], np.float64)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, 2.0], np.float64)
    mod = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.ModOp(x, z)))
    fmod = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.FmodOp(x, z)))
    assert mod.tolist() == [x % z for x, z in zip(a, b)]  # Python's % takes the divisor's sign
    assert fmod.tolist() == [math.fmod(x, z) for x, z in zip(a, b)]


COMPARE_FORMULAS = {"equal": lambda a, b: a == b, "less": lambda a, b: a < b,
                    "less_equal": lambda a, b: a <= b, "greater": lambda a, b: a > b,
                    "greater_equal": lambda a, b: a >= b}


LOGICAL_FORMULAS = {"and": lambda a, b: a and b, "or": lambda a, b: a or b, "xor": lambda a, b: a != b}


def _pairwise(y, a, b, f):
    """y against f applied element by element to a and b broadcast by index arithmetic."""
    out = np.broadcast_shapes(a.shape, b.shape)
    assert y.shape == out and y.dtype == np.bool_
    for idx in np.ndindex(*out):
        ia = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - a.ndim:], a.shape))
        ib = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - b.ndim:], b.shape))
        assert y[idx] == f(a[ia].item(), b[ib].item())


@given(broadcast_pair(), st.sampled_from(sorted(nn.COMPARE)), st.sampled_from([np.float32, np.int64]))
@settings(max_examples=60, deadline=None)
def test_reference_comparisons(shapes, name, dtype):
    a = reference_tests.rng.integers(-2, 3, shapes[0]).astype(dtype)  # small integers: many ties
    b = reference_tests.rng.integers(-2, 3, shapes[1]).astype(dtype)
    if dtype == np.float32 and a.size:
        a.reshape(-1)[0] = np.nan  # NaN compares false, even to itself
    y = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.COMPARE_OPS[name](x, z)))
    _pairwise(y, a, b, COMPARE_FORMULAS[name])


@given(broadcast_pair(), st.sampled_from(sorted(nn.LOGICAL)))
@settings(max_examples=40, deadline=None)
def test_reference_logical(shapes, name):
    a, b = reference_tests.rng.integers(0, 2, shapes[0]).astype(bool), reference_tests.rng.integers(0, 2, shapes[1]).astype(bool)
    y = reference_tests.run1([a, b], lambda emit, x, z: emit(nn.LOGICAL_OPS[name](x, z)))
    _pairwise(y, a, b, LOGICAL_FORMULAS[name])
    assert (reference_tests.run1([a], lambda emit, x: emit(nn.NotOp(x))).reshape(-1).tolist()
            == [not v for v in a.reshape(-1).tolist()])
    assert reference_tests.run1([b, b], lambda emit, x, z: emit(nn.EqualOp(x, z))).all()


def test_reference_select_broadcasts_all_three():
    c = np.array([[True], [False]])
    x, y = reference_tests.randn(3), reference_tests.randn(2, 1, 3)
    got = reference_tests.run1([c, x, y], lambda emit, p, q, r: emit(nn.SelectOp(p, q, r)))
    assert got.shape == (2, 2, 3)
    for i, j, k in np.ndindex(2, 2, 3):
        assert got[i, j, k] == (x[k] if c[j, 0] else y[i, 0, k])


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_reference_is_inf_and_is_nan(pos, neg):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 1e308, -3.0])
    y = reference_tests.run1([x], lambda emit, a: emit(nn.IsInfOp(a, pos, neg)))
    assert y.tolist() == [bool(pos), bool(neg), False, False, False, False]
    assert reference_tests.run1([x], lambda emit, a: emit(nn.IsNanOp(a))).tolist() == [math.isnan(v) for v in x]



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


POSITIVE = {"log", "sqrt", "reciprocal"}


@pytest.mark.parametrize("name", sorted(nn.UNARY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lowered_unary(name, dtype):
    elt = nn.element_type_of(dtype)
    m = loop_tests.build([loop_tests.T(DYN, 5, elt=elt)], lambda e, x: e(nn.UNARY_OPS[name](x)))
    x = loop_tests.randn(3, 5, dtype=dtype, scale=3.0)
    if name in POSITIVE:
        x = np.abs(x) + dtype(0.1)
    x[0, :4] = [0.0, -40.0, 40.0, 1e-3] if name not in POSITIVE else [1e-3, 40.0, 1.0, 7.0]
    x[1, :4] = [0.5, 1.5, -2.5, -0.0]  # ties (round: to even) and a negative zero
    x = loop_tests.DOMAIN.get(name, lambda v: v)(x)
    loop_tests.check(m, [x])


def test_lowered_unary_special_values():
    """NaN and infinities go through like numpy (relu/max propagate NaN)."""
    vals = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 88.0, -88.0]], np.float32)
    for name in ("relu", "sigmoid", "tanh", "softplus", "step", "abs", "silu", "gaussian", "elu",
                 "leaky_relu", "exp"):
        m = loop_tests.build([loop_tests.T(1, 7)], lambda e, x: e(nn.UNARY_OPS[name](x)))
        loop_tests.check(m, [vals], atol=1e-30)


BROADCASTS = [((3, 1, 5), (4, 1)), ((2, 3), (3,)), ((1,), (7,)), ((), (2, 3)), ((5, 1), (1, 1)),
              ((DYN, 3), (3,)), ((DYN, 1), (1, 4)), ((2, 7), (2, 7)), ((1, 1, 1), (1,))]


@pytest.mark.parametrize("name", sorted(nn.BINARY))
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_lowered_binary_broadcasting(name, shapes):
    a_shape, b_shape = shapes
    m = loop_tests.build([loop_tests.T(*a_shape), loop_tests.T(*b_shape)], lambda e, a, b: e(nn.BINARY_OPS[name](a, b)))
    concrete = [tuple(4 if d == DYN else d for d in s) for s in shapes]
    a, b = (loop_tests.randn(*s) for s in concrete)
    if name == "pow":
        a = np.asarray(np.abs(a) + 0.5, np.float32)
    if name == "div":
        b = np.where(np.abs(b) < 0.1, np.float32(0.5), b)
    loop_tests.check(m, [a, b])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "max", "min"])
@pytest.mark.parametrize("elt", [i8, i32, i64])
def test_lowered_binary_integers(name, elt):
    m = loop_tests.build([loop_tests.T(2, 3, elt=elt), loop_tests.T(3, elt=elt)], lambda e, a, b: e(nn.BINARY_OPS[name](a, b)))
    dt = nn.numpy_dtype(elt)
    loop_tests.check(m, [loop_tests.rng.integers(-50, 50, (2, 3)).astype(dt), loop_tests.rng.integers(-50, 50, (3,)).astype(dt)])


@pytest.mark.parametrize("name", ["div", "mod", "fmod"])
@pytest.mark.parametrize("elt", [i8, i32, i64])
def test_lowered_integer_division_edge_cases(name, elt):
    """Truncating div, floor mod, C fmod; a zero divisor gives 0 and INT_MIN / -1
    wraps, where the plain CPU instructions would trap."""
    dt = nn.numpy_dtype(elt)
    low = np.iinfo(dt).min
    a = np.array([[7, -7, 7, -7, 9, low, low, 5], [0, 3, -3, 100, -100, 1, -1, low]], dt)
    b = np.array([2, 2, -2, -2, 0, -1, 1, 3], dt)
    m = loop_tests.build([loop_tests.T(DYN, 8, elt=elt), loop_tests.T(8, elt=elt)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y)))
    loop_tests.check(m, [a, b])


@pytest.mark.parametrize("name", ["mod", "fmod"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lowered_float_remainders(name, dtype):
    a = np.array([[5.5, -5.5, 5.5, -5.5, 4.0, -4.0, 1e30, 3.0, np.inf, np.nan]], dtype)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, 2.0, 7.0, 0.0, 2.0, 2.0], dtype)
    m = loop_tests.build([loop_tests.T(1, 10, elt=nn.element_type_of(dtype)), loop_tests.T(10, elt=nn.element_type_of(dtype))],
              lambda e, x, y: e(nn.BINARY_OPS[name](x, y)))
    loop_tests.check(m, [a, b], atol=0, rtol=0)


@pytest.mark.parametrize("name", sorted(nn.COMPARE))
@pytest.mark.parametrize("elt", [f32, f64, i8, i32, i64])
@pytest.mark.parametrize("shapes", [((DYN, 3), (3,)), ((2, 1), (1, 4)), ((), (5,))], ids=str)
def test_lowered_comparisons(name, elt, shapes):
    m = loop_tests.build([loop_tests.T(*s, elt=elt) for s in shapes], lambda e, a, b: e(nn.COMPARE_OPS[name](a, b)))
    a, b = (loop_tests.rng.integers(-2, 3, tuple(4 if d == DYN else d for d in s)).astype(nn.numpy_dtype(elt))
            for s in shapes)  # small integers: many ties
    if elt in (f32, f64):
        a.reshape(-1)[:1] = np.nan
    loop_tests.check(m, [a, b])


def test_lowered_comparisons_with_nan_and_infinities():
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], np.float32)
    a, b = np.repeat(vals, 6)[None], np.tile(vals, 6)[None]
    for name in nn.COMPARE:
        loop_tests.check(loop_tests.build([loop_tests.T(1, 36), loop_tests.T(1, 36)], lambda e, x, y: e(nn.COMPARE_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("name", sorted(nn.LOGICAL))
def test_lowered_logical(name):
    m = loop_tests.build([loop_tests.T(DYN, 1, 4, elt=i1), loop_tests.T(3, 1, elt=i1)], lambda e, a, b: e(nn.LOGICAL_OPS[name](a, b)))
    loop_tests.check(m, [loop_tests.rng.integers(0, 2, (2, 1, 4)).astype(bool), loop_tests.rng.integers(0, 2, (3, 1)).astype(bool)])


def test_lowered_not_and_bool_equality():
    def make(e, a, b):
        return e(nn.NotOp(a)), e(nn.EqualOp(a, b))

    m = loop_tests.build([loop_tests.T(DYN, 5, elt=i1), loop_tests.T(5, elt=i1)], make)
    loop_tests.check(m, [loop_tests.rng.integers(0, 2, (3, 5)).astype(bool), loop_tests.rng.integers(0, 2, 5).astype(bool)])


def test_lowered_bool_bytes_other_than_0_and_1_read_as_true():
    """numpy bools are bytes; native code reads any nonzero byte as true."""
    m = loop_tests.build([loop_tests.T(6, elt=i1)], lambda e, a: e(nn.NotOp(a)))
    x = np.array([0, 1, 2, 255, 0, 128], np.uint8).view(np.bool_)
    assert loop_tests.native(m, [x], "lower-to-loops")[0].tolist() == [True, False, False, False, True, False]


@pytest.mark.parametrize("elt", [f32, f64, i8, i32, i64, i1])
def test_lowered_select(elt):
    dt = nn.numpy_dtype(elt)
    m = loop_tests.build([loop_tests.T(DYN, 1, elt=i1), loop_tests.T(4, elt=elt), loop_tests.T(DYN, 4, elt=elt)],
              lambda e, c, x, y: e(nn.SelectOp(c, x, y)))
    c = loop_tests.rng.integers(0, 2, (3, 1)).astype(bool)
    x, y = (loop_tests.rng.integers(-9, 9, s).astype(dt) for s in ((4,), (3, 4)))
    loop_tests.check(m, [c, x, y])


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lowered_is_inf_and_is_nan(pos, neg, dtype):
    def make(e, x):
        return e(nn.IsInfOp(x, pos, neg)), e(nn.IsNanOp(x))

    m = loop_tests.build([loop_tests.T(DYN, 4, elt=nn.element_type_of(dtype))], make)
    x = np.array([[np.inf, -np.inf, np.nan, -np.nan], [0.0, 1e30, -3.0, np.finfo(dtype).max]], dtype)
    loop_tests.check(m, [x])


@pytest.mark.parametrize("src,dst", [(np.float32, np.float64), (np.float64, np.float32),
                                     (np.float32, np.float32)])
def test_lowered_cast_between_float_types(src, dst):
    """Bit for bit numpy's astype: round to nearest even, overflow to inf,
    subnormals, signed zeros, NaN and infinities."""
    x = loop_tests.randn(3, 8, dtype=np.float64, scale=10.0)
    x[0] = [np.nan, np.inf, -np.inf, -0.0, 1e300, -1e-320, 1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24]
    x[1] = [3.4028235e38, 3.4028236e38, 1e-40, 2.0 ** -149, 2.0 ** -150, -(2.0 ** -150) * 1.5, 0.1, 1 / 3]
    with np.errstate(over="ignore"):  # 1e300 and 3.4028236e38 overflow float32: inf
        x = x.astype(src)
        want = x.astype(dst)
    m = loop_tests.build([loop_tests.T(DYN, 8, elt=nn.element_type_of(src))], lambda e, a: e(nn.CastOp(a, dst)))
    with np.errstate(over="ignore"):
        loop_tests.check(m, [x])
    (got,) = loop_tests.native(m, [x], "lower-to-loops")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_lowered_cast_to_f16_is_refused_natively():
    m = loop_tests.build([loop_tests.T(3)], lambda e, a: e(nn.CastOp(a, np.float16)))
    with pytest.raises(ncc.NccError, match="nn.cast: the result has element type f16; lower-to-loops "
                                           "supports f32, f64, i8, ui8, i32, i64, i1"):
        ncc.compile(m, cache=False)



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences and PyTorch (test_autodiff.py)


# name -> (torch function, input domain)
UNARY_CASES = {
    "identity": (lambda x: x, None), "neg": (torch and torch.neg, None), "exp": (torch and torch.exp, None),
    "log": (torch and torch.log, (0.2, 3)), "sqrt": (torch and torch.sqrt, (0.2, 3)),
    "reciprocal": (torch and torch.reciprocal, (0.3, 3)), "relu": (torch and torch.relu, None),
    "sigmoid": (torch and torch.sigmoid, None), "tanh": (torch and torch.tanh, None),
    "leaky_relu": (torch and (lambda x: torch.nn.functional.leaky_relu(x, 0.01)), None),
    "elu": (torch and torch.nn.functional.elu, None), "softplus": (torch and torch.nn.functional.softplus, None),
    "silu": (torch and torch.nn.functional.silu, None),
    "gelu": (torch and torch.nn.functional.gelu, None),
    "gelu_tanh": (torch and (lambda x: torch.nn.functional.gelu(x, approximate="tanh")), None), "sin": (torch and torch.sin, None),
    "cos": (torch and torch.cos, None), "gaussian": (torch and (lambda x: torch.exp(-x * x)), None),
    "abs": (torch and torch.abs, None), "erf": (torch and torch.erf, None),
    "sinh": (torch and torch.sinh, None), "cosh": (torch and torch.cosh, None),
    "asin": (torch and torch.asin, (-0.8, 0.8)), "acos": (torch and torch.acos, (-0.8, 0.8)),
    "atan": (torch and torch.atan, None), "asinh": (torch and torch.asinh, None),
    "acosh": (torch and torch.acosh, (1.2, 3)), "atanh": (torch and torch.atanh, (-0.8, 0.8)),
    "floor": (torch and torch.floor, None), "ceil": (torch and torch.ceil, None),
    "round": (torch and torch.round, None), "sign": (torch and torch.sign, None),
    "step": (torch and (lambda x: (x > 0).to(x.dtype)), None),
    "relu6": (torch and torch.nn.functional.relu6, (-3, 9)),  # both kinks
}


def test_every_unary_op_has_a_case():
    assert set(UNARY_CASES) == set(nn.UNARY_OPS)


@pytest.mark.parametrize("name", sorted(UNARY_CASES))
def test_unary_vjp(name):
    fn, domain = UNARY_CASES[name]
    x = rand(3, 4, *(() if domain is None else ()), low=(domain or (-2, 2))[0], high=(domain or (-2, 2))[1])
    x[np.abs(x - np.round(x)) < 0.05] += 0.1  # away from floor/round/step kinks
    x[np.abs(x) < 0.05] += 0.1
    check_rule(lambda a: nn.UNARY_OPS[name](a), [x], torch_fn=fn)


BINARY_TORCH = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "max": lambda a, b: torch.maximum(a, b),
    "min": lambda a, b: torch.minimum(a, b), "pow": lambda a, b: torch.pow(a, b),
    "mod": lambda a, b: torch.remainder(a, b), "fmod": lambda a, b: torch.fmod(a, b),
}


@pytest.mark.parametrize("name", sorted(BINARY_TORCH))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((4,), ())])
def test_binary_vjp_with_broadcasting(name, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if name in ("div", "mod", "fmod"):
        b = np.asarray(np.sign(b) * (np.abs(b) + 0.5))
    if name == "pow":
        a = np.asarray(np.abs(a) + 0.5)
    if name in ("mod", "fmod"):  # away from the jumps of the remainder
        r = np.fmod(a, np.broadcast_to(b, np.broadcast(a, b).shape)) / np.abs(
            np.broadcast_to(b, np.broadcast(a, b).shape))
        a = a + 0.3 * (np.abs(r) < 0.05) * np.abs(np.broadcast_to(b, np.broadcast(a, b).shape)).min()
    check_rule(lambda x, y: nn.BINARY_OPS[name](x, y), [a, b],
               torch_fn=BINARY_TORCH[name] if torch else None)


def test_max_min_share_ties_like_torch():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 0.0, 4.0]])
    check_rule(lambda x, y: nn.BINARY_OPS["max"](x, y), [a, b],
               torch_fn=torch and (lambda x, y: torch.maximum(x, y)))


def test_select_vjp():
    from xdsl.dialects.builtin import i1

    types = [TensorType(i1, [3, 4]), TensorType(f64, [3, 4]), TensorType(f64, [4])]
    block = Block(arg_types=types)
    op = nn.SelectOp(*block.args)
    block.add_ops([op, func.ReturnOp(op.result)])
    m = ModuleOp([func.FuncOp("f", (types, [op.result.type]), Region([block]))])
    c = RNG.random((3, 4)) > 0.5
    a, b = rand(3, 4), rand(4)
    cot = rand(3, 4)
    ga, gb = vjp_reference(m, [c, a, b], cot)
    np.testing.assert_allclose(ga, np.where(c, cot, 0))
    np.testing.assert_allclose(gb, np.where(c, 0, cot).sum(0))



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


UNARY = ["Relu", "Sigmoid", "Tanh", "Softplus", "Exp", "Neg", "Abs", "Erf", "Floor", "Ceil",
         "Sin", "Cos", "Identity"]


@pytest.mark.parametrize("op", UNARY + ["Log", "Sqrt", "Reciprocal"])
def test_import_unary(op):
    x = import_tests.x_of(3, 4, positive=op in ("Log", "Sqrt", "Reciprocal"))
    import_tests.check(import_tests.model([helper.make_node(op, ["x"], ["y"])], {"x": [3, 4]}), {"x": x})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean"])
def test_import_binary_broadcast(op):
    import_tests.check(import_tests.model([helper.make_node(op, ["a", "b"], ["y"])], {"a": [2, 3, 4], "b": [3, 1]}),
          {"a": import_tests.x_of(2, 3, 4), "b": import_tests.x_of(3, 1)})


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_import_variadic(op):
    import_tests.check(import_tests.model([helper.make_node(op, ["a", "b", "c"], ["y"])], {"a": [4], "b": [4], "c": [4]}),
          {"a": import_tests.x_of(4), "b": import_tests.x_of(4), "c": import_tests.x_of(4)})


def test_import_pow_with_a_constant_exponent():
    m = import_tests.model([helper.make_node("Pow", ["x", "e"], ["y"])], {"x": [5]},
              inits={"e": np.array(3.0, np.float32)})
    import_tests.check(m, {"x": import_tests.x_of(5, positive=True)})


@pytest.mark.parametrize("op,attrs", [("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}),
                                      ("Elu", {}), ("Elu", {"alpha": 0.5})])
def test_import_parametric_activations(op, attrs):
    import_tests.check(import_tests.model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": [2, 5]}), {"x": import_tests.x_of(2, 5)})


@pytest.mark.parametrize("op,attrs", [
    ("HardSigmoid", {"alpha": 0.3}), ("HardSwish", {}), ("Selu", {}), ("Celu", {"alpha": 2.0}),
    ("Softsign", {}), ("Mish", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("Tan", {}),
])
def test_import_composite_activations(op, attrs):
    opset = 20 if op == "Gelu" else 18
    import_tests.check(import_tests.model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": [3, 4]}, opset=opset),
          {"x": import_tests.x_of(3, 4)}, rtol=1e-4, atol=1e-5)


def test_import_prelu():
    import_tests.check(import_tests.model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": [2, 3, 4]},
                inits={"s": import_tests.x_of(3, 1)}), {"x": import_tests.x_of(2, 3, 4)})


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_import_clip(opset):
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)
        m = import_tests.model([node], {"x": [3, 4]}, opset=opset)
    else:
        node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
        m = import_tests.model([node], {"x": [3, 4]}, opset=opset,
                  inits={"lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32)})
    import_tests.check(m, {"x": import_tests.x_of(3, 4)})


def test_import_dropout_training_mode():
    """A constant false training_mode is inference; true, or a run-time input, is refused."""
    def dropout(training):
        nodes = [helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="d")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", import_tests.F, [2, 3])]
                                  + ([helper.make_tensor_value_info("t", TensorProto.BOOL, [])]
                                     if training is None else []),
                                  [helper.make_tensor_value_info("y", import_tests.F, None)],
                                  [numpy_helper.from_array(np.array(0.5, np.float32), "r")]
                                  + ([] if training is None else
                                     [numpy_helper.from_array(np.array(training), "t")]))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = import_tests.x_of(2, 3)
    np.testing.assert_array_equal(ncc.reference.run(import_onnx(dropout(False)), [x])[0], x)
    for training in (True, None):
        assert "training mode (random dropout) is not supported" in import_tests.diag(dropout(training))


def test_import_cast_of_a_value_to_its_own_type_and_its_diagnostic():
    import_tests.check(import_tests.model([helper.make_node("Cast", ["x"], ["y"], to=import_tests.F)], {"x": [3]}), {"x": import_tests.x_of(3)})
    m = import_tests.model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING, name="c")], {"x": [3]})
    assert import_tests.diag(m) == ("g: error: the target type has element type STRING, which ncc does not support "
                       "(supported: FLOAT, DOUBLE, FLOAT16, INT64, INT32, INT8, UINT8, BOOL)")


D, F16 = TensorProto.DOUBLE, TensorProto.FLOAT16


@pytest.mark.parametrize("src,dst,op", [(import_tests.F, D, "Cast"), (D, import_tests.F, "Cast"), (import_tests.F, F16, "Cast"), (F16, import_tests.F, "Cast"),
                                        (F16, D, "Cast"), (D, F16, "Cast"), (import_tests.F, D, "CastLike")])
def test_import_cast_between_float_types(src, dst, op):
    """nn.cast against onnxruntime, bit for bit; natively where lower-to-loops
    has both types (f32, f64), else a clear refusal."""
    like = ["like"] if op == "CastLike" else []
    node = helper.make_node(op, ["x", *like], ["y"], **({"to": dst} if op == "Cast" else {}))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", src, [None, 4])]
                              + [helper.make_tensor_value_info(n, dst, [1]) for n in like],
                              [helper.make_tensor_value_info("y", dst, [None, 4])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = min(m.ir_version, 10)
    sdt, ddt = (helper.tensor_dtype_to_np_dtype(t) for t in (src, dst))
    x = (import_tests.RNG.standard_normal((3, 4)) * 100).astype(sdt)
    x[0] = [np.nan, -np.inf, -0.0, 1e-5]
    feeds = {"x": x, **{n: np.zeros(1, ddt) for n in like}}
    (want,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    module = import_onnx(m)
    assert "nn.cast" in ncc.print_module(module)
    runs = [ncc.reference.run(module, feeds)[0]]
    if F16 in (src, dst):
        with pytest.raises(NccError, match="element type f16; lower-to-loops supports f32, f64"):
            ncc.compile(m, cache=False)
    else:
        runs.append(ncc.compile(m, cache=False).run(feeds)[0])
    for got in runs:
        assert got.dtype == want.dtype == ddt
        np.testing.assert_array_equal(got, want)


def inferred_model(nodes, inputs, outputs=("y",), opset=18):
    """inputs: {name: (element type, shape)}; outputs typed by inference."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, e, s) for n, (e, s) in inputs.items()],
        [helper.make_empty_tensor_value_info(n) for n in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 10)
    return m


def check_both(m, feeds, rtol=1e-5, atol=1e-6, oracle="ort"):
    """The reference run and the native run of the imported model equal the oracle's."""
    if oracle == "ort":
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    else:
        from onnx.reference import ReferenceEvaluator
        want = ReferenceEvaluator(m).run(None, feeds)
    module = import_onnx(m)
    native = ncc.compile(module, cache=False).run(feeds)
    for how, got in (("reference", ncc.reference.run(module, feeds)), ("native", native)):
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype, how
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=how)
    return module


@pytest.mark.parametrize("op", ["Acos", "Asin", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
                                "Round", "Sign"])
def test_import_elementwise_math(op):
    x = import_tests.x_of(3, 4) * 2
    x = {"Acos": np.tanh, "Asin": np.tanh, "Atanh": np.tanh, "Acosh": lambda v: np.abs(v) + 1}.get(
        op, lambda v: v)(x).astype(np.float32)
    if op in ("Round", "Sign"):
        x[0] = [0.5, -1.5, 2.5, 0.0]  # ties to even; sign of zero
    check_both(inferred_model([helper.make_node(op, ["x"], ["y"])], {"x": (import_tests.F, [3, 4])}), {"x": x})


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
@pytest.mark.parametrize("elem", [import_tests.F, import_tests.I64])
def test_import_comparisons(op, elem):
    dt = helper.tensor_dtype_to_np_dtype(elem)
    a, b = import_tests.RNG.integers(-2, 3, (2, 3, 4)).astype(dt), import_tests.RNG.integers(-2, 3, (3, 1)).astype(dt)
    m = inferred_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": (elem, [2, 3, 4]), "b": (elem, [3, 1])})
    check_both(m, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["And", "Or", "Xor", "Equal"])
def test_import_logical(op):
    a, b = import_tests.RNG.integers(0, 2, (2, 3)).astype(bool), import_tests.RNG.integers(0, 2, (3,)).astype(bool)
    nodes = [helper.make_node(op, ["a", "b"], ["t"]), helper.make_node("Not", ["t"], ["y"])]
    check_both(inferred_model(nodes, {"a": (import_tests.B, [2, 3]), "b": (import_tests.B, [3])}), {"a": a, "b": b})


@pytest.mark.parametrize("elem", [import_tests.F, import_tests.I64])
def test_import_where(elem):
    dt = helper.tensor_dtype_to_np_dtype(elem)
    c = import_tests.RNG.integers(0, 2, (3, 1)).astype(bool)
    x, y = import_tests.RNG.integers(-9, 9, (4,)).astype(dt), import_tests.RNG.integers(-9, 9, (2, 1, 4)).astype(dt)
    m = inferred_model([helper.make_node("Where", ["c", "x", "y"], ["z"])],
                    {"c": (import_tests.B, [3, 1]), "x": (elem, [4]), "y": (elem, [2, 1, 4])}, outputs=("z",))
    check_both(m, {"c": c, "x": x, "y": y})


@pytest.mark.parametrize("attrs", [{}, {"detect_negative": 0}, {"detect_positive": 0}])
def test_import_isnan_isinf(attrs):
    x = np.array([[np.nan, np.inf, -np.inf, 0.0], [1.0, -1e30, 3.0, np.nan]], np.float32)
    nodes = [helper.make_node("IsInf", ["x"], ["i"], **attrs), helper.make_node("IsNaN", ["x"], ["n"])]
    check_both(inferred_model(nodes, {"x": (import_tests.F, [2, 4])}, outputs=("i", "n")), {"x": x})


@pytest.mark.parametrize("fmod", [0, 1])
def test_import_mod_and_integer_div(fmod):
    a = np.array([[5, -5, 5, -5, 7, 0]], np.int64)
    b = np.array([3, 3, -3, -3, 7, 2], np.int64)
    nodes = [helper.make_node("Mod", ["a", "b"], ["m"], fmod=fmod), helper.make_node("Div", ["a", "b"], ["d"])]
    check_both(inferred_model(nodes, {"a": (import_tests.I64, [1, 6]), "b": (import_tests.I64, [6])}, outputs=("m", "d")), {"a": a, "b": b})


@pytest.mark.parametrize("fmod", [0, 1])
def test_import_float_mod(fmod):
    """fmod=1 is C's fmod; ONNX requires it on floats (onnxruntime refuses fmod=0
    there), onnx's reference takes numpy's floor modulo for fmod=0, as nn.mod does."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 4.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0], np.float32)
    m = inferred_model([helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod)], {"a": (import_tests.F, [5]), "b": (import_tests.F, [5])})
    check_both(m, {"a": a, "b": b}, oracle="ort" if fmod else "onnx")


@pytest.mark.parametrize("op,attrs", [("ThresholdedRelu", {}), ("ThresholdedRelu", {"alpha": 0.5}),
                                      ("Shrink", {}), ("Shrink", {"lambd": 1.0, "bias": 0.5}),
                                      ("Swish", {}), ("Swish", {"alpha": 0.5})])
def test_import_select_based_activations(op, attrs):
    x = np.array([[-2.0, -1.0, -0.5, 0.0], [0.5, 1.0, 1.5, 3.0]], np.float32)
    opset = 24 if op == "Swish" else 18
    m = inferred_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (import_tests.F, [2, 4])}, opset=opset)
    check_both(m, {"x": x}, oracle="onnx" if op == "Swish" else "ort")  # Swish: opset 24


def test_import_cast_to_and_from_bool():
    x = np.array([[0.0, -0.0, 1.5, np.nan], [np.inf, -2.0, 0.0, 1e-30]], np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["b"], to=import_tests.B),
             helper.make_node("Cast", ["b"], ["f"], to=import_tests.F),
             helper.make_node("Cast", ["b"], ["i"], to=import_tests.I64),
             helper.make_node("Cast", ["i"], ["b2"], to=import_tests.B),
             helper.make_node("CastLike", ["b2", "x"], ["y"])]
    check_both(inferred_model(nodes, {"x": (import_tests.F, [2, 4])}, outputs=("b", "f", "i", "y")), {"x": x})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


def test_import_swiglu_against_onnx_reference():
    # onnxruntime has no Swish-24 kernel for SwiGLU's function body
    from onnx.reference import ReferenceEvaluator

    for alpha in (1.0, 1.702):
        node = helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=alpha)
        m = decomposition_tests.model([node], {"a": (decomposition_tests.F, ["N", 6]), "b": (decomposition_tests.F, ["N", 6])}, opset=28)
        feeds = {"a": decomposition_tests.randn(3, 6), "b": decomposition_tests.randn(3, 6)}
        want = ReferenceEvaluator(m).run(None, feeds)
        decomposition_tests.same(ncc.reference.run(import_onnx(m), feeds), want, 1e-5, 1e-6)
        decomposition_tests.same(ncc.compile(m).run(feeds), want, 1e-5, 1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_import_swish(alpha):
    node = helper.make_node("Swish", ["x"], ["y"], alpha=alpha)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [3, 4])}, opset=24), {"x": decomposition_tests.randn(3, 4)})



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("name", sorted(nn.UNARY))
def test_export_unary(name):
    x = export_tests.randn(3, 4)
    if name in ("log", "sqrt", "reciprocal"):
        x = np.abs(x) + 0.1
    if name in ("acos", "asin", "atanh"):
        x = np.tanh(x)
    if name == "acosh":
        x = np.abs(x) + 1
    if name == "round":
        x[0] = [0.5, 1.5, 2.5, -2.5]  # ties to even
    export_tests.check(loop_tests.build([loop_tests.T(None, 4)], lambda e, a: e(nn.UNARY_OPS[name](a))), [x])


@pytest.mark.parametrize("name", sorted(nn.BINARY))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 1, 3), (4, 1)), ((3,), (2, 3))])
def test_export_binary_broadcasting(name, shapes):
    a, b = export_tests.randn(*shapes[0]), export_tests.randn(*shapes[1])
    if name == "pow":
        a = np.abs(a) + 0.1
    export_tests.check(loop_tests.build([loop_tests.T(*shapes[0]), loop_tests.T(*shapes[1])], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "max", "min", "div", "mod", "fmod"])
def test_export_binary_integers(name):
    a, b = export_tests.rng.integers(-9, 9, (2, 3)), np.array([3, -2, 4])  # mixed signs, no zero divisor
    export_tests.check(loop_tests.build([loop_tests.T(2, 3, elt=i64), loop_tests.T(3, elt=i64)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("src,dst", [(np.float32, np.float64), (np.float64, np.float32),
                                     (np.float32, np.float16), (np.float16, np.float64)])
def test_export_cast(src, dst):
    model = export_tests.check(loop_tests.build([loop_tests.T(None, 3, elt=nn.element_type_of(src))], lambda e, x: e(nn.CastOp(x, dst))),
                  [export_tests.randn(4, 3, dtype=src)], tol=0)
    assert export_tests.op_types(model) == ["Cast"]


@pytest.mark.parametrize("name", ["mod", "fmod"])
def test_export_float_remainders_signs(name):
    """nn.mod on floats (ONNX Mod takes floats only with fmod=1) keeps the divisor's sign."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 4.0, -4.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, -3.0], np.float32)
    export_tests.check(loop_tests.build([loop_tests.T(6), loop_tests.T(6)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y))), [a, b], tol=0)


@pytest.mark.parametrize("name", sorted(nn.COMPARE))
@pytest.mark.parametrize("elt", [nn.f32, i64])
def test_export_comparisons(name, elt):
    dt = nn.numpy_dtype(elt)
    a, b = export_tests.rng.integers(-2, 3, (2, 3)).astype(dt), export_tests.rng.integers(-2, 3, (3,)).astype(dt)
    export_tests.check(loop_tests.build([loop_tests.T(2, 3, elt=elt), loop_tests.T(3, elt=elt)], lambda e, x, y: e(nn.COMPARE_OPS[name](x, y))), [a, b])


def test_export_logical_select_and_float_tests():
    def make(e, p, q, x):
        m = e(nn.XorOp(e(nn.AndOp(p, q)), e(nn.OrOp(p, e(nn.NotOp(q))))))
        bad = e(nn.OrOp(e(nn.IsNanOp(x)), e(nn.IsInfOp(x, detect_negative=0))))
        neg_inf = e(nn.IsInfOp(x, detect_positive=0))
        return (e(nn.SelectOp(m, x, e(nn.NegOp(x)))), e(nn.EqualOp(m, bad)), neg_inf,
                e(nn.SelectOp(bad, p, q)))
    x = np.array([[np.nan, np.inf, -np.inf, 1.0], [-2.0, 3.0, 0.0, -0.5]], np.float32)
    p, q = export_tests.rng.integers(0, 2, (2, 4)).astype(bool), export_tests.rng.integers(0, 2, (4,)).astype(bool)
    model = export_tests.check(loop_tests.build([loop_tests.T(None, 4, elt=nn.i1), loop_tests.T(4, elt=nn.i1), loop_tests.T(None, 4)], make), [p, q, x])
    assert {"Xor", "And", "Or", "Not", "IsNaN", "IsInf", "Where", "Equal"} <= set(export_tests.op_types(model))


