"""VJP rules of the reduce family: reductions, cumsum."""

from __future__ import annotations

import math

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.passes.autodiff.core import Backward, Rule


def _reduce_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    x = op.operands[0]
    xs = shape_of(x.type)
    axes = nn.normalize_axes(op.params.axes, len(xs))
    keep = TensorType(g.type.element_type, [1 if i in axes else d for i, d in enumerate(xs)])
    gk = bw.reshape(g, keep)
    kind = op.name[len("nn.reduce_"):]
    if kind == "sum":
        return [bw.broadcast(gk, x.type)]
    if kind == "mean":
        n = math.prod(xs[i] for i in axes if xs[i] != DYN)
        if any(xs[i] == DYN for i in axes):  # the batch: divide by the count at run time
            ones = bw.broadcast(bw.constant(1, x), x.type)
            count = bw.reduce("reduce_sum", ones, axes, keepdims=True)
            return [bw.broadcast(bw.bin("div", gk, count), x.type)]
        return [bw.broadcast(bw.bin("mul", gk, bw.constant(1 / n, x)), x.type)]
    yk = bw.reshape(bw.primal(op.result), keep)
    xv = bw.primal(x)
    if kind == "prod":  # d/dx_i prod = prod / x_i
        return [bw.bin("div", bw.bin("mul", bw.broadcast(gk, x.type), yk), xv)]
    # max/min: shared evenly by the elements that attain it (as torch.amax)
    hit = bw.select(bw.cmp("equal", xv, yk), bw.constant(1, x), bw.constant(0, x))
    count = bw.reduce("reduce_sum", hit, axes, keepdims=True)
    return [bw.bin("mul", hit, bw.bin("div", gk, count))]


def _cumsum_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y_j sums x_i over i <= j (i < j exclusive): x_i's cotangent sums g_j over
    j >= i (j > i): the same scan in the other direction."""
    p = op.params
    return [bw.emit(nn.CumSumOp(g, axis=p.axis, exclusive=p.exclusive, reverse=not p.reverse))]


VJP: dict[type, Rule] = {
    **{cls: _reduce_vjp for cls in nn.REDUCE_OPS.values()},
    nn.CumSumOp: _cumsum_vjp,
}

