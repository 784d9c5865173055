"""Lowering of the shape family: reshape, broadcast, transpose, concat, slice, pad,
triu / tril."""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith, func
from xdsl.dialects.builtin import IndexType, MemRefType, f32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import transpose
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, blocks, broadcast_map, identity_map, map_nest
from ncc.passes.lowering.nn_to_loops.builder import row_major_strides
from ncc.passes.lowering.nn_to_loops.matmul import flat_view


def lower_reshape(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """A copy through the linear index (a reshape of an arena value is a view instead)."""
    x = ins[0]

    def src(ivs):
        lin = None
        for iv, st in zip(ivs, row_major_strides(out.shape)):
            term = b.mul_i(iv, st)
            lin = term if lin is None else b(arith.AddiOp, lin, term)
        lin = lin if lin is not None else b.idx(0)
        idx = []
        for i, (d, st) in enumerate(zip(x.shape, row_major_strides(x.shape))):
            q = lin if st == 1 else b(arith.DivUIOp, lin, b.idx(st))
            idx.append(b.idx(0) if d == 1 else q if i == 0 else b(arith.RemUIOp, q, b.idx(d)))
        return idx

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def lower_broadcast(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    map_nest(b, out.shape, out, identity_map, [(ins[0], broadcast_map(b, out.shape, ins[0].shape))],
             lambda v: v)


TRANSPOSE_TILE = 16  # elements of a tile's side: one 64-byte cache line of floats
TRANSPOSE_ARGS = [IndexType(), IndexType(), MemRefType(f32, [DYN]), IndexType(), MemRefType(f32, [DYN]), IndexType()]


def lower_transpose(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[ivs] = x[ivs permuted]. Where the input's last axis moves (reads along
    out's last axis are strided), each 2-D slab of the two axes is a matrix
    transposed: by a call of ncc_transpose32 (passes/lowering/transpose.py:
    blocks transposed in registers) for f32, else in TRANSPOSE_TILE square
    tiles, each reading TRANSPOSE_TILE lines of the input and writing as many
    of the output, each whole, instead of one line per element read."""
    perm = list(op.params.perm)

    def src(ivs):
        idx = [None] * len(perm)
        for i, d in enumerate(perm):
            idx[d] = ivs[i]
        return idx

    last = len(perm) - 1
    if not perm or perm[last] == last:
        map_nest(b, out.shape, out, identity_map, [(ins[0], src)], lambda v: v)
        return
    q = perm.index(last)  # out's axis along which the input is contiguous
    outer = [i for i in range(len(perm)) if i not in (q, last)]
    if out.elt == f32:
        _transpose_slabs(b, ins[0], out, perm, q, outer)
        return

    def tiles(ovs, _):
        def tile(q0, cq):
            def run(l0, cl):
                def element(ts, _):
                    ivs = [None] * len(perm)
                    for i, iv in zip(outer, ovs):
                        ivs[i] = iv
                    ivs[q], ivs[last] = b.add_i(q0, ts[0]), b.add_i(l0, ts[1])
                    b.store(b.load(ins[0], src(ivs)), out, ivs)
                b.nest([cq, cl], element)
            blocks(b, out.shape[last], TRANSPOSE_TILE, run)
        blocks(b, out.shape[q], TRANSPOSE_TILE, tile)

    b.nest([out.shape[i] for i in outer], tiles)


def _transpose_slabs(b: Builder, x: Buf, out: Buf, perm: list[int], q: int, outer: list[int]) -> None:
    """One ncc_transpose32 per index of the `outer` axes: the slab of x's axes
    perm[-1] (rows) and its last (columns) into out's last and q."""
    last = len(perm) - 1
    x_strides, out_strides = row_major_strides(x.shape), row_major_strides(out.shape)
    rows, cols = b.size(x.shape[perm[last]]), b.size(x.shape[last])
    lds, ldd = x_strides[perm[last]], out_strides[q]
    b.externals[transpose.SYMBOL] = (list(TRANSPOSE_ARGS), [])

    def extent(n: SSAValue, stride: int, width: SSAValue) -> SSAValue:  # (n - 1) * stride + width, 0 if n is 0
        return b(arith.MaxSIOp, b.idx(0), b(arith.AddiOp, b.mul_i(b(arith.SubiOp, n, b.idx(1)), stride), width))

    def slab(ivs, _):
        at_x, at_out = b.idx(0), b.idx(0)
        for axis, iv in zip(outer, ivs):
            at_x = b.add_i(at_x, b.mul_i(iv, x_strides[perm[axis]]))
            at_out = b.add_i(at_out, b.mul_i(iv, out_strides[axis]))
        b.emit(func.CallOp(transpose.SYMBOL, [rows, cols, flat_view(b, x.ref, at_x, extent(rows, lds, cols)),
                                              b.idx(lds), flat_view(b, out.ref, at_out, extent(cols, ldd, rows)),
                                              b.idx(ldd)], []))

    b.nest([out.shape[i] for i in outer], slab)


def lower_concat(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    axis = nn.normalize_axis(op.params.axis, len(out.shape))
    offset = 0
    for x in ins:
        def dst(ivs, off=offset):
            return [b.add_i(iv, off) if i == axis else iv for i, iv in enumerate(ivs)]
        map_nest(b, x.shape, out, dst, [(x, identity_map)], lambda v: v)
        offset += x.shape[axis]


def lower_slice(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x = ins[0]
    p = op.params
    first = [0] * len(x.shape)
    step = [1] * len(x.shape)
    for a, s, e, st in zip(nn.normalize_axes(p.axes, len(x.shape)), p.starts, p.ends, p.steps):
        r = range(x.shape[a])[nn.onnx_slice(x.shape[a], s, e, st)] if x.shape[a] != DYN else range(0)
        first[a], step[a] = (r.start if len(r) else 0), st

    def src(ivs):
        out_idx = []
        for iv, f, st in zip(ivs, first, step):
            if st >= 0:
                out_idx.append(b.add_i(b.mul_i(iv, st), f))
            else:  # first - iv * |step|
                out_idx.append(b(arith.SubiOp, b.idx(f), b.mul_i(iv, -st)))
        return out_idx

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def lower_pad(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x = ins[0]
    p = op.params
    r = len(x.shape)
    value = b.const(p.value, out.elt)

    def body(ivs, _):
        idx, valid = [], None
        for d in range(r):
            lo, hi, size = p.pads[d], p.pads[d + r], x.shape[d]
            if lo == 0 and hi == 0:
                idx.append(ivs[d])
                continue
            s = b(arith.SubiOp, ivs[d], b.idx(lo)) if lo else ivs[d]
            last = b.idx(size - 1)
            if p.mode == "edge":
                s = b(arith.MaxSIOp, b(arith.MinSIOp, s, last), b.idx(0))
            elif p.mode == "reflect":  # pads < size: one reflection at each end suffices
                s = b(arith.MaxSIOp, s, b(arith.SubiOp, b.idx(0), s)) if lo else s
                s = b(arith.MinSIOp, s, b(arith.SubiOp, b.idx(2 * (size - 1)), s)) if hi else s
            else:
                ok = b(arith.AndIOp, b.cmpi("sge", s, b.idx(0)), b.cmpi("sle", s, last))
                valid = ok if valid is None else b(arith.AndIOp, valid, ok)
                s = b.select(ok, s, b.idx(0))
            idx.append(s)
        v = b.load(x, idx)
        b.store(v if valid is None else b.select(valid, v, value), out, ivs)

    b.nest(out.shape, body)


def lower_triangle(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Keep x[..., i, j] where j - i >= k (triu) or <= k (tril), else 0."""
    x = ins[0]
    zero = b.const(0, out.elt)
    pred = "sge" if isinstance(op, nn.TriuOp) else "sle"

    def body(ivs, _):
        keep = b.cmpi(pred, b(arith.SubiOp, ivs[-1], ivs[-2]), b.idx(op.params.k))
        b.store(b.select(keep, b.load(x, ivs), zero), out, ivs)

    b.nest(out.shape, body)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.ReshapeOp: lower_reshape, nn.BroadcastOp: lower_broadcast, nn.TransposeOp: lower_transpose,
    nn.ConcatOp: lower_concat, nn.SliceOp: lower_slice, nn.PadOp: lower_pad,
    **{cls: lower_triangle for cls in nn.TRIANGLE_OPS.values()},
}

