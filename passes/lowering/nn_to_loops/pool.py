"""Lowering of the pool family: max/avg pools and max_pool_indices."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import f32, i64
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import (Buf, Builder, by_padded_plane, padded_plane_floats, ranges,
                                                      to_float, window, window_range)


def _by_padded_plane(op: Operation) -> bool:
    """A 2-D float32 or int8 max pool of static planes: by padded plane (a border of -inf or the least int)."""
    x = nn.shape_of(op.operands[0].type)
    return isinstance(op, nn.MaxPoolOp) and len(x) == 4 and nn.DYN not in x[1:] \
        and op.result.type.element_type in (f32, nn.i8, nn.ui8)


def pool_scratch_bytes(op: Operation, threads: int) -> int:
    """A 2-D max pool's padded plane (builder.by_padded_plane)."""
    if not _by_padded_plane(op):
        return 0
    x, y = (nn.shape_of(v.type) for v in (op.operands[0], op.result))
    return 4 * padded_plane_floats(x, y, op.params)


def lower_pool(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Max (padding is -inf) or average (padding counts only with
    count_include_pad), as lower_conv does a direct convolution: per plane the
    output starts at the fill (-inf or 0); then for each offset k' of the
    kernel's leading axes, along the last output axis:
        out[n, c, o] = max|+ (out[n, c, o], x[n, c, o*stride + k*dilation - pad])  for every last-axis tap k
    over just the outputs whose input is inside the image (loop bounds from
    window_range, no padding tests). The last axis's taps are combined in one
    loop where all of them are inside (its loads, strided by the pool's
    stride, form one interleaved group: wide loads and shuffles, not
    gathers), then tap by tap at the edges. An average divides last, by the
    kernel's size or by each output's count of taps inside the image."""
    x = ins[0]
    p = op.params
    is_max = isinstance(op, nn.MaxPoolOp)
    integer = out.elt in (nn.i8, nn.ui8)  # int8 data: the type's least value, a signed or unsigned max
    least = (0 if out.elt == nn.ui8 else -128) if integer else -pymath.inf
    fill = b(arith.TruncIOp, b.const(least, i64), out.elt) if integer else b.const(least if is_max else 0.0, out.elt)
    if integer:
        def merge(a, c):
            return b.select(b.cmpi("ugt" if out.elt == nn.ui8 else "sgt", a, c), a, c)
    else:
        def merge(a, c):
            return b.binary("max" if is_max else "add", a, c)
    if _by_padded_plane(op):  # one max per output, unit-stride taps, rows computed wide
        return by_padded_plane(b, x, out, b.scratch, p, p.kernel, fill, None,
                               (lambda values: _tree(merge, values)) if integer else b.max_of)
    nd = len(p.kernel)
    counted = not is_max and not p.count_include_pad and any(p.pads)
    last = nd - 1

    def plane(ivs, _):
        b.nest(out.shape[2:], lambda o, _: b.store(fill, out, [*ivs, *o]))

        def offset(ks, _):
            lead = [window_range(b, ks[d], x.shape[2 + d], out.shape[2 + d], p.strides[d], p.dilations[d],
                                 p.pads[d]) for d in range(last)]
            taps = [window_range(b, b.idx(v), x.shape[-1], out.shape[-1], p.strides[last], p.dilations[last],
                                 p.pads[last]) for v in range(p.kernel[last])]
            lo = taps[0][1]
            for t in taps[1:]:
                lo = b(arith.MaxSIOp, lo, t[1])
            hi = taps[0][2]
            for t in taps[1:]:
                hi = b(arith.MinSIOp, hi, t[2])
            hi = b(arith.MaxSIOp, hi, lo)  # [lo, hi): every tap inside; the edges are the rest of each tap's range

            def update(o, which):
                at = [*ivs, *o]
                acc = b.load(out, at)
                outer = [b.add_i(b.mul_i(o[d], p.strides[d]), lead[d][0]) for d in range(last)]
                for t in which:
                    pos = b.add_i(b.mul_i(o[last], p.strides[last]), t[0])
                    acc = merge(acc, b.load(x, [*ivs, *outer, pos]))
                b.store(acc, out, at)
            lows, highs = [w[1] for w in lead], [w[2] for w in lead]
            ranges(b, [*lows, lo], [*highs, hi], lambda o: update(o, taps))
            for t in taps:  # a tap's range may end before the others' start: [lo_t, min(lo, hi_t))
                ranges(b, [*lows, t[1]], [*highs, b(arith.MinSIOp, lo, t[2])], lambda o, t=t: update(o, [t]))
                ranges(b, [*lows, hi], [*highs, t[2]], lambda o, t=t: update(o, [t]))
        b.nest(p.kernel[:last], offset)
        if not is_max:
            size = b.const(float(pymath.prod(p.kernel)), out.elt)

            def mean(o, _):
                at = [*ivs, *o]
                count = size if not counted else to_float(b, _taps(b, o, x.shape[2:], p), out.elt)
                b.store(b(arith.DivfOp, b.load(out, at), count), out, at)
            b.nest(out.shape[2:], mean)

    b.nest(out.shape[:2], plane)


def _tree(merge: Callable[[SSAValue, SSAValue], SSAValue], values: list[SSAValue]) -> SSAValue:
    """merge over values as a balanced tree (independent pairs first)."""
    while len(values) > 1:
        values = [merge(a, c) for a, c in zip(values[::2], values[1::2])] + values[len(values) & ~1:]
    return values[0]


def _taps(b: Builder, o: list[SSAValue], sizes, p) -> SSAValue:
    """How many taps of output o's window are inside the image: per axis the
    k in [0, K) with 0 <= o*s + k*d - pad < n, i.e. from max(0, ceil((pad -
    o*s) / d)) to min(K - 1, floor((n - 1 + pad - o*s) / d)); their product."""
    total = None
    for o_a, n, kk, s, d, pad in zip(o, sizes, p.kernel, p.strides, p.dilations, p.pads):
        start = b(arith.SubiOp, b.idx(pad), b.mul_i(o_a, s))
        last = b.add_i(start, n - 1)
        if d != 1:
            start = b(arith.SubiOp, b.idx(0), b(arith.FloorDivSIOp, b(arith.SubiOp, b.idx(0), start), b.idx(d)))
            last = b(arith.FloorDivSIOp, last, b.idx(d))
        lo = b(arith.MaxSIOp, b.idx(0), start)
        hi = b(arith.MinSIOp, b.idx(kk - 1), last)
        count = b(arith.MaxSIOp, b.idx(0), b.add_i(b(arith.SubiOp, hi, lo), 1))
        total = count if total is None else b(arith.MuliOp, total, count)
    return total


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
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {nn.MaxPoolOp: pool_scratch_bytes}

