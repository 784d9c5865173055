"""VJP rules of the softmax family: softmax, log_softmax."""

from __future__ import annotations

from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule


def _softmax_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g), along the axis."""
    axis = nn.normalize_axis(op.params.axis, len(shape_of(g.type)))
    y = bw.primal(op.result)
    if isinstance(op, nn.SoftmaxOp):
        s = bw.reduce("reduce_sum", bw.bin("mul", g, y), [axis], keepdims=True)
        return [bw.bin("mul", y, bw.bin("sub", g, s))]
    s = bw.reduce("reduce_sum", g, [axis], keepdims=True)
    return [bw.bin("sub", g, bw.bin("mul", bw.un("exp", y), s))]


VJP: dict[type, Rule] = {
    nn.SoftmaxOp: _softmax_vjp, nn.LogSoftmaxOp: _softmax_vjp,
}

