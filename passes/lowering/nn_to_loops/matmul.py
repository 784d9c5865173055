"""Lowering of the matmul family: matmul, matmul_transpose_a, matmul_transpose_b and fused_matmul.

A float32 product with a 2-D right operand of at least GEMM_MIN_WORK
elements is one call of the packed, register-blocked GEMM
(passes/lowering/gemm.py: `ncc_sgemm`, defined by the engine for the CPU it
compiles for), its workspace a scratch buffer in the arena (`SCRATCH`); a
fused matmul's bias and activation follow in one pass over the output. Other
products are loops: blocks of ROW_BLOCK rows, k unrolled by K_UNROLL."""

from __future__ import annotations

from typing import Callable

import math

from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import IndexType, MemRefType, f32, i32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn.matmul import PANEL
from ncc.passes.lowering import gemm
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, blocks, broadcast_map, epilogue, if_else


K_UNROLL = 8  # matmul: products per load/store of the output in the inner loop
ROW_BLOCK = 4  # matmul: output rows computed together (each load of w feeds ROW_BLOCK of them)


GEMM_MIN_WORK = 4096  # k * n of a product that goes to the GEMM (64 x 64 and up)
GEMM_MIN_ROWS = 4  # fewer rows (a small batch): the loops, which stream w once (no MR-row tile to fill)
_FLAT = MemRefType(f32, [DYN])
GEMM_ARGS = [IndexType()] * 3 + [_FLAT, IndexType(), IndexType(), _FLAT, IndexType(), _FLAT,
                                  IndexType(), i32, _FLAT, IndexType(), _FLAT, _FLAT]


def gemm_sizes(op: Operation) -> tuple[int, int, int] | None:
    """(M, N, K) of a product the GEMM computes (DYN where the batch decides),
    or None: f32 operands, a 2-D right operand of at least GEMM_MIN_WORK
    elements; matmul_transpose_a's left operand read transposed."""
    x, w = (nn.shape_of(v.type) for v in op.operands[:2])
    if isinstance(op, nn.PackedMatmulOp):  # always the GEMM, whatever the size
        return (DYN if DYN in x[:-1] else math.prod(x[:-1])), op.params.columns, w[1]
    if op.result.type.element_type != f32 or op.operands[0].type.element_type != f32 \
            or op.operands[1].type.element_type != f32 or len(w) != 2 or not x:
        return None
    k, n = w[::-1] if isinstance(op, nn.MatmulTransposeBOp) else w
    if isinstance(op, nn.MatmulTransposeAOp):
        m = x[1]
        k = x[0]
    else:
        m = DYN if DYN in x[:-1] else math.prod(x[:-1])
    if n * (k if k != DYN else gemm.KC) < GEMM_MIN_WORK:
        return None
    return m, n, k


def gemm_scratch_bytes(op: Operation, threads: int) -> int:
    """The workspace of the op's GEMM call (0: no GEMM): enough for any batch
    and one part per thread."""
    sizes = gemm_sizes(op)
    if sizes is None:
        return 0
    m, n, k = sizes
    return 4 * threads * gemm.workspace_floats(gemm.MC if m == DYN else m, n, gemm.KC if k == DYN else k)


def flat_view(b: Builder, ref: SSAValue, offset: int | SSAValue, size: int | SSAValue) -> SSAValue:
    """`size` floats of buffer `ref` from element `offset`, as the GEMM's
    memref<?xf32> (row-major: the same bytes)."""
    return b.emit(memref.ReinterpretCastOp.from_dynamic(
        ref, [offset], [b.idx(size) if isinstance(size, int) else size], [1], _FLAT))


def call_gemm(b: Builder, operands: list, flags: int, workspace: SSAValue, bias: SSAValue | None = None,
              residual: SSAValue | None = None) -> None:
    """One call of ncc_sgemm: operands M, N, K, A, a_row_stride, a_col_stride,
    B, ldb, C, ldc (ints become index constants), the flags, the workspace
    (a flat view) and the epilogue's bias and residual (else the workspace,
    never read)."""
    b.externals[gemm.SYMBOL] = (list(GEMM_ARGS), [])
    args = [b.idx(v) if isinstance(v, int) else v for v in operands]
    b.emit(func.CallOp(gemm.SYMBOL, [*args, b.const(flags, i32), workspace, b.idx(b.threads),
                                     workspace if bias is None else bias,
                                     workspace if residual is None else residual], []))


def _flat(b: Builder, buf: Buf) -> SSAValue:
    """All of `buf` as a flat view."""
    static = math.prod(d for d in buf.shape if d != DYN)
    return flat_view(b, buf.ref, 0, b.mul_i(b.batch, static) if DYN in buf.shape else static)


def _lower_by_gemm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, w = ins[0], ins[1]
    m, n, k = gemm_sizes(op)
    if isinstance(op, nn.MatmulTransposeAOp):  # x is [k, m]: element (i, kk) at kk * m + i
        rs, cs = b.idx(1), b.idx(m)
        k = b.batch if k == DYN else b.idx(k)
        m = b.idx(m)
    else:
        rows = math.prod(d for d in x.shape[:-1] if d != DYN)
        m = b.mul_i(b.batch, rows) if m == DYN else b.idx(m)
        rs, cs, k = b.idx(k), b.idx(1), b.idx(k)
    bias, residual = (*ins[2:], None, None)[:2]
    fused = isinstance(op, (nn.FusedMatmulOp, nn.PackedMatmulOp))
    flags, in_tile = epilogue_flags(op, bias, gemm.BIAS_COLS, (n,), residual) if fused else (0, True)
    flags |= gemm.PACKED_B if isinstance(op, nn.PackedMatmulOp) else 0
    ldb = n
    if isinstance(op, nn.MatmulTransposeBOp):  # w is [n, k]
        flags, ldb = flags | gemm.TRANSPOSED_B, k
    call_gemm(b, [m, n, k, _flat(b, x), rs, cs, _flat(b, w), ldb, _flat(b, out), n], flags, _flat(b, b.scratch),
              _flat(b, bias) if flags & gemm.BIAS_COLS else None, _flat(b, residual) if residual else None)
    if not in_tile:  # bias, residual and activation the tile cannot apply: one pass over the output
        def fin(ivs, _):
            bi = bias and broadcast_map(b, out.shape, bias.shape)(ivs)
            b.store(epilogue(b, op, bias, bi, b.load(out, ivs), residual and b.load(residual, ivs)), out, ivs)
        b.nest(list(out.shape), fin)


IN_TILE = {"identity": 0, "relu": gemm.RELU, "relu6": gemm.RELU6}  # activations the GEMM's tile applies


def epilogue_flags(op: Operation, bias: Buf | None, per: int, bias_shape: tuple,
                   residual: Buf | None = None) -> tuple[int, bool]:
    """(the GEMM's epilogue flags, whether they do all of the fused op's
    epilogue): a bias of `bias_shape` (per row or column: `per`), a residual
    (if given: the caller passes it as C's twin) and relu, relu6 or no
    activation go into the tile; anything else is left to a pass over C."""
    act = op.params.activation
    if act not in IN_TILE or (bias is not None and tuple(bias.shape) != bias_shape):
        return 0, act == "identity" and bias is None and residual is None
    return (per if bias is not None else 0) | (gemm.RESIDUAL if residual is not None else 0) | IN_TILE[act], True


def lower_matmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """numpy.matmul, loops (batch..., row blocks, k blocks, j): ROW_BLOCK rows
    of the output at a time, k unrolled by K_UNROLL, and an inner loop over j
    that is unit-stride in the right operand and the output (it vectorizes):
    each vector of w loaded feeds ROW_BLOCK rows, and each output vector is
    loaded and stored once per K_UNROLL products. Fused: bias + activation
    per row. nn.matmul_transpose_a reads its [k, m] lhs transposed. Large
    float32 products of at least GEMM_MIN_ROWS rows: one GEMM call instead
    (_lower_by_gemm); with a dynamic batch, both, chosen at run time."""
    sizes = gemm_sizes(op)
    if sizes is not None and sizes[0] == DYN:  # the batch decides, at run time
        rows = b.mul_i(b.batch, math.prod(d for d in ins[0].shape[:-1] if d != DYN))
        return if_else(b, b.cmpi("sge", rows, b.idx(GEMM_MIN_ROWS)),
                       lambda: _lower_by_gemm(b, op, out, ins), lambda: _lower_by_loops(b, op, out, ins))
    if sizes is not None and sizes[0] >= GEMM_MIN_ROWS:
        return _lower_by_gemm(b, op, out, ins)
    _lower_by_loops(b, op, out, ins)


def _lower_by_loops(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, w = ins[0], ins[1]
    bias, residual = (*ins[2:], None, None)[:2]
    packed = isinstance(op, nn.PackedMatmulOp)  # w is panels [P, K, PANEL]: column j at [j / PANEL, k, j % PANEL]
    rows, cols = len(x.shape) > 1, packed or len(w.shape) > 1
    x2 = (1, *x.shape) if not rows else x.shape
    rhs_t = isinstance(op, nn.MatmulTransposeBOp)  # w is [n, k]: read w[j, kq]
    w2 = (w.shape[1], op.params.columns) if packed else (*w.shape, 1) if not cols else w.shape[::-1] if rhs_t \
        else w.shape
    m, k, n = x2[-2], x2[-1], w2[-1]
    lhs_t = isinstance(op, nn.MatmulTransposeAOp)  # x is [k, m]: read x[kq, i]
    if lhs_t:
        m, k = k, m
    nb = len(out.shape) - rows - cols
    zero = b.const(0, out.elt)

    # With a team, the columns split into tiles (two per thread, whole vectors
    # wide), each computed over all of k: the tiles are independent, so
    # parallelize-loops gives them to the team (a matrix-vector product at
    # batch 1 otherwise runs on one thread). One thread keeps whole rows.
    # (Packed: tiles of whole panels; the last, partial panel after them.)
    full, rest = divmod(n, PANEL)
    units, unit = (full, PANEL) if packed else (-(-n // 16), 16)
    tiles = 2 * b.threads if b.threads > 1 and cols and units >= 2 * b.threads else 1
    per = -(-units // tiles)  # units per tile

    def row_block(bt: list[SSAValue], i0: SSAValue, count: int) -> None:
        if tiles == 1:
            column_tile(bt, i0, count, 0, n, (0, full, True))
            return

        def tile(ts, _):
            first = b.mul_i(ts[0], per)
            if packed:
                some = b(arith.MinSIOp, b.idx(per), b(arith.SubiOp, b.idx(full), first))
                column_tile(bt, i0, count, b.mul_i(first, PANEL), b.mul_i(some, PANEL), (first, some, False))
            else:
                j0 = b.mul_i(first, unit)
                column_tile(bt, i0, count, j0, b(arith.MinSIOp, b.idx(per * unit), b(arith.SubiOp, b.idx(n), j0)))
        b.nest([-(-units // per)], tile)
        if packed and rest:
            column_tile(bt, i0, count, full * PANEL, rest, (full, 0, True))

    def column_tile(bt: list[SSAValue], i0: SSAValue, count: int, j0: int | SSAValue, n: int | SSAValue,
                    panels: tuple = (0, 0, False)) -> None:
        """Rows i0 .. i0 + count of out, columns j0 .. j0 + n; packed: `panels` =
        (first, how many, with the partial panel) are those columns."""
        irows = [b.add_i(i0, r) for r in range(count)]

        def oidx(i, j):
            return [*bt, *([i] if rows else []), *([j] if cols else [])]

        def xload(i, kq):
            return b.load(x, [kq, i] if lhs_t else [*xb, *([i] if rows else []), kq])

        def clear(js, _):
            for i in irows:
                b.store(zero, out, oidx(i, js[0]))

        def columns(body) -> None:
            """body([j], at) for every output column j; with panels, `at` is the
            panel and the column within it (the whole panels, then the partial one)."""
            if not packed:
                b.nest([n], lambda js, at: body([b.add_i(js[0], j0)], at))
                return
            first, how_many, partial = panels

            def panel(ps, c):
                p = b.add_i(ps[0], first)
                body([b.add_i(b.mul_i(p, PANEL), ps[1])], (p, ps[1]))
            if not (isinstance(how_many, int) and how_many == 0):
                b.nest([how_many, PANEL], panel)
            if partial and rest:
                b.nest([rest], lambda js, c: body([b.add_i(js[0], full * PANEL)], (b.idx(full), js[0])))

        def wload(kq, j, at):
            if packed:
                return b.load(w, [at[0], kq, at[1]])
            if rhs_t:
                return b.load(w, [j, kq])
            return b.load(w, [*wb, kq, *([j] if cols else [])])

        b.nest([n], lambda js, at: clear([b.add_i(js[0], j0)], at))
        xb = broadcast_map(b, out.shape[:nb], x2[:-2])(bt)
        wb = broadcast_map(b, out.shape[:nb], w2[:-2])(bt)

        def kstep(kk: list[SSAValue]) -> None:
            """out[rows, :] += x[rows, kk] @ w[kk, :]: each w load feeds every row."""
            xv = [[xload(i, kq) for kq in kk] for i in irows]

            def jloop(js, at):
                wv = [wload(kq, js[0], at) for kq in kk]
                for i, xr in zip(irows, xv):
                    o = oidx(i, js[0])
                    acc = b.load(out, o)
                    for xq, wq in zip(xr, wv):  # same order of additions as one k at a time
                        acc = b.binary("add", acc, b.binary("mul", xq, wq))
                    b.store(acc, out, o)

            columns(jloop)

        blocks(b, k, K_UNROLL, lambda k0, c: kstep([b.add_i(k0, u) for u in range(c)]))
        if isinstance(op, (nn.FusedMatmulOp, nn.PackedMatmulOp)) and (
                bias is not None or op.params.activation != "identity"):
            def fin(js, _):
                for i in irows:
                    o = oidx(i, js[0])
                    bi = bias and broadcast_map(b, out.shape, bias.shape)(o)
                    b.store(epilogue(b, op, bias, bi, b.load(out, o), residual and b.load(residual, o)), out, o)
            b.nest([n], lambda js, at: fin([b.add_i(js[0], j0)], at))

    def batch_body(bt, _):
        blocks(b, m, ROW_BLOCK if rows else 1, lambda i0, c: row_block(bt, i0, c))

    b.nest(list(out.shape[:nb]), batch_body)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.MatmulOp: lower_matmul, nn.MatmulTransposeAOp: lower_matmul, nn.MatmulTransposeBOp: lower_matmul,
    nn.FusedMatmulOp: lower_matmul,
    nn.PackedMatmulOp: lower_matmul,
}
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`, for a thread count.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {cls: gemm_scratch_bytes for cls in LOWER}

