"""ncc.reference against independent formulations: naive loops, math-module formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp
from xdsl.ir import Block, Region

from ncc import reference
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import initial_value
from ncc.dialects.nn import element_type_of, tensor_type as T
from ncc.ir import parse_module, verify_module

rng = np.random.default_rng(0)


def run1(arrays, make, weights=(), **kw):
    """Build @main(arrays...) { make(emit, args...) } with the Python API, run it."""
    types = [T(a.shape, element_type_of(a.dtype)) for a in arrays]
    block = Block(arg_types=types)
    ops = []

    def emit(op):
        ops.append(op)
        return op.results[0]

    out = make(emit, *block.args)
    block.add_ops([*ops, func.ReturnOp(out)])
    m = ModuleOp([*weights, func.FuncOp("main", FunctionType.from_lists(types, [out.type]), Region(block))])
    verify_module(m)
    (y,) = reference.run(m, list(arrays), **kw)
    assert y.dtype == nn.numpy_dtype(out.type.element_type)
    return y


def randn(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# Elementwise


def _per_element(f):
    return lambda z: np.array([f(float(v)) for v in z.reshape(-1)]).reshape(z.shape)


INDEPENDENT_UNARY = {
    "identity": lambda z: z,
    "relu": _per_element(lambda v: v if v > 0 else 0.0),
    "sigmoid": _per_element(lambda v: 1 / (1 + math.exp(-v))),
    "tanh": _per_element(lambda v: (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1)),
    "leaky_relu": _per_element(lambda v: v if v > 0 else 0.01 * v),
    "elu": _per_element(lambda v: v if v > 0 else math.exp(v) - 1),
    "softplus": _per_element(lambda v: math.log(1 + math.exp(v))),
    "silu": _per_element(lambda v: v / (1 + math.exp(-v))),
    "sin": _per_element(math.sin),
    "gaussian": _per_element(lambda v: math.exp(-v * v)),
    "abs": _per_element(lambda v: -v if v < 0 else v),
    "step": _per_element(lambda v: 1.0 if v > 0 else 0.0),
    "exp": _per_element(math.exp),
    "log": _per_element(lambda v: math.log(abs(v))),
    "neg": _per_element(lambda v: -v),
    "sqrt": _per_element(lambda v: math.sqrt(abs(v))),
    "reciprocal": _per_element(lambda v: 1 / v),
    "erf": _per_element(math.erf),
    "floor": _per_element(math.floor),
    "ceil": _per_element(math.ceil),
    "cos": _per_element(math.cos),
    "acos": _per_element(math.acos), "asin": _per_element(math.asin),
    "atan": _per_element(math.atan), "sinh": _per_element(math.sinh),
    "cosh": _per_element(math.cosh), "asinh": _per_element(math.asinh),
    "acosh": _per_element(math.acosh), "atanh": _per_element(math.atanh),
    "round": _per_element(round),  # Python rounds half to even, as ONNX Round
    "sign": _per_element(lambda v: 0.0 if v == 0 else math.copysign(1.0, v)),
}
# inputs inside each function's domain
DOMAIN = {"log": lambda x: np.abs(x) + 0.1, "sqrt": lambda x: np.abs(x) + 0.1,
          "acos": lambda x: np.tanh(x), "asin": lambda x: np.tanh(x), "atanh": lambda x: np.tanh(x),
          "acosh": lambda x: np.abs(x) + 1}


def test_every_unary_op_has_an_independent_check():
    assert set(INDEPENDENT_UNARY) == set(nn.UNARY_OPS)


@pytest.mark.parametrize("name", sorted(nn.UNARY_OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary(name, dtype):
    x = DOMAIN.get(name, lambda v: v)(randn(3, 5, dtype=dtype) * 2)
    if name == "round":
        x[0] = [0.5, 1.5, 2.5, -0.5, -2.5]  # ties go to the even neighbour
    y = run1([x], lambda emit, a: emit(nn.UNARY_OPS[name](a)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, INDEPENDENT_UNARY[name](x.astype(np.float64)), rtol=tol, atol=tol)


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
def test_binary_broadcasting(shapes, name):
    a = rng.uniform(0.5, 2.0, shapes[0]).astype(np.float32)
    b = rng.uniform(0.5, 2.0, shapes[1]).astype(np.float32)
    y = run1([a, b], lambda emit, x, z: emit(nn.BINARY_OPS[name](x, z)))
    out = np.broadcast_shapes(a.shape, b.shape)
    assert y.shape == out
    # Broadcasting by explicit index arithmetic: size-1 dims read index 0.
    f = BINARY_FORMULAS[name]
    for idx in np.ndindex(*out):
        ia = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - a.ndim:], a.shape))
        ib = tuple(i if d > 1 else 0 for i, d in zip(idx[len(out) - b.ndim:], b.shape))
        assert y[idx] == pytest.approx(f(float(a[ia]), float(b[ib])), rel=1e-5)


def test_integer_binary_keeps_dtype():
    a, b = np.array([1, 2, 3], np.int64), np.array([10], np.int64)
    assert run1([a, b], lambda emit, x, z: emit(nn.AddOp(x, z))).tolist() == [11, 12, 13]


def _c_div(a: int, b: int) -> int:  # C's truncating division
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_division_and_remainders(dtype):
    """div truncates toward zero (C, ONNX), mod takes the divisor's sign, fmod the
    dividend's; a zero divisor gives 0."""
    a = np.array([7, -7, 7, -7, 6, 0, 5, -5], dtype)
    b = np.array([2, 2, -2, -2, 3, 4, 0, 0], dtype)
    formulas = {"div": lambda x, y: _c_div(x, y) if y else 0,
                "mod": lambda x, y: x % y if y else 0,
                "fmod": lambda x, y: x - y * _c_div(x, y) if y else 0}
    for name, f in formulas.items():
        y = run1([a, b], lambda emit, x, z: emit(nn.BINARY_OPS[name](x, z)))
        assert y.dtype == dtype and y.tolist() == [f(int(x), int(z)) for x, z in zip(a, b)], name


def test_float_remainders_keep_signs():
    a = np.array([5.5, -5.5, 5.5, -5.5, 4.0, -4.0], np.float64)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, 2.0], np.float64)
    mod = run1([a, b], lambda emit, x, z: emit(nn.ModOp(x, z)))
    fmod = run1([a, b], lambda emit, x, z: emit(nn.FmodOp(x, z)))
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
def test_comparisons(shapes, name, dtype):
    a = rng.integers(-2, 3, shapes[0]).astype(dtype)  # small integers: many ties
    b = rng.integers(-2, 3, shapes[1]).astype(dtype)
    if dtype == np.float32 and a.size:
        a.reshape(-1)[0] = np.nan  # NaN compares false, even to itself
    y = run1([a, b], lambda emit, x, z: emit(nn.COMPARE_OPS[name](x, z)))
    _pairwise(y, a, b, COMPARE_FORMULAS[name])


@given(broadcast_pair(), st.sampled_from(sorted(nn.LOGICAL)))
@settings(max_examples=40, deadline=None)
def test_logical(shapes, name):
    a, b = rng.integers(0, 2, shapes[0]).astype(bool), rng.integers(0, 2, shapes[1]).astype(bool)
    y = run1([a, b], lambda emit, x, z: emit(nn.LOGICAL_OPS[name](x, z)))
    _pairwise(y, a, b, LOGICAL_FORMULAS[name])
    assert (run1([a], lambda emit, x: emit(nn.NotOp(x))).reshape(-1).tolist()
            == [not v for v in a.reshape(-1).tolist()])
    assert run1([b, b], lambda emit, x, z: emit(nn.EqualOp(x, z))).all()


def test_select_broadcasts_all_three():
    c = np.array([[True], [False]])
    x, y = randn(3), randn(2, 1, 3)
    got = run1([c, x, y], lambda emit, p, q, r: emit(nn.SelectOp(p, q, r)))
    assert got.shape == (2, 2, 3)
    for i, j, k in np.ndindex(2, 2, 3):
        assert got[i, j, k] == (x[k] if c[j, 0] else y[i, 0, k])


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_is_inf_and_is_nan(pos, neg):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 1e308, -3.0])
    y = run1([x], lambda emit, a: emit(nn.IsInfOp(a, pos, neg)))
    assert y.tolist() == [bool(pos), bool(neg), False, False, False, False]
    assert run1([x], lambda emit, a: emit(nn.IsNanOp(a))).tolist() == [math.isnan(v) for v in x]


# ---------------------------------------------------------------------------
# Contractions


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(["2d", "batched", "broadcast", "vec-left", "vec-right"]))
@settings(max_examples=40, deadline=None)
def test_matmul(b, n, k, m, kind):
    shapes = {"2d": ((n, k), (k, m)), "batched": ((b, n, k), (b, k, m)),
              "broadcast": ((b, 1, n, k), (3, k, m)), "vec-left": ((k,), (b, k, m)),
              "vec-right": ((b, n, k), (k,))}[kind]
    x, w = randn(*shapes[0]), randn(*shapes[1])
    y = run1([x, w], lambda emit, p, q: emit(nn.MatmulOp(p, q)))
    x2 = x[None] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    batch = np.broadcast_shapes(x2.shape[:-2], w2.shape[:-2])
    xb = np.broadcast_to(x2, batch + x2.shape[-2:])
    wb = np.broadcast_to(w2, batch + w2.shape[-2:])
    ref = np.zeros(batch + (x2.shape[-2], w2.shape[-1]))
    for idx in np.ndindex(*batch):
        for i, j in itertools.product(range(x2.shape[-2]), range(w2.shape[-1])):
            ref[idx + (i, j)] = sum(xb[idx + (i, t)] * wb[idx + (t, j)] for t in range(k))
    if x.ndim == 1:
        ref = ref[..., 0, :]
    if w.ndim == 1:
        ref = ref[..., 0]
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def naive_conv2d(x, w, strides, pads, dilations, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, m, oh, ow))
    mg = m // group
    for b, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // mg
        acc = 0.0
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            r = i * strides[0] - pads[0] + u * dilations[0]
            s = j * strides[1] - pads[1] + v * dilations[1]
            if 0 <= r < h and 0 <= s < wd:
                acc += x[b, g * cg + ci, r, s] * w[o, ci, u, v]
        out[b, o, i, j] = acc
    return out


conv_params = st.fixed_dictionaries({
    "n": st.integers(1, 2), "group": st.integers(1, 2), "cg": st.integers(1, 2), "mg": st.integers(1, 2),
    "h": st.integers(3, 7), "w": st.integers(3, 6), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "strides": st.tuples(st.integers(1, 2), st.integers(1, 3)),
    "pads": st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)),
    "dilations": st.tuples(st.integers(1, 2), st.integers(1, 2)),
})


def _conv_inputs(p):
    x = randn(p["n"], p["group"] * p["cg"], p["h"], p["w"])
    w = randn(p["group"] * p["mg"], p["cg"], p["kh"], p["kw"])
    assume((p["h"] + p["pads"][0] + p["pads"][2] - p["dilations"][0] * (p["kh"] - 1) - 1) >= 0)
    assume((p["w"] + p["pads"][1] + p["pads"][3] - p["dilations"][1] * (p["kw"] - 1) - 1) >= 0)
    return x, w


@given(conv_params)
@settings(max_examples=40, deadline=None)
def test_conv_vs_naive_loops(p):
    x, w = _conv_inputs(p)
    kw = dict(strides=p["strides"], pads=p["pads"], dilations=p["dilations"], group=p["group"])
    y = run1([x, w], lambda emit, a, b: emit(nn.ConvOp(a, b, **kw)))
    np.testing.assert_allclose(y, naive_conv2d(x, w, **kw), rtol=1e-10, atol=1e-12)


@given(conv_params, st.sampled_from(["relu", "tanh", "identity", "sigmoid"]))
@settings(max_examples=20, deadline=None)
def test_fused_conv(p, act):
    x, w = _conv_inputs(p)
    bias = randn(w.shape[0])
    kw = dict(strides=p["strides"], pads=p["pads"], dilations=p["dilations"], group=p["group"])
    y = run1([x, w, bias], lambda emit, a, b, c: emit(nn.FusedConvOp(a, b, c, act, **kw)))
    z = naive_conv2d(x, w, **kw) + bias[None, :, None, None]
    np.testing.assert_allclose(y, INDEPENDENT_UNARY[act](z), rtol=1e-10, atol=1e-12)


def test_conv_1d_and_3d_and_f32():
    x, w = randn(2, 3, 9), randn(4, 3, 3)
    y = run1([x, w], lambda emit, a, b: emit(nn.ConvOp(a, b, strides=[2], pads=[1, 0])))
    # 1-D as 2-D with a unit height
    ref = naive_conv2d(x[:, :, None, :], w[:, :, None, :], (1, 2), (0, 1, 0, 0), (1, 1), 1)[:, :, 0, :]
    np.testing.assert_allclose(y, ref, rtol=1e-10)
    x3, w3 = randn(1, 2, 4, 4, 4, dtype=np.float32), randn(3, 2, 2, 2, 2, dtype=np.float32)
    y3 = run1([x3, w3], lambda emit, a, b: emit(nn.ConvOp(a, b)))
    ref3 = np.zeros((1, 3, 3, 3, 3))
    for o, i, j, k in itertools.product(range(3), range(3), range(3), range(3)):
        ref3[0, o, i, j, k] = (x3[0, :, i:i + 2, j:j + 2, k:k + 2].astype(np.float64) * w3[o]).sum()
    np.testing.assert_allclose(y3, ref3, rtol=1e-5, atol=1e-5)
    assert y3.dtype == np.float32


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_matmul(act, with_bias):
    x, w, b = randn(4, 3), randn(3, 5), randn(5)
    if with_bias:
        y = run1([x, w, b], lambda emit, p, q, r: emit(nn.FusedMatmulOp(p, q, r, act)))
        z = x @ w + b
    else:
        y = run1([x, w], lambda emit, p, q: emit(nn.FusedMatmulOp(p, q, None, act)))
        z = x @ w
    np.testing.assert_allclose(y, INDEPENDENT_UNARY[act](z), rtol=1e-12)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 12), st.integers(1, 3))
@settings(max_examples=30, deadline=None)
def test_sparse_matmul_vs_accumulation(k, n, nnz, batch):
    pairs = sorted({(int(r), int(c)) for r, c in zip(rng.integers(0, k, nnz), rng.integers(0, n, nnz))})
    rows, cols = [r for r, _ in pairs], [c for _, c in pairs]
    assume(pairs)
    x, v = randn(batch, k), randn(len(pairs))
    y = run1([x, v], lambda emit, a, b: emit(nn.SparseMatmulOp(a, b, rows, cols, k, n)))
    ref = np.zeros((batch, n))
    for e, (r, c) in enumerate(pairs):
        ref[:, c] += x[:, r] * v[e]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Pools


def naive_pool(x, kernel, strides, pads, kind, count_include_pad=False):
    n, c, h, w = x.shape
    oh = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    out = np.zeros((n, c, oh, ow))
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        cells = [x[b, ch, r, s]
                 for r in range(i * strides[0] - pads[0], i * strides[0] - pads[0] + kernel[0])
                 for s in range(j * strides[1] - pads[1], j * strides[1] - pads[1] + kernel[1])
                 if 0 <= r < h and 0 <= s < w]
        if kind == "max":
            out[b, ch, i, j] = max(cells)
        else:
            out[b, ch, i, j] = sum(cells) / (kernel[0] * kernel[1] if count_include_pad else len(cells))
    return out


@given(st.integers(2, 7), st.integers(2, 7), st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.tuples(st.integers(1, 3), st.integers(1, 2)), st.tuples(*[st.integers(0, 2)] * 4),
       st.sampled_from(["max", "avg", "avg-incl"]))
@settings(max_examples=60, deadline=None)
def test_pools_vs_naive_loops(h, w, kernel, strides, pads, kind):
    assume(all(p < k for p, k in zip(pads, kernel * 2)))
    assume(h + pads[0] + pads[2] >= kernel[0] and w + pads[1] + pads[3] >= kernel[1])
    x = randn(2, 3, h, w)
    if kind == "max":
        y = run1([x], lambda emit, a: emit(nn.MaxPoolOp(a, kernel, strides=strides, pads=pads)))
    else:
        incl = kind == "avg-incl"
        y = run1([x], lambda emit, a: emit(nn.AvgPoolOp(a, kernel, strides=strides, pads=pads,
                                                        count_include_pad=incl)))
    ref = naive_pool(x, kernel, strides, pads, kind[:3], kind == "avg-incl")
    np.testing.assert_allclose(y, ref, rtol=1e-12)


# ---------------------------------------------------------------------------
# Reductions, softmax, norms


def naive_reduce(x, axes, keepdims, f):
    axes = tuple(a % x.ndim for a in axes)
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    out = np.zeros(out_shape)
    for idx in np.ndindex(*out_shape):
        cells = [x[full] for full in np.ndindex(*x.shape)
                 if all(full[i] == idx[i] for i in range(x.ndim) if i not in axes)]
        out[idx] = f(cells)
    return out if keepdims else out.reshape([d for i, d in enumerate(x.shape) if i not in axes])


REDUCTIONS = {"reduce_sum": math.fsum, "reduce_mean": lambda c: math.fsum(c) / len(c), "reduce_max": max,
              "reduce_min": min, "reduce_prod": math.prod}


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data(), st.booleans(),
       st.sampled_from(sorted(REDUCTIONS)))
@settings(max_examples=50, deadline=None)
def test_reductions(shape, data, keepdims, name):
    x = randn(*shape)
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(-len(shape), len(shape) - 1),
                                                  unique_by=lambda a: a % len(shape))))
    y = run1([x], lambda emit, a: emit(nn.REDUCE_OPS[name](a, axes, keepdims)))
    ref = naive_reduce(x, range(len(shape)) if axes is None else axes, keepdims, REDUCTIONS[name])
    np.testing.assert_allclose(y, ref, rtol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(axis):
    x = randn(3, 4) * 3
    x[0, 0] = 1000.0  # the max subtraction keeps this finite
    s = run1([x], lambda emit, a: emit(nn.SoftmaxOp(a, axis)))
    ls = run1([x], lambda emit, a: emit(nn.LogSoftmaxOp(a, axis)))
    moved = np.moveaxis(x, axis, -1)
    ref = np.zeros_like(moved)
    for idx in np.ndindex(*moved.shape[:-1]):
        row = [float(v) for v in moved[idx]]
        mx = max(row)
        total = math.fsum(math.exp(v - mx) for v in row)
        ref[idx] = [math.exp(v - mx) / total for v in row]
    ref = np.moveaxis(ref, -1, axis)
    np.testing.assert_allclose(s, ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ls[ref > 1e-300], np.log(ref[ref > 1e-300]), rtol=1e-12)
    assert np.isfinite(ls).all()


def test_batch_norm():
    x = randn(2, 3, 4, 5)
    scale, bias, mean, var = randn(3), randn(3), randn(3), np.abs(randn(3)) + 0.1
    y = run1([x, scale, bias, mean, var],
             lambda emit, *a: emit(nn.BatchNormOp(*a, epsilon=1e-3)))
    for c in range(3):
        np.testing.assert_allclose(y[:, c], (x[:, c] - mean[c]) / math.sqrt(var[c] + 1e-3) * scale[c] + bias[c],
                                   rtol=1e-12)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_layer_norm(axis):
    x = randn(2, 3, 4)
    norm_shape = x.shape[axis % 3:]
    scale, bias = randn(*norm_shape), randn(*norm_shape)
    y = run1([x, scale, bias], lambda emit, *a: emit(nn.LayerNormOp(*a, axis=axis, epsilon=1e-5)))
    lead = x.shape[:axis % 3]
    for idx in np.ndindex(*lead):
        row = x[idx].reshape(-1)
        mu = math.fsum(row) / row.size
        var = math.fsum((v - mu) ** 2 for v in row) / row.size
        ref = (x[idx] - mu) / math.sqrt(var + 1e-5) * scale + bias
        np.testing.assert_allclose(y[idx], ref, rtol=1e-10)


# ---------------------------------------------------------------------------
# Data movement


def test_reshape_transpose_concat():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    y = run1([x], lambda emit, a: emit(nn.ReshapeOp(a, [4, -1])))
    assert y.shape == (4, 6) and y.reshape(-1).tolist() == list(range(24))
    perm = (2, 0, 1)
    t = run1([x], lambda emit, a: emit(nn.TransposeOp(a, perm)))
    for idx in np.ndindex(*t.shape):
        assert t[idx] == x[tuple(idx[perm.index(d)] for d in range(3))]
    a, b = randn(2, 1, 4), randn(2, 3, 4)
    c = run1([a, b, a], lambda emit, p, q, r: emit(nn.ConcatOp([p, q, r], axis=1)))
    assert c.shape == (2, 5, 4)
    assert (c[:, 0] == a[:, 0]).all() and (c[:, 1:4] == b).all() and (c[:, 4] == a[:, 0]).all()


def test_reshape_dynamic_batch():
    m = parse_module("""
      func.func @main(%x: tensor<?x2x3xf32>) -> tensor<?x6xf32> {
        %y = nn.reshape %x : tensor<?x2x3xf32> -> tensor<?x6xf32>
        func.return %y : tensor<?x6xf32>
      }""")
    for n in (1, 5):
        x = randn(n, 2, 3, dtype=np.float32)
        (y,) = reference.run(m, [x])
        assert y.shape == (n, 6) and (y.reshape(n, 2, 3) == x).all()


def onnx_slice_indices(dim, start, end, step):
    """ONNX Slice as its spec states it: negative += dim, then clamp by step sign."""
    start += dim if start < 0 else 0
    end += dim if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.data())
@settings(max_examples=80, deadline=None)
def test_slice_vs_onnx_spec(shape, data):
    x = randn(*shape)
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    big = 2**63 - 1
    ends_or_start = st.one_of(st.integers(-8, 8), st.sampled_from([big, -big]))
    starts = [data.draw(ends_or_start) for _ in axes]
    ends = [data.draw(ends_or_start) for _ in axes]
    steps = [data.draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in axes]
    neg_axes = [a - len(shape) if data.draw(st.booleans()) else a for a in axes]
    y = run1([x], lambda emit, a: emit(nn.SliceOp(a, starts, ends, neg_axes, steps)))
    index = [list(range(d)) for d in shape]
    for a, s, e, st_ in zip(axes, starts, ends, steps):
        index[a] = onnx_slice_indices(shape[a], s, e, st_)
    np.testing.assert_array_equal(y, x[np.ix_(*index)])


def test_gather():
    x = randn(4, 5, 3)
    idx = np.array([[0, -1], [3, 2], [1, 1]], np.int64)
    y = run1([x, idx], lambda emit, a, i: emit(nn.GatherOp(a, i, axis=1)))
    assert y.shape == (4, 3, 2, 3)
    for a, i, j, c in np.ndindex(*y.shape):
        assert y[a, i, j, c] == x[a, idx[i, j] % 5, c]
    bad = np.array([5], np.int64)
    with pytest.raises(NccError, match=r"nn.gather: index 5 is out of bounds"):
        run1([x, bad], lambda emit, a, i: emit(nn.GatherOp(a, i, axis=1)))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    x = randn(3, 4)
    pads = [2, 0, 1, 3]  # begin (2, 0), end (1, 3)
    value = 7.5 if mode == "constant" else 0.0
    y = run1([x], lambda emit, a: emit(nn.PadOp(a, pads, mode, value)))
    assert y.shape == (6, 7)

    def src(i, b, d):
        k = i - b
        if mode == "reflect":
            return -k if k < 0 else 2 * (d - 1) - k if k >= d else k
        if mode == "edge":
            return min(max(k, 0), d - 1)
        return k if 0 <= k < d else None

    for i, j in np.ndindex(*y.shape):
        r, c = src(i, 2, 3), src(j, 0, 4)
        assert y[i, j] == (value if r is None or c is None else x[r, c])


def test_constant_and_i64():
    m = parse_module("""
      func.func @main() -> (tensor<2x2xf32>, tensor<3xi64>) {
        %a = nn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
        %b = nn.constant dense<7> : tensor<3xi64>
        func.return %a, %b : tensor<2x2xf32>, tensor<3xi64>
      }""")
    a, b = reference.run(m, [])
    assert a.tolist() == [[1, 2], [3, 4]] and a.dtype == np.float32
    assert b.tolist() == [7, 7, 7] and b.dtype == np.int64


# ---------------------------------------------------------------------------
# Weights, params, inputs, function choice

WEIGHTED = """
nn.weight @w : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]>
nn.weight @b : tensor<2xf32>
nn.weight @e : tensor<2xf32> = dense_resource<__elided__>
func.func @main(%x: tensor<?x3xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %b = nn.weight_ref @b : tensor<2xf32>
  %y = nn.fused_matmul %x, %w, %b activation relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return %y : tensor<?x2xf32>
}
func.func @uses_elided(%x: tensor<2xf32>) -> tensor<2xf32> {
  %e = nn.weight_ref @e : tensor<2xf32>
  %y = nn.add %x, %e : tensor<2xf32>
  func.return %y : tensor<2xf32>
}
func.func @caller(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %y = func.call @main(%x) : (tensor<?x3xf32>) -> tensor<?x2xf32>
  %z = nn.neg %y : tensor<?x2xf32>
  func.return %z : tensor<?x2xf32>
}
"""


def test_weights_params_and_named_inputs():
    m = parse_module(WEIGHTED)
    x = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
    w = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([0.5, -30.0], np.float32)
    (y,) = reference.run(m, {"input": x}, params={"b": b})
    np.testing.assert_allclose(y, np.maximum(x @ w + b, 0))
    (y2,) = reference.run(m, [x], params={"b": b, "w": np.ones((3, 2))})   # params override data
    np.testing.assert_allclose(y2, np.maximum(x @ np.ones((3, 2)) + b, 0), rtol=1e-6)
    (y3,) = reference.run(m, [x[:1]], function="caller", params={"b": b})
    np.testing.assert_allclose(y3, -y[:1])


def test_weight_and_input_errors():
    m = parse_module(WEIGHTED)
    x = np.zeros((2, 3), np.float32)
    cases = [
        (dict(inputs=[x]), r"weight @b is a parameter without data: pass params=\{'b': array\}"),
        (dict(inputs=[np.zeros(2)], function="uses_elided"),
         r"weight @e has no data: it was elided when printed \(dense_resource<__elided__>\); pass it in params"),
        (dict(inputs=[x], params={"c": 1}), r"params name no weight of the module: c \(weights: b, e, w\)"),
        (dict(inputs=[x], params={"b": np.zeros(3)}), r"params\['b'\] has shape \[3\], expected \[2\]"),
        (dict(inputs=[x, x]), r"@main takes 1 inputs \(input\), got 2"),
        (dict(inputs={"x": x}), "@main takes inputs input; missing: input; unknown: x"),
        (dict(inputs=[np.zeros((2, 4))]), r"input 'input' has shape \[2, 4\], expected \[\?, 3\] \(tensor<\?x3xf32>\)"),
        (dict(inputs=[np.zeros(3)]), r"input 'input' has shape \[3\], expected \[\?, 3\]"),
        (dict(inputs=[x], function="nope"), "no function 'nope' in the module \\(has: main, uses_elided, caller\\)"),
    ]
    for kw, msg in cases:
        inputs = kw.pop("inputs")
        with pytest.raises(NccError, match=msg):
            reference.run(m, inputs, **kw)


def test_dtype_and_function_choice():
    m = parse_module("""
      func.func @f(%i: tensor<2xi64>) -> tensor<2xi64> {
        func.return %i : tensor<2xi64>
      }
      func.func @g(%x: tensor<2xf64>) -> tensor<2xf64> {
        %y = nn.neg %x : tensor<2xf64>
        func.return %y : tensor<2xf64>
      }""")
    with pytest.raises(NccError, match=r"the module has 2 functions \(f, g\): pass function=NAME"):
        reference.run(m, [np.zeros(2)])
    with pytest.raises(NccError, match=r"input 'i' has dtype float64, expected i64"):
        reference.run(m, [np.zeros(2)], function="f")
    (y,) = reference.run(m, np.array([1, 2], np.int32), function="g")  # ints widen to floats
    assert y.dtype == np.float64 and y.tolist() == [-1.0, -2.0]
    f = next(iter(m.ops))
    assert reference.run(f, {"i": [3, 4]})[0].tolist() == [3, 4]  # a func.func runs directly


def test_result_shape_is_checked_against_the_type():
    m = parse_module("""
      func.func @main(%x: tensor<2xf32>) -> tensor<3xf32> {
        %y = nn.exp %x : tensor<2xf32> -> tensor<3xf32>
        func.return %y : tensor<3xf32>
      }""", verify=False)
    with pytest.raises(NccError, match=r"3:9: error: nn.exp computed shape \[2\], but its result type is tensor<3xf32>"):
        reference.run(m, [np.zeros(2, np.float32)])


# ---------------------------------------------------------------------------
# Neuron nets

NET = """
neuron.net @net -> (n03, n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @w0002 = 0.5, n01 * @w0102 = -1.0) + @b02 = 0.1
  neuron.neuron n03 relu(n00 * @w0003 = 1.0, n02 * @w0203 = 2.0)
}
"""


def test_neuron_net_by_hand():
    m = parse_module(NET)
    x = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0]])
    (y,) = reference.run(m, [x])
    for row, (a, b) in zip(y, x):
        n2 = math.tanh(0.5 * a - 1.0 * b + 0.1)
        n3 = max(0.0, 1.0 * a + 2.0 * n2)
        assert row.tolist() == pytest.approx([n3, n2], rel=1e-15)
    # params override a weight and the bias by symbol name
    (y2,) = reference.run(m, x, params={"w0002": 0.0, "b02": -2.0})
    n2 = np.tanh(-1.0 * x[:, 1] - 2.0)
    np.testing.assert_allclose(y2[:, 1], n2)
    np.testing.assert_allclose(y2[:, 0], np.maximum(x[:, 0] + 2 * n2, 0))


def test_neuron_net_seeded_weights():
    m = parse_module("""
      neuron.net @n -> (n02) {
        neuron.input n00
        neuron.input n01
        neuron.neuron n02 sigmoid(n00 * @w0002, n01 * @w0102) + @b02
      }""")
    net = next(iter(m.ops))
    x = rng.standard_normal((4, 2))
    for seed in (0, 3):
        (y,) = reference.run(net, [x], seed=seed)
        z = initial_value("w0002", seed) * x[:, 0] + initial_value("w0102", seed) * x[:, 1]
        np.testing.assert_allclose(y[:, 0], 1 / (1 + np.exp(-z)), rtol=1e-14)


def test_neuron_net_errors():
    m = parse_module(NET)
    with pytest.raises(NccError, match=r"neuron net @net takes an input of shape \[batch, 2\], got \[3\]"):
        reference.run(m, [np.zeros(3)])
    with pytest.raises(NccError, match=r"takes one input array \[batch, n_inputs\], got 2"):
        reference.run(m, [np.zeros((1, 2))] * 2)
    with pytest.raises(NccError, match="params name no weight or bias of net @net: w9999"):
        reference.run(m, [np.zeros((1, 2))], params={"w9999": 1.0})
    with pytest.raises(NccError, match=r"params\['b02'\] must be a scalar"):
        reference.run(m, [np.zeros((1, 2))], params={"b02": [1.0, 2.0]})


def test_mlp_with_dynamic_batch_and_a_parameter_weight():
    m = parse_module(open(__file__.replace("test_reference.py", "lit/nn/mlp-dynamic-batch.mlir")).read())
    w1 = np.array([[0.25, -0.5, 1.0], [0.125, 0.0, -1.0], [2.0, 0.5, 0.75], [-0.25, 1.5, 0.0]], np.float32)
    b1 = np.array([0.1, 0.2, 0.3], np.float32)
    w2 = randn(3, 2, dtype=np.float32)
    for batch in (1, 7):
        x = randn(batch, 2, 2, dtype=np.float32)
        (p,) = reference.run(m, {"input": x}, function="main", params={"fc2_w": w2})
        o = np.tanh(np.maximum(x.reshape(batch, 4) @ w1 + b1, 0) @ w2)
        ref = np.exp(o) / np.exp(o).sum(-1, keepdims=True)
        np.testing.assert_allclose(p, ref, rtol=1e-5)
        assert p.shape == (batch, 2) and p.dtype == np.float32
