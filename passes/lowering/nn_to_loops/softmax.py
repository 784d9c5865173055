"""Lowering of the softmax family: softmax and log_softmax, row by row."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, axis_split, lanes_reduce


def lower_softmax(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis`: the max; exp(x - max) into the output (a loop
    without a reduction: it vectorizes); their sum (`lanes_reduce`); then
    divide (softmax) or x - max - log(sum) (log_softmax)."""
    x = ins[0]
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    outer, at = axis_split(x.shape, axis)
    n = x.shape[axis]
    log = isinstance(op, nn.LogSoftmaxOp)

    def row(ivs, _):
        mx, = b.nest([n], lambda j, c: [b(arith.MaximumfOp, c[0], b.load(x, at(ivs, j[0])))],
                     [b.const(-pymath.inf, x.elt)])
        b.nest([n], lambda j, _: b.store(b(math.ExpOp, b(arith.SubfOp, b.load(x, at(ivs, j[0])), mx)),
                                         out, at(ivs, j[0])))
        total = lanes_reduce(b, "add", n, lambda j: b.load(out, at(ivs, j)), b.const(0.0, x.elt))
        if log:
            lt = b(math.LogOp, total)
            fn, src = (lambda v: b(arith.SubfOp, b(arith.SubfOp, v, mx), lt)), x
        else:
            fn, src = (lambda v: b(arith.DivfOp, v, total)), out
        b.nest([n], lambda j, _: b.store(fn(b.load(src, at(ivs, j[0]))), out, at(ivs, j[0])))

    b.nest(outer, row)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.SoftmaxOp: lower_softmax, nn.LogSoftmaxOp: lower_softmax,
}

