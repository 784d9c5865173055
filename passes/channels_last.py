"""channels-last: int8 convolutions on channels-last images, as onnxruntime's
NHWC transformer runs QLinearConv. An nn.packed_qconv whose weight is known
at compile time, of zero point 0 (symmetric: quantize_static's default) and
group 1, becomes nn.packed_qconv_nhwc between two transposes: the image's
rows are then the int8 GEMM's A, read where they are, and only the weight is
packed (once) -- no per-call packing of the image's columns.

    %r = nn.reshape %w : [M, C, 3, 3] -> [M, 9C]          %t = nn.transpose %x perm [0, 2, 3, 1]
    %p = nn.qpack_rows %r                          ==>    %q = nn.qpack (%w as [3, 3, C, M] -> [9C, M])
    %y = nn.packed_qconv %x, %p, %xz, %wz, %b, %s, %yz     %z = nn.packed_qconv_nhwc %t, %q, %xz, %b, %s, %yz
                                                          %y = nn.transpose %z perm [0, 3, 1, 2]

Then, so that a chain of convolutions stays channels-last: a max pool of a
channels-first view of a channels-last image pools the image itself (its
channels one more spatial axis, of window 1), transposed after; and a
transpose of a transpose that undoes it is its input. A chain has one transpose at
each end (the image's channels in, the flatten before a linear layer out).
The weight's new form is ops on the weight alone: `fold-weights` makes it a
derived weight. `ncc.compile` runs it after `pack-weights`."""

from __future__ import annotations

import math

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.pack_weights import weight_only


def to_last(rank: int) -> list[int]:
    """The perm of [N, C, spatial...] -> [N, spatial..., C]."""
    return [0, *range(2, rank), 1]


def to_first(rank: int) -> list[int]:
    """The perm of [N, spatial..., C] -> [N, C, spatial...]."""
    return [0, rank - 1, *range(1, rank - 1)]


def _zero_constant(v: SSAValue) -> bool:
    return isinstance(v.owner, nn.ConstantOp) and not np.any(v.owner.data)


def _convertible(op: nn.PackedQconvOp) -> bool:
    rows = op.rows.owner
    return (op.params.weight_signed and op.params.group == 1 and _zero_constant(op.weight_zero)
            and isinstance(rows, nn.QpackRowsOp) and weight_only(rows.input))


def _to_nhwc(op: nn.PackedQconvOp) -> list[Operation]:
    """transpose, nn.packed_qconv_nhwc (its weight: the rows' [M, K] weight as [kernel..., C, M]), transpose."""
    p = op.params
    m, c, *kernel = shape_of(op.weight_type())
    rank = len(kernel) + 2
    x_last = nn.TransposeOp(op.input, to_last(rank))
    flat = op.rows.owner.input  # [M, C x kernel]: pack-weights' reshape of the weight, whose input is reused
    weight = [] if isinstance(flat.owner, nn.ReshapeOp) and shape_of(flat.owner.input.type) == (m, c, *kernel) \
        else [nn.ReshapeOp(flat, [m, c, *kernel])]
    w_last = nn.TransposeOp(weight[0] if weight else flat.owner.input, [*range(2, rank), 1, 0])
    matrix = nn.ReshapeOp(w_last, [math.prod(kernel) * c, m])
    panels = nn.QpackOp(matrix)
    conv = nn.PackedQconvNhwcOp(x_last, panels, op.input_zero, kernel, m, strides=p.strides, pads=p.pads,
                                dilations=p.dilations, epilogue=list(op.epilogue), activation=p.activation)
    return [x_last, *weight, w_last, matrix, panels, conv, nn.TransposeOp(conv, to_first(rank))]


def _channels_last_pool(pool: nn.MaxPoolOp) -> list[Operation] | None:
    """max_pool(transpose(z to channels-first)) as transpose(max_pool of z), or None: z [N, spatial...,
    C] viewed as [N, 1, spatial..., C], its channels one more spatial axis of window 1."""
    t = pool.input.owner
    p = pool.params
    if not isinstance(t, nn.TransposeOp):
        return None
    z = t.input
    rank = len(shape_of(z.type))
    if list(t.params.perm) != to_first(rank):
        return None
    n, *spatial, c = shape_of(z.type)
    k = len(spatial)
    view = nn.ReshapeOp(z, [n, 1, *spatial, c])
    pooled = nn.MaxPoolOp(view, [*p.kernel, 1], strides=[*p.strides, 1], pads=[*p.pads[:k], 0, *p.pads[k:], 0],
                          dilations=[*p.dilations, 1])
    _, _, *out, _ = shape_of(pooled.results[0].type)
    last = nn.ReshapeOp(pooled, [n, *out, c])
    return [view, pooled, last, nn.TransposeOp(last, to_first(rank))]


def _undone(t: nn.TransposeOp) -> SSAValue | None:
    """The input of the transpose t undoes, if t's input is one."""
    inner = t.input.owner
    if not isinstance(inner, nn.TransposeOp):
        return None
    perm, first = list(t.params.perm), list(inner.params.perm)
    return inner.input if [first[i] for i in perm] == list(range(len(perm))) else None


def _replace(op: Operation, made: list[Operation]) -> None:
    Rewriter.insert_op(made, InsertPoint.before(op))
    op.results[0].replace_all_uses_with(made[-1].results[0])
    Rewriter.erase_op(op)


def _erase_unused(fn: func.FuncOp) -> None:
    """Ops of `fn` whose results nothing uses (what the rewrites left behind), last first."""
    for op in reversed(list(fn.body.block.ops)):
        if isinstance(op, (nn.TransposeOp, nn.ReshapeOp, nn.QpackRowsOp)) and not op.results[0].uses:
            Rewriter.erase_op(op)


def channels_last(module: ModuleOp) -> int:
    """Rewrite every convertible nn.packed_qconv of `module`'s nn functions, then
    the pools and transposes between them; returns how many convolutions."""
    count = 0
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]:
        for op in [op for op in fn.body.block.ops if isinstance(op, nn.PackedQconvOp) and _convertible(op)]:
            _replace(op, _to_nhwc(op))
            count += 1
        if not count:
            continue
        for op in list(fn.body.block.ops):
            if isinstance(op, nn.MaxPoolOp) and (made := _channels_last_pool(op)) is not None:
                _replace(op, made)
            elif isinstance(op, nn.TransposeOp) and (source := _undone(op)) is not None:
                op.results[0].replace_all_uses_with(source)
        _erase_unused(fn)
    return count


class ChannelsLastPass(ModulePass):
    """int8 convolutions on channels-last images (nn.packed_qconv_nhwc, the image's rows read in place by the
    int8 GEMM): weights of zero point 0, group 1; max pools between them on the channels-last image; a chain of
    them keeps its images channels-last."""

    name = "channels-last"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        channels_last(op)
