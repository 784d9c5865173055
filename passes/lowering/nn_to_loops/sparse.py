"""Lowering of the sparse family: sparse_matmul, unrolled or over index tables;
packed_sparse_matmul, one call of the sparse kernel (passes/lowering/spmm.py)."""

from __future__ import annotations

from typing import Callable

import math

from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import IndexType, MemRefType, f32, i8, i32
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import PassFailedException, VerifyException

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import gemm, spmm
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, epilogue, index
from ncc.passes.lowering.nn_to_loops.matmul import epilogue_flags, flat_view


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


def _flat(b: Builder, buf: Buf, elt) -> SSAValue:
    """All of `buf` as a flat memref<?x elt> (row-major: the same bytes)."""
    static = math.prod(d for d in buf.shape if d != DYN)
    size = b.mul_i(b.batch, static) if DYN in buf.shape else b.idx(static)
    return b.emit(memref.ReinterpretCastOp.from_dynamic(buf.ref, [b.idx(0)], [size], [1], MemRefType(elt, [DYN])))


SPMM_ARGS = [IndexType()] * 3 + [MemRefType(f32, [DYN]), IndexType(), MemRefType(f32, [DYN]), IndexType()] + [
    MemRefType(t, [DYN]) for t in (i32, i32, i8, f32, i32, i32, f32)] + [i32] + [MemRefType(f32, [DYN])] * 2 + [
    IndexType()]


def _constant_tables(op: Operation) -> None:
    """The kernel trusts its index tables: they must be weights with values, and valid."""
    data = []
    for (what, _), v in zip(nn.PackedSparseOp.TABLES, op.operands[3:8]):
        ref = v.owner
        w = ref.resolve() if isinstance(ref, nn.WeightRefOp) else None
        if w is None or w.data is None:
            raise PassFailedException(f"{op.name}: its {what} table must be a weight with values (the kernel "
                                      "reads its index tables as they are)")
        data.append(w.data)
    try:
        op.check_tables(*data)
    except VerifyException as e:
        raise PassFailedException(f"{op.name}: {e}") from None


def lower_packed_sparse(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """packed_sparse_matmul: one call of ncc_spmm over all rows (the batch and
    any leading dimensions). packed_sparse_conv: one call per image, which the
    kernel reads and whose output it writes channels first (FEATURE_MAJOR),
    rows its positions. Bias, relu and relu6 in the kernel's epilogue, any
    other activation one pass over the output after it."""
    _constant_tables(op)
    x, sv, cv, steps, blocks, lanes, colptr, rowidx, *rest = ins
    bias = rest[0] if rest else None
    k, n = op.params.in_features, op.params.out_features
    flags, in_tile = epilogue_flags(op, bias, gemm.BIAS_COLS, (n,))
    ws = _flat(b, b.scratch, f32)
    b.externals[spmm.SYMBOL] = (list(SPMM_ARGS), [])
    tables = [_flat(b, steps, i32), _flat(b, blocks, i32), _flat(b, lanes, i8), _flat(b, sv, f32),
              _flat(b, colptr, i32), _flat(b, rowidx, i32), _flat(b, cv, f32)]
    bias_arg = _flat(b, bias, f32) if flags & gemm.BIAS_COLS else ws

    def call(rows, xs, ys, ld_x, ld_y, flag_bits):
        b.emit(func.CallOp(spmm.SYMBOL, [rows, b.idx(k), b.idx(n), xs, ld_x, ys, ld_y, *tables,
                                         b.const(flag_bits, i32), bias_arg, ws, b.idx(b.threads)], []))
    if isinstance(op, nn.PackedSparseConvOp):
        positions = math.prod(x.shape[2:])

        def image(ivs, _):
            xs = flat_view(b, x.ref, b.mul_i(ivs[0], k * positions), k * positions)
            ys = flat_view(b, out.ref, b.mul_i(ivs[0], n * positions), n * positions)
            call(b.idx(positions), xs, ys, b.idx(positions), b.idx(positions), flags | spmm.FEATURE_MAJOR)
        b.nest([out.shape[0]], image)
        feature = 1
    else:
        static = math.prod(d for d in x.shape[:-1] if d != DYN)
        rows = b.mul_i(b.batch, static) if DYN in x.shape[:-1] else b.idx(static)
        call(rows, _flat(b, x, f32), _flat(b, out, f32), b.idx(k), b.idx(n), flags)
        feature = len(out.shape) - 1
    if not in_tile:  # an activation the kernel does not apply: one pass over the output
        b.nest(list(out.shape), lambda ivs, _: b.store(epilogue(b, op, bias, [ivs[feature]], b.load(out, ivs)),
                                                       out, ivs))


def spmm_scratch_bytes(op: Operation, threads: int) -> int:
    """ncc_spmm's workspace, one part per thread of its team."""
    return 4 * threads * spmm.workspace_floats(op.params.in_features, op.params.out_features)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.SparseMatmulOp: lower_sparse_matmul, nn.PackedSparseMatmulOp: lower_packed_sparse,
    nn.PackedSparseConvOp: lower_packed_sparse,
}
SCRATCH: dict[type, Callable[[Operation, int], int]] = {
    nn.PackedSparseMatmulOp: spmm_scratch_bytes, nn.PackedSparseConvOp: spmm_scratch_bytes}

