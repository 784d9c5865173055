"""The normalization family in ONNX, both directions: BatchNormalization and
LayerNormalization, RMSNormalization as nn ops; instance, group, mean-variance, Lp and
local response normalization composed of reductions and nn.layer_norm.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import to_onnx
from ncc.onnx.importer import Importer, element_dtype, from_onnx


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("BatchNormalization")
def _batch_norm(b, a):
    if a.get("training_mode", 0) or sum(1 for o in b.node.output if o) > 1 or not a.get("is_test", 1):
        raise b.error("only inference mode (one output) is supported")
    if not a.get("spatial", 1):  # opsets 7-8: per-activation statistics
        raise b.error("spatial=0 (per-activation statistics) is not supported")
    return b.build(nn.BatchNormOp, b.v(0), b.v(1), b.v(2), b.v(3), b.v(4),
                   epsilon=a.get("epsilon", 1e-5))


@from_onnx("LRN")
def _lrn(b, a):
    # y = x / (bias + alpha/size * sum of x^2 over `size` neighbouring channels)^beta;
    # the channel window sum is an average pool over a (N, 1, C, H*W) view.
    x = b.v(0)
    size = a["size"]
    n, c, *spatial = shape_of(x.type)
    if c == DYN or DYN in spatial:
        raise b.error(f"needs static channel and spatial sizes, got {x.type}")
    sq = b.binary("mul", x, x)
    view = b.build(nn.ReshapeOp, sq, [-1 if n == DYN else n, 1, c, math.prod(spatial)])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    avg = b.build(nn.AvgPoolOp, view, [size, 1], pads=[lo, 0, hi, 0], count_include_pad=True)
    avg = b.build(nn.ReshapeOp, avg, x.type)
    scaled = b.binary("mul", avg, b.scalar(a.get("alpha", 1e-4), x))
    den = b.binary("pow", b.binary("add", scaled, b.scalar(a.get("bias", 1.0), x)),
                  b.scalar(a.get("beta", 0.75), x))
    return b.binary("div", x, den)


@from_onnx("LayerNormalization")
def _layer_norm(b, a):
    x, scale = b.v(0), b.v(1)
    bias = b.v(2) if b.has(2) else b.emit(nn.ConstantOp(
        np.zeros(shape_of(scale.type), nn.numpy_dtype(scale.type.element_type))))
    y = b.build(nn.LayerNormOp, x, scale, bias, a.get("axis", -1), a.get("epsilon", 1e-5))
    if not any(b.node.output[1:]):
        return y
    return [y, *_layer_norm_stats(b, x, a)]  # Mean, InvStdDev: see "Normalizations and losses"


def _tail_axes(b: Importer, x: SSAValue, axis: int) -> list[int]:
    """The axes [axis, rank) of x (axis may be negative)."""
    rank = len(shape_of(x.type))
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for {x.type}")
    return list(range(axis % rank, rank))


def _mean_over(b: Importer, x: SSAValue, axes: Sequence[int]) -> SSAValue:
    return b.build(nn.REDUCE_OPS["reduce_mean"], x, list(axes), keepdims=True)


def _centered(b: Importer, x: SSAValue, axes: Sequence[int]) -> tuple[SSAValue, SSAValue, SSAValue]:
    """(mean, x - mean, variance) over `axes`, kept as size-1 dimensions."""
    mean = _mean_over(b, x, axes)
    d = b.binary("sub", x, mean)
    return mean, d, _mean_over(b, b.binary("mul", d, d), axes)


def _layer_norm_stats(b: Importer, x: SSAValue, a: dict) -> list[SSAValue | None]:
    """LayerNormalization's optional outputs Mean and InvStdDev = 1 / sqrt(var + eps)
    over the normalized axes, kept as size-1 dimensions, computed in (and of)
    the stash type (the main output stays one nn.layer_norm)."""
    stash = element_dtype(a.get("stash_type", 1), "stash_type", b.where)
    if stash != nn.numpy_dtype(x.type.element_type):
        x = b.build(nn.CastOp, x, stash)
    mean, _, var = _centered(b, x, _tail_axes(b, x, a.get("axis", -1)))
    if len(b.node.output) < 3 or not b.node.output[2]:
        return [mean]
    std = b.unary("sqrt", b.binary("add", var, b.scalar(a.get("epsilon", 1e-5), x)))
    return [mean, b.unary("reciprocal", std)]


@from_onnx("RMSNormalization")
def _rms_norm(b, a):
    # x / sqrt(mean(x^2 over [axis, rank)) + eps) * scale: one nn.rms_norm where the
    # scale broadcasts to the static normalized shape, else the formula
    x, scale = b.v(0), b.v(1)
    axes = _tail_axes(b, x, a.get("axis", -1))
    norm = shape_of(x.type)[axes[0]:]
    if DYN not in norm and shape_of(scale.type) == norm:
        return b.build(nn.RMSNormOp, x, scale, axes[0] - len(shape_of(x.type)), a.get("epsilon", 1e-5))
    ms = _mean_over(b, b.binary("mul", x, x), axes)
    rms = b.unary("sqrt", b.binary("add", ms, b.scalar(a.get("epsilon", 1e-5), x)))
    return b.binary("mul", b.binary("div", x, rms), scale)


def _standardize(b: Importer, x: SSAValue, axis: int, eps: float) -> SSAValue:
    """(x - mean) / sqrt(var + eps) over the dimensions [axis, rank): one
    nn.layer_norm with a unit scale and a zero bias."""
    inner = shape_of(x.type)[axis:]
    if DYN in inner:
        raise b.error(f"needs static sizes after dimension {axis - 1}, got {x.type}")
    dtype = nn.numpy_dtype(x.type.element_type)
    ones = b.emit(nn.ConstantOp(np.ones(inner, dtype)))
    zeros = b.emit(nn.ConstantOp(np.zeros(inner, dtype)))
    return b.build(nn.LayerNormOp, x, ones, zeros, axis, eps)


def _channels_input(b: Importer, x: SSAValue) -> tuple[int, int, list[int]]:
    shape = shape_of(x.type)
    if len(shape) < 3:
        raise b.error(f"the input must be (N, C, spatial...), got {x.type}")
    n, c, *spatial = shape
    if c == DYN or DYN in spatial:
        raise b.error(f"needs static channel and spatial sizes, got {x.type}")
    return n, c, spatial


@from_onnx("InstanceNormalization")
def _instance_norm(b, a):
    # per instance and channel over the spatial dimensions, then scale[c], bias[c]
    x, scale, bias = b.v(0), b.v(1), b.v(2)
    _channels_input(b, x)
    rank = len(shape_of(x.type))
    y = _standardize(b, x, 2, a.get("epsilon", 1e-5))
    y = b.binary("mul", y, b.per_channel(scale, rank))
    return b.binary("add", y, b.per_channel(bias, rank))


@from_onnx("GroupNormalization")
def _group_norm(b, a):
    # standardized per instance over each group of C/G channels: (N, G, C/G * spatial);
    # scale and bias per channel (opset 21) or per group (opset 18)
    x, scale, bias = b.v(0), b.v(1), b.v(2)
    n, c, spatial = _channels_input(b, x)
    g = a.get("num_groups")
    if not g or c % g:
        raise b.error(f"num_groups {g} must divide the {c} channels")
    grouped = b.build(nn.ReshapeOp, x, [-1 if n == DYN else n, g, c // g * math.prod(spatial)])
    y = _standardize(b, grouped, 2, a.get("epsilon", 1e-5))
    if b.opset < 21:
        y = b.binary("mul", y, b.per_channel(scale, 3))
        return b.build(nn.ReshapeOp, b.binary("add", y, b.per_channel(bias, 3)), x.type)
    rank = len(shape_of(x.type))
    y = b.binary("mul", b.build(nn.ReshapeOp, y, x.type), b.per_channel(scale, rank))
    return b.binary("add", y, b.per_channel(bias, rank))


@from_onnx("MeanVarianceNormalization")
def _mvn(b, a):
    # (x - mean) / (sqrt(var) + 1e-9) over `axes`, as the function body of the
    # spec (with the variance of the centered values, which cannot go negative)
    x = b.v(0)
    _, d, var = _centered(b, x, list(a.get("axes", [0, 2, 3])))
    return b.binary("div", d, b.binary("add", b.unary("sqrt", var), b.scalar(1e-9, x)))


@from_onnx("LpNormalization")
def _lp_norm(b, a):
    # x / ||x||_p along `axis`; an all-zero row (norm 0) gives 0: the norm is
    # at least the smallest normal float, and 0 / that is 0
    x, p, axis = b.v(0), a.get("p", 2), a.get("axis", -1)
    if p not in (1, 2):
        raise b.error(f"p must be 1 or 2, got {p}")
    if not isinstance(x.type.element_type, nn.FLOAT_TYPES):
        raise b.error(f"the input must be a float tensor, got {x.type}")
    terms = b.unary("abs", x) if p == 1 else b.binary("mul", x, x)
    norm = b.build(nn.REDUCE_OPS["reduce_sum"], terms, [axis], keepdims=True)
    if p == 2:
        norm = b.unary("sqrt", norm)
    tiny = np.finfo(nn.numpy_dtype(x.type.element_type)).tiny
    return b.binary("div", x, b.binary("max", norm, b.scalar(tiny, x)))


# ---------------------------------------------------------------------------
# nn -> ONNX

def _epsilon(op: Operation) -> dict[str, float]:
    # nn's default epsilon is ONNX's (1e-5): written only when the op sets its
    # own, since an ONNX float attribute holds float32(1e-5), not 1e-5.
    return {"epsilon": op.params.epsilon} if "epsilon" in op.properties else {}


to_onnx(nn.BatchNormOp)(lambda g, op, ins: g.node("BatchNormalization", ins, **_epsilon(op)))
to_onnx(nn.LayerNormOp)(lambda g, op, ins: g.node("LayerNormalization", ins, axis=op.params.axis,
                                                  **_epsilon(op)))
