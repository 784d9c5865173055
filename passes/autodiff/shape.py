"""VJP rules of the shape family: reshape, broadcast, transpose, concat, slice, pad,
triu / tril."""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.passes.autodiff.core import Backward, Rule, int_constant, no_rule
from ncc.passes.lowering.nn_to_loops import BIG_END


def _reshape_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.reshape(g, op.operands[0].type)]


def _broadcast_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.unbroadcast(g, op.operands[0].type)]


def _transpose_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    inverse = [0] * len(op.params.perm)
    for i, p in enumerate(op.params.perm):
        inverse[p] = i
    return [bw.emit(nn.TransposeOp(g, inverse))]


def _concat_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    axis = nn.normalize_axis(op.params.axis, len(shape_of(g.type)))
    out, start = [], 0
    for i, x in enumerate(op.operands):
        n = shape_of(x.type)[axis]
        out.append(bw.emit(nn.SliceOp(g, [start], [start + n], [axis])) if bw.wants(op, i) else None)
        start += n
    return out


def _slice_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """The cotangent goes back to its place in zeros: the axes of step 1 by one
    pad, the others (larger or negative steps) by a scatter to the constant
    positions they read."""
    x = op.operands[0]
    sx = shape_of(x.type)
    r, p = len(sx), op.params
    pads, scattered = [0] * (2 * r), []
    for a, s, e, st in zip(nn.normalize_axes(p.axes, r), p.starts, p.ends, p.steps):
        if sx[a] == DYN:  # only the whole batch has a known place
            if not (s == 0 and e >= BIG_END and st == 1):
                raise no_rule(op, "of a part of the dynamic batch dimension")
            continue
        read = range(sx[a])[nn.onnx_slice(sx[a], s, e, st)]
        if len(read) == 0:
            return [bw.zeros(x.type)]
        if st == 1:
            pads[a], pads[a + r] = read.start, sx[a] - read.stop
        else:
            scattered.append((a, read))
    cur = g
    for a, read in scattered:
        shape = list(shape_of(cur.type))
        at = int_constant(bw, np.array(read).reshape([len(read) if i == a else 1 for i in range(r)]))
        ind = bw.broadcast(at, TensorType(i64, shape))
        shape[a] = sx[a]
        zeros = bw.zeros(TensorType(g.type.element_type, shape))
        cur = bw.emit(nn.ScatterElementsOp(zeros, ind, cur, axis=a))
    return [bw.emit(nn.PadOp(cur, pads)) if any(pads) else cur]


def _pad_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Axis by axis (padding composes as a product of per-axis maps): the inner
    part; for edge, plus the sum of each pad onto the element it repeats; for
    reflect, plus each pad reversed onto the elements it mirrors."""
    x = op.operands[0]
    sx = shape_of(x.type)
    r, p = len(sx), op.params
    cur = g
    for d in range(r):
        lo, hi = p.pads[d], p.pads[d + r]
        if not lo and not hi:
            continue
        n = sx[d]
        if n == DYN:
            raise no_rule(op, "that pads the dynamic batch dimension")
        full = lo + n + hi

        def part(start: int, end: int, step: int = 1, src=cur, d=d) -> SSAValue:
            return bw.emit(nn.SliceOp(src, [start], [end], [d], [step]))

        def place(v: SSAValue, before: int, after: int, d=d) -> SSAValue:  # zeros around v along d
            widths = [0] * (2 * r)
            widths[d], widths[d + r] = before, after
            return bw.emit(nn.PadOp(v, widths)) if before or after else v

        acc = part(lo, lo + n)
        if p.mode == "edge":
            def total(start: int, end: int, d=d) -> SSAValue:
                return bw.reduce("reduce_sum", part(start, end), [d], keepdims=True)

            if lo:
                acc = bw.bin("add", acc, place(total(0, lo), 0, n - 1))
            if hi:
                acc = bw.bin("add", acc, place(total(lo + n, full), n - 1, 0))
        elif p.mode == "reflect":  # pad position lo - j mirrors element j; lo + n - 1 + j mirrors n - 1 - j
            if lo:
                acc = bw.bin("add", acc, place(part(lo - 1, -(full + 1), -1), 1, n - 1 - lo))
            if hi:
                acc = bw.bin("add", acc, place(part(full - 1, lo + n - 1, -1), n - 1 - hi, 1))
        cur = acc
    return [cur]


def _triangle_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.emit(type(op)(g, k=op.params.k))]  # the same mask


VJP: dict[type, Rule] = {
    nn.ReshapeOp: _reshape_vjp, nn.BroadcastOp: _broadcast_vjp, nn.TransposeOp: _transpose_vjp,
    nn.ConcatOp: _concat_vjp, nn.SliceOp: _slice_vjp, nn.PadOp: _pad_vjp,
    **{cls: _triangle_vjp for cls in nn.TRIANGLE_OPS.values()},
}

