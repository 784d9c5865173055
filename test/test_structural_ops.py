"""Structural ops: nn.argmax/argmin, nn.cumsum, nn.gather_elements,
nn.scatter_elements, nn.scatter_nd, nn.triu/tril, nn.conv_transpose,
nn.resize, nn.max_pool_indices and dilated pools, at every level: shape rules
and diagnostics, the reference against independent formulations (naive loops,
onnx's reference evaluator), lowered code (loop interpreter and native)
against the reference, ONNX import against onnxruntime (including the ops
that decompose: Tile, DepthToSpace, SpaceToDepth, EyeLike, Range, OneHot,
Hardmax, LpPool, TensorScatter), and export."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import onnx_model
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import f64, i32, i64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects.nn import conv as nn_conv
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.onnx import import_onnx
from ncc.passes.lowering.loop_interpreter import run_kernel

from test_lower_to_loops import T, build, lower  # noqa: E402  (pytest puts test/ on sys.path)
from test_lower_to_loops import check as check_lowered  # noqa: E402
from test_onnx_export import check as check_export  # noqa: E402

F, D, I64, I32 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT32
rng = np.random.default_rng(11)


def randn(*shape, dtype=np.float32):
    return rng.normal(size=shape).astype(dtype)


def values(*types):
    """SSA values of the given types (block arguments), for builder tests."""
    from xdsl.ir import Block

    return Block(arg_types=list(types)).args


# ---------------------------------------------------------------------------
# Shape rules and verifiers


def test_arg_reduce_shapes_and_errors():
    x, = values(T(DYN, 3, 5))
    assert nn.ArgmaxOp(x, 1).result.type == T(DYN, 5, elt=i64)
    assert nn.ArgminOp(x, -1, keepdims=True).result.type == T(DYN, 3, 1, elt=i64)
    with pytest.raises(VerifyException, match="axis 3 is out of range for rank 3"):
        nn.ArgmaxOp(x, 3)
    e, = values(T(2, 0))
    with pytest.raises(VerifyException, match="axis 1 is empty"):
        nn.ArgmaxOp(e, 1)


def test_cumsum_and_triangle_shapes():
    x, = values(T(2, 3, elt=i32))
    assert nn.CumSumOp(x, -1, exclusive=True).result.type == T(2, 3, elt=i32)
    with pytest.raises(VerifyException, match="axis 2 is out of range"):
        nn.CumSumOp(x, 2)
    assert nn.TriuOp(x, -1).result.type == x.type
    v, = values(T(4))
    with pytest.raises(VerifyException, match="input must have rank >= 2"):
        nn.TrilOp(v)


def test_gather_scatter_elements_shapes_and_errors():
    x, idx, idx_big, idx_rank, idx_f, upd = values(
        T(3, 4), T(5, 2, elt=i64), T(2, 5, elt=i64), T(2, elt=i64), T(2, 2), T(5, 2))
    assert nn.GatherElementsOp(x, idx, 0).result.type == T(5, 2)
    with pytest.raises(VerifyException, match=r"indices dimension 1 \(5\) exceeds the input's \(4\)"):
        nn.GatherElementsOp(x, idx_big, 0)
    with pytest.raises(VerifyException, match="indices must have the input's rank 2"):
        nn.GatherElementsOp(x, idx_rank, 0)
    with pytest.raises(VerifyException, match="indices must be i64 or i32"):
        nn.GatherElementsOp(x, idx_f, 1)
    assert nn.ScatterElementsOp(x, idx, upd, 0, "add").result.type == x.type
    with pytest.raises(VerifyException, match="unknown reduction 'sum'"):
        nn.ScatterElementsOp(x, idx, upd, 0, "sum")
    with pytest.raises(VerifyException, match=r"updates \(the indices' shape\) must have shape \[2, 5\]"):
        nn.ScatterElementsOp(x, idx_big, upd, 1)


def test_scatter_nd_shapes_and_errors():
    x, idx, upd, idx3, bad = values(T(4, 5, 6), T(2, 2, elt=i64), T(2, 6), T(2, 4, elt=i64), T(2, 5))
    assert nn.ScatterNDOp(x, idx, upd, "max").result.type == x.type
    with pytest.raises(VerifyException, match="indices' last dimension must be 1..3"):
        nn.ScatterNDOp(x, idx3, upd)
    with pytest.raises(VerifyException, match=r"updates .* must have shape \[2, 6\]"):
        nn.ScatterNDOp(x, idx, bad)


@pytest.mark.parametrize("x,w,kw,out", [
    ((1, 1, 3, 3), (1, 2, 3, 3), {}, (1, 2, 5, 5)),
    ((2, 4, 5), (4, 3, 2), {"strides": [2], "group": 2, "pads": [1, 0]}, (2, 6, 9)),
    ((DYN, 2, 3, 4), (2, 1, 2, 2), {"strides": [3, 2], "output_padding": [1, 1],
                                    "dilations": [2, 1]}, (DYN, 1, 10, 9)),
])
def test_conv_transpose_shapes(x, w, kw, out):
    xv, wv = values(T(*x), T(*w))
    assert nn.shape_of(nn.ConvTransposeOp(xv, wv, **kw).result.type) == out


def test_conv_transpose_errors():
    x, w, w3 = values(T(1, 2, 3, 3), T(3, 1, 3, 3), T(2, 1, 3, 3))
    with pytest.raises(VerifyException, match="input has 2 channels but the weight has 3"):
        nn.ConvTransposeOp(x, w)
    with pytest.raises(VerifyException, match="3 input channels are not divisible by group 2"):
        nn.ConvTransposeOp(values(T(1, 3, 3, 3))[0], w, group=2)
    with pytest.raises(VerifyException, match="the output would be empty"):
        nn.ConvTransposeOp(x, w3, pads=[3, 0, 3, 0])
    with pytest.raises(VerifyException, match="pads and output_padding >= 0"):
        nn.ConvTransposeOp(x, w3, output_padding=[-1, 0])


def test_resize_verifier():
    x, xi = values(T(DYN, 2, 4, 4), T(1, 2, 3, elt=i64))
    op = nn.ResizeOp(x, [None, 2, 8, 2], [1.0, 1.0, 2.0, 0.5], "linear")
    assert op.result.type == T(DYN, 2, 8, 2)
    assert op.params.coordinate_transformation_mode == "half_pixel"
    with pytest.raises(VerifyException, match="unknown mode 'area'"):
        nn.ResizeOp(x, [None, 2, 8, 2], [1.0, 1.0, 2.0, 0.5], "area")
    with pytest.raises(VerifyException, match=r"scales \(one per axis\) must have 4 entries"):
        nn.ResizeOp(x, [None, 2, 8, 2], [2.0, 0.5], "linear")
    with pytest.raises(VerifyException, match="dimension 0 is dynamic: it must keep its size"):
        nn.ResizeOp(x, [None, 2, 8, 2], [2.0, 1.0, 2.0, 0.5])
    with pytest.raises(VerifyException, match="must have a float element type"):
        nn.ResizeOp(xi, [1, 2, 6], [1.0, 1.0, 2.0], "cubic")
    with pytest.raises(VerifyException, match="antialias applies to the linear and cubic modes only"):
        nn.ResizeOp(xi, [1, 2, 6], [1.0, 1.0, 2.0], antialias=True)
    with pytest.raises(VerifyException, match="unknown nearest_mode 'up'"):
        nn.ResizeOp(xi, [1, 2, 6], [1.0, 1.0, 2.0], nearest_mode="up")
    with pytest.raises(VerifyException, match="scales must be finite and > 0"):
        nn.ResizeOp(xi, [1, 2, 6], [1.0, 0.0, 2.0])


def test_new_ops_print_and_parse_back():
    text = """
func.func @f(%x: tensor<1x2x4x4xf32>, %i: tensor<1x2x4x4xi64>, %w: tensor<2x3x3x3xf32>) -> tensor<1x2x8x6xf32> {
  %0 = nn.argmax %x axis 1 keepdims select_last_index : tensor<1x2x4x4xf32> -> tensor<1x1x4x4xi64>
  %1 = nn.cumsum %x axis 2 exclusive reverse : tensor<1x2x4x4xf32>
  %2 = nn.gather_elements %x, %i axis -1 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xi64> -> tensor<1x2x4x4xf32>
  %3 = nn.scatter_elements %x, %i, %1 axis 3 reduction add : tensor<1x2x4x4xf32>, tensor<1x2x4x4xi64>, tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  %4 = nn.triu %x k -1 : tensor<1x2x4x4xf32>
  %5 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 1, 1] group 2 output_padding [1, 0] : tensor<1x2x4x4xf32>, tensor<2x3x3x3xf32> -> tensor<1x6x8x7xf32>
  %6 = nn.resize %x mode cubic scales [1.0, 1.0, 2.0, 1.5] coordinate_transformation_mode align_corners cubic_coeff_a -0.5 exclude_outside : tensor<1x2x4x4xf32> -> tensor<1x2x8x6xf32>
  func.return %6 : tensor<1x2x8x6xf32>
}"""
    module = ncc.parse_module(text)
    printed = ncc.print_module(module)
    for line in text.strip().splitlines()[1:-2]:
        assert line.strip().split(" = ", 1)[1] in printed
    assert ncc.print_module(ncc.parse_module(printed)) == printed


# ---------------------------------------------------------------------------
# The reference against independent formulations


def naive_conv_transpose(x, w, strides, pads, dilations, group, output_padding):
    """Scatter form, one input point and kernel offset at a time."""
    n, c, *spatial = x.shape
    _, mg, *kernel = w.shape
    k = len(kernel)
    full = [(s - 1) * st + (kk - 1) * d + 1 + op
            for s, st, kk, d, op in zip(spatial, strides, kernel, dilations, output_padding)]
    y = np.zeros((n, mg * group, *full))
    cg = c // group
    for b, ci, *pos in itertools.product(range(n), range(c), *map(range, spatial)):
        g = ci // cg
        for m, *off in itertools.product(range(mg), *map(range, kernel)):
            at = [p * st + o * d for p, st, o, d in zip(pos, strides, off, dilations)]
            y[(b, g * mg + m, *at)] += x[(b, ci, *pos)] * w[(ci, m, *off)]
    return y[(slice(None), slice(None), *(slice(pads[i], full[i] - pads[i + k]) for i in range(k)))]


CONV_TRANSPOSES = [  # x shape, w shape, params
    ((1, 1, 3, 3), (1, 2, 3, 3), {}),
    ((2, 2, 3, 4), (2, 3, 3, 2), {"strides": [3, 2], "pads": [1, 0, 2, 1]}),
    ((1, 4, 3, 3), (4, 2, 2, 3), {"group": 2, "dilations": [2, 1], "output_padding": [1, 0],
                                  "strides": [2, 2]}),
    ((2, 3, 5), (3, 2, 4), {"strides": [2], "pads": [1, 2], "output_padding": [1]}),
    ((1, 2, 2, 3, 2), (2, 1, 2, 2, 2), {"strides": [1, 2, 1], "group": 2}),
    ((1, 2, 3, 3), (2, 2, 2, 3), {"strides": [3, 2], "pads": [0, 1, 1, 0]}),  # stride > kernel
]


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_conv_transpose_reference_is_the_scatter_form(case):
    xs, ws, kw = case
    x, w = randn(*xs, dtype=np.float64), randn(*ws, dtype=np.float64)
    op = nn.ConvTransposeOp(*values(T(*xs, elt=f64), T(*ws, elt=f64)), **kw)
    p = op.params
    got = nn_conv.conv_transpose_reference(x, w, p.strides, p.pads, p.dilations, p.group,
                                       p.output_padding)
    want = naive_conv_transpose(x, w, p.strides, p.pads, p.dilations, p.group, p.output_padding)
    assert got.shape == nn.shape_of(op.result.type)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# align_corners with a fractional output width (5 * 2.3): onnx's reference (and
# its conformance cases) divide by scale * length - 1, onnxruntime by the
# integer length - 1. ncc follows the reference.
def ort_differs(case) -> bool:
    shape, _, scales, attrs = case
    return attrs.get("coordinate_transformation_mode") == "align_corners" and scales is not None \
        and any(not float(np.float32(s) * n).is_integer() for s, n in zip(scales, shape))

RESIZES = [  # input shape, output sizes or None, scales, attributes
    ((1, 1, 4, 4), None, [1, 1, 2, 2], {"mode": "nearest"}),
    ((1, 2, 3, 5), None, [1, 1, 0.6, 1.7], {"mode": "nearest", "nearest_mode": "floor"}),
    ((1, 1, 4, 6), None, [1, 1, 1.5, 0.5], {"mode": "nearest", "nearest_mode": "ceil",
                                            "coordinate_transformation_mode": "asymmetric"}),
    ((2, 1, 5), None, [1, 1, 2.3], {"mode": "nearest", "nearest_mode": "round_prefer_ceil",
                                    "coordinate_transformation_mode": "align_corners"}),
    ((1, 1, 4, 4), None, [1, 1, 2, 3], {"mode": "linear"}),
    ((1, 1, 4, 4), None, [1, 1, 0.6, 0.8], {"mode": "linear",
                                            "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ((1, 2, 4, 5), None, [1, 1, 2.3, 0.7], {"mode": "linear",
                                            "coordinate_transformation_mode": "half_pixel_symmetric"}),
    ((1, 1, 5, 4), None, [1, 1, 1.5, 2], {"mode": "cubic"}),
    ((1, 1, 6, 6), None, [1, 1, 0.7, 0.5], {"mode": "cubic", "cubic_coeff_a": -0.5,
                                            "exclude_outside": 1}),
    ((1, 1, 8, 8), None, [1, 1, 0.4, 0.6], {"mode": "linear", "antialias": 1}),
    ((1, 1, 8, 7), None, [1, 1, 0.5, 0.6], {"mode": "cubic", "antialias": 1}),
    ((1, 1, 4, 4), (1, 1, 3, 5), None, {"mode": "linear",
                                        "coordinate_transformation_mode": "tf_crop_and_resize",
                                        "roi": [0, 0, 0.2, -0.3, 1, 1, 0.9, 1.4],
                                        "extrapolation_value": 7.0}),
    ((1, 1, 4, 4), (1, 1, 6, 3), None, {"mode": "cubic",
                                        "coordinate_transformation_mode": "align_corners"}),
]


def _resize_node(inputs, sizes, scales, attrs):
    roi = attrs.pop("roi", None)
    names = ["x", "roi" if roi is not None else "", "scales" if scales is not None else ""]
    if sizes is not None:
        names.append("sizes")
    inits = {}
    if roi is not None:
        inits["roi"] = np.asarray(roi, np.float32)
    if scales is not None:
        inits["scales"] = np.asarray(scales, np.float32)
    if sizes is not None:
        inits["sizes"] = np.asarray(sizes, np.int64)
    return helper.make_node("Resize", names, ["y"], **attrs), inits


@pytest.mark.parametrize("case", RESIZES, ids=str)
def test_resize_reference_matches_onnx_reference(case):
    """The imported nn.resize's reference equals onnx's reference evaluator (its
    own implementation, float64) on each mode and coordinate transformation."""
    from onnx.reference import ReferenceEvaluator

    shape, sizes, scales, attrs = case
    node, inits = _resize_node(["x"], sizes, scales, dict(attrs))
    m = onnx_model([node], {"x": (D, shape)}, {"y": D}, inits, opset=19)
    x = randn(*shape, dtype=np.float64)
    want, = ReferenceEvaluator(m).run(None, {"x": x})
    got, = ncc.reference.run(import_onnx(m), {"x": x})
    assert got.shape == want.shape
    # onnx's evaluator does part of its arithmetic in float32 (roi, scales and
    # cubic_coeff_a are float32 there), ncc's tables are float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Lowered code (loop interpreter and native) against the reference


@pytest.mark.parametrize("name", sorted(nn.ARG_REDUCE))
@pytest.mark.parametrize("axis,keepdims,last", [(1, False, False), (-1, True, True), (0, False, True)])
def test_arg_reduce_lowered(name, axis, keepdims, last):
    m = build([T(DYN, 3, 5)], lambda e, x: e(nn.ARG_REDUCE_OPS[name](x, axis, keepdims, last)))
    x = np.round(randn(4, 3, 5) * 2) / 2  # ties
    x[0, 1, 2] = np.nan  # NaN is the extreme, as in numpy
    x[2, 2, 1] = x[2, 2, 3] = np.nan
    check_lowered(m, [x])


@pytest.mark.parametrize("last", [False, True])
def test_arg_reduce_integers(last):
    m = build([T(3, 6, elt=i32)], lambda e, x: e(nn.ArgmaxOp(x, 1, select_last_index=last)))
    check_lowered(m, [rng.integers(-3, 3, (3, 6)).astype(np.int32)])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumsum_lowered(axis, exclusive, reverse):
    m = build([T(DYN, 3, 4)], lambda e, x: e(nn.CumSumOp(x, axis, exclusive, reverse)))
    check_lowered(m, [randn(2, 3, 4)])


def test_cumsum_integers():
    m = build([T(5, elt=i64)], lambda e, x: e(nn.CumSumOp(x, 0, exclusive=True)))
    check_lowered(m, [rng.integers(-9, 9, 5)])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_lowered(axis):
    ishape = [2, 2, 3]
    ishape[axis] = 5
    dim = (4, 3, 4)[axis]
    idx = rng.integers(-dim, dim, ishape)
    m = build([T(4, 3, 4), T(*ishape, elt=i64)], lambda e, x, i: e(nn.GatherElementsOp(x, i, axis)))
    check_lowered(m, [randn(4, 3, 4), idx])


def test_gather_elements_on_the_batch():
    m = build([T(DYN, 3), T(DYN, 2, elt=i32)], lambda e, x, i: e(nn.GatherElementsOp(x, i, 1)))
    check_lowered(m, [randn(4, 3), rng.integers(-3, 3, (4, 2)).astype(np.int32)])


def test_gather_elements_clamps_out_of_range_indices():
    m = build([T(4), T(3, elt=i64)], lambda e, x, i: e(nn.GatherElementsOp(x, i)))
    x = randn(4)
    (got,) = run_kernel(lower(m), [x, np.array([9, -7, 1])])
    np.testing.assert_array_equal(got, x[[3, 0, 1]])


@pytest.mark.parametrize("reduction", nn.SCATTER_REDUCTIONS)
@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_elements_lowered(reduction, axis):
    idx = np.array([[1, -1, 0], [1, 2, 1]])  # repeated positions combine in order
    m = build([T(3, 3), T(2, 3, elt=i64), T(2, 3)],
              lambda e, x, i, u: e(nn.ScatterElementsOp(x, i, u, axis, reduction)))
    check_lowered(m, [randn(3, 3), idx, randn(2, 3)])


@pytest.mark.parametrize("reduction", nn.SCATTER_REDUCTIONS)
def test_scatter_nd_lowered(reduction):
    m = build([T(4, 3, 2), T(3, 1, elt=i64), T(3, 3, 2)],
              lambda e, x, i, u: e(nn.ScatterNDOp(x, i, u, reduction)))
    check_lowered(m, [randn(4, 3, 2), np.array([[2], [0], [-2]]), randn(3, 3, 2)])


def test_scatter_nd_element_tuples_on_the_batch():
    m = build([T(DYN, 3), T(2, 2, elt=i32), T(2)],
              lambda e, x, i, u: e(nn.ScatterNDOp(x, i, u, "add")))
    check_lowered(m, [randn(3, 3), np.array([[0, 1], [2, -1]], np.int32), randn(2)])


@pytest.mark.parametrize("name", sorted(nn.TRIANGLE))
@pytest.mark.parametrize("k", [-2, 0, 1, 9])
def test_triangles_lowered(name, k):
    m = build([T(DYN, 3, 5)], lambda e, x: e(nn.TRIANGLE_OPS[name](x, k)))
    x = randn(2, 3, 5)
    x[0, 0, 0], x[1, 2, 0] = np.inf, np.nan  # kept or zeroed, never multiplied
    check_lowered(m, [x])


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_conv_transpose_lowered(case):
    xs, ws, kw = case
    w = nn.WeightOp("w", randn(*ws))
    xs = (DYN, *xs[1:])
    m = build([T(*xs)], lambda e, x: e(nn.ConvTransposeOp(x, e(nn.WeightRefOp(w)), **kw)), [w])
    check_lowered(m, [randn(2, *xs[1:])], rtol=1e-4, atol=1e-5)


def _resize_op(x, shape, sizes, scales, attrs):
    attrs = dict(attrs)
    r = len(shape)
    if scales is None:
        scales = [o / i for o, i in zip(sizes, shape)]
    if sizes is None:
        sizes = [int(np.floor(i * s)) for i, s in zip(shape, scales)]
    mode = attrs.pop("mode")
    kw = {k: bool(v) if k in ("antialias", "exclude_outside") else v for k, v in attrs.items()}
    if "roi" in kw:
        kw["roi"] = kw["roi"][:r] + kw["roi"][r:]
    return nn.ResizeOp(x, sizes, scales, mode, **kw)


@pytest.mark.parametrize("case", RESIZES, ids=str)
def test_resize_lowered(case):
    shape, sizes, scales, attrs = case
    m = build([T(*shape)], lambda e, x: e(_resize_op(x, shape, sizes, scales, attrs)))
    check_lowered(m, [randn(*shape)], rtol=1e-5, atol=1e-5)


def test_resize_nearest_integers_on_the_batch():
    shape = (DYN, 2, 3)
    m = build([T(*shape, elt=i64)],
              lambda e, x: e(nn.ResizeOp(x, [None, 5, 7], [1.0, 2.5, 2.4], nearest_mode="ceil")))
    lowered = check_lowered(m, [rng.integers(-9, 9, (3, 2, 3))])
    roles = [str(r) for r in ncc.passes.lowering.abi.KernelABI.of(
        next(op for op in lowered.ops if op.name == "func.func")).roles]
    assert roles == ["input:arg0", "output:0", "weight:main_resize_index1", "weight:main_resize_index2"]


def test_dilated_pools_lowered():
    for op in (lambda x: nn.MaxPoolOp(x, [2, 3], strides=[1, 2], pads=[1, 2, 2, 1], dilations=[2, 2]),
               lambda x: nn.AvgPoolOp(x, [3, 2], pads=[2, 1, 2, 0], dilations=[2, 3]),
               lambda x: nn.AvgPoolOp(x, [2, 2], pads=[1, 1, 1, 1], dilations=[3, 1],
                                      count_include_pad=True)):
        check_lowered(build([T(DYN, 2, 7, 8)], lambda e, x: e(op(x))), [randn(2, 2, 7, 8)])


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
    x = np.round(randn(*xs), 1)  # ties: the first maximum
    x[0, 0, 0, 0] = -np.inf  # a real -inf beats padding
    kw = dict(kw)
    column_major = kw.pop("column_major", False)
    node = helper.make_node("MaxPool", ["x"], ["v", "i"], kernel_shape=kernel,
                            storage_order=int(column_major), **kw)
    m = onnx_model([node], {"x": (F, xs)}, {"v": F, "i": I64}, opset=12)
    values, indices = check_import(m, {"x": x}, return_outputs=True)
    spatial = range(2, len(xs))
    layout = x.transpose(0, 1, *(reversed(spatial) if column_major else spatial))
    np.testing.assert_array_equal(layout.reshape(-1)[indices], values)
    mod = build([T(DYN, *xs[1:])], lambda e, v: e(nn.MaxPoolIndicesOp(v, kernel, column_major=column_major,
                                                                      **kw)))
    check_lowered(mod, [x])


def test_max_pool_indices_import_and_export():
    node = helper.make_node("MaxPool", ["x"], ["v", "i"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    m = onnx_model([node], {"x": (F, [2, 3, 6, 7])}, {"v": F, "i": I64})
    module = check_import(m, {"x": randn(2, 3, 6, 7)}, native=True)
    model = check_export(module, [randn(2, 3, 6, 7)])
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
    m = onnx_model(nodes, {"x": (F, ["n", *xs[1:]])})
    module = check_import(m, {"x": randn(*xs)}, native=True)
    assert "nn.scatter_elements" in {op.name for op in module.walk()}


def test_import_max_unpool_to_a_larger_output_shape():
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    m = onnx_model([node], {"x": (F, [1, 1, 2, 2]), "i": (I64, [1, 1, 2, 2])}, inits={"s": [1, 1, 5, 6]})
    x, i = randn(1, 1, 2, 2), np.array([[[[5, 7], [13, 15]]]])
    got = ncc.reference.run(import_onnx(m), {"x": x, "i": i})[0]
    want = np.zeros((1, 1, 5, 6), np.float32)  # onnx's reference: the 4x4 unpooled, padded at the end
    want[0, 0, [1, 1, 3, 3], [1, 3, 1, 3]] = x.reshape(-1)
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# ONNX import against onnxruntime


def check_import(m, feeds, rtol=1e-5, atol=1e-6, native=False, return_outputs=False):
    """The imported model's reference run (and, with native, its compiled run)
    equals onnxruntime's; returns the module (or, with return_outputs, its outputs)."""
    module = import_onnx(m)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    runs = [ncc.reference.run(module, feeds)]
    if native:
        out = ncc.compile(module, cache=False).run(feeds)
        runs.append(list(out))
    for got in runs:
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return runs[0] if return_outputs else module


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": -1, "keepdims": 0}, {"axis": 1, "select_last_index": 1}])
def test_import_arg_reduce(op, attrs):
    m = onnx_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (F, [3, 4, 5])}, {"y": I64})
    check_import(m, {"x": np.round(randn(3, 4, 5))})


@pytest.mark.parametrize("attrs", [{}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}])
def test_import_cumsum(attrs):
    m = onnx_model([helper.make_node("CumSum", ["x", "axis"], ["y"], **attrs)], {"x": (F, [3, 4])},
                   {"y": F}, {"axis": np.array(-1, np.int32)})
    check_import(m, {"x": randn(3, 4)})


def test_import_gather_elements_and_scatters():
    nodes = [helper.make_node("GatherElements", ["x", "i"], ["g"], axis=1),
             helper.make_node("ScatterElements", ["x", "i", "u"], ["s"], axis=1, reduction="add"),
             helper.make_node("ScatterND", ["x", "j", "v"], ["n"], reduction="mul")]
    m = onnx_model(nodes, {"x": (F, [3, 4]), "i": (I64, [3, 2]), "u": (F, [3, 2]), "v": (F, [2, 4])},
                   {"g": F, "s": F, "n": F}, {"j": np.array([[2], [0]], np.int64)})
    check_import(m, {"x": randn(3, 4), "i": rng.integers(-4, 4, (3, 2)), "u": randn(3, 2),
                     "v": randn(2, 4)}, native=True)


def test_import_scatter_of_opset_10():
    m = onnx_model([helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=0)],
                   {"x": (F, [3, 3]), "i": (I64, [1, 3]), "u": (F, [1, 3])}, {"y": F}, opset=10)
    check_import(m, {"x": randn(3, 3), "i": np.array([[2, 0, 1]]), "u": randn(1, 3)})


@pytest.mark.parametrize("mode,write", [("linear", None), ("linear", [0, 3]), ("circular", [2, 4])])
def test_import_tensor_scatter(mode, write):
    """A KV cache update (opset 24): against onnx's reference evaluator, natively."""
    from onnx.reference import ReferenceEvaluator

    inputs = {"past": (F, [2, 3, 5, 4]), "update": (F, [2, 3, 2, 4])}
    if write is not None:
        inputs["w"] = (I64, [2])
    node = helper.make_node("TensorScatter", list(inputs), ["y"], mode=mode)
    m = onnx_model([node], inputs, {"y": F}, opset=24)
    feeds = {"past": randn(2, 3, 5, 4), "update": randn(2, 3, 2, 4)}
    if write is not None:
        feeds["w"] = np.array(write)
    want, = ReferenceEvaluator(m).run(None, feeds)
    module = import_onnx(m)
    np.testing.assert_array_equal(ncc.reference.run(module, feeds)[0], want)
    np.testing.assert_array_equal(ncc.compile(module, cache=False).run(feeds)[0], want)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_import_trilu(upper, k):
    node = helper.make_node("Trilu", ["x"] + (["k"] if k is not None else []), ["y"], upper=upper)
    m = onnx_model([node], {"x": (F, [2, 4, 5])}, {"y": F},
                   {} if k is None else {"k": np.array(k, np.int64)})
    check_import(m, {"x": randn(2, 4, 5)})


def test_import_tile():
    m = onnx_model([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": (F, [2, 3])}, {"y": F},
                   {"r": np.array([3, 2], np.int64)})
    check_import(m, {"x": randn(2, 3)}, native=True)


@pytest.mark.parametrize("op,mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"),
                                     ("SpaceToDepth", None)])
def test_import_depth_space(op, mode):
    shape = [2, 8, 3, 2] if op == "DepthToSpace" else [2, 2, 4, 6]
    attrs = {"mode": mode} if mode else {}
    m = onnx_model([helper.make_node(op, ["x"], ["y"], blocksize=2, **attrs)],
                   {"x": (F, shape)}, {"y": F}, opset=13)
    check_import(m, {"x": randn(*shape)})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_import_space_to_depth_inverts_depth_to_space(mode):
    """SpaceToDepth has a mode from opset 28 (newer than onnxruntime here): it
    must undo DepthToSpace of the same mode."""
    nodes = [helper.make_node("DepthToSpace", ["x"], ["s"], blocksize=3, mode=mode),
             helper.make_node("SpaceToDepth", ["s"], ["y"], blocksize=3, mode=mode)]
    m = onnx_model(nodes, {"x": (F, [2, 18, 2, 3])}, {"y": F}, opset=28)
    x = randn(2, 18, 2, 3)
    np.testing.assert_array_equal(ncc.reference.run(import_onnx(m), {"x": x})[0], x)


def test_import_eye_like():
    m = onnx_model([helper.make_node("EyeLike", ["x"], ["y"], k=-1, dtype=D)], {"x": (I32, [3, 5])},
                   {"y": D})
    check_import(m, {"x": np.zeros((3, 5), np.int32)})


def test_import_range_is_folded_or_refused():
    m = onnx_model([helper.make_node("Range", ["s", "l", "d"], ["r"]),
                    helper.make_node("Add", ["x", "r"], ["y"])], {"x": (F, [4])}, {"y": F},
                   {"s": np.array(1.0, np.float32), "l": np.array(3.0, np.float32),
                    "d": np.array(0.5, np.float32)})
    check_import(m, {"x": randn(4)})
    m = onnx_model([helper.make_node("Range", ["s", "l", "d"], ["y"])],
                   {"s": (F, []), "l": (F, [])}, {"y": F}, {"d": np.array(0.5, np.float32)})
    with pytest.raises(NccError, match=r"node 'y' \(Range\): input 0 \('s'\) must be a constant"):
        import_onnx(m)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("values", ["constant", "input"])
def test_import_one_hot(axis, values):
    inits = {"depth": np.array(4, np.int64)}
    inputs = {"i": (I64, [2, 3])}
    if values == "constant":
        inits["v"] = np.array([-1.0, 2.0], np.float32)
    else:
        inputs["v"] = (F, [2])
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=axis)], inputs,
                   {"y": F}, inits, opset=11)
    feeds = {"i": np.array([[0, 3, -1], [-4, 4, -5]])}  # negative, and out of range: all `off`
    if values == "input":
        feeds["v"] = np.array([0.5, 3.0], np.float32)
    check_import(m, feeds, native=True)


def test_import_one_hot_of_float_indices():
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=0)],
                   {"i": (F, [4]), "v": (F, [2])}, {"y": F}, {"depth": np.array(3.0, np.float32)},
                   opset=11)
    check_import(m, {"i": np.array([0.0, 2.7, -1.2, 5.0], np.float32),
                     "v": np.array([0.0, 1.0], np.float32)}, native=True)
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"])],
                   {"i": (F, [4]), "v": (I64, [2])}, {"y": I64}, {"depth": np.array(3, np.int64)},
                   opset=11)
    with pytest.raises(NccError, match=r"float indices \(f32\) need values of their type"):
        import_onnx(m)


@pytest.mark.parametrize("opset,axis", [(11, 1), (11, 0), (13, 1), (13, -1), (13, 0)])
def test_import_hardmax(opset, axis):
    m = onnx_model([helper.make_node("Hardmax", ["x"], ["y"], axis=axis)], {"x": (F, [3, 4, 2])},
                   {"y": F}, opset=opset)
    x = np.round(randn(3, 4, 2))  # ties: the first maximum
    check_import(m, {"x": x}, native=opset == 13 and axis == 0)


@pytest.mark.parametrize("attrs", [{"p": 2}, {"p": 3, "strides": [2, 1], "pads": [1, 0, 1, 1]},
                                   {"p": 1, "dilations": [2, 2]}, {"p": 4, "auto_pad": "SAME_LOWER"},
                                   {"p": 3, "ceil_mode": 1, "strides": [2, 2]}])
def test_import_lp_pool(attrs):
    m = onnx_model([helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 3], **attrs)],
                   {"x": (F, [1, 2, 7, 6])}, {"y": F})
    check_import(m, {"x": randn(1, 2, 7, 6)}, rtol=1e-4, atol=1e-5, native="ceil_mode" in attrs)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", [{"dilations": [2, 2]},
                                   {"dilations": [2, 1], "pads": [1, 1, 1, 0], "strides": [2, 1]},
                                   {"dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]}])
def test_import_dilated_pools(op, attrs):
    m = onnx_model([helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 3], **attrs)],
                   {"x": (F, [1, 2, 8, 9])}, {"y": F}, opset=19)
    check_import(m, {"x": randn(1, 2, 8, 9)})


def test_import_average_pool_ceil_mode_counting_the_pads():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
    m = onnx_model([node], {"x": (F, [1, 1, 6, 6])}, {"y": F}, opset=19)
    check_import(m, {"x": randn(1, 1, 6, 6)}, native=True)


@pytest.mark.parametrize("attrs", [
    {}, {"strides": [3, 2], "output_padding": [1, 1]}, {"strides": [3, 2], "output_shape": [10, 8]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, {"strides": [2, 3], "auto_pad": "SAME_LOWER"},
    {"pads": [1, 2, 0, 1], "dilations": [2, 1]}, {"group": 2, "strides": [2, 1]},
])
def test_import_conv_transpose(attrs):
    group = attrs.get("group", 1)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    m = onnx_model([node], {"x": (F, [2, 2, 3, 3])}, {"y": F},
                   {"w": randn(2, 3 if group == 1 else 2, 3, 3), "b": randn(3 if group == 1 else 4)})
    check_import(m, {"x": randn(2, 2, 3, 3)}, rtol=1e-5, atol=1e-5, native=bool(attrs.get("group")))


@pytest.mark.parametrize("case", RESIZES, ids=str)
def test_import_resize(case):
    shape, sizes, scales, attrs = case
    attrs = dict(attrs)
    if attrs.get("coordinate_transformation_mode") == "half_pixel_symmetric":
        pytest.skip("onnxruntime 1.32 does not know half_pixel_symmetric "
                    "(onnx's reference evaluator checks it above)")
    if ort_differs(case):
        pytest.skip("onnxruntime differs from onnx's reference here (see ort_differs)")
    node, inits = _resize_node(["x"], sizes, scales, attrs)
    m = onnx_model([node], {"x": (F, shape)}, {"y": F}, inits)
    check_import(m, {"x": randn(*shape)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs,sizes", [
    ({"axes": [3, 2]}, [6, 3]), ({"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, [7, 3]),
    ({"keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]}, [7, 3]),
])
def test_import_resize_axes_and_aspect_policies(attrs, sizes):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", **attrs)
    m = onnx_model([node], {"x": (F, [1, 2, 3, 4])}, {"y": F}, {"sizes": np.array(sizes, np.int64)})
    check_import(m, {"x": randn(1, 2, 3, 4)}, native=attrs == {"axes": [3, 2]})


@pytest.mark.parametrize("op,opset,mode,scales", [
    ("Upsample", 9, "nearest", [1, 1, 2, 3]), ("Upsample", 9, "linear", [1, 1, 2, 1.5]),
    ("Resize", 10, "nearest", [1, 1, 2, 3]), ("Resize", 10, "linear", [1, 1, 2, 1.5]),
    ("Resize", 10, "nearest", [1, 1, 0.5, 0.7])])  # Upsample only upsamples
def test_import_upsample_and_resize_10(op, opset, mode, scales):
    node = helper.make_node(op, ["x", "scales"], ["y"], mode=mode)
    m = onnx_model([node], {"x": (F, [1, 2, 4, 4])}, {"y": F},
                   {"scales": np.array(scales, np.float32)}, opset=opset)
    check_import(m, {"x": randn(1, 2, 4, 4)})


def test_import_resize_and_conv_transpose_natively_on_a_batch():
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2], pads=[1, 1, 0, 0]),
             helper.make_node("Resize", ["t", "", "s"], ["y"], mode="linear")]
    m = onnx_model(nodes, {"x": (F, ["n", 2, 4, 4])}, {"y": F},
                   {"w": randn(2, 3, 3, 3), "s": np.array([1, 1, 0.5, 1.5], np.float32)})
    module = import_onnx(m)
    model = ncc.compile(module, cache=False)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = randn(batch, 2, 4, 4)
        np.testing.assert_allclose(model(x), sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_import_diagnostics():
    def diag(nodes, inputs, outputs, inits=(), opset=18):
        with pytest.raises(NccError) as e:
            import_onnx(onnx_model(nodes, inputs, outputs, inits, opset))
        return str(e.value)

    msg = diag([helper.make_node("Resize", ["x", "", "s", "z"], ["y"])], {"x": (F, [1, 1, 2, 2])},
               {"y": F}, {"s": np.ones(4, np.float32), "z": np.array([1, 1, 2, 2], np.int64)})
    assert "(Resize): exactly one of scales and sizes must be given" in msg
    msg = diag([helper.make_node("ConvTranspose", ["x", "w"], ["y"], output_shape=[9, 9],
                                 auto_pad="SAME_UPPER")],
               {"x": (F, [1, 1, 3, 3])}, {"y": F}, {"w": randn(1, 1, 3, 3)})
    assert "needs negative begin pads [-2, -2], which are not supported" in msg
    msg = diag([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": (F, [2, 3])}, {"y": F},
               {"r": np.array([2], np.int64)})
    assert "(Tile): repeats [2] must be 2 values >= 0" in msg
    msg = diag([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], {"x": (F, [1, 6, 2, 2])},
               {"y": F})
    assert "6 channels are not divisible by blocksize^2 = 4" in msg
    msg = diag([helper.make_node("CumSum", ["x", "a"], ["y"])], {"x": (F, [3])}, {"y": F},
               {"a": np.array([0, 1], np.int64)})
    assert "(CumSum): axis must hold one value, got 2" in msg


# ---------------------------------------------------------------------------
# Export


@pytest.mark.parametrize("name", sorted(nn.ARG_REDUCE))
def test_export_arg_reduce(name):
    m = build([T(DYN, 4, 3)], lambda e, x: e(nn.ARG_REDUCE_OPS[name](x, 1, True, True)))
    check_export(m, [np.round(randn(2, 4, 3))])


def test_export_cumsum_triangles_gathers_and_scatters():
    def make(e, x, i, u):
        c = e(nn.CumSumOp(x, 1, exclusive=True, reverse=True))
        t = e(nn.TrilOp(e(nn.TriuOp(c, -1)), 1))
        g = e(nn.GatherElementsOp(t, i, 0))
        s = e(nn.ScatterElementsOp(g, i, u, 1, "max"))
        return e(nn.ScatterNDOp(s, e(nn.ConstantOp(np.array([[1], [0]]))), u, "add"))

    m = build([T(3, 3), T(2, 3, elt=i64), T(2, 3)], make)
    model = check_export(m, [randn(3, 3), rng.integers(-3, 3, (2, 3)), randn(2, 3)])
    assert {"CumSum", "Trilu", "GatherElements", "ScatterElements", "ScatterND"} <= {
        n.op_type for n in model.graph.node}
    with pytest.raises(NccError, match="reduction max needs ONNX opset 18 or newer"):
        ncc.export_onnx(m, opset=17)


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_export_conv_transpose(case):
    xs, ws, kw = case
    w = nn.WeightOp("w", randn(*ws))
    m = build([T(DYN, *xs[1:])], lambda e, x: e(nn.ConvTransposeOp(x, e(nn.WeightRefOp(w)), **kw)), [w])
    check_export(m, [randn(*xs)], tol=1e-4)


@pytest.mark.parametrize("case", [c for c in RESIZES
                                  if c[3].get("coordinate_transformation_mode") != "half_pixel_symmetric"
                                  and not ort_differs(c)], ids=str)
def test_export_resize(case):
    shape, sizes, scales, attrs = case
    m = build([T(*shape)], lambda e, x: e(_resize_op(x, shape, sizes, scales, attrs)))
    check_export(m, [randn(*shape)], tol=1e-4)


def test_export_dilated_pools():
    m = build([T(1, 2, 7, 7)], lambda e, x: e(nn.AvgPoolOp(e(nn.MaxPoolOp(x, [2, 2], dilations=[2, 1])),
                                                           [2, 2], dilations=[1, 2])))
    check_export(m, [randn(1, 2, 7, 7)], opset=19)
    with pytest.raises(NccError, match="a dilated average pool needs ONNX opset 19 or newer"):
        ncc.export_onnx(m, opset=18)


def test_import_export_import_is_stable():
    """A model of every imported structural op exports to a model that onnx
    checks and that imports to the same text."""
    nodes = [helper.make_node("ArgMax", ["x"], ["a"], axis=1, keepdims=0),
             helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2]),
             helper.make_node("Resize", ["c", "", "s"], ["r"], mode="cubic"),
             helper.make_node("CumSum", ["r", "ax"], ["y"])]
    m = onnx_model(nodes, {"x": (F, [1, 2, 3, 3])}, {"a": I64, "y": F},
                   {"w": randn(2, 2, 3, 3), "s": np.array([1, 1, 0.5, 0.5], np.float32),
                    "ax": np.array(2, np.int64)})
    module = check_import(m, {"x": randn(1, 2, 3, 3)}, rtol=1e-4, atol=1e-5)
    exported = ncc.export_onnx(module)
    onnx.checker.check_model(exported, full_check=True)
    assert ncc.print_module(import_onnx(exported)) == ncc.print_module(module)
