"""VJP rules of the pool family: max_pool (to each window's first maximum), avg_pool."""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule
from ncc.passes.autodiff.conv import static_windows, transposed_output_padding, window_params


def _max_pool_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """The cotangent goes to each window's first maximum (as PyTorch; overlapping
    windows add up): nn.max_pool_indices finds it, as a flat index into x whose
    remainder by the plane size is its position in its (n, c) plane, and one
    scatter-add per plane puts g there."""
    static_windows(op)
    x = op.operands[0]
    p = op.params
    (n, c, *spatial), elt = shape_of(x.type), g.type.element_type
    plane, outs = math.prod(spatial), math.prod(shape_of(g.type)[2:])
    idx = bw.emit(nn.MaxPoolIndicesOp(bw.primal(x), p.kernel, **window_params(p)))
    idx = bw.reshape(idx, TensorType(idx.type.element_type, [n, c, outs]))
    local = bw.bin("mod", idx, bw.constant(plane, idx))
    dx = bw.emit(nn.ScatterElementsOp(bw.zeros(TensorType(elt, [n, c, plane])), local,
                                      bw.reshape(g, TensorType(elt, [n, c, outs])), 2, "add"))
    return [bw.reshape(dx, x.type)]


def _avg_pool_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Each window's cotangent divided by its count, spread evenly over the
    window: a transposed conv with a kernel of ones, one group per channel.
    The counts (static: the spatial sizes are) are the window's cells inside
    the image, a product over the axes, unless count_include_pad."""
    static_windows(op)
    x = op.operands[0]
    p = op.params
    (_, c, *spatial), out = shape_of(x.type), shape_of(g.type)[2:]
    k, dtype = len(spatial), nn.numpy_dtype(g.type.element_type)
    count = np.ones([1, 1, *out])
    if not p.count_include_pad:
        for i, (s, o, kk, st, d) in enumerate(zip(spatial, out, p.kernel, p.strides, p.dilations)):
            pos = np.arange(o)[:, None] * st + np.arange(kk)[None, :] * d - p.pads[i]
            count = count * ((pos >= 0) & (pos < s)).sum(1).reshape([-1 if j == i else 1 for j in range(k)])
    else:
        count = count * math.prod(p.kernel)
    if (count == count.flat[0]).all():
        g = bw.bin("div", g, bw.constant(float(count.flat[0]), g))
    else:
        g = bw.bin("div", g, bw.emit(nn.ConstantOp(count.astype(dtype))))
    ones = bw.emit(nn.ConstantOp(np.ones([c, 1, *p.kernel], dtype)))
    return [bw.emit(nn.ConvTransposeOp(g, ones, **window_params(p), group=c,
                                       output_padding=transposed_output_padding(x.type, g.type, p.kernel, p)))]


VJP: dict[type, Rule] = {
    nn.MaxPoolOp: _max_pool_vjp, nn.AvgPoolOp: _avg_pool_vjp,
}

