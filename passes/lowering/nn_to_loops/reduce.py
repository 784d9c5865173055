"""Lowering of the reduce family: reductions, argmax / argmin, cumsum."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith
from xdsl.dialects.builtin import i64
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, REDUCE_EMIT, axis_split, element_count
from ncc.passes.lowering.nn_to_loops.builder import DYN, identity_map, lanes_reduce, map_nest, to_float, view


def lower_reduce(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out = init; for every input element (row-major, unit-stride reads):
    out[projection] = combine(out[projection], x); mean then divides. A
    float sum or product over static trailing axes goes row by row through
    `lanes_reduce` (partial results per lane, combined pairwise)."""
    x = ins[0]
    p = op.params
    axes = nn.normalize_axes(p.axes, len(x.shape))
    combine, init = REDUCE_EMIT[op.name[3:]]

    def project(ivs):
        return [b.idx(0) if i in axes else ivs[i] for i in range(len(x.shape))
                if p.keepdims or i not in axes]

    start = b.const(init(out.elt), out.elt)
    lead = len(x.shape) - len(axes)
    row = pymath.prod(x.shape[lead:])
    rounded = combine in ("add", "mul") and x.is_float  # LLVM vectorizes the others' chains itself
    if rounded and set(axes) == set(range(lead, len(x.shape))) and DYN not in x.shape[lead:]:
        def by_rows(ivs, _):
            flat = b.idx(0)
            for i, d in zip(ivs, x.shape[:lead]):
                flat = b.add_i(b.mul_i(flat, d), i)
            xs = view(b, x.ref, b.mul_i(flat, row), (row,))
            total = lanes_reduce(b, combine, row, lambda j: b.load(xs, [j]), start)
            b.store(total, out, project([*ivs, *[b.idx(0)] * len(axes)]))
        b.nest(x.shape[:lead], by_rows)
    else:
        b.nest(out.shape, lambda ivs, _: b.store(start, out, ivs))

        def body(ivs, _):
            o = project(ivs)
            b.store(b.binary(combine, b.load(out, o), b.load(x, ivs)), out, o)

        b.nest(x.shape, body)
    if isinstance(op, nn.ReduceMeanOp):
        count = element_count(b, [x.shape[a] for a in axes])
        n = b.const(float(count), out.elt) if isinstance(count, int) else to_float(b, count, out.elt)
        map_nest(b, out.shape, out, identity_map, [(out, identity_map)],
                 lambda v: b(arith.DivfOp, v, n))


# ---------------------------------------------------------------------------
# Index reductions, scans, element gathers and scatters, triangles,
# transposed convolution, resize


def lower_arg_reduce(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis`: carry (best value, its index); a strictly better
    value (or, with select_last_index, an equal one) takes over. NaN counts as
    the extreme, as in numpy: the first NaN (the last with select_last_index)."""
    x = ins[0]
    p = op.params
    axis = nn.normalize_axis(p.axis, len(x.shape))
    outer, at = axis_split(x.shape, axis)
    rel = ("g" if isinstance(op, nn.ArgmaxOp) else "l") + ("e" if p.select_last_index else "t")

    def better(v: SSAValue, best: SSAValue) -> SSAValue:
        if not x.is_float:
            return b.cmpi("s" + rel, v, best)
        nan = b.cmpf("uno", v, v)
        if not p.select_last_index:  # a NaN only replaces a number
            nan = b(arith.AndIOp, nan, b.cmpf("ord", best, best))
        return b(arith.OrIOp, b.cmpf("o" + rel, v, best), nan)

    def row(ivs, _):
        def step(js, c):
            v = b.load(x, at(ivs, js[0]))
            take = better(v, c[0])
            return [b.select(take, v, c[0]), b.select(take, js[0], c[1])]

        _, best = b.nest([x.shape[axis]], step, [b.load(x, at(ivs, b.idx(0))), b.idx(0)])
        o = at(ivs, b.idx(0)) if p.keepdims else ivs
        b.store(b(arith.IndexCastOp, best, i64), out, o)

    b.nest(outer, row)


def lower_cumsum(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis` (backwards with `reverse`): carry the running sum;
    store it after (inclusive) or before (exclusive) adding the element."""
    x = ins[0]
    p = op.params
    axis = nn.normalize_axis(p.axis, len(x.shape))
    outer, at = axis_split(x.shape, axis)
    n = x.shape[axis]

    def row(ivs, _):
        last = b(arith.SubiOp, b.size(n), b.idx(1)) if p.reverse else None

        def step(js, c):
            j = b(arith.SubiOp, last, js[0]) if p.reverse else js[0]
            total = b.binary("add", c[0], b.load(x, at(ivs, j)))
            b.store(c[0] if p.exclusive else total, out, at(ivs, j))
            return [total]

        b.nest([n], step, [b.const(0, out.elt)])

    b.nest(outer, row)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    **{cls: lower_reduce for cls in nn.REDUCE_OPS.values()},
    **{cls: lower_arg_reduce for cls in nn.ARG_REDUCE_OPS.values()},
    nn.CumSumOp: lower_cumsum,
}

