"""lower-to-loops: every nn op family, run by the loop-level interpreter, equals
ncc.reference; the kernel ABI; the static memory plan; clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType, ModuleOp, TensorType, f16, f32, f64, i1, i8, i32, i64
from xdsl.ir import Block, Region

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import memory_plan
from ncc.passes.lowering.loop_interpreter import KernelError, run_kernel
from ncc.passes.lowering.abi import KernelABI

from test_passes import random_graph  # noqa: E402  (pytest puts test/ on sys.path)


def T(*shape, elt=f32) -> TensorType:
    return nn.tensor_type(shape, elt)


def build(arg_types, make, weights=(), name="main") -> ModuleOp:
    """A module with `weights` and one function: make(emit, *args) returns the
    value(s) to return; emit(op) adds an op and returns its result."""
    block = Block(arg_types=arg_types)
    ops = []

    def emit(op):
        ops.append(op)
        return op.results[0]

    outs = make(emit, *block.args)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    ops.append(func.ReturnOp(*outs))
    block.add_ops(ops)
    fn = func.FuncOp(name, (arg_types, [o.type for o in outs]), Region(block))
    return ModuleOp([*weights, fn])


def lower(module: ModuleOp, pipeline: str = "lower-to-loops") -> ModuleOp:
    lowered = module.clone()
    ncc.run_passes(lowered, pipeline)
    return lowered


def kernel_of(module: ModuleOp) -> func.FuncOp:
    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fn


def native(module: ModuleOp, inputs, pipeline: str, params=None) -> list[np.ndarray]:
    """The same module compiled to native code (lower-to-llvm, the JIT) and run."""
    model = ncc.compile(module.clone(), cache=False, fuse="fuse" in pipeline)
    for name, value in (params or {}).items():
        model.params[name] = value
    out = model(*inputs) if not isinstance(inputs, dict) else model.run(inputs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check(module: ModuleOp, inputs, *, rtol=None, atol=None, pipeline="lower-to-loops",
          params=None) -> ModuleOp:
    """Lower, interpret, compile to native code, and compare every output of both
    runs with the reference (the interpreter pins a failure on the lowering,
    native code on everything after it)."""
    ref = ncc.reference.run(module, inputs, params=params)
    lowered = lower(module, pipeline)
    runs = [("interpreted", run_kernel(lowered, inputs, params=params)),
            ("native", native(module, inputs, pipeline, params))]
    for how, got in runs:
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            assert g.shape == r.shape and g.dtype == r.dtype
            tol = 1e-12 if r.dtype == np.float64 else 2e-5
            # native code fuses multiply-adds and uses polynomial exp/tanh: a few ulps more
            tol = max(tol, 1e-6) if how == "native" and r.dtype == np.float64 else tol
            np.testing.assert_allclose(g, r, rtol=rtol or tol, atol=atol if atol is not None else tol,
                                       err_msg=how)
    return lowered


rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32, scale=1.0):
    return np.asarray(rng.normal(size=shape) * scale, dtype=dtype)


# ---------------------------------------------------------------------------
# Elementwise


POSITIVE = {"log", "sqrt", "reciprocal"}
DOMAIN = {"acos": lambda x: np.tanh(x), "asin": lambda x: np.tanh(x), "atanh": lambda x: np.tanh(x),
          "acosh": lambda x: np.abs(x) + 1}


@pytest.mark.parametrize("name", sorted(nn.UNARY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary(name, dtype):
    elt = nn.element_type_of(dtype)
    m = build([T(DYN, 5, elt=elt)], lambda e, x: e(nn.UNARY_OPS[name](x)))
    x = randn(3, 5, dtype=dtype, scale=3.0)
    if name in POSITIVE:
        x = np.abs(x) + dtype(0.1)
    x[0, :4] = [0.0, -40.0, 40.0, 1e-3] if name not in POSITIVE else [1e-3, 40.0, 1.0, 7.0]
    x[1, :4] = [0.5, 1.5, -2.5, -0.0]  # ties (round: to even) and a negative zero
    x = DOMAIN.get(name, lambda v: v)(x)
    check(m, [x])


def test_unary_special_values():
    """NaN and infinities go through like numpy (relu/max propagate NaN)."""
    vals = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 88.0, -88.0]], np.float32)
    for name in ("relu", "sigmoid", "tanh", "softplus", "step", "abs", "silu", "gaussian", "elu",
                 "leaky_relu", "exp"):
        m = build([T(1, 7)], lambda e, x: e(nn.UNARY_OPS[name](x)))
        check(m, [vals], atol=1e-30)


BROADCASTS = [((3, 1, 5), (4, 1)), ((2, 3), (3,)), ((1,), (7,)), ((), (2, 3)), ((5, 1), (1, 1)),
              ((DYN, 3), (3,)), ((DYN, 1), (1, 4)), ((2, 7), (2, 7)), ((1, 1, 1), (1,))]


@pytest.mark.parametrize("name", sorted(nn.BINARY))
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_binary_broadcasting(name, shapes):
    a_shape, b_shape = shapes
    m = build([T(*a_shape), T(*b_shape)], lambda e, a, b: e(nn.BINARY_OPS[name](a, b)))
    concrete = [tuple(4 if d == DYN else d for d in s) for s in shapes]
    a, b = (randn(*s) for s in concrete)
    if name == "pow":
        a = np.asarray(np.abs(a) + 0.5, np.float32)
    if name == "div":
        b = np.where(np.abs(b) < 0.1, np.float32(0.5), b)
    check(m, [a, b])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "max", "min"])
@pytest.mark.parametrize("elt", [i8, i32, i64])
def test_binary_integers(name, elt):
    m = build([T(2, 3, elt=elt), T(3, elt=elt)], lambda e, a, b: e(nn.BINARY_OPS[name](a, b)))
    dt = nn.numpy_dtype(elt)
    check(m, [rng.integers(-50, 50, (2, 3)).astype(dt), rng.integers(-50, 50, (3,)).astype(dt)])


def test_i8_reductions_and_data_movement():
    def make(e, x):
        t = e(nn.TransposeOp(x, [1, 0]))
        return e(nn.ReduceMaxOp(t, [1])), e(nn.ReduceSumOp(x, [0], keepdims=True)), e(nn.PadOp(t, [1, 0, 0, 1], value=-3.0))

    check(build([T(4, 3, elt=i8)], make), [rng.integers(-128, 128, (4, 3)).astype(np.int8)])


@pytest.mark.parametrize("name", ["div", "mod", "fmod"])
@pytest.mark.parametrize("elt", [i8, i32, i64])
def test_integer_division_edge_cases(name, elt):
    """Truncating div, floor mod, C fmod; a zero divisor gives 0 and INT_MIN / -1
    wraps, where the plain CPU instructions would trap."""
    dt = nn.numpy_dtype(elt)
    low = np.iinfo(dt).min
    a = np.array([[7, -7, 7, -7, 9, low, low, 5], [0, 3, -3, 100, -100, 1, -1, low]], dt)
    b = np.array([2, 2, -2, -2, 0, -1, 1, 3], dt)
    m = build([T(DYN, 8, elt=elt), T(8, elt=elt)], lambda e, x, y: e(nn.BINARY_OPS[name](x, y)))
    check(m, [a, b])


@pytest.mark.parametrize("name", ["mod", "fmod"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_remainders(name, dtype):
    a = np.array([[5.5, -5.5, 5.5, -5.5, 4.0, -4.0, 1e30, 3.0, np.inf, np.nan]], dtype)
    b = np.array([2.0, 2.0, -2.0, -2.0, 2.0, 2.0, 7.0, 0.0, 2.0, 2.0], dtype)
    m = build([T(1, 10, elt=nn.element_type_of(dtype)), T(10, elt=nn.element_type_of(dtype))],
              lambda e, x, y: e(nn.BINARY_OPS[name](x, y)))
    check(m, [a, b], atol=0, rtol=0)


# ---------------------------------------------------------------------------
# Booleans: comparisons, logical ops, select (i1 tensors are one byte per element)


@pytest.mark.parametrize("name", sorted(nn.COMPARE))
@pytest.mark.parametrize("elt", [f32, f64, i8, i32, i64])
@pytest.mark.parametrize("shapes", [((DYN, 3), (3,)), ((2, 1), (1, 4)), ((), (5,))], ids=str)
def test_comparisons(name, elt, shapes):
    m = build([T(*s, elt=elt) for s in shapes], lambda e, a, b: e(nn.COMPARE_OPS[name](a, b)))
    a, b = (rng.integers(-2, 3, tuple(4 if d == DYN else d for d in s)).astype(nn.numpy_dtype(elt))
            for s in shapes)  # small integers: many ties
    if elt in (f32, f64):
        a.reshape(-1)[:1] = np.nan
    check(m, [a, b])


def test_comparisons_with_nan_and_infinities():
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], np.float32)
    a, b = np.repeat(vals, 6)[None], np.tile(vals, 6)[None]
    for name in nn.COMPARE:
        check(build([T(1, 36), T(1, 36)], lambda e, x, y: e(nn.COMPARE_OPS[name](x, y))), [a, b])


@pytest.mark.parametrize("name", sorted(nn.LOGICAL))
def test_logical(name):
    m = build([T(DYN, 1, 4, elt=i1), T(3, 1, elt=i1)], lambda e, a, b: e(nn.LOGICAL_OPS[name](a, b)))
    check(m, [rng.integers(0, 2, (2, 1, 4)).astype(bool), rng.integers(0, 2, (3, 1)).astype(bool)])


def test_not_and_bool_equality():
    def make(e, a, b):
        return e(nn.NotOp(a)), e(nn.EqualOp(a, b))

    m = build([T(DYN, 5, elt=i1), T(5, elt=i1)], make)
    check(m, [rng.integers(0, 2, (3, 5)).astype(bool), rng.integers(0, 2, 5).astype(bool)])


def test_bool_bytes_other_than_0_and_1_read_as_true():
    """numpy bools are bytes; native code reads any nonzero byte as true."""
    m = build([T(6, elt=i1)], lambda e, a: e(nn.NotOp(a)))
    x = np.array([0, 1, 2, 255, 0, 128], np.uint8).view(np.bool_)
    assert native(m, [x], "lower-to-loops")[0].tolist() == [True, False, False, False, True, False]


@pytest.mark.parametrize("elt", [f32, f64, i8, i32, i64, i1])
def test_select(elt):
    dt = nn.numpy_dtype(elt)
    m = build([T(DYN, 1, elt=i1), T(4, elt=elt), T(DYN, 4, elt=elt)],
              lambda e, c, x, y: e(nn.SelectOp(c, x, y)))
    c = rng.integers(0, 2, (3, 1)).astype(bool)
    x, y = (rng.integers(-9, 9, s).astype(dt) for s in ((4,), (3, 4)))
    check(m, [c, x, y])


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_is_inf_and_is_nan(pos, neg, dtype):
    def make(e, x):
        return e(nn.IsInfOp(x, pos, neg)), e(nn.IsNanOp(x))

    m = build([T(DYN, 4, elt=nn.element_type_of(dtype))], make)
    x = np.array([[np.inf, -np.inf, np.nan, -np.nan], [0.0, 1e30, -3.0, np.finfo(dtype).max]], dtype)
    check(m, [x])


def test_bools_through_the_arena_weights_and_data_movement():
    """i1 intermediates in the arena (one byte each), a bool weight and constant,
    and the data-movement ops on bools, ending in a select and a bool output."""
    w = nn.WeightOp("mask", np.array([True, False, True, True, False, False]))

    def make(e, x, y):
        lt = e(nn.LessOp(x, y))                                   # [?, 6] i1 in the arena
        m = e(nn.AndOp(lt, e(nn.WeightRefOp(w))))
        r = e(nn.ReshapeOp(m, [DYN, 2, 3]))
        t = e(nn.TransposeOp(r, [0, 2, 1]))
        c = e(nn.ConcatOp([t, e(nn.NotOp(t))], 2))                # [?, 3, 4]
        s = e(nn.SliceOp(c, [0, 1], [3, 4], [1, 2]))              # [?, 3, 3]
        p = e(nn.PadOp(s, [0, 0, 1, 0, 0, 0], value=1.0))         # [?, 3, 4], padded with true
        g = e(nn.GatherOp(p, e(nn.ConstantOp(np.array([3, 0]))), 2))  # [?, 3, 2]
        flat = e(nn.ReshapeOp(g, [DYN, 6]))
        return flat, e(nn.SelectOp(flat, x, e(nn.NegOp(y))))

    m = build([T(DYN, 6), T(6)], make, [w])
    lowered = check(m, [randn(5, 6), randn(6)])
    assert MemRefType(i1, [6]) in kernel_of(lowered).function_type.inputs.data


# ---------------------------------------------------------------------------
# Contractions

MATMULS = [((3, 4), (4, 5)), ((DYN, 7), (7, 2)), ((5,), (5, 3)), ((2, 5), (5,)), ((5,), (5,)),
           ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1)), ((3, 2, 3), (3, 2)), ((DYN, 2, 3), (3, 13)),
           ((3, 16), (16, 5)), ((DYN, 17), (17, 4)), ((2, 9), (9,)), ((8,), (8, 3))]  # k unrolled by 8


@pytest.mark.parametrize("shapes", MATMULS, ids=str)
def test_matmul(shapes):
    m = build([T(*s) for s in shapes], lambda e, a, b: e(nn.MatmulOp(a, b)))
    check(m, [randn(*(3 if d == DYN else d for d in s)) for s in shapes])


@pytest.mark.parametrize("batch", [1, 4, 7, 9, 16])
def test_matmul_row_blocks_and_the_remaining_rows(batch):
    """Rows go in blocks of 4, then one by one; the batch varies per call."""
    m = build([T(DYN, 11), T(11, 6)], lambda e, a, b: e(nn.MatmulOp(a, b)))
    check(m, [randn(batch, 11), randn(11, 6)])


@pytest.mark.parametrize("batch", [1, 8, 13])
def test_matmul_transpose_a_sums_over_the_batch(batch):
    """lhs^T @ rhs with the batch as the contracted dimension (a weight gradient)."""
    m = build([T(DYN, 5), T(DYN, 9)], lambda e, a, b: e(nn.MatmulTransposeAOp(a, b)))
    check(m, [randn(batch, 5), randn(batch, 9)])


@pytest.mark.parametrize("src,dst", [((3,), (DYN, 3)), ((1, 3), (4, 2, 3)), ((DYN, 1), (DYN, 5)), ((), (2, 2))],
                         ids=str)
def test_broadcast(src, dst):
    m = build([T(*src), T(DYN, 1)], lambda e, a, _: e(nn.BroadcastOp(a, TensorType(f32, dst))))
    check(m, [randn(*(3 if d == DYN else d for d in src)), randn(3, 1)])


@settings(max_examples=15, deadline=None)
@given(m=st.sampled_from([1, 2, 3, 5, 7]), k=st.sampled_from([1, 2, 3, 11]),
       n=st.sampled_from([1, 2, 5, 13]), batch=st.sampled_from([(), (1,), (2,), (3, 1)]),
       seed=st.integers(0, 100))
def test_matmul_property(m, k, n, batch, seed):
    r = np.random.default_rng(seed)
    a, b = r.normal(size=(*batch, m, k)).astype(np.float32), r.normal(size=(k, n)).astype(np.float32)
    mod = build([T(*a.shape), T(*b.shape)], lambda e, x, y: e(nn.MatmulOp(x, y)))
    check(mod, [a, b])


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("bias_shape", [None, (5,), (1, 5), (3, 5)])
def test_fused_matmul(act, bias_shape):
    w = nn.WeightOp("w", randn(4, 5))
    types = [T(3, 4)] + ([T(*bias_shape)] if bias_shape else [])

    def make(e, x, *bias):
        return e(nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), bias[0] if bias else None, act))

    m = build(types, make, [w])
    check(m, [randn(3, 4)] + ([randn(*bias_shape)] if bias_shape else []))


CONVS = [  # x shape, w shape, params
    ((1, 1, 5, 5), (1, 1, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ((1, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "dilations": [2, 1]}),
    ((3, 2, 11), (3, 2, 3), {"strides": [2], "pads": [2, 1]}),
    ((DYN, 2, 5, 5), (3, 2, 2, 2), {"pads": [0, 1, 1, 0]}),
    ((1, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ((2, 9, 6, 5), (3, 9, 3, 3), {"pads": [2, 1, 0, 3], "strides": [3, 2]}),  # channel remainder
    ((1, 10, 4, 4), (4, 5, 1, 1), {"group": 2}),                               # 1x1, 2 groups of 5
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 2, 1], "dilations": [1, 2, 1]}),
    ((1, 3, 5, 5), (2, 3, 2, 2), {"pads": [4, 4, 4, 4]}),                      # padding wider than the kernel
    ((2, 6, 5, 4), (12, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),         # blocks of 4 output channels
    ((1, 4, 5, 5), (6, 4, 3, 1), {"strides": [1, 2]}),                        # blocks of 2
]


@pytest.mark.parametrize("case", CONVS, ids=str)
@pytest.mark.parametrize("fused", [False, True])
def test_conv(case, fused):
    xs, ws, params = case
    w = nn.WeightOp("w", randn(*ws))
    bias = nn.WeightOp("b", randn(ws[0]))

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        if fused:
            return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(bias)), "relu", **params))
        return e(nn.ConvOp(x, wv, **params))

    m = build([T(*xs)], make, [w, bias])
    check(m, [randn(*(2 if d == DYN else d for d in xs))], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("limit", [256, 2])
def test_sparse_matmul_unrolled_and_index_tables(limit):
    rows, cols = [0, 2, 4, 1, 3, 0], [1, 0, 2, 2, 0, 0]
    m = build([T(DYN, 5), T(6)], lambda e, x, v: e(nn.SparseMatmulOp(x, v, rows, cols, 5, 3)))
    lowered = check(m, [randn(4, 5), randn(6)], pipeline=f"lower-to-loops{{sparse-unroll-limit={limit}}}")
    roles = [str(r) for r in KernelABI.of(kernel_of(lowered)).roles]
    assert any(r.endswith("_rows") for r in roles) == (limit < len(rows))


# ---------------------------------------------------------------------------
# Pools, reductions, softmax, norms


POOLS = [((1, 1, 5, 5), [2, 2], {}), ((2, 3, 7, 6), [3, 2], {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
         ((1, 2, 9), [3], {"strides": [2], "pads": [1, 2]}), ((DYN, 2, 4, 4), [2, 2], {"strides": [2, 2]})]


@pytest.mark.parametrize("case", POOLS, ids=str)
@pytest.mark.parametrize("kind", ["max", "avg", "avg_include_pad"])
def test_pools(case, kind):
    xs, kernel, params = case
    if kind == "max":
        make = lambda e, x: e(nn.MaxPoolOp(x, kernel, **params))  # noqa: E731
    else:
        make = lambda e, x: e(nn.AvgPoolOp(x, kernel, count_include_pad=kind != "avg", **params))  # noqa: E731
    check(build([T(*xs)], make), [randn(*(3 if d == DYN else d for d in xs))])


@pytest.mark.parametrize("name", sorted(nn.REDUCE))
@pytest.mark.parametrize("axes", [None, [0], [1], [-1], [0, 2]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, axes, keepdims):
    m = build([T(DYN, 3, 5)], lambda e, x: e(nn.REDUCE_OPS[name](x, axes, keepdims)))
    check(m, [randn(4, 3, 5)], rtol=1e-4)


def test_reduction_integers():
    for name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        m = build([T(3, 4, elt=i64)], lambda e, x: e(nn.REDUCE_OPS[name](x, [1])))
        check(m, [rng.integers(-5, 6, (3, 4))])


@pytest.mark.parametrize("op", [nn.SoftmaxOp, nn.LogSoftmaxOp])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax(op, axis):
    m = build([T(DYN, 3, 7)], lambda e, x: e(op(x, axis)))
    x = randn(2, 3, 7, scale=10)
    x[0, 0, 0] = 80.0  # max-subtracted: no overflow
    check(m, [x])


def test_batch_norm():
    m = build([T(DYN, 3, 4, 2), *[T(3)] * 4], lambda e, x, s, b, mu, v: e(nn.BatchNormOp(x, s, b, mu, v, 1e-3)))
    check(m, [randn(2, 3, 4, 2), randn(3), randn(3), randn(3), np.abs(randn(3)) + 0.5])


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_layer_norm(axis):
    shape = (2, 3, 5)
    norm = shape[axis % 3:]
    m = build([T(DYN, 3, 5), T(*norm), T(*norm)], lambda e, x, s, b: e(nn.LayerNormOp(x, s, b, axis)))
    check(m, [randn(*shape), randn(*norm), randn(*norm)], rtol=1e-4, atol=1e-5)


def test_layer_norm_over_the_batch():
    m = build([T(DYN, 3), T(DYN, 3), T(DYN, 3)], lambda e, x, s, b: e(nn.LayerNormOp(x, s, b, 0)))
    check(m, [randn(4, 3), randn(4, 3), randn(4, 3)], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# Data movement


@pytest.mark.parametrize("src,dst", [((DYN, 2, 6), (DYN, 12)), ((DYN, 12), (DYN, 3, 4)),
                                     ((2, 3, 5), (5, 6)), ((6,), (1, 2, 3)), ((4, 1), (4,))])
def test_reshape_of_an_input_copies(src, dst):
    m = build([T(*src)], lambda e, x: e(nn.ReshapeOp(x, dst)))
    check(m, [randn(*(3 if d == DYN else d for d in src))])


def test_reshape_of_an_intermediate_is_a_view():
    def make(e, x):
        r = e(nn.ReshapeOp(e(nn.TanhOp(x)), [DYN, 3, 4]))
        return e(nn.ReluOp(r))

    lowered = check(build([T(DYN, 12)], make), [randn(5, 12)])
    text = ncc.print_module(lowered)
    assert text.count("memref.view") == 2  # the tanh buffer, and the reshape's view of its bytes
    assert text.count("scf.for") == 2 + 3  # tanh and relu loops only: no copy loop


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_transpose(perm):
    check(build([T(2, 3, 5)], lambda e, x: e(nn.TransposeOp(x, perm))), [randn(2, 3, 5)])


def test_transpose_keeping_the_batch():
    check(build([T(DYN, 3, 5)], lambda e, x: e(nn.TransposeOp(x, [0, 2, 1]))), [randn(4, 3, 5)])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, extra in zip(shapes, (1, 2, 3)):
        s[axis] = extra
    m = build([T(*s) for s in shapes], lambda e, *xs: e(nn.ConcatOp(xs, axis)))
    check(m, [randn(*s) for s in shapes])


def test_concat_dynamic_batch():
    m = build([T(DYN, 2), T(DYN, 3)], lambda e, a, b: e(nn.ConcatOp([a, b], 1)))
    check(m, [randn(5, 2), randn(5, 3)])


SLICES = [([1], [4], [0], [1]), ([-1], [-8], [0], [-1]), ([0, 5], [3, 0], [0, 1], [2, -2]),
          ([-100], [100], [1], [3]), ([5], [-100], [1], [-1]), ([2], [2], [0], [1]),
          ([0, 1, 0], [7, 6, 2], [0, 1, 2], [3, 2, 1])]


@pytest.mark.parametrize("case", SLICES, ids=str)
def test_slice(case):
    starts, ends, axes, steps = case
    m = build([T(7, 6, 2)], lambda e, x: e(nn.SliceOp(x, starts, ends, axes, steps)))
    check(m, [randn(7, 6, 2)])


def test_slice_keeping_the_batch():
    m = build([T(DYN, 6)], lambda e, x: e(nn.SliceOp(x, [1], [5], [1], [2])))
    check(m, [randn(3, 6)])


@pytest.mark.parametrize("axis,ishape", [(0, (4,)), (1, (2, 3)), (-1, ()), (2, (5,))])
@pytest.mark.parametrize("elt", [i64, i32])
def test_gather(axis, ishape, elt):
    idx = rng.integers(-3, 3, ishape).astype(nn.numpy_dtype(elt))
    m = build([T(3, 4, 3), T(*ishape, elt=elt)], lambda e, x, i: e(nn.GatherOp(x, i, axis)))
    check(m, [randn(3, 4, 3), idx])


def test_gather_from_a_constant_on_the_batch():
    m = build([T(DYN, 5)], lambda e, x: e(nn.GatherOp(x, e(nn.ConstantOp(np.array([4, 0, -1]))), 1)))
    lowered = check(m, [randn(3, 5)])
    weights = [op for op in lowered.ops if isinstance(op, nn.WeightOp)]
    assert len(weights) == 1 and "ncc.constant" in weights[0].attributes


def test_gather_clamps_out_of_range_indices():
    m = build([T(4), T(3, elt=i64)], lambda e, x, i: e(nn.GatherOp(x, i)))
    x = randn(4)
    (got,) = run_kernel(lower(m), [x, np.array([7, -9, 2])])
    np.testing.assert_array_equal(got, x[[3, 0, 2]])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", [[1, 2, 0, 2], [0, 0, 1, 1], [2, 0, 0, 3]])
def test_pad(mode, pads):
    value = 1.5 if mode == "constant" else 0.0
    m = build([T(4, 5)], lambda e, x: e(nn.PadOp(x, pads, mode, value)))
    check(m, [randn(4, 5)])


def test_pad_keeping_the_batch():
    m = build([T(DYN, 3)], lambda e, x: e(nn.PadOp(x, [0, 1, 0, 2], "reflect")))
    check(m, [randn(2, 3)])


@pytest.mark.parametrize("src,dst", [(np.float32, np.float64), (np.float64, np.float32),
                                     (np.float32, np.float32)])
def test_cast_between_float_types(src, dst):
    """Bit for bit numpy's astype: round to nearest even, overflow to inf,
    subnormals, signed zeros, NaN and infinities."""
    x = randn(3, 8, dtype=np.float64, scale=10.0)
    x[0] = [np.nan, np.inf, -np.inf, -0.0, 1e300, -1e-320, 1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24]
    x[1] = [3.4028235e38, 3.4028236e38, 1e-40, 2.0 ** -149, 2.0 ** -150, -(2.0 ** -150) * 1.5, 0.1, 1 / 3]
    with np.errstate(over="ignore"):  # 1e300 and 3.4028236e38 overflow float32: inf
        x = x.astype(src)
        want = x.astype(dst)
    m = build([T(DYN, 8, elt=nn.element_type_of(src))], lambda e, a: e(nn.CastOp(a, dst)))
    with np.errstate(over="ignore"):
        check(m, [x])
    (got,) = native(m, [x], "lower-to-loops")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_cast_to_f16_is_refused_natively():
    m = build([T(3)], lambda e, a: e(nn.CastOp(a, np.float16)))
    with pytest.raises(ncc.NccError, match="nn.cast: the result has element type f16; lower-to-loops "
                                           "supports f32, f64, i8, i32, i64, i1"):
        ncc.compile(m, cache=False)


# ---------------------------------------------------------------------------
# Bufferization and the kernel ABI


def test_abi_roles_and_signature():
    w = nn.WeightOp("fc_w", randn(4, 3))

    def make(e, x):
        y = e(nn.TanhOp(e(nn.MatmulOp(x, e(nn.WeightRefOp(w))))))
        return y, e(nn.MatmulOp(y, e(nn.ConstantOp(randn(3, 2)))))

    lowered = check(build([T(DYN, 4)], make, [w]), [randn(3, 4)])
    fn = kernel_of(lowered)
    abi = KernelABI.of(fn)
    assert [str(r) for r in abi.roles] == ["input:arg0", "output:0", "output:1", "weight:fc_w",
                                           "weight:main_const", "arena"]
    types = fn.function_type.inputs.data
    assert types[0] == MemRefType(f32, [DYN, 4]) and types[-1] == MemRefType(i8, [DYN])
    assert types[3] == MemRefType(f32, [4, 3]) and types[4] == MemRefType(f32, [3, 2])
    assert fn.function_type.outputs.data == ()
    assert abi.arena_per_batch == 64 and abi.arena_constant == 0  # the matmul before tanh


def test_rank0_constants_weights_and_intermediates():
    """Scalars everywhere: a rank-0 nn.constant (what the ONNX importer makes of
    an attribute such as Elu's alpha), a rank-0 weight, a rank-0 intermediate in
    the arena and a rank-0 result."""
    w = nn.WeightOp("s", np.array(0.5, np.float32))

    def make(e, x):
        k = e(nn.ConstantOp(np.array(2.0, np.float32)))
        y = e(nn.MulOp(e(nn.MaxOp(x, k)), e(nn.WeightRefOp(w))))
        total = e(nn.REDUCE_OPS["reduce_sum"](y, None, keepdims=False))  # rank 0, in the arena
        return e(nn.SubOp(y, total)), e(nn.ExpOp(total))

    lowered = check(build([T(DYN, 3)], make, [w]), [randn(4, 3, scale=3.0)])
    types = kernel_of(lowered).function_type.inputs.data
    assert MemRefType(f32, []) in types  # the constant stays a rank-0 buffer


def test_named_inputs_and_outputs():
    m = ncc.parse_module("""
    func.func @f(%x: tensor<2xf32> {ncc.name = "image"}) -> (tensor<2xf32> {ncc.name = "probs"}) {
      %0 = nn.exp %x : tensor<2xf32>
      func.return %0 : tensor<2xf32>
    }""")
    lowered = check(m, {"image": randn(2)})
    assert [str(r) for r in KernelABI.of(kernel_of(lowered)).roles] == ["input:image", "output:probs"]


def test_returned_inputs_weights_and_repeats_are_copied():
    w = nn.WeightOp("w", randn(3))

    def make(e, x):
        y = e(nn.NegOp(x))
        return x, y, y, e(nn.WeightRefOp(w))

    check(build([T(DYN, 3)], make, [w]), [randn(2, 3)])


def test_weights_are_buffers_not_constants():
    """params change the result without recompiling: the data is an argument."""
    w = nn.WeightOp("w", randn(3, 2))
    m = build([T(1, 3)], lambda e, x: e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))), [w])
    lowered = lower(m)
    x, w2 = randn(1, 3), randn(3, 2)
    (got,) = run_kernel(lowered, [x], params={"w": w2})
    np.testing.assert_allclose(got, x @ w2, rtol=1e-6)
    assert "dense<" not in ncc.print_module(kernel_of(lowered))


def test_batch_varies():
    m = build([T(DYN, 3)], lambda e, x: e(nn.SigmoidOp(e(nn.ReluOp(x)))))
    lowered = lower(m)
    for batch in (1, 2, 7):
        x = randn(batch, 3)
        (got,) = run_kernel(lowered, [x])
        np.testing.assert_allclose(got, ncc.reference.run(m, [x])[0], rtol=1e-6)


def test_float64_mlp_and_fused_pipeline():
    r = np.random.default_rng(3)
    ws = [nn.WeightOp(f"w{i}", r.normal(size=s)) for i, s in enumerate([(6, 5), (5, 4)])]
    ws = [nn.WeightOp(w.sym, w.data.astype(np.float64)) for w in ws]
    bs = [nn.WeightOp(f"b{i}", r.normal(size=s[1]).astype(np.float64)) for i, s in enumerate([(6, 5), (5, 4)])]

    def make(e, x):
        for w, b in zip(ws, bs):
            x = e(nn.ReluOp(e(nn.AddOp(e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))), e(nn.WeightRefOp(b))))))
        return e(nn.SoftmaxOp(x))

    m = build([T(DYN, 6, elt=f64)], make, [*ws, *bs])
    lowered = check(m, [r.normal(size=(3, 6))], pipeline="fuse,lower-to-loops")
    assert "nn." not in ncc.print_module(kernel_of(lowered))


# ---------------------------------------------------------------------------
# Layerized neuron nets


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pipeline", ["layerize", "layerize,fuse", "layerize{dense-density=0.3},fuse"])
def test_layerized_random_dags(seed, pipeline):
    r = np.random.default_rng(seed)
    g = random_graph(r, n=40 + 10 * seed, n_inputs=4, fan_in=5, values=seed % 2 == 0, biases=seed < 2,
                     share=seed == 3)
    net = ModuleOp([g.to_net("net")])
    x = r.normal(size=(3, len(g.input_indices))).astype(np.float32)
    ref = ncc.reference.run(net, [x])[0]
    lowered = lower(net, pipeline + ",lower-to-loops{sparse-unroll-limit=16}")
    (got,) = run_kernel(lowered, [x])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["seed_list.txt", "xor_values.txt"])
def test_examples(name):
    module = ncc.import_adjacency(f"{__file__.rsplit('/', 2)[0]}/examples/{name}")
    n_in = len(next(op for op in module.ops).graph().input_indices)
    x = np.random.default_rng(1).normal(size=(5, n_in)).astype(np.float32)
    ref = ncc.reference.run(module, [x])[0]
    (got,) = run_kernel(lower(module, "layerize,fuse,lower-to-loops"), [x])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------------------
# The memory plan


def test_plan_reuses_the_arena_on_a_chain():
    """Ten elementwise ops in a chain need two buffers, not nine."""
    def make(e, x):
        for k in range(10):
            x = e((nn.TanhOp, nn.ReluOp)[k % 2](x))
        return x

    lowered = check(build([T(DYN, 16)], make), [randn(3, 16)])
    abi = KernelABI.of(kernel_of(lowered))
    assert abi.arena_per_batch == 2 * 64  # 9 intermediates of 64 bytes per row share 2 slots
    assert abi.arena_constant == 0


def test_plan_keeps_live_buffers_apart():
    """A value read again much later keeps its bytes: a diamond with a long branch."""
    def make(e, x):
        a = e(nn.ExpOp(x))
        b = a
        for _ in range(4):
            b = e(nn.TanhOp(b))
        return e(nn.AddOp(a, b))

    check(build([T(DYN, 5)], make), [randn(4, 5)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300), st.integers(0, 8), st.integers(0, 8)),
                min_size=1, max_size=25))
def test_plan_property(specs):
    """No two buffers live at the same time share a byte, for any batch; offsets
    are 64-byte aligned; the arena is no larger than the sum of the sizes."""
    bufs = [memory_plan.Buffer(k, size if batched else 0, 0 if batched else size, s, s + n)
            for k, (batched, size, s, n) in enumerate(specs)]
    plan = memory_plan.plan(bufs)
    for batch in (1, 3, 64):
        total = plan.per_batch * batch + plan.constant
        spans = {b.key: (plan.offset(b.key, batch), plan.offset(b.key, batch) + b.per_batch * batch + b.constant)
                 for b in bufs}
        for b in bufs:
            lo, hi = spans[b.key]
            assert lo % 64 == 0 and hi <= total
        for b1, b2 in itertools.combinations(bufs, 2):
            (lo1, hi1), (lo2, hi2) = spans[b1.key], spans[b2.key]
            if b1.overlaps_in_time(b2) and hi1 > lo1 and hi2 > lo2:
                assert hi1 <= lo2 or hi2 <= lo1, (b1, b2, plan)
    assert plan.per_batch <= sum(memory_plan.align(b.per_batch) for b in bufs)
    assert plan.constant <= sum(memory_plan.align(b.constant) for b in bufs)


# ---------------------------------------------------------------------------
# Errors


def error_of(module: ModuleOp, pipeline="lower-to-loops") -> str:
    with pytest.raises(ncc.NccError) as e:
        ncc.run_passes(module, pipeline)
    return str(e.value)


def test_error_concat_on_the_batch():
    msg = error_of(build([T(DYN, 2), T(DYN, 2)], lambda e, a, b: e(nn.ConcatOp([a, b], 0))))
    assert "nn.concat" in msg and "batch" in msg


def test_error_transpose_moving_the_batch():
    msg = error_of(build([T(DYN, 2)], lambda e, x: e(nn.TransposeOp(x, [1, 0]))))
    assert "only dimension 0" in msg and "nn.transpose" in msg


def test_error_reshape_mixing_the_batch():
    msg = error_of(build([T(DYN, 4)], lambda e, x: e(nn.ReshapeOp(x, [DYN]))))
    assert "nn.reshape" in msg and "batch" in msg


def test_error_unsupported_element_type():
    msg = error_of(build([T(3, elt=f16)], lambda e, x: e(nn.ReluOp(x))))
    assert "f16" in msg


def test_error_is_located_in_text():
    text = """func.func @f(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %0 = nn.pad %x pads [1, 0, 0, 0] : tensor<?x2xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}"""
    msg = error_of(ncc.parse_module(text, "pad.mlir"))
    assert msg.startswith("pad.mlir:2:3: error:") and "padding the dynamic batch" in msg


def test_interpreter_bounds_checks():
    lowered = lower(build([T(3)], lambda e, x: e(nn.ExpOp(x))))
    with pytest.raises(KernelError):
        run_kernel(lowered, [randn(4)])


def test_layerized_dag_native():
    """layerize -> fuse -> lower-to-loops -> native code equals the reference
    on a random DAG with skip connections, for several batch sizes of one
    compiled model. (Small: LLVM's O3 takes seconds on the many loops of a
    layerized net; the interpreted tests above cover bigger ones.)"""
    r = np.random.default_rng(7)
    g = random_graph(r, n=24, n_inputs=4, fan_in=4, values=True, biases=True)
    net = ModuleOp([g.to_net("net")])
    model = ncc.compile(net.clone(), neuron_mode="layers", cache=False)
    for batch in (1, 7, 1000):
        x = r.normal(size=(batch, len(g.input_indices))).astype(np.float32)
        np.testing.assert_allclose(model(x), ncc.reference.run(net, [x])[0], rtol=2e-4, atol=2e-5)
