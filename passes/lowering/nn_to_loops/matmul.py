"""Lowering of the matmul family: matmul, matmul_transpose_a and fused_matmul as
blocks of ROW_BLOCK rows, k unrolled by K_UNROLL."""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, broadcast_map, epilogue


K_UNROLL = 8  # matmul: products per load/store of the output in the inner loop
ROW_BLOCK = 4  # matmul: output rows computed together (each load of w feeds ROW_BLOCK of them)


def _blocks(b: Builder, n: int | SSAValue, size: int,
            body: Callable[[SSAValue, int], None]) -> None:
    """body(start, count) over [0, n) in blocks of `size`, then the rest one at
    a time (count 1); n may be the run-time batch (DYN)."""
    if size == 1 or (n != DYN and n < size):
        b.nest([n], lambda ivs, _: body(ivs[0], 1))
        return
    if n == DYN:
        full = b(arith.DivUIOp, b.batch, b.idx(size))
        done = b.mul_i(full, size)
        b.nest([full], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
        b.nest([b(arith.SubiOp, b.batch, done)], lambda ivs, _: body(b.add_i(ivs[0], done), 1))
        return
    b.nest([n // size], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
    if n % size:
        b.nest([n % size], lambda ivs, _: body(b.add_i(ivs[0], n - n % size), 1))


def lower_matmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """numpy.matmul, loops (batch..., row blocks, k blocks, j): ROW_BLOCK rows
    of the output at a time, k unrolled by K_UNROLL, and an inner loop over j
    that is unit-stride in the right operand and the output (it vectorizes):
    each vector of w loaded feeds ROW_BLOCK rows, and each output vector is
    loaded and stored once per K_UNROLL products. Fused: bias + activation
    per row. nn.matmul_transpose_a reads its [k, m] lhs transposed."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    rows, cols = len(x.shape) > 1, len(w.shape) > 1
    x2 = (1, *x.shape) if not rows else x.shape
    w2 = (*w.shape, 1) if not cols else w.shape
    m, k, n = x2[-2], x2[-1], w2[-1]
    lhs_t = isinstance(op, nn.MatmulTransposeAOp)  # x is [k, m]: read x[kq, i]
    if lhs_t:
        m, k = k, m
    nb = len(out.shape) - rows - cols
    zero = b.const(0, out.elt)

    def row_block(bt: list[SSAValue], i0: SSAValue, count: int) -> None:
        irows = [b.add_i(i0, r) for r in range(count)]

        def oidx(i, j):
            return [*bt, *([i] if rows else []), *([j] if cols else [])]

        def xload(i, kq):
            return b.load(x, [kq, i] if lhs_t else [*xb, *([i] if rows else []), kq])

        def clear(js, _):
            for i in irows:
                b.store(zero, out, oidx(i, js[0]))

        b.nest([n], clear)
        xb = broadcast_map(b, out.shape[:nb], x2[:-2])(bt)
        wb = broadcast_map(b, out.shape[:nb], w2[:-2])(bt)

        def kstep(kk: list[SSAValue]) -> None:
            """out[rows, :] += x[rows, kk] @ w[kk, :]: each w load feeds every row."""
            xv = [[xload(i, kq) for kq in kk] for i in irows]

            def jloop(js, _):
                wv = [b.load(w, [*wb, kq, *([js[0]] if cols else [])]) for kq in kk]
                for i, xr in zip(irows, xv):
                    o = oidx(i, js[0])
                    acc = b.load(out, o)
                    for xq, wq in zip(xr, wv):  # same order of additions as one k at a time
                        acc = b.binary("add", acc, b.binary("mul", xq, wq))
                    b.store(acc, out, o)

            b.nest([n], jloop)

        _blocks(b, k, K_UNROLL, lambda k0, c: kstep([b.add_i(k0, u) for u in range(c)]))
        if isinstance(op, nn.FusedMatmulOp) and (bias is not None or op.params.activation != "identity"):
            def fin(js, _):
                for i in irows:
                    o = oidx(i, js[0])
                    bi = bias and broadcast_map(b, out.shape, bias.shape)(o)
                    b.store(epilogue(b, op, bias, bi, b.load(out, o)), out, o)
            b.nest([n], fin)

    def batch_body(bt, _):
        _blocks(b, m, ROW_BLOCK if rows else 1, lambda i0, c: row_block(bt, i0, c))

    b.nest(list(out.shape[:nb]), batch_body)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.MatmulOp: lower_matmul, nn.MatmulTransposeAOp: lower_matmul, nn.FusedMatmulOp: lower_matmul,
}

