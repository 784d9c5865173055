"""The nn resize family: `nn.resize` and its per-axis tap tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, need_float, need_len, need_rank, nn_op, shape_of


RESIZE_MODES = ("nearest", "linear", "cubic")
RESIZE_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                      "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _default_roi(ts, v):
    r = len(shape_of(ts[0]))
    return (0.0,) * r + (1.0,) * r


@dataclass(frozen=True)
class ResizeTaps:
    """How one resized axis reads its input: output position o is
    sum_t weights[o, t] * x[index[o, t]] (index clamped into range), or the
    extrapolation value where `outside[o]` (tf_crop_and_resize only)."""

    axis: int
    index: np.ndarray  # (out, taps) int64
    weights: np.ndarray  # (out, taps) float64
    outside: np.ndarray | None  # (out,) bool, or None when no position is outside


def _resize_source(p: SimpleNamespace, y: np.ndarray, scale: float, n_in: int, n_out: int,
                   roi: tuple[float, float]) -> np.ndarray:
    """The input coordinate of each output coordinate y (ONNX Resize's
    coordinate_transformation_mode)."""
    width = scale * n_in  # the output length the scale implies (not rounded)
    mode = p.coordinate_transformation_mode
    if mode == "align_corners":
        return np.zeros_like(y) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        x = (np.full_like(y, (hi - lo) * (n_in - 1) / 2) if width == 1
             else y * (hi - lo) * (n_in - 1) / (width - 1))
        return x + lo * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return np.full_like(y, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    x = (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":  # the center of the input maps to the center of the output
        x = x + n_in / 2 * (1 - n_out / width)
    return x


def _resize_coefficients(p: SimpleNamespace, ratio: np.ndarray, scale: float) -> np.ndarray:
    """Interpolation weights (out, taps) of the taps at floor-relative offsets,
    for `ratio` in (0, 1] (1 at an integer coordinate), as ONNX defines them."""
    r = ratio[:, None]
    if p.mode == "linear" and not p.antialias:
        return np.concatenate([1 - r, r], axis=1)
    a = p.cubic_coeff_a
    if p.mode == "cubic" and not p.antialias:
        s, t = r + 1, 1 - r
        return np.concatenate([((a * s - 5 * a) * s + 8 * a) * s - 4 * a,
                               ((a + 2) * r - (a + 3)) * r * r + 1,
                               ((a + 2) * t - (a + 3)) * t * t + 1,
                               ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a], axis=1)
    # Antialias: the filter stretched by 1/scale when downsampling, normalized.
    sc = min(scale, 1.0)
    if p.mode == "linear":
        start = int(np.floor(-1 / sc) + 1)
        args = np.abs((np.arange(start, 2 - start)[None, :] - r) * sc)
        c = np.clip(1 - args, 0, 1)
    else:
        start = int(np.floor(-2 / sc) + 1)
        x = np.abs((np.arange(start, 2 - start)[None, :] - r) * sc)
        c = np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                     np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))
    return c / c.sum(axis=1, keepdims=True)


def resize_axis_taps(p: SimpleNamespace, axis: int, n_in: int, n_out: int, scale: float,
                     roi: tuple[float, float]) -> ResizeTaps:
    y = np.arange(n_out, dtype=np.float64)
    x = _resize_source(p, y, scale, n_in, n_out, roi)
    outside = None
    if p.coordinate_transformation_mode == "tf_crop_and_resize":
        out = (x < 0) | (x > n_in - 1)
        outside = out if out.any() else None
    if p.mode == "nearest":
        rounded = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
                   "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                   "floor": np.floor, "ceil": np.ceil}[p.nearest_mode](x)
        index = np.clip(rounded, 0, n_in - 1).astype(np.int64)[:, None]
        return ResizeTaps(axis, index, np.ones((n_out, 1)), outside)
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)  # in (0, 1]: prefer the taps left of x
    coeffs = _resize_coefficients(p, ratio, scale)
    n = coeffs.shape[1]
    # The n taps nearest to x, ties to the left (as ONNX picks its neighbours).
    frac = x - base
    if n % 2 == 0:
        first = np.where(frac == 0, base - n // 2, base - n // 2 + 1)
    else:
        first = np.where(frac <= 0.5, base - (n - 1) // 2, base - (n - 1) // 2 + 1)
    index = first[:, None].astype(np.int64) + np.arange(n)[None, :]
    if p.exclude_outside:
        coeffs = np.where((index < 0) | (index >= n_in), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    return ResizeTaps(axis, np.clip(index, 0, n_in - 1), coeffs, outside)


@nn_op
class ResizeOp(NNOp):
    """ONNX Resize to the result type's shape: per axis, an output coordinate
    maps to an input coordinate (`coordinate_transformation_mode`, using
    `scales` and, for tf_crop_and_resize, `roi` = [starts..., ends...]) that
    is read by `mode`: nearest (rounded by `nearest_mode`), linear or cubic
    (`cubic_coeff_a`, `exclude_outside`), optionally `antialias`ed when
    downsampling. Axes of scale 1 and unchanged size are left as they are."""

    name = "nn.resize"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("mode", "str", "nearest"), Param("scales", "floats"),
        Param("coordinate_transformation_mode", "str", "half_pixel"),
        Param("nearest_mode", "str", "round_prefer_floor"), Param("cubic_coeff_a", "float", -0.75),
        Param("exclude_outside", "flag", False), Param("antialias", "flag", False),
        Param("roi", "floats", _default_roi), Param("extrapolation_value", "float", 0.0))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, sizes: Sequence[int], scales: Sequence[float],
                 mode: str = "nearest", **params: Any):
        x = SSAValue.get(x)
        rt = TensorType(x.type.element_type, [DYN if d is None or d < 0 else int(d) for d in sizes])
        self._build([x], rt, mode=mode, scales=scales, **params)
        self.verify_()

    @classmethod
    def infer(cls, types, p):
        return None  # the output sizes are the result type's; checked in verify_

    def verify_(self) -> None:
        x, res = self.input.type, self.result.type
        p = self.params
        for name, value, known in (("mode", p.mode, RESIZE_MODES),
                                   ("coordinate_transformation_mode",
                                    p.coordinate_transformation_mode, RESIZE_COORDINATES),
                                   ("nearest_mode", p.nearest_mode, NEAREST_MODES)):
            if value not in known:
                raise VerifyException(f"unknown {name} '{value}' (known: {', '.join(known)})")
        if p.mode != "nearest":
            need_float(x, f"the input of a {p.mode} resize")
        elif p.antialias:
            raise VerifyException("antialias applies to the linear and cubic modes only")
        if res.element_type != x.element_type:
            raise VerifyException(f"element type changes from {x.element_type} to {res.element_type}")
        si, so = shape_of(x), shape_of(res)
        need_rank(res, len(si), "the result (the input's rank)")
        need_len(p.scales, len(si), "scales (one per axis)")
        need_len(p.roi, 2 * len(si), "roi (starts..., ends...)")
        if not all(math.isfinite(v) for v in (*p.scales, *p.roi)) or min(p.scales, default=1) <= 0:
            raise VerifyException(f"scales must be finite and > 0 and roi finite, got scales "
                                  f"{list(p.scales)}")
        for i, (a, b) in enumerate(zip(si, so)):
            if (a == DYN) != (b == DYN) or (a == DYN and not self._identity(i)):
                raise VerifyException(f"dimension {i} is dynamic: it must keep its size (scale 1)")

    def _identity(self, axis: int) -> bool:
        """Axis left unchanged: scale 1 (up to rounding), same size, the whole roi."""
        p, r = self.params, len(self.params.scales)
        si, so = shape_of(self.input.type), shape_of(self.result.type)
        whole = p.coordinate_transformation_mode != "tf_crop_and_resize" or (
            math.isclose(p.roi[axis], 0.0, abs_tol=1e-9) and math.isclose(p.roi[axis + r], 1.0))
        return math.isclose(p.scales[axis], 1.0) and si[axis] == so[axis] and whole

    def taps(self) -> list[ResizeTaps]:
        """The resized axes (in order) and how each reads its input."""
        p, r = self.params, len(self.params.scales)
        si, so = shape_of(self.input.type), shape_of(self.result.type)
        return [resize_axis_taps(p, a, si[a], so[a], p.scales[a], (p.roi[a], p.roi[a + r]))
                for a in range(r) if not self._identity(a)]



def resize_reference(op, x) -> np.ndarray:
    """Separable: one resized axis at a time, each output position the weighted
    sum of its taps (in float64), then the extrapolation value where outside."""
    y = x.astype(np.float64) if x.dtype.kind == "f" else x
    for t in op.taps():
        g = np.take(y, t.index, axis=t.axis)  # ..., out, taps, ...
        if t.weights.shape[1] == 1 and (t.weights == 1).all():
            y = g.squeeze(t.axis + 1)
        else:
            w = t.weights.reshape((1,) * t.axis + t.weights.shape + (1,) * (y.ndim - t.axis - 1))
            y = (g * w).sum(axis=t.axis + 1)
        if t.outside is not None:
            mask = t.outside.reshape((1,) * t.axis + (-1,) + (1,) * (y.ndim - t.axis - 1))
            y = np.where(mask, op.params.extrapolation_value, y)
    return y


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    ResizeOp: resize_reference,
}
