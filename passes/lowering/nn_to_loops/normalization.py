"""Lowering of the normalization family: batch_norm, layer_norm, rms_norm."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import DYN, Buf, Builder, element_count, identity_map, lanes_reduce
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


def lower_layer_norm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per leading index: the mean and variance over dims [axis:] (each a
    `lanes_reduce` over the flat row when its size is static), then normalize.
    nn.rms_norm: no mean (nor bias); the mean of the squares instead of the variance."""
    x, scale, bias = (*ins, None)[:3]
    centered = isinstance(op, nn.LayerNormOp)
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    lead, inner = x.shape[:axis], x.shape[axis:]
    eps = b.const(op.params.epsilon, x.elt)
    zero = b.const(0.0, x.elt)
    flat = DYN not in inner
    row_size = pymath.prod(inner)

    def row(ivs, _):
        count = element_count(b, inner)
        n = b.const(float(count), x.elt) if isinstance(count, int) else to_float(b, count, x.elt)
        if flat:
            at = b.idx(0)
            for i, d in zip(ivs, lead):
                at = b.add_i(b.mul_i(at, d), i)
            xs = view(b, x.ref, b.mul_i(at, row_size), (row_size,))

        def total(term):
            if flat:
                s = lanes_reduce(b, "add", row_size, lambda j: term(b.load(xs, [j])), zero)
            else:
                s, = b.nest(inner, lambda js, c: [b(arith.AddfOp, c[0], term(b.load(x, [*ivs, *js])))],
                            [zero])
            return b(arith.DivfOp, s, n)

        mu = total(lambda v: v) if centered else zero
        var = total(lambda v: (lambda d: b(arith.MulfOp, d, d))(b(arith.SubfOp, v, mu) if centered else v))
        denom = b(math.SqrtOp, b(arith.AddfOp, var, eps))

        def normalized(v, s, *bb):
            y = b(arith.MulfOp, b(arith.DivfOp, b(arith.SubfOp, v, mu) if centered else v, denom), s)
            return b(arith.AddfOp, y, bb[0]) if bb else y
        map_nest(b, inner, out, lambda js: [*ivs, *js],
                 [(x, lambda js: [*ivs, *js]), *((t, identity_map) for t in (scale, bias) if t is not None)],
                 normalized)

    b.nest(lead, row)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.BatchNormOp: lower_batch_norm, nn.LayerNormOp: lower_layer_norm, nn.RMSNormOp: lower_layer_norm,
}

