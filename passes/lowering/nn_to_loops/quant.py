"""Lowering of the quant family: quantize, dequantize and requantize as
elementwise loops (onnxruntime's roundings: an f32 quotient or product,
clamped to the target range, rounded half to even); qmatmul and qconv as
loops accumulating in i32."""

from __future__ import annotations

from typing import Callable, Sequence

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import f32, i32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, Index, broadcast_map, identity_map, map_nest
from ncc.passes.lowering.nn_to_loops.builder import window


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
    shifted by the zero point (its floor 0 with floor="zero": relu), rounded,
    then the zero point added."""
    lo, hi = nn.RANGE[elt]
    zf = b(arith.SIToFPOp, zero, f32)
    low = b.like(0.0, r) if floor == "zero" else b(arith.SubfOp, b.like(float(lo), r), zf)
    r = b(arith.MinimumfOp, b(arith.MaximumfOp, r, low), b(arith.SubfOp, b.like(float(hi), r), zf))
    q = b(arith.AddiOp, b(arith.FPToSIOp, b(math.RoundEvenOp, r), i32), zero)
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


def lower_qmatmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[..., m, n] = sum_k (a[..., m, k] - a_zero) * (b[..., k, n] - b_zero[n]);
    batch dimensions broadcast as numpy.matmul's."""
    a, w, az, bz = ins
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


def lower_qconv(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[n, m, o...] = sum over the group's channels and the kernel of
    (x at the window - x_zero) * (w[m, c, k...] - w_zero[m]); padding reads 0."""
    x, w, xz, wz = ins
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


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.QuantizeOp: lower_quantize, nn.DequantizeOp: lower_dequantize, nn.RequantizeOp: lower_requantize,
    nn.QmatmulOp: lower_qmatmul, nn.QconvOp: lower_qconv,
}
