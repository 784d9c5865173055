"""Lowering of the pool family: max/avg pools and max_pool_indices."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import i64
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, window




def lower_pool(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Max (padding is -inf) or average (padding counts only with count_include_pad)."""
    x = ins[0]
    p = op.params
    is_max = isinstance(op, nn.MaxPoolOp)
    fill = b.const(-pymath.inf if is_max else 0.0, out.elt)
    counted = not is_max and not p.count_include_pad and any(p.pads)
    ones = [b.const(1.0, out.elt), b.const(0.0, out.elt)]

    def point(ivs, _):
        o = ivs[2:]

        def acc(ks, carried):
            pos, valid = window(b, x.shape[2:], o, ks, p.strides, p.pads, p.dilations)
            v = b.load(x, [ivs[0], ivs[1], *pos])
            if valid is not None:
                v = b.select(valid, v, fill)
            new = [b.binary("max" if is_max else "add", carried[0], v)]
            if counted:
                new.append(b(arith.AddfOp, carried[1], b.select(valid, *ones)))
            return new

        res = b.nest(p.kernel, acc, [fill, *([ones[1]] if counted else [])])
        if not is_max:
            count = res[1] if counted else b.const(float(pymath.prod(p.kernel)), out.elt)
            res[0] = b(arith.DivfOp, res[0], count)
        b.store(res[0], out, ivs)

    b.nest(out.shape, point)


def lower_max_pool_indices(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """As max_pool, carrying the flat index of the maximum with it: a valid
    cell takes over when it is greater, or when no cell was valid yet (-1)."""
    x = ins[0]
    p = op.params
    c, spatial = x.shape[1], x.shape[2:]
    order = range(len(spatial)) if p.column_major else reversed(range(len(spatial)))
    step, steps = 1, [0] * len(spatial)
    for i in order:
        steps[i], step = step, step * spatial[i]

    def point(ivs, _):
        base = b.mul_i(b.add_i(b.mul_i(ivs[0], c), ivs[1]), step)  # (n * C + c) * plane

        def acc(ks, carried):
            pos, valid = window(b, spatial, ivs[2:], ks, p.strides, p.pads, p.dilations)
            v = b.load(x, [ivs[0], ivs[1], *pos])
            lin = base
            for q, st in zip(pos, steps):
                lin = b.add_i(lin, b.mul_i(q, st))
            take = b(arith.OrIOp, b.cmpf("ogt", v, carried[0]), b.cmpi("eq", carried[1], b.idx(-1)))
            if valid is not None:
                take = b(arith.AndIOp, valid, take)
            return [b.select(take, v, carried[0]), b.select(take, lin, carried[1])]

        _, best = b.nest(p.kernel, acc, [b.const(-pymath.inf, x.elt), b.idx(-1)])
        b.store(b(arith.IndexCastOp, best, i64), out, ivs)

    b.nest(out.shape, point)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.MaxPoolOp: lower_pool, nn.AvgPoolOp: lower_pool, nn.MaxPoolIndicesOp: lower_max_pool_indices,
}

