"""The pool op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.dialects.builtin import i64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.onnx import import_onnx
from ncc.passes.autodiff import differentiate

import test_autodiff_conv as autodiff_conv_tests
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, torch, vjp_reference

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


@pytest.mark.parametrize("cls", [nn.MaxPoolOp, nn.AvgPoolOp])
def test_dialect_pool_shapes_and_errors(cls):
    x, = dialect_tests.values(T((2, 3, 9, 8)))
    assert dialect_tests.shape(cls(x, [3, 2], strides=[2, 2], pads=[1, 0, 1, 0])) == (2, 3, 5, 4)
    assert dialect_tests.shape(cls(x, [2, 2])) == (2, 3, 8, 7)
    with pytest.raises(VerifyException, match="kernel must have 2 entries, got 1"):
        cls(x, [2])
    with pytest.raises(VerifyException, match=r"pads \[2, 0, 0, 0\] must be smaller than the kernel \[2, 2\]"):
        cls(x, [2, 2], pads=[2, 0, 0, 0])
    with pytest.raises(VerifyException, match="kernel, strides and dilations must be >= 1 and pads >= 0"):
        cls(x, [2, 2], strides=[0, 1])
    with pytest.raises(VerifyException, match=r"the output would be empty"):
        cls(x, [10, 2])
    i, = dialect_tests.values(T((1, 1, 4, 4), i64))
    with pytest.raises(VerifyException, match="input must have a float element type"):
        cls(i, [2, 2])


def test_dialect_avg_pool_flag():
    x, = dialect_tests.values(T((1, 1, 4, 4)))
    op = nn.AvgPoolOp(x, [3, 3], pads=[1, 1, 1, 1], count_include_pad=True)
    assert op.params.count_include_pad and "count_include_pad" in op.properties
    assert not nn.AvgPoolOp(x, [3, 3]).params.count_include_pad



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


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
def test_reference_pools_vs_naive_loops(h, w, kernel, strides, pads, kind):
    assume(all(p < k for p, k in zip(pads, kernel * 2)))
    assume(h + pads[0] + pads[2] >= kernel[0] and w + pads[1] + pads[3] >= kernel[1])
    x = reference_tests.randn(2, 3, h, w)
    if kind == "max":
        y = reference_tests.run1([x], lambda emit, a: emit(nn.MaxPoolOp(a, kernel, strides=strides, pads=pads)))
    else:
        incl = kind == "avg-incl"
        y = reference_tests.run1([x], lambda emit, a: emit(nn.AvgPoolOp(a, kernel, strides=strides, pads=pads,
                                                        count_include_pad=incl)))
    ref = naive_pool(x, kernel, strides, pads, kind[:3], kind == "avg-incl")
    np.testing.assert_allclose(y, ref, rtol=1e-12)



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


def test_dilated_pools_lowered():
    for op in (lambda x: nn.MaxPoolOp(x, [2, 3], strides=[1, 2], pads=[1, 2, 2, 1], dilations=[2, 2]),
               lambda x: nn.AvgPoolOp(x, [3, 2], pads=[2, 1, 2, 0], dilations=[2, 3]),
               lambda x: nn.AvgPoolOp(x, [2, 2], pads=[1, 1, 1, 1], dilations=[3, 1],
                                      count_include_pad=True)):
        loop_tests.check(loop_tests.build([loop_tests.T(DYN, 2, 7, 8)], lambda e, x: e(op(x))), [structural_tests.randn(2, 2, 7, 8)])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_max_pool_of_int8_data_lowered(dtype):
    """int8 and uint8 data pooled as they are (padding is the type's least value, the max signed or
    unsigned: 200 beats 100 as uint8, loses as int8's -56): interpreted and native give the reference."""
    elt = nn.ui8 if dtype == np.uint8 else nn.i8
    x = np.random.default_rng(3).integers(0, 256, (2, 3, 7, 6)).astype(np.uint8).view(dtype)
    x[0, 0, :2, :2] = np.array([[200, 100], [100, 100]], np.uint8).view(dtype)
    module = loop_tests.build([T((DYN, 3, 7, 6), elt)], lambda e, x: e(nn.MaxPoolOp(
        x, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1])))
    loop_tests.check(module, [x])
    y = ncc.reference.run(module, [x])[0]
    assert y.dtype == dtype and y[0, 0, 0, 0] == np.array(200 if dtype == np.uint8 else 100, np.uint8).view(dtype)


MAX_POOL_INDICES = [  # x shape, kernel, params
    ((2, 3, 5, 6), [2, 2], {}),
    ((1, 2, 5, 5), [3, 2], {"strides": [2, 2], "pads": [1, 1, 1, 0], "column_major": True}),
    ((1, 1, 7, 6), [2, 2], {"dilations": [2, 2], "pads": [1, 0, 1, 1]}),
    ((1, 2, 4, 3, 5), [2, 2, 2], {"strides": [1, 2, 2], "column_major": True}),
]


@pytest.mark.parametrize("case", MAX_POOL_INDICES, ids=str)
def test_max_pool_indices(case):
    """The reference equals onnxruntime (onnx's reference evaluator gets these
    indices wrong), the values at the indices are max_pool's, and the lowered
    code equals the reference."""
    xs, kernel, kw = case
    x = np.round(structural_tests.randn(*xs), 1)  # ties: the first maximum
    x[0, 0, 0, 0] = -np.inf  # a real -inf beats padding
    kw = dict(kw)
    column_major = kw.pop("column_major", False)
    node = helper.make_node("MaxPool", ["x"], ["v", "i"], kernel_shape=kernel,
                            storage_order=int(column_major), **kw)
    m = onnx_model([node], {"x": (structural_tests.F, xs)}, {"v": structural_tests.F, "i": structural_tests.I64}, opset=12)
    values, indices = structural_tests.check_import(m, {"x": x}, return_outputs=True)
    spatial = range(2, len(xs))
    layout = x.transpose(0, 1, *(reversed(spatial) if column_major else spatial))
    np.testing.assert_array_equal(layout.reshape(-1)[indices], values)
    mod = loop_tests.build([loop_tests.T(DYN, *xs[1:])], lambda e, v: e(nn.MaxPoolIndicesOp(v, kernel, column_major=column_major,
                                                                      **kw)))
    loop_tests.check(mod, [x])


def test_max_pool_indices_import_and_export():
    node = helper.make_node("MaxPool", ["x"], ["v", "i"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    m = onnx_model([node], {"x": (structural_tests.F, [2, 3, 6, 7])}, {"v": structural_tests.F, "i": structural_tests.I64})
    module = structural_tests.check_import(m, {"x": structural_tests.randn(2, 3, 6, 7)}, native=True)
    model = export_tests.check(module, [structural_tests.randn(2, 3, 6, 7)])
    assert [n.op_type for n in model.graph.node] == ["MaxPool", "MaxPool"]


@pytest.mark.parametrize("xs,attrs", [
    ((2, 3, 5, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((3, 2, 9), {"kernel_shape": [3], "strides": [2]}),  # overlapping windows
    ((1, 2, 4, 5, 4), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "pads": [0, 1, 0, 0, 0, 0]})])
def test_import_max_unpool_after_max_pool(xs, attrs):
    """MaxUnpool puts each value where MaxPool's indices say (one scatter per
    (n, c) plane): against onnxruntime, natively with a run-time batch (shapes
    the unpooling restores: onnxruntime and onnx's reference differ on an
    output_shape)."""
    nodes = [helper.make_node("MaxPool", ["x"], ["v", "i"], **attrs),
             helper.make_node("MaxUnpool", ["v", "i"], ["y"], **attrs)]
    m = onnx_model(nodes, {"x": (structural_tests.F, ["n", *xs[1:]])})
    module = structural_tests.check_import(m, {"x": structural_tests.randn(*xs)}, native=True)
    assert "nn.scatter_elements" in {op.name for op in module.walk()}


def test_import_max_unpool_to_a_larger_output_shape():
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    m = onnx_model([node], {"x": (structural_tests.F, [1, 1, 2, 2]), "i": (structural_tests.I64, [1, 1, 2, 2])}, inits={"s": [1, 1, 5, 6]})
    x, i = structural_tests.randn(1, 1, 2, 2), np.array([[[[5, 7], [13, 15]]]])
    got = ncc.reference.run(import_onnx(m), {"x": x, "i": i})[0]
    want = np.zeros((1, 1, 5, 6), np.float32)  # onnx's reference: the 4x4 unpooled, padded at the end
    want[0, 0, [1, 1, 3, 3], [1, 3, 1, 3]] = x.reshape(-1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("attrs", [{"p": 2}, {"p": 3, "strides": [2, 1], "pads": [1, 0, 1, 1]},
                                   {"p": 1, "dilations": [2, 2]}, {"p": 4, "auto_pad": "SAME_LOWER"},
                                   {"p": 3, "ceil_mode": 1, "strides": [2, 2]}])
def test_import_lp_pool(attrs):
    m = onnx_model([helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 3], **attrs)],
                   {"x": (structural_tests.F, [1, 2, 7, 6])}, {"y": structural_tests.F})
    structural_tests.check_import(m, {"x": structural_tests.randn(1, 2, 7, 6)}, rtol=1e-4, atol=1e-5, native="ceil_mode" in attrs)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", [{"dilations": [2, 2]},
                                   {"dilations": [2, 1], "pads": [1, 1, 1, 0], "strides": [2, 1]},
                                   {"dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]}])
def test_import_dilated_pools(op, attrs):
    m = onnx_model([helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 3], **attrs)],
                   {"x": (structural_tests.F, [1, 2, 8, 9])}, {"y": structural_tests.F}, opset=19)
    structural_tests.check_import(m, {"x": structural_tests.randn(1, 2, 8, 9)})


def test_import_average_pool_ceil_mode_counting_the_pads():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
    m = onnx_model([node], {"x": (structural_tests.F, [1, 1, 6, 6])}, {"y": structural_tests.F}, opset=19)
    structural_tests.check_import(m, {"x": structural_tests.randn(1, 1, 6, 6)}, native=True)


def test_export_dilated_pools():
    m = loop_tests.build([loop_tests.T(1, 2, 7, 7)], lambda e, x: e(nn.AvgPoolOp(e(nn.MaxPoolOp(x, [2, 2], dilations=[2, 1])),
                                                           [2, 2], dilations=[1, 2])))
    export_tests.check(m, [structural_tests.randn(1, 2, 7, 7)], opset=19)
    with pytest.raises(NccError, match="a dilated average pool needs ONNX opset 19 or newer"):
        ncc.export_onnx(m, opset=18)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


POOLS = [((1, 1, 5, 5), [2, 2], {}), ((2, 3, 7, 6), [3, 2], {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
         ((1, 2, 9), [3], {"strides": [2], "pads": [1, 2]}), ((DYN, 2, 4, 4), [2, 2], {"strides": [2, 2]}),
         ((1, 1, 3, 1), [2, 3], {"pads": [1, 2, 0, 2]}),  # a 1-wide image: each tap inside at one output only
         ((1, 2, 12, 11), [3, 3], {"strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 2]})]


@pytest.mark.parametrize("case", POOLS, ids=str)
@pytest.mark.parametrize("kind", ["max", "avg", "avg_include_pad"])
def test_lowered_pools(case, kind):
    xs, kernel, params = case
    if kind == "max":
        make = lambda e, x: e(nn.MaxPoolOp(x, kernel, **params))  # noqa: E731
    else:
        make = lambda e, x: e(nn.AvgPoolOp(x, kernel, count_include_pad=kind != "avg", **params))  # noqa: E731
    loop_tests.check(loop_tests.build([loop_tests.T(*xs)], make), [loop_tests.randn(*(3 if d == DYN else d for d in xs))])



@pytest.mark.parametrize("kernel, params", [([3, 3], {"strides": [2, 2]}), ([2, 2], {"pads": [1, 0, 0, 1]}),
                                            ([3, 3], {"pads": [1, 1, 1, 1], "dilations": [2, 1]})])
def test_lowered_max_pool_propagates_nan_and_infinities(kernel, params):
    """A window holding a NaN is NaN (as numpy's max), whichever tap holds it;
    -inf and +inf are values like any other."""
    x = loop_tests.randn(2, 3, 11, 12)
    x.reshape(-1)[::7] = np.nan
    x.reshape(-1)[3::11] = -np.inf
    x.reshape(-1)[5::13] = np.inf
    m = loop_tests.build([loop_tests.T(2, 3, 11, 12)], lambda e, a: e(nn.MaxPoolOp(a, kernel, **params)))
    (want,) = ncc.reference.run(m, [x])
    assert np.isnan(want).any() and not np.isnan(want).all() and np.isinf(want).any()
    loop_tests.check(m, [x])  # NaN where the reference has NaN, equal elsewhere


# ---------------------------------------------------------------------------
# Autodiff of convolutions and pools, against PyTorch (test_autodiff_conv.py)


def _distinct(rng, shape):
    """Values at least 0.05 apart: every window has one maximum (finite differences
    of 1e-6 never change which)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.05 - n * 0.025 + rng.uniform(0, 0.01, n)).reshape(shape)


def _max_pool(seed):
    c = autodiff_conv_tests.pool_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x: nn.MaxPoolOp(x, **c["params"]), [_distinct(rng, c["x"])],
               torch_fn=torch and autodiff_conv_tests.torch_max_pool(**c["params"]))


def _avg_pool(seed, include):
    c = autodiff_conv_tests.pool_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x: nn.AvgPoolOp(x, **c["params"], count_include_pad=include), [autodiff_conv_tests.rand(rng, c["x"])],
               torch_fn=torch and autodiff_conv_tests.torch_avg_pool(**c["params"], count_include_pad=include))


@pytest.mark.parametrize("seed", autodiff_conv_tests.FAST)
def test_max_pool_vjp(seed):
    _max_pool(seed)


@pytest.mark.parametrize("seed", autodiff_conv_tests.FAST[:3])
@pytest.mark.parametrize("include", [False, True])
def test_avg_pool_vjp(seed, include):
    _avg_pool(seed, include)


@pytest.mark.slow
@pytest.mark.parametrize("seed", autodiff_conv_tests.SLOW)
def test_sweep_pools(seed):
    _max_pool(seed)
    _avg_pool(seed, bool(seed % 2))


@autodiff_conv_tests.needs_torch
@pytest.mark.parametrize("params", [
    {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},          # overlapping windows
    {"kernel": [2, 3], "strides": [2, 1], "dilations": [2, 1], "pads": [0, 2, 1, 0]},
    {"kernel": [2, 2], "strides": [2, 2]}])
def test_max_pool_ties_go_to_the_first_maximum_like_torch(params):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 3, 6, 7)).astype(np.float64)  # many ties
    m = loop_tests.build([loop_tests.T(*x.shape, elt=nn.f64)], lambda e, a: e(nn.MaxPoolOp(a, **params)), name="f")
    y = ncc.reference.run(m, [x])[0]
    cot = rng.standard_normal(y.shape)
    (got,) = vjp_reference(m, [x], cot)
    tx = torch.tensor(x, requires_grad=True)
    full = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], **params}
    autodiff_conv_tests.torch_max_pool(**full)(tx).backward(torch.tensor(cot))
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-12)
    differentiate(m, "f", mode="combined")
    native = ncc.compile(m, function="f_vjp", cache=False).run({"arg0": x, "cotangent:0": cot})
    np.testing.assert_allclose(native[1], got, rtol=1e-12)


def test_max_pool_padding_never_wins():
    """All-negative input, padded: the gradient never leaves the image."""
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    m = loop_tests.build([loop_tests.T(1, 1, 3, 3, elt=nn.f64)], lambda e, a: e(nn.MaxPoolOp(a, [2, 2], pads=[1, 1, 1, 1])),
              name="f")
    (g,) = vjp_reference(m, [x], np.ones((1, 1, 4, 4)))
    # each of the 16 windows gives 1 to its maximum, its top-left cell in the image
    np.testing.assert_array_equal(g[0, 0], [[4, 2, 2], [2, 1, 1], [2, 1, 1]])
    assert g.sum() == 16



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("GlobalAveragePool", {}), ("GlobalMaxPool", {}),
])
def test_import_pools(op, attrs):
    import_tests.check(import_tests.model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": [2, 3, 7, 8]}),
          {"x": import_tests.x_of(2, 3, 7, 8)})



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("kind", ["max", "avg", "avg_include_pad"])
def test_export_pools(kind):
    kw = dict(kernel=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    cls = nn.MaxPoolOp if kind == "max" else nn.AvgPoolOp
    if kind == "avg_include_pad":
        kw["count_include_pad"] = True
    export_tests.check(loop_tests.build([loop_tests.T(None, 2, 7, 5)], lambda e, x: e(cls(x, **kw))), [export_tests.randn(3, 2, 7, 5)])


