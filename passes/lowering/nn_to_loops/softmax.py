"""Lowering of the softmax family: softmax and log_softmax, row by row."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Attribute, Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, axis_split, lanes_reduce


def row_max(b: Builder, n: int | SSAValue, term: Callable[[SSAValue], SSAValue], elt: Attribute) -> SSAValue:
    """The max of term(j) over j < n, the shift of a row's exp: `u > v ? u : v` (one vmaxps; LLVM
    lowers arith.maximumf, which orders -0 below +0 and propagates NaN, to a chain three times as
    long), over LANES partials (lanes_reduce). A NaN is skipped: exp(NaN - max) makes the row's
    sum, hence every output of the row, NaN all the same."""
    return lanes_reduce(b, lambda u, v: b.select(b.cmpf("ogt", u, v), u, v), n, term, b.const(-pymath.inf, elt))


# exp(d) of a row's d = x - max below this (under 2.7e-38 in f32, 3e-308 in f64) is taken as 0: a
# subnormal result costs dozens of times a normal one on some hosts (Zen 4), and masked scores
# (a bias of -1e9 or float32's lowest) would all be subnormal or zero.
EXP_FLUSH = {32: -86.5, 64: -708.0}


def shifted_exp(b: Builder, d: SSAValue) -> SSAValue:
    """exp(d) for d = x - max <= 0, 0 below EXP_FLUSH (no subnormal results); NaN stays NaN. The
    f32 exp is the `afn` form (passes/lowering/expand_math.py: one scale, nothing subnormal; from
    EXP_FLUSH down, its value there, which the select replaces)."""
    cut = b.const(EXP_FLUSH[d.type.bitwidth], d.type)
    e = b(math.ExpOp, b(arith.MaximumfOp, d, cut), arith.FastMathFlagsAttr(["afn"]))
    return b.select(b.cmpf("olt", d, cut), b.const(0.0, d.type), e)


def lower_softmax(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis`: the max (row_max); exp(x - max) (shifted_exp) into the output (a loop
    without a reduction: it vectorizes); their sum (`lanes_reduce`); then
    divide (softmax) or x - max - log(sum) (log_softmax)."""
    x = ins[0]
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    outer, at = axis_split(x.shape, axis)
    n = x.shape[axis]
    log = isinstance(op, nn.LogSoftmaxOp)

    def row(ivs, _):
        mx = row_max(b, n, lambda j: b.load(x, at(ivs, j)), x.elt)
        b.nest([n], lambda j, _: b.store(shifted_exp(b, b(arith.SubfOp, b.load(x, at(ivs, j[0])), mx)),
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

