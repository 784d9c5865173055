"""Lowering of the normalization family: batch_norm, layer_norm, rms_norm."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import DYN, Buf, Builder, blocks, element_count, identity_map, lanes_reduce
from ncc.passes.lowering.nn_to_loops.builder import map_nest, to_float, view


def lower_batch_norm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, scale, bias, mean, var = ins
    eps = b.const(op.params.epsilon, x.elt)

    def channel(ivs):
        return [ivs[1]]

    def fn(v, s, bb, mu, var_):
        norm = b(arith.DivfOp, b(arith.SubfOp, v, mu), b(math.SqrtOp, b(arith.AddfOp, var_, eps)))
        return b(arith.AddfOp, b(arith.MulfOp, norm, s), bb)

    map_nest(b, out.shape, out, identity_map,
             [(x, identity_map), *((t, channel) for t in (scale, bias, mean, var))], fn)


ROW_GROUP = 4  # rows normalized side by side: a row's steps (mean, variance, normalize) are a chain of latencies


def lower_layer_norm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per leading index (a row): the mean and variance over dims [axis:], then
    normalize: (x - mean) * (1 / sqrt(var + eps)) * scale + bias (one division per
    row, as PyTorch and onnxruntime). A static row size: ROW_GROUP rows at a time,
    step by step over all of them (their chains of latencies overlap), each sum a
    `lanes_reduce`. nn.rms_norm: no mean (nor bias); the mean of the squares
    instead of the variance."""
    x, scale, bias = (*ins, None)[:3]
    centered = isinstance(op, nn.LayerNormOp)
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    lead, inner = x.shape[:axis], x.shape[axis:]
    eps, zero, one = b.const(op.params.epsilon, x.elt), b.const(0.0, x.elt), b.const(1.0, x.elt)

    def statistics(totals: Callable[[Callable], list[SSAValue]], n: SSAValue) -> tuple[list, list]:
        """(means, 1 / sqrt(var + eps)) of rows whose sums of term(value) `totals` gives."""
        means = [b(arith.DivfOp, t, n) for t in totals(lambda v, r: v)] if centered else None
        def square(v, r):
            d = b(arith.SubfOp, v, means[r]) if centered else v
            return b(arith.MulfOp, d, d)

        squares = totals(square)
        rstd = [b(arith.DivfOp, one, b(math.SqrtOp, b(arith.AddfOp, b(arith.DivfOp, t, n), eps))) for t in squares]
        return means, rstd

    def normalized(v, mu, rstd, s, *bb):
        y = b(arith.MulfOp, b(arith.MulfOp, b(arith.SubfOp, v, mu) if centered else v, rstd), s)
        return b(arith.AddfOp, y, bb[0]) if bb else y

    if DYN in inner:  # one row at a time, its sums one chain
        def row(ivs, _):
            n = to_float(b, element_count(b, inner), x.elt)
            means, rstd = statistics(lambda term: [b.nest(inner, lambda js, c: [
                b(arith.AddfOp, c[0], term(b.load(x, [*ivs, *js]), 0))], [zero])[0]], n)
            map_nest(b, inner, out, lambda js: [*ivs, *js],
                     [(x, lambda js: [*ivs, *js]), *((t, identity_map) for t in (scale, bias) if t is not None)],
                     lambda v, *sb: normalized(v, means[0] if centered else None, rstd[0], *sb))
        b.nest(lead, row)
        return
    size = pymath.prod(inner)
    n = b.const(float(size), x.elt)
    params = [view(b, t.ref, 0, (size,)) for t in (scale, bias) if t is not None]

    def group(r0, count):
        rows = [b.add_i(r0, r) for r in range(count)]
        xs = [view(b, x.ref, b.mul_i(row, size), (size,)) for row in rows]
        ys = [view(b, out.ref, b.mul_i(row, size), (size,)) for row in rows]
        means, rstd = statistics(lambda term: [lanes_reduce(b, "add", size, lambda j, r=r: term(b.load(xs[r], [j]), r),
                                                            zero) for r in range(count)], n)
        for r in range(count):
            b.nest([size], lambda j, _, r=r: b.store(normalized(
                b.load(xs[r], [j[0]]), means[r] if centered else None, rstd[r], *(b.load(t, [j[0]]) for t in params)),
                ys[r], [j[0]]))

    blocks(b, element_count(b, lead), ROW_GROUP, group)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.BatchNormOp: lower_batch_norm, nn.LayerNormOp: lower_layer_norm, nn.RMSNormOp: lower_layer_norm,
}

