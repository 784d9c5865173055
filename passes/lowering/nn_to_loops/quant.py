"""Lowering of the quant family: quantize, dequantize and requantize as
elementwise loops (onnxruntime's roundings: an f32 quotient or product,
clamped to the target range, rounded half to even); qmatmul with a 2-D rhs
as one call of the int8 GEMM (passes/lowering/qgemm.py), other qmatmuls
and qconv as loops accumulating in i32; packed_qconv_nhwc as the image's
rows (in place of im2col's columns) times the prepacked weight."""

from __future__ import annotations

from typing import Callable, Sequence

import math as pymath

from xdsl.dialects import arith, func, math, memref
from xdsl.dialects.builtin import IndexType, MemRefType, f32, i8, i32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn.quant import ROUNDING_MAGIC, ROUNDING_MAGIC_BITS
from ncc.passes.lowering import qgemm
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, Index, broadcast_map, identity_map, map_nest
from ncc.passes.lowering.nn_to_loops.builder import linear_index, row_major_strides, view, window
from ncc.passes.lowering.nn_to_loops.conv import im2col, phase_floats


def _per(buf: Buf, axis: int, rank: int) -> Index:
    """The index of a scale or zero point for data index ivs: per tensor or per `axis`."""
    if not buf.shape:
        return lambda ivs: []
    return lambda ivs: [ivs[axis % rank]]


def widen(b: Builder, v: SSAValue) -> SSAValue:
    """An i8 / ui8 / i32 value as i32 (ui8 zero-extended)."""
    if v.type == i32:
        return v
    return b(arith.ExtUIOp if v.type == nn.ui8 else arith.ExtSIOp, v, i32)


def to_quantized(b: Builder, r: SSAValue, zero: SSAValue, elt, floor: str = "range") -> SSAValue:
    """saturate(round_half_even(r) + zero) as `elt`: r clamped to the range
    shifted by the zero point (its floor 0 with floor="zero": relu; NaN to
    the floor), then rounded as MLAS does, by adding ROUNDING_MAGIC and
    reading the bits (exact in the clamped range), and the zero point added."""
    lo, hi = nn.RANGE[elt]
    zf = b(arith.SIToFPOp, zero, f32)
    low = b.like(0.0, r) if floor == "zero" else b(arith.SubfOp, b.like(float(lo), r), zf)
    high = b(arith.SubfOp, b.like(float(hi), r), zf)
    r = b.select(b.cmpf("ult", r, low), low, r)  # vmaxps / vminps: no NaN or signed-zero cases to order
    r = b.select(b.cmpf("ogt", r, high), high, r)
    bits = b(arith.BitcastOp, b(arith.AddfOp, r, b.like(ROUNDING_MAGIC, r)), i32)
    q = b(arith.AddiOp, b(arith.SubiOp, bits, b.const(ROUNDING_MAGIC_BITS, i32)), zero)
    return b(arith.TruncIOp, q, elt)


def lower_quantize(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, scale, zero = ins
    rank, axis = len(out.shape), op.params.axis
    reads = [(x, identity_map), (scale, _per(scale, axis, rank)), (zero, _per(zero, axis, rank))]
    map_nest(b, out.shape, out, identity_map, reads,
             lambda v, s, z: to_quantized(b, b(arith.DivfOp, v, s), widen(b, z), out.elt))


def lower_dequantize(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, scale, zero = ins
    rank, axis = len(out.shape), op.params.axis
    reads = [(x, identity_map), (scale, _per(scale, axis, rank)), (zero, _per(zero, axis, rank))]
    map_nest(b, out.shape, out, identity_map, reads, lambda v, s, z: b(
        arith.MulfOp, b(arith.SIToFPOp, b(arith.SubiOp, widen(b, v), widen(b, z)), f32), s))


def lower_requantize(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    acc, scale, zero = ins
    rank, p = len(out.shape), op.params
    floor = "zero" if p.activation == "relu" else "range"
    reads = [(acc, identity_map), (scale, _per(scale, p.axis, rank)), (zero, _per(zero, p.axis, rank))]
    map_nest(b, out.shape, out, identity_map, reads, lambda v, s, z: to_quantized(
        b, b(arith.MulfOp, b(arith.SIToFPOp, v, f32), s), widen(b, z), out.elt, floor))


def _centered(b: Builder, buf: Buf, index: Sequence[SSAValue], zero: SSAValue) -> SSAValue:
    return b(arith.SubiOp, widen(b, b.load(buf, index)), zero)


QGEMM_ARGS = [IndexType()] * 3 + [MemRefType(i8, [DYN]), IndexType(), MemRefType(i8, [DYN]), IndexType(),
              MemRefType(i8, [DYN]), IndexType(), i32, i32, MemRefType(i32, [DYN]), i32, MemRefType(i8, [DYN]),
              IndexType(), MemRefType(i32, [DYN]), MemRefType(f32, [DYN]), i32]


def _bytes(b: Builder, buf: Buf, elt=i8) -> SSAValue:
    """All of `buf` as a flat memref<?x elt> (the same bytes; the kernel takes pointers)."""
    static = pymath.prod(d for d in buf.shape if d != DYN) * nn.numpy_dtype(buf.elt).itemsize // (elt.bitwidth // 8)
    size = b.mul_i(b.batch, static) if DYN in buf.shape else b.idx(static)
    return b.emit(memref.ReinterpretCastOp.from_dynamic(buf.ref, [b.idx(0)], [size], [1], MemRefType(elt, [DYN])))


def _view(b: Builder, ref: SSAValue, offset: int | SSAValue, size: int, elt) -> SSAValue:
    """`size` elements of `elt` from element `offset` of ref's bytes (as that type)."""
    return b.emit(memref.ReinterpretCastOp.from_dynamic(
        ref, [b.idx(offset) if isinstance(offset, int) else offset], [b.idx(size)], [1], MemRefType(elt, [DYN])))


def _epilogue_length(op: Operation) -> int:
    """Channels (conv) or columns (matmul) of a packed op's requantize epilogue; 0 without one."""
    if not isinstance(op, (nn.PackedQmatmulOp, nn.PackedQconvOp, nn.PackedQconvNhwcOp)) or not op.epilogue:
        return 0
    return nn.shape_of(op.result.type)[1 if isinstance(op, nn.PackedQconvOp) else -1]


def _tail_bytes(op: Operation, b_zeros: int) -> int:
    """The scratch after the GEMM's workspace: b_zeros i32 zero points, the epilogue's scale (f32), alignment."""
    return 4 * b_zeros + 4 * _epilogue_length(op) + 64


def _epilogue(b: Builder, op: Operation, epilogue: list[Buf], scale_at: int) -> tuple[list[SSAValue], int]:
    """ncc_qgemm's last three arguments (bias, scale, c_zero) and the flags of
    a packed op's epilogue: the bias as it is ([C] i32), the scale as [C] f32
    in the scratch from word `scale_at` (a scale per tensor repeated).
    Without an epilogue, views the kernel does not read, and no flags."""
    if not epilogue:
        return [_view(b, b.scratch.ref, 0, 1, i32), _view(b, b.scratch.ref, 0, 1, f32), b.const(0, i32)], 0
    bias, scale, zero = epilogue
    length = _epilogue_length(op)
    scales = Buf(_view(b, b.scratch.ref, scale_at, length, f32), (length,), f32)
    b.nest([length], lambda ivs, _: b.store(b.load(scale, ivs if scale.shape else []), scales, ivs))
    flags = (qgemm.REQUANTIZE | (qgemm.BY_ROW if isinstance(op, nn.PackedQconvOp) else 0)
             | (qgemm.C_UNSIGNED if zero.elt == nn.ui8 else 0) | (qgemm.RELU if op.params.activation == "relu" else 0))
    return [_bytes(b, bias, i32), scales.ref, widen(b, b.load(zero, []))], flags


def _out_bytes(b: Builder, out: Buf, offset: int | SSAValue, size: int) -> SSAValue:
    """`size` elements of out from element `offset`, as bytes (the GEMM's C: i32 or requantized int8)."""
    width = nn.numpy_dtype(out.elt).itemsize
    return _view(b, out.ref, b.mul_i(offset, width) if not isinstance(offset, int) else offset * width,
                 size * width, i8)


def qgemm_ready(op: Operation) -> bool:
    """qmatmul runs on ncc_qgemm: a 2-D rhs (a's leading dimensions are its rows); packed_qmatmul always."""
    return isinstance(op, nn.PackedQmatmulOp) or len(nn.shape_of(op.rhs.type)) == 2


def _depth_columns(op: Operation) -> tuple[int, int]:
    return (op.params.depth, op.params.columns) if isinstance(op, nn.PackedQmatmulOp) else nn.shape_of(op.rhs.type)


def qgemm_scratch_bytes(op: Operation, threads: int) -> int:
    """ncc_qgemm's workspace, one part per thread, then the rhs zero points as i32."""
    if not qgemm_ready(op):
        return 0
    k, n = _depth_columns(op)
    return threads * qgemm.workspace_bytes(k) + _tail_bytes(op, n)


def lower_qmatmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """A 2-D rhs: one call of ncc_qgemm over all rows of lhs. Else loops:
    out[..., m, n] = sum_k (a[..., m, k] - a_zero) * (b[..., k, n] - b_zero[n]),
    batch dimensions broadcast as numpy.matmul's."""
    a, w, az, bz, *epilogue = ins
    if qgemm_ready(op):
        k, n = _depth_columns(op)
        packed = isinstance(op, nn.PackedQmatmulOp)
        static = pymath.prod(d for d in a.shape[:-1] if d != DYN)
        rows = b.mul_i(b.batch, static) if DYN in a.shape[:-1] else b.idx(static)
        workspace = _bytes(b, b.scratch)
        tail = (b.scratch.shape[0] * 4 - _tail_bytes(op, n)) // 4  # words
        zeros = _view(b, b.scratch.ref, tail, n, i32)
        per_column = bool(bz.shape)
        if per_column:
            b.nest([n], lambda ivs, _: b.store(widen(b, b.load(bz, ivs)), Buf(zeros, (n,), i32), ivs))
        requantize, epilogue_flags = _epilogue(b, op, epilogue, tail + n)
        unsigned = op.params.rhs_unsigned if packed else w.elt == nn.ui8
        flags = ((qgemm.A_SIGNED if a.elt == nn.i8 else 0) | (qgemm.B_UNSIGNED if unsigned else 0)
                 | (qgemm.B_ZERO_COLUMNS if per_column else 0) | (qgemm.PACKED_B if packed else 0) | epilogue_flags)
        b_zero = b.const(0, i32) if per_column else widen(b, b.load(bz, []))
        b.externals[qgemm.SYMBOL] = (list(QGEMM_ARGS), [])
        b.emit(func.CallOp(qgemm.SYMBOL, [rows, b.idx(n), b.idx(k), _bytes(b, a), b.idx(k), _bytes(b, w), b.idx(n),
                                          _bytes(b, out, i8), b.idx(n), widen(b, b.load(az, [])), b_zero, zeros,
                                          b.const(flags, i32), workspace, b.idx(b.threads), *requantize], []))
        return
    batch = out.shape[:len(out.shape) - (2 if len(a.shape) > 1 else 1)]
    a_batch = broadcast_map(b, batch, a.shape[:-2])
    w_batch = broadcast_map(b, batch, w.shape[:-2])
    k = a.shape[-1]

    def body(ivs, _):
        bi, n = ivs[:len(batch)], ivs[-1]
        rows = [ivs[len(batch)]] if len(a.shape) > 1 else []
        a0 = widen(b, b.load(az, []))
        b0 = widen(b, b.load(bz, [n] if bz.shape else []))

        def step(kv, carried):
            prod = b(arith.MuliOp, _centered(b, a, [*a_batch(bi), *rows, kv[0]], a0),
                     _centered(b, w, [*w_batch(bi), kv[0], n], b0))
            return [b(arith.AddiOp, carried[0], prod)]

        total, = b.nest([k], step, [b.const(0, i32)])
        b.store(total, out, ivs)

    b.nest(out.shape, body)


def qconv_ready(op: Operation) -> bool:
    """qconv runs on ncc_qgemm: a weight zero point per tensor (the GEMM's A is the weight)."""
    return nn.shape_of(op.weight_zero.type) == ()


def _weight_shape(op: Operation) -> tuple[int, ...]:
    return nn.shape_of(op.weight_type() if isinstance(op, nn.PackedQconvOp) else op.weight.type)


def _im2col_parts(op: Operation) -> tuple[int, int]:
    """(channels x kernel, output positions) of one image's im2col."""
    kernel, out = _weight_shape(op)[2:], nn.shape_of(op.result.type)[2:]
    return nn.shape_of(op.input.type)[1] * pymath.prod(kernel), pymath.prod(out)


def _phase_bytes(op: Operation) -> int:
    """An image split by stride phase (im2col's scratch at a stride > 1), in bytes."""
    return -(-phase_floats(nn.shape_of(op.input.type), op.params.strides) * 4 // 64) * 64


def qconv_scratch_bytes(op: Operation, threads: int) -> int:
    """One image's im2col (bytes), its stride phases, then ncc_qgemm's workspace, one part per thread."""
    if not qconv_ready(op):
        return 0
    rows, positions = _im2col_parts(op)
    k = rows // op.params.group
    return -(-rows * positions // 64) * 64 + _phase_bytes(op) + threads * qgemm.workspace_bytes(k) + _tail_bytes(op, 0)


def _qconv_by_gemm(b: Builder, op, out: Buf, x: Buf, w: Buf, xz: Buf, wz: Buf, epilogue: list[Buf]) -> None:
    """Per image: im2col of x (padding holds the input's zero point, so it
    counts as 0), then per group one ncc_qgemm, C[Mg, P] = (W_g - w_zero) @
    (col_g - x_zero): the weight is A, the image B, the result NCHW."""
    p = op.params
    packed = isinstance(op, nn.PackedQconvOp)  # w: the weight's rows as nn.qpack_rows made them
    m, cg, *kernel = _weight_shape(op)
    rows, positions = _im2col_parts(op)
    groups, mg, k = p.group, m // p.group, cg * pymath.prod(kernel)
    col_bytes = -(-rows * positions // 64) * 64
    scratch_bytes = b.scratch.shape[0] * 4
    shape = (x.shape[1], *kernel, *out.shape[2:])
    col = Buf(b.emit(memref.ReinterpretCastOp.from_dynamic(b.scratch.ref, [0], list(shape), row_major_strides(shape),
                                                           MemRefType(x.elt, list(shape)))), shape, x.elt)
    phases = _phase_bytes(op)
    scratch = _view(b, b.scratch.ref, 0, scratch_bytes, x.elt)  # the scratch's bytes as x's type
    tail = scratch_bytes - _tail_bytes(op, 0)
    workspace = _view(b, b.scratch.ref, col_bytes + phases, tail - col_bytes - phases, i8)
    (bias, scale, c_zero), epilogue_flags = _epilogue(b, op, epilogue, tail // 4)
    signed = p.weight_signed if packed else w.elt == nn.i8
    flags = ((qgemm.A_SIGNED if signed else 0) | (qgemm.B_UNSIGNED if x.elt == nn.ui8 else 0)
             | (qgemm.PACKED_A if packed else 0) | epilogue_flags)
    row = (qgemm.quads(k) + 1) * 4 if packed else k  # bytes of a row of A
    b.externals[qgemm.SYMBOL] = (list(QGEMM_ARGS), [])

    def one(ivs, _):
        ni = ivs[0]
        zero = b.load(xz, [])

        im2col(b, p, x, ni, col, col_bytes, fill=zero, scratch=scratch)
        for g in range(groups):
            b.emit(func.CallOp(qgemm.SYMBOL, [
                b.idx(mg), b.idx(positions), b.idx(k), _view(b, _bytes(b, w), g * mg * row, mg * row, i8),
                b.idx(k),
                _view(b, col.ref, g * k * positions, k * positions, i8), b.idx(positions),
                _out_bytes(b, out, b.add_i(b.mul_i(ni, m * positions), g * mg * positions), mg * positions),
                b.idx(positions), widen(b, b.load(wz, [])), widen(b, zero), _view(b, b.scratch.ref, 0, 1, i32),
                b.const(flags, i32), workspace, b.idx(b.threads),
                *((_view(b, bias, g * mg, mg, i32), _view(b, scale, g * mg, mg, f32)) if epilogue else (bias, scale)),
                c_zero], []))
    b.nest([out.shape[0]], one)


def lower_qconv(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """A weight zero point per tensor (always for packed_qconv): im2col and ncc_qgemm (_qconv_by_gemm).
    Else loops: out[n, m, o...] = sum over the group's channels and the
    kernel of (x at the window - x_zero) * (w[m, c, k...] - w_zero[m]);
    padding reads 0."""
    x, w, xz, wz, *epilogue = ins
    if qconv_ready(op):
        _qconv_by_gemm(b, op, out, x, w, xz, wz, epilogue)
        return
    p = op.params
    m, cg, *kernel = w.shape
    per_group = m // p.group
    spatial = x.shape[2:]

    def body(ivs, _):
        ni, mi, outs = ivs[0], ivs[1], ivs[2:]
        x0 = widen(b, b.load(xz, []))
        w0 = widen(b, b.load(wz, [mi] if wz.shape else []))
        first = b.mul_i(b(arith.DivUIOp, mi, b.idx(per_group)), cg) if p.group > 1 else b.idx(0)

        def step(kv, carried):
            ci, offs = kv[0], kv[1:]
            pos, valid = window(b, spatial, outs, offs, p.strides, p.pads, p.dilations)
            xv = _centered(b, x, [ni, b.add_i(first, ci), *pos], x0)
            if valid is not None:
                xv = b.select(valid, xv, b.const(0, i32))
            return [b(arith.AddiOp, carried[0], b(arith.MuliOp, xv, _centered(b, w, [mi, ci, *offs], w0)))]

        total, = b.nest([cg, *kernel], step, [b.const(0, i32)])
        b.store(total, out, ivs)

    b.nest(out.shape, body)


def _nhwc_rows(op: Operation) -> tuple[int, int, int]:
    """(output positions, K = kernel x C, bytes of a row of the image's matrix: K up to whole quads)."""
    k = pymath.prod(nn.shape_of(op.weight_type())[1:])
    return pymath.prod(nn.shape_of(op.result.type)[1:-1]), k, 4 * qgemm.quads(k)


def _padded_image(op: Operation) -> tuple[int, ...]:
    """The shape of one image with its padding ([spatial + pads..., C]; () without padding)."""
    p = op.params
    *spatial, c = nn.shape_of(op.input.type)[1:]
    nd = len(spatial)
    return tuple(s + p.pads[d] + p.pads[d + nd] for d, s in enumerate(spatial)) + (c,) if any(p.pads) else ()


def _images_bytes(op: Operation) -> int:
    """One image's matrix of rows and its padded copy, in bytes up to 64 (the GEMM's workspace after them)."""
    positions, _, row = _nhwc_rows(op)
    return -(-(positions * row + pymath.prod(_padded_image(op) or (0,))) // 64) * 64


def qconv_nhwc_scratch_bytes(op: Operation, threads: int) -> int:
    """One image's matrix of rows and its padded copy (bytes), then ncc_qgemm's workspace, one part per thread."""
    return _images_bytes(op) + threads * qgemm.workspace_bytes(_nhwc_rows(op)[1]) + _tail_bytes(op, 0)


def lower_qconv_nhwc(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per image: its matrix of rows -- row o = the input's channels at each
    kernel offset of output position o (k..., c), from a copy of the image
    with its padding (the input's zero point) if it has any, a static run of
    kernel[-1] x C bytes per offset of the other axes (at dilation 1) --
    with int8 made the GEMM's uint8 by xor 0x80 (its zero point + 128), then
    one ncc_qgemm reading those rows in place (A_IN_PLACE) by the prepacked
    weight (PACKED_B): the result is channels-last, bias and scale by column."""
    x, panels, xz, *epilogue = ins
    p = op.params
    positions, k, row = _nhwc_rows(op)
    m, nd, spatial, outs = p.channels, len(p.kernel), x.shape[1:-1], out.shape[1:-1]
    c = x.shape[-1]
    rows = Buf(_view(b, b.scratch.ref, 0, positions * row, x.elt), (positions * row,), x.elt)
    padded, images = _padded_image(op), _images_bytes(op)
    tail = b.scratch.shape[0] * 4 - _tail_bytes(op, 0)
    workspace = _view(b, b.scratch.ref, images, tail - images, i8)
    (bias, scale, c_zero), epilogue_flags = _epilogue(b, op, epilogue, tail // 4)
    signed = x.elt == nn.i8
    flip = b.const(-128, i8)
    b.externals[qgemm.SYMBOL] = (list(QGEMM_ARGS), [])

    def as_byte(v: SSAValue) -> SSAValue:  # the GEMM's unsigned byte (int8 + 128: its bits xor 0x80)
        return b(arith.XOrIOp, v, flip) if signed else v

    def one(ivs, _):
        ni = ivs[0]
        fill = as_byte(b.load(xz, []))
        image = view(b, x.ref, b.mul_i(ni, pymath.prod(spatial) * c), (*spatial, c), x.elt)
        if padded:  # the zero point everywhere, then the image inside: every window reads in bounds
            frame = view(b, b.scratch.ref, positions * row, padded, x.elt)
            b.nest(list(padded), lambda at, _: b.store(fill, frame, at))
            b.nest([*spatial, c], lambda at, _: b.store(as_byte(b.load(image, at)), frame, [
                *(b.add_i(at[d], p.pads[d]) for d in range(nd)), at[nd]]))
            source, bytes_of = frame, (lambda v: v)
        else:
            source, bytes_of = image, as_byte

        def offset(ov, _):
            o, kk = ov[:nd], ov[nd:]
            lead = [b.add_i(b.mul_i(o[d], p.strides[d]), b.mul_i(kk[d], p.dilations[d])) for d in range(nd - 1)]
            # row o of the matrix, from the first byte of kernel row kk (its taps' C bytes each)
            start = b.add_i(linear_index(b, (*outs, row), o), linear_index(b, (*p.kernel, c), kk))
            first = b.mul_i(o[-1], p.strides[-1])  # the last axis' first tap, in the (padded) image

            if p.dilations[-1] != 1:  # tap t of the last axis, channel ch: C bytes a tap
                b.nest([p.kernel[-1], c], lambda tc, _: b.store(
                    bytes_of(b.load(source, [*lead, b.add_i(first, b.mul_i(tc[0], p.dilations[-1])), tc[1]])),
                    rows, [b.add_i(start, b.add_i(b.mul_i(tc[0], c), tc[1]))]))
                return
            # the taps' channels side by side in the (padded) image: one run of kernel[-1] x C bytes
            flat = view(b, source.ref, b.idx(0), (pymath.prod(source.shape),), x.elt)
            base = linear_index(b, source.shape, [*lead, first])
            b.nest([p.kernel[-1] * c], lambda e, _: b.store(bytes_of(b.load(flat, [b.add_i(base, e[0])])), rows,
                                                            [b.add_i(start, e[0])]))
        b.nest([*outs, *p.kernel[:-1]], offset)
        if row > k:  # the bytes up to the last whole quad: read, times the packed weight's zero rows
            b.nest([positions, row - k], lambda pr, _: b.store(
                fill, rows, [b.add_i(b.add_i(b.mul_i(pr[0], row), k), pr[1])]))
        a_zero = widen(b, b.load(xz, []))
        if signed:
            a_zero = b(arith.AddiOp, a_zero, b.const(128, i32))
        b.emit(func.CallOp(qgemm.SYMBOL, [
            b.idx(positions), b.idx(m), b.idx(k), _view(b, rows.ref, 0, positions * row, i8), b.idx(row),
            _bytes(b, panels, i8), b.idx(m),
            _out_bytes(b, out, b.mul_i(ni, positions * m), positions * m), b.idx(m), a_zero, b.const(0, i32),
            _view(b, b.scratch.ref, 0, 1, i32),
            b.const(qgemm.A_IN_PLACE | qgemm.PACKED_B | epilogue_flags, i32), workspace, b.idx(b.threads),
            bias, scale, c_zero], []))
    b.nest([out.shape[0]], one)


SCRATCH: dict[type, Callable[[Operation, int], int]] = {nn.QmatmulOp: qgemm_scratch_bytes,
                                                        nn.PackedQmatmulOp: qgemm_scratch_bytes,
                                                        nn.QconvOp: qconv_scratch_bytes,
                                                        nn.PackedQconvOp: qconv_scratch_bytes,
                                                        nn.PackedQconvNhwcOp: qconv_nhwc_scratch_bytes}
LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.QuantizeOp: lower_quantize, nn.DequantizeOp: lower_dequantize, nn.RequantizeOp: lower_requantize,
    nn.QmatmulOp: lower_qmatmul, nn.PackedQmatmulOp: lower_qmatmul, nn.QconvOp: lower_qconv,
    nn.PackedQconvOp: lower_qconv, nn.PackedQconvNhwcOp: lower_qconv_nhwc,
}
