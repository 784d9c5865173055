"""The pool family in ONNX, both directions: MaxPool (and its indices),
AveragePool, the global pools, LpPool and MaxUnpool in; max_pool,
max_pool_indices and avg_pool out.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import Importer, ImportRule, from_onnx


# ---------------------------------------------------------------------------
# ONNX -> nn

def _pool(b: Importer, a: dict, cls: type, **extra: Any) -> SSAValue | list[SSAValue]:
    x = b.v(0)
    kernel = list(a["kernel_shape"]) if "kernel_shape" in a else None
    if kernel is None:
        raise b.error("attribute kernel_shape is required")
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = b.window(a, x, kernel, dil)
    if a.get("ceil_mode", 0):
        k, given = len(kernel), list(pads)
        pads = b.ceil_mode_pads(x, kernel, strides, pads, dil)
        if cls is nn.AvgPoolOp and extra.get("count_include_pad") and pads != given:
            # The given pads count, the ceil mode's extra end cells do not: pad
            # with zeros explicitly, then average over the cells that exist.
            x = b.build(nn.PadOp, x, [0, 0, *given[:k], 0, 0, *given[k:]])
            pads = [0] * k + [p - g for p, g in zip(pads[k:], given[k:])]
            extra["count_include_pad"] = False
    y = b.build(cls, x, kernel, strides=strides, pads=pads, dilations=dil, **extra)  # max_pool: int8 data too
    if cls is nn.MaxPoolOp and len(b.node.output) > 1 and b.node.output[1]:  # the Indices output
        return [y, b.build(nn.MaxPoolIndicesOp, x, kernel, strides=strides, pads=pads, dilations=dil,
                           column_major=bool(a.get("storage_order", 0)))]
    return y


from_onnx("MaxPool")(lambda b, a: _pool(b, a, nn.MaxPoolOp))


from_onnx("AveragePool")(lambda b, a: _pool(b, a, nn.AvgPoolOp,
                                              count_include_pad=bool(a.get("count_include_pad", 0))))


@from_onnx("MaxUnpool")
def _max_unpool(b, a):
    # each value to its place in zeros of the pool's input shape: the indices
    # are MaxPool's, flat into that whole tensor (row-major); within the
    # value's (n, c) plane that is the index modulo the plane size, so one
    # scatter_elements per plane (the batch stays in dimension 0). A larger
    # output_shape pads zeros at the end (as onnx's reference).
    x, idx = b.v(0), b.v(1)
    n, c, *spatial = shape_of(x.type)
    kernel = list(a.get("kernel_shape", []))
    k = len(kernel)
    if k != len(spatial) or DYN in spatial or c == DYN:
        raise b.error(f"kernel_shape {kernel} does not fit the input {x.type} (static sizes but the batch)")
    strides, pads = list(a.get("strides", [1] * k)), list(a.get("pads", [0] * 2 * k))
    shape = [(s - 1) * st + kk - pads[i] - pads[i + k]
             for i, (s, st, kk) in enumerate(zip(spatial, strides, kernel))]
    out = b.ints(2)[2:] if b.has(2) else shape  # output_shape: (N, C, spatial...)
    if len(out) != k or any(o < s for o, s in zip(out, shape)):
        raise b.error(f"output_shape spatial sizes {out} are smaller than the unpooled {shape}")
    batch = -1 if n == DYN else n
    plane, m = math.prod(shape), math.prod(spatial)
    local = b.binary("mod", b.reshape_to(idx, [batch, c, m]), b.scalar(plane, idx))
    zeros = b.build(nn.BroadcastOp, b.scalar(0, x), nn.tensor_type([n, c, plane], x.type.element_type))
    y = b.build(nn.ScatterElementsOp, zeros, local, b.reshape_to(x, [batch, c, m]), 2)
    y = b.reshape_to(y, [batch, c, *shape])
    if out != shape:
        y = b.build(nn.PadOp, y, [0] * (k + 2) + [0, 0, *(o - s for o, s in zip(out, shape))])
    return y


def _global(name: str) -> ImportRule:
    def f(b, a):
        x = b.v(0)
        return b.build(nn.REDUCE_OPS[name], x, list(range(2, len(shape_of(x.type)))), keepdims=True)
    return f


from_onnx("GlobalAveragePool")(_global("reduce_mean"))
from_onnx("GlobalMaxPool")(_global("reduce_max"))


@from_onnx("LpPool")
def _lp_pool(b, a):
    """(sum over the window of |x|^p)^(1/p): the window sums are a depthwise
    convolution with a kernel of ones (padding adds nothing)."""
    x = b.v(0)
    kernel = list(a["kernel_shape"]) if "kernel_shape" in a else None
    if kernel is None:
        raise b.error("attribute kernel_shape is required")
    p = a.get("p", 2)
    c = shape_of(x.type)[1] if len(shape_of(x.type)) > 2 else DYN
    if c == DYN:
        raise b.error(f"needs an input (N, C, spatial...) with a static C, got {x.type}")
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = b.window(a, x, kernel, dil)
    if a.get("ceil_mode", 0):
        pads = b.ceil_mode_pads(x, kernel, strides, pads, dil)
    powered = b.binary("mul", x, x) if p == 2 else b.unary("abs", x) if p == 1 else \
        b.binary("pow", b.unary("abs", x), b.full_like(p, x))
    ones = b.emit(nn.ConstantOp(np.ones((c, 1, *kernel), nn.numpy_dtype(x.type.element_type))))
    total = b.build(nn.ConvOp, powered, ones, strides=strides, pads=pads, dilations=dil, group=c)
    if p in (1, 2):
        return total if p == 1 else b.unary("sqrt", total)
    return b.binary("pow", total, b.full_like(1 / p, x))


# ---------------------------------------------------------------------------
# nn -> ONNX

def _export_pool(op_type: str) -> Callable[[Graph, Operation, list[str]], str]:
    def rule(g: Graph, op: Operation, ins: list[str]) -> str:
        p = op.params
        extra = {"count_include_pad": int(p.count_include_pad)} if op_type == "AveragePool" else {}
        if max(p.dilations) > 1:  # AveragePool has dilations from opset 19
            if op_type == "AveragePool":
                g.needs_opset(op, 19, "a dilated average pool")
            extra["dilations"] = list(p.dilations)
        return g.node(op_type, ins, kernel_shape=list(p.kernel), strides=list(p.strides),
                      pads=list(p.pads), **extra)
    return rule


to_onnx(nn.MaxPoolOp)(_export_pool("MaxPool"))
to_onnx(nn.AvgPoolOp)(_export_pool("AveragePool"))


@to_onnx(nn.MaxPoolIndicesOp)
def _export_max_pool_indices(g: Graph, op: Operation, ins: list[str]) -> str:
    """MaxPool's second output (its first, the values, unused)."""
    p = op.params
    indices = g.fresh("v")
    g.node("MaxPool", ins, [g.fresh("v"), indices], kernel_shape=list(p.kernel),
           strides=list(p.strides), pads=list(p.pads), dilations=list(p.dilations),
           storage_order=int(p.column_major))
    return indices
