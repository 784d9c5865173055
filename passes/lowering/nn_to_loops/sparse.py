"""Lowering of the sparse family: sparse_matmul, unrolled or over index tables."""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, index


def lower_sparse_matmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per leading index: zero the output row, then y[c] += x[r] * v[e] per edge:
    straight-line with constant indices, or a loop over i64 index tables."""
    x, vals, *tables = ins
    p = op.params
    lead = out.shape[:-1]
    zero = b.const(0.0, out.elt)

    def row(ivs, _):
        b.nest([p.out_features], lambda js, _: b.store(zero, out, [*ivs, js[0]]))

        def edge(e, r, c):
            o = [*ivs, c]
            prod = b(arith.MulfOp, b.load(x, [*ivs, r]), b.load(vals, [e]))
            b.store(b(arith.AddfOp, b.load(out, o), prod), out, o)

        if tables:
            rows, cols = tables

            def loop(es, _):
                e = es[0]
                edge(e, *(b(arith.IndexCastOp, b.load(t, [e]), index) for t in (rows, cols)))

            b.nest([len(p.rows)], loop)
        else:
            for e, (r, c) in enumerate(zip(p.rows, p.cols)):
                edge(b.idx(e), b.idx(r), b.idx(c))

    b.nest(lead, row)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.SparseMatmulOp: lower_sparse_matmul,
}

