"""The resize op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from xdsl.dialects.builtin import i64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.onnx import import_onnx

import test_autodiff_rules as autodiff_rule_tests
import test_lower_to_loops as loop_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, torch

# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


def test_resize_verifier():
    x, xi = structural_tests.values(loop_tests.T(DYN, 2, 4, 4), loop_tests.T(1, 2, 3, elt=i64))
    op = nn.ResizeOp(x, [None, 2, 8, 2], [1.0, 1.0, 2.0, 0.5], "linear")
    assert op.result.type == loop_tests.T(DYN, 2, 8, 2)
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
    m = onnx_model([node], {"x": (structural_tests.D, shape)}, {"y": structural_tests.D}, inits, opset=19)
    x = structural_tests.randn(*shape, dtype=np.float64)
    want, = ReferenceEvaluator(m).run(None, {"x": x})
    got, = ncc.reference.run(import_onnx(m), {"x": x})
    assert got.shape == want.shape
    # onnx's evaluator does part of its arithmetic in float32 (roi, scales and
    # cubic_coeff_a are float32 there), ncc's tables are float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


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
    m = loop_tests.build([loop_tests.T(*shape)], lambda e, x: e(_resize_op(x, shape, sizes, scales, attrs)))
    loop_tests.check(m, [structural_tests.randn(*shape)], rtol=1e-5, atol=1e-5)


def test_resize_nearest_integers_on_the_batch():
    shape = (DYN, 2, 3)
    m = loop_tests.build([loop_tests.T(*shape, elt=i64)],
              lambda e, x: e(nn.ResizeOp(x, [None, 5, 7], [1.0, 2.5, 2.4], nearest_mode="ceil")))
    lowered = loop_tests.check(m, [structural_tests.rng.integers(-9, 9, (3, 2, 3))])
    roles = [str(r) for r in ncc.passes.lowering.abi.KernelABI.of(
        next(op for op in lowered.ops if op.name == "func.func")).roles]
    assert roles == ["input:arg0", "output:0", "weight:main_resize_index1", "weight:main_resize_index2"]


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
    m = onnx_model([node], {"x": (structural_tests.F, shape)}, {"y": structural_tests.F}, inits)
    structural_tests.check_import(m, {"x": structural_tests.randn(*shape)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs,sizes", [
    ({"axes": [3, 2]}, [6, 3]), ({"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, [7, 3]),
    ({"keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]}, [7, 3]),
])
def test_import_resize_axes_and_aspect_policies(attrs, sizes):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", **attrs)
    m = onnx_model([node], {"x": (structural_tests.F, [1, 2, 3, 4])}, {"y": structural_tests.F}, {"sizes": np.array(sizes, np.int64)})
    structural_tests.check_import(m, {"x": structural_tests.randn(1, 2, 3, 4)}, native=attrs == {"axes": [3, 2]})


@pytest.mark.parametrize("op,opset,mode,scales", [
    ("Upsample", 9, "nearest", [1, 1, 2, 3]), ("Upsample", 9, "linear", [1, 1, 2, 1.5]),
    ("Resize", 10, "nearest", [1, 1, 2, 3]), ("Resize", 10, "linear", [1, 1, 2, 1.5]),
    ("Resize", 10, "nearest", [1, 1, 0.5, 0.7])])  # Upsample only upsamples
def test_import_upsample_and_resize_10(op, opset, mode, scales):
    node = helper.make_node(op, ["x", "scales"], ["y"], mode=mode)
    m = onnx_model([node], {"x": (structural_tests.F, [1, 2, 4, 4])}, {"y": structural_tests.F},
                   {"scales": np.array(scales, np.float32)}, opset=opset)
    structural_tests.check_import(m, {"x": structural_tests.randn(1, 2, 4, 4)})


def test_import_resize_and_conv_transpose_natively_on_a_batch():
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2], pads=[1, 1, 0, 0]),
             helper.make_node("Resize", ["t", "", "s"], ["y"], mode="linear")]
    m = onnx_model(nodes, {"x": (structural_tests.F, ["n", 2, 4, 4])}, {"y": structural_tests.F},
                   {"w": structural_tests.randn(2, 3, 3, 3), "s": np.array([1, 1, 0.5, 1.5], np.float32)})
    module = import_onnx(m)
    model = ncc.compile(module, cache=False)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = structural_tests.randn(batch, 2, 4, 4)
        np.testing.assert_allclose(model(x), sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in RESIZES
                                  if c[3].get("coordinate_transformation_mode") != "half_pixel_symmetric"
                                  and not ort_differs(c)], ids=str)
def test_export_resize(case):
    shape, sizes, scales, attrs = case
    m = loop_tests.build([loop_tests.T(*shape)], lambda e, x: e(_resize_op(x, shape, sizes, scales, attrs)))
    export_tests.check(m, [structural_tests.randn(*shape)], tol=1e-4)



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


@pytest.mark.parametrize("case", range(12))
def test_resize_vjp(case):
    """Every coordinate transformation, each with two of the modes (the other parameters random)."""
    rng = np.random.default_rng(110 + case)
    mode = nn.RESIZE_MODES[case % 3]
    coord = nn.RESIZE_COORDINATES[case // 2]
    shape = (1, 2, *autodiff_rule_tests.rand_shape(rng, 1 + case % 2, 2, 4))
    r = len(shape)
    scales = [1.0, 1.0, *(float(rng.choice([0.6, 0.75, 1.5, 2.0, 2.5])) for _ in shape[2:])]
    sizes = [max(1, int(np.floor(n * s))) for n, s in zip(shape, scales)]
    params = {"coordinate_transformation_mode": coord}
    if mode == "nearest":
        params["nearest_mode"] = str(rng.choice(nn.NEAREST_MODES))
    else:
        params["antialias"] = bool(rng.random() < 0.3)
    if mode == "cubic":
        params["exclude_outside"] = bool(rng.random() < 0.5)
    if coord == "tf_crop_and_resize":
        lo = rng.uniform(-0.2, 0.4, r - 2)
        params["roi"] = [0.0, 0.0, *lo, 1.0, 1.0, *(lo + rng.uniform(0.5, 1.0, r - 2))]
        params["extrapolation_value"] = 3.0
    def tf(x):
        return torch.nn.functional.interpolate(x, size=sizes[2:], mode="linear" if r == 3 else "bilinear",
                                               align_corners=coord == "align_corners")

    like_torch = mode == "linear" and not params["antialias"] and all(s > 1 for s in sizes[2:]) and coord in (
        "align_corners", "pytorch_half_pixel")
    check_rule(lambda x: nn.ResizeOp(x, sizes, scales, mode=mode, **params), [autodiff_rule_tests.uniform(rng, shape)],
               torch_fn=tf if torch is not None and like_torch else None)



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("size,align", [([2, 3, 4, 5], 0), ([2, 3, 5, 4], 1), ([2, 1, 3, 4, 2], 0),
                                        ([2, 1, 2, 3, 4], 1)])
def test_import_affine_grid(size, align):
    r = len(size) - 2
    node = helper.make_node("AffineGrid", ["theta", "s"], ["y"], align_corners=align)
    m = decomposition_tests.model([node], {"theta": (decomposition_tests.F, ["N", r, r + 1])}, inits={"s": np.array(size, np.int64)}, opset=20)
    decomposition_tests.check(m, {"theta": decomposition_tests.randn(2, r, r + 1)})


