"""Lowering of the attention family: nn.attention ROW_BLOCK query rows at a time
(each value of kt and v loaded once for the block), their scores in a scratch
of ROW_BLOCK rows of Sk floats (never the score matrix); per row:

    s[j]  = sum_d q[i, d] kt[d, j]            d outer (K_UNROLL at a time), j inner: vectorizes
    s[j]  = s[j] * scale + bias[i, j];  m = max_j s[j]
    s[j]  = exp(s[j] - m);  l = sum_j s[j]    (lanes_reduce)
    o[i]  = sum_j s[j] v[j] / l               j outer (K_UNROLL at a time), the row of v inner

Blocks of rows are independent: each writes the scratch it reads
(parallelize-loops gives each thread its own)."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import UnitAttr
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, blocks, broadcast_map, lanes_reduce, view
from ncc.passes.lowering.nn_to_loops.matmul import K_UNROLL, ROW_BLOCK
from ncc.passes.lowering.parallelize_loops import SCRATCH_PER_ITERATION


def attention_scratch_bytes(op: Operation, threads: int) -> int:
    """ROW_BLOCK rows of scores (f32 or f64)."""
    return 8 * ROW_BLOCK * op.keys_t.type.get_shape()[-1]


def lower_attention(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    q, kt, v = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    lead, sq, dv = out.shape[:-2], out.shape[-2], out.shape[-1]
    depth, keys = q.shape[-1], kt.shape[-1]
    elt = out.elt
    s = view(b, b.scratch.ref, 0, (ROW_BLOCK, keys), elt)
    zero, scale = b.const(0.0, elt), b.const(op.params.scale, elt)
    bias_at = broadcast_map(b, (*lead, sq, keys), bias.shape) if bias is not None else None
    marked: list = []

    def row_block(at, i0, count):  # `count` query rows: each value of kt and v loaded once for all
        marked.append(b.block)
        rows = [b.add_i(i0, r) for r in range(count)]
        b.nest([count, keys], lambda rj, _: b.store(zero, s, rj))

        def depth_block(d0, n):  # K_UNROLL products per load and store of a score
            ds = [b.add_i(d0, u) for u in range(n)]
            qs = [[b.load(q, [*at, i, d]) for d in ds] for i in rows]

            def key(j, _):
                ks = [b.load(kt, [*at, d, j[0]]) for d in ds]
                for r, qr in enumerate(qs):
                    total = b.load(s, [b.idx(r), j[0]])
                    for qd, k in zip(qr, ks):
                        total = b(arith.AddfOp, total, b(arith.MulfOp, qd, k))
                    b.store(total, s, [b.idx(r), j[0]])

            b.nest([keys], key)

        blocks(b, depth, K_UNROLL, depth_block)
        totals = []
        for r, i in enumerate(rows):
            ri = b.idx(r)

            def scaled(j, c, i=i, ri=ri):
                x = b(arith.MulfOp, b.load(s, [ri, j[0]]), scale)
                if bias_at is not None:
                    x = b(arith.AddfOp, x, b.load(bias, bias_at([*at, i, j[0]])))
                b.store(x, s, [ri, j[0]])
                return [b(arith.MaximumfOp, c[0], x)]

            mx, = b.nest([keys], scaled, [b.const(-pymath.inf, elt)])
            b.nest([keys], lambda j, _, ri=ri, mx=mx: b.store(
                b(math.ExpOp, b(arith.SubfOp, b.load(s, [ri, j[0]]), mx)), s, [ri, j[0]]))
            totals.append(lanes_reduce(b, "add", keys, lambda j, ri=ri: b.load(s, [ri, j]), zero))
        for i in rows:
            b.nest([dv], lambda e, _, i=i: b.store(zero, out, [*at, i, e[0]]))

        def key_block(j0, n):  # K_UNROLL products per load and store of an output element
            js = [b.add_i(j0, u) for u in range(n)]
            ps = [[b.load(s, [b.idx(r), j]) for j in js] for r in range(count)]

            def column(e, _):
                vs = [b.load(v, [*at, j, e[0]]) for j in js]
                for i, pr in zip(rows, ps):
                    total = b.load(out, [*at, i, e[0]])
                    for p, x in zip(pr, vs):
                        total = b(arith.AddfOp, total, b(arith.MulfOp, p, x))
                    b.store(total, out, [*at, i, e[0]])

            b.nest([dv], column)

        blocks(b, keys, K_UNROLL, key_block)
        for i, total in zip(rows, totals):
            b.nest([dv], lambda e, _, i=i, total=total: b.store(
                b(arith.DivfOp, b.load(out, [*at, i, e[0]]), total), out, [*at, i, e[0]]))

    outside = b.block
    b.nest(lead, lambda ivs, _: blocks(b, sq, ROW_BLOCK, lambda i0, n: row_block(ivs, i0, n)))
    for block in marked:  # each block of rows writes the scratch it reads
        loop = block.parent_op() if block is not outside else None
        while loop is not None:
            loop.attributes[SCRATCH_PER_ITERATION] = UnitAttr()
            loop = None if loop.parent_block() is outside else loop.parent_op()


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {nn.AttentionOp: lower_attention}
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {nn.AttentionOp: attention_scratch_bytes}
