"""The resize family in ONNX, both directions: Resize and Upsample; AffineGrid
(a matmul with a constant grid).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from xdsl.ir import Operation

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import from_onnx, str_attr


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("Resize", "Upsample")
def _resize(b, a):
    x = b.v(0)
    shape = list(shape_of(x.type))
    r = len(shape)
    mode = str_attr(a, "mode", "nearest")
    mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    params: dict[str, Any] = {}
    old = b.node.op_type == "Upsample" or b.opset < 11  # scales only; asymmetric coordinates
    if old:
        scales = list(a["scales"]) if "scales" in a else b.floats_input(1)
        sizes, roi = None, None
        params["coordinate_transformation_mode"] = "asymmetric"
    else:
        ctm = str_attr(a, "coordinate_transformation_mode", "half_pixel")
        params.update(coordinate_transformation_mode=ctm,
                      nearest_mode=str_attr(a, "nearest_mode", "round_prefer_floor"),
                      cubic_coeff_a=a.get("cubic_coeff_a", -0.75),
                      exclude_outside=bool(a.get("exclude_outside", 0)),
                      antialias=bool(a.get("antialias", 0)),
                      extrapolation_value=a.get("extrapolation_value", 0.0))
        roi = b.floats_input(1) if ctm == "tf_crop_and_resize" else None
        scales = b.floats_input(2)
        sizes = b.ints(3) if b.has(3) and np.asarray(b.static(3)).size else None
    if (scales is None) == (sizes is None):
        raise b.error("exactly one of scales and sizes must be given")
    axes = [ax % r for ax in a.get("axes", range(r))]
    given = scales if scales is not None else sizes
    if len(given) != len(axes) or (roi is not None and len(roi) != 2 * len(axes)):
        raise b.error(f"{'scales' if scales is not None else 'sizes'} and roi need one value "
                      f"(roi: two) per resized axis ({len(axes)})")
    full_scales, out = [1.0] * r, list(shape)
    if roi is not None:
        full_roi = [0.0] * r + [1.0] * r
        for j, ax in enumerate(axes):
            full_roi[ax], full_roi[ax + r] = roi[j], roi[j + len(axes)]
        params["roi"] = full_roi
    for ax, s in zip(axes, given):
        if shape[ax] == DYN and (sizes is not None or s != 1):
            raise b.error(f"cannot resize the dynamic axis {ax} of {x.type}")
    if scales is not None:
        for ax, s in zip(axes, scales):
            full_scales[ax] = s
            out[ax] = shape[ax] if shape[ax] == DYN else int(np.floor(shape[ax] * s))
    else:
        policy = str_attr(a, "keep_aspect_ratio_policy", "stretch")
        ratios = [o / shape[ax] for ax, o in zip(axes, sizes)]
        if policy == "stretch":
            for ax, o, s in zip(axes, sizes, ratios):
                full_scales[ax], out[ax] = s, o
        elif policy in ("not_larger", "not_smaller"):
            s = min(ratios) if policy == "not_larger" else max(ratios)
            for ax in axes:
                full_scales[ax], out[ax] = s, int(s * shape[ax] + 0.5)
        else:
            raise b.error(f"unknown keep_aspect_ratio_policy '{policy}'")
    if old and mode == "nearest":  # onnxruntime's rule before opset 11
        down, up = min(full_scales) < 1, max(full_scales) > 1
        if down and up:
            raise b.error(f"scales {full_scales} both up- and downsample (opset {b.opset})")
        params["nearest_mode"] = "ceil" if down else "floor"
    return b.build(nn.ResizeOp, x, out, full_scales, mode, **params)


@from_onnx("AffineGrid")
def _affine_grid(b, a):
    # theta (N, 2, 3) or (N, 3, 4) applied to the constant grid of (x, y[, z], 1)
    # positions: one matmul
    theta = b.v(0)
    size = b.ints(1)
    spatial = size[2:]
    r = len(spatial)
    if r not in (2, 3) or list(shape_of(theta.type)[1:]) != [r, r + 1]:
        raise b.error(f"theta must be (N, {r}, {r + 1}) for size {size}, got {theta.type}")

    def positions(n: int) -> np.ndarray:
        if a.get("align_corners", 0):
            return np.linspace(-1, 1, n) if n > 1 else np.zeros(1)
        return (2 * np.arange(n) + 1) / n - 1

    axes = np.meshgrid(*(positions(n) for n in spatial), indexing="ij")  # (D,) H, W
    base = np.stack([*(ax.reshape(-1) for ax in axes[::-1]), np.ones(math.prod(spatial))], -1)
    grid = b.build(nn.MatmulOp, b.array(base, theta), b.build(nn.TransposeOp, theta, [0, 2, 1]))
    n = shape_of(theta.type)[0]
    return b.reshape_to(grid, [-1 if n == DYN else n, *spatial, r])


# ---------------------------------------------------------------------------
# nn -> ONNX

@to_onnx(nn.ResizeOp)
def _export_resize(g: Graph, op: Operation, ins: list[str]) -> str:
    """Resize with the scales when ONNX's floor(size * scale) gives the result's
    sizes, else with the sizes when the scales are their ratios."""
    p = op.params
    si, so = shape_of(op.input.type), shape_of(op.result.type)
    sizes = [i if o == DYN else o for i, o in zip(si, so)]
    ins_ = [ins[0], g.const(list(p.roi), np.float32) if p.coordinate_transformation_mode ==
            "tf_crop_and_resize" else ""]
    scales32 = np.asarray(p.scales, np.float32)
    if all(i == DYN or int(np.floor(i * np.float64(s))) == o for i, o, s in zip(si, so, scales32)):
        ins_.append(g.const(scales32, np.float32))
    elif all(i == DYN or np.isclose(o / i, s, rtol=1e-6) for i, o, s in zip(si, so, p.scales)):
        ins_ += ["", g.const(sizes, np.int64)]
    else:
        raise NccError.at_op(op, f"scales {list(p.scales)} are neither the ratios of the sizes "
                                 f"nor give them: ONNX Resize cannot express this op")
    if p.antialias:
        g.needs_opset(op, 18, "antialias")
    extra = {"antialias": 1} if p.antialias else {}
    return g.node("Resize", ins_, mode=p.mode,
                  coordinate_transformation_mode=p.coordinate_transformation_mode,
                  nearest_mode=p.nearest_mode, cubic_coeff_a=p.cubic_coeff_a,
                  exclude_outside=int(p.exclude_outside),
                  extrapolation_value=p.extrapolation_value, **extra)
