"""fold-qdq: a contraction between dequantizes and a quantize runs on the integers.

A QDQ model (onnxruntime's `quantize_static`, ncc's `quantize`) writes an
int8 layer as float ops between QuantizeLinear/DequantizeLinear pairs:

    %a = nn.dequantize %xq, %sx, %zx                    %acc = nn.qmatmul %xq, %wq, %zx, %zw
    %w = nn.dequantize %wq, %sw, %zw axis 1             %acc2 = nn.add %acc, %bq
    %b = nn.dequantize %bq, %sb, %z0           ==>      %m = (%sx * %sw) / %sy
    %y = nn.add (nn.matmul %a, %w), %b                  %yq = nn.requantize %acc2, %m, %zy axis -1 activation relu
    %yq = nn.quantize (nn.relu %y), %sy, %zy

Six small patterns, applied greedily to a fixed point:
  * QuantizeOfDequantize: quantize(dequantize(q, s, z), s, z) -> q (the same
                       literal parameters): integers pass through
  * DequantizeFirst:   a transpose or reshape of a dequantize is the dequantize
                       of the moved integers (its axis moved along): a weight
                       transposed by Gemm's transB stays int8
  * IntegerContraction: matmul|conv(dequantize(a), dequantize(w))
                       -> dequantize(qmatmul|qconv(a, w), s_a * s_w) in i32
                       (a per tensor; w per tensor or per output feature;
                       a literal zero point of equal values becomes one)
  * BiasInAccumulator: dequantize(acc) + dequantize(bias in i32)
                       -> dequantize(acc + bias): the bias's integers are
                       taken as they are, at the accumulator's scale, as the
                       QDQ format defines them (and onnxruntime reads them)
  * Requantize:        quantize([relu](dequantize(acc, s)), s_y, z_y)
                       -> requantize(acc, s / s_y, z_y [, relu])
  * MaxPoolOnIntegers: quantize(max_pool(dequantize(q, s, z)), s, z), s > 0
                       -> the max pool of q's integers (a positive scale keeps the order)
An op is only absorbed when the new op is its only user. What no pattern
matches stays as written: float ops between a dequantize and a quantize, the
same numbers as onnxruntime's (within a step of the result's scale).
`ncc.compile` runs it before fuse; the reference runs the QDQ form as written.
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriter, PatternRewriteWalker, RewritePattern

from ncc.dialects import nn
from ncc.dialects.nn import shape_of


def _dequantize_of(v: SSAValue, *, one_use: bool = True) -> nn.DequantizeOp | None:
    op = v.owner
    if isinstance(op, nn.DequantizeOp) and (v.has_one_use() or not one_use):
        return op
    return None


def _per_tensor(op: nn.DequantizeOp) -> bool:
    return shape_of(op.scale.type) == ()


def _axis(op: nn.DequantizeOp) -> int:
    return op.params.axis % len(shape_of(op.input.type))


def _moved_axis(src: tuple[int, ...], dst: tuple[int, ...], axis: int) -> int | None:
    """The axis of reshaped `dst` that holds `src`'s axis (same size, same elements before it)."""
    before = math.prod(src[:axis])
    for a, d in enumerate(dst):
        if math.prod(dst[:a]) == before and d == src[axis]:
            return a
    return None


class DequantizeFirst(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, (nn.TransposeOp, nn.ReshapeOp)):
            return
        dq = _dequantize_of(op.operands[0])
        if dq is None:
            return
        axis = None
        if not _per_tensor(dq):
            src = shape_of(dq.input.type)
            if isinstance(op, nn.TransposeOp):
                axis = list(op.params.perm).index(_axis(dq))
            else:
                axis = _moved_axis(src, shape_of(op.result.type), _axis(dq))
            if axis is None:
                return
        moved = _moved(op, dq.input)
        rewriter.replace(op, [moved, nn.DequantizeOp(moved, dq.scale, dq.zero_point,
                                                     axis=axis if axis is not None else None)])
        rewriter.erase(dq)


def _moved(op: Operation, x: SSAValue) -> Operation:
    """op (a transpose or reshape) applied to x instead (another element type)."""
    if isinstance(op, nn.TransposeOp):
        return nn.TransposeOp(x, op.params.perm)
    return nn.ReshapeOp(x, TensorType(x.type.element_type, shape_of(op.result.type)))


CONTRACTIONS = {nn.MatmulOp: -1, nn.ConvOp: 1}  # op -> the axis of its output features


class IntegerContraction(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if type(op) not in CONTRACTIONS:
            return
        a, w = _dequantize_of(op.operands[0]), _dequantize_of(op.operands[1])
        if a is None or w is None or not _per_tensor(a):
            return
        if nn.i32 in (a.input.type.element_type, w.input.type.element_type):
            return
        conv = isinstance(op, nn.ConvOp)
        w_rank = len(shape_of(w.input.type))
        if not conv and w_rank != 2:
            return
        if not _per_tensor(w) and _axis(w) != (0 if conv else 1):
            return
        made: list[Operation] = []
        w_zero = w.zero_point
        literal = w_zero.owner
        if isinstance(literal, nn.ConstantOp) and literal.data.ndim and np.all(literal.data == literal.data.flat[0]):
            made.append(nn.ConstantOp(np.asarray(literal.data.flat[0])))  # one zero point (symmetric: 0)
            w_zero = made[-1].result
        if conv:
            p = op.params
            acc = nn.QconvOp(a.input, w.input, a.zero_point, w_zero, strides=p.strides, pads=p.pads,
                             dilations=p.dilations, group=p.group)
        else:
            acc = nn.QmatmulOp(a.input, w.input, a.zero_point, w_zero)
        scale = nn.MulOp(a.scale, w.scale)
        zero = nn.ConstantOp(np.zeros(shape_of(scale.result.type), np.int32))
        out = nn.DequantizeOp(acc, scale, zero, axis=CONTRACTIONS[type(op)])
        rewriter.replace(op, [*made, acc, scale, zero, out])
        for dq in (a, w):
            rewriter.erase(dq)


def _accumulator(v: SSAValue) -> nn.DequantizeOp | None:
    """v is dequantize(acc in i32) with a zero point of 0 (what IntegerContraction makes), used once."""
    dq = _dequantize_of(v)
    if dq is None or dq.input.type.element_type != i32:
        return None
    zero = dq.zero_point.owner
    if not isinstance(zero, nn.ConstantOp) or np.any(zero.data):
        return None
    return dq


def _along(bias: tuple[int, ...], acc: tuple[int, ...], axis: int) -> bool:
    """A bias shape that broadcasts to acc and varies along `axis` only."""
    off = len(acc) - len(bias)
    return off >= 0 and all(d == 1 or (i + off == axis and d == acc[axis]) for i, d in enumerate(bias))


class BiasInAccumulator(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.AddOp):
            return
        for acc_val, bias_val in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            acc, bias = _accumulator(acc_val), _dequantize_of(bias_val, one_use=False)
            if acc is None or bias is None or bias.input.type.element_type != i32:
                continue
            shape = shape_of(acc.input.type)
            zero = bias.zero_point.owner
            if (not isinstance(zero, nn.ConstantOp) or np.any(zero.data)
                    or not _along(shape_of(bias.input.type), shape, _axis(acc))):
                continue
            total = nn.AddOp(acc.input, bias.input)
            rewriter.replace(op, [total, nn.DequantizeOp(total, acc.scale, acc.zero_point, axis=acc.params.axis)])
            rewriter.erase(acc)
            if not bias.result.uses:
                rewriter.erase(bias)
            return


class Requantize(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.QuantizeOp) or shape_of(op.scale.type) != ():
            return
        source, activation, relu = op.input, "identity", None
        if isinstance(source.owner, nn.ReluOp) and source.has_one_use():
            relu, source, activation = source.owner, source.owner.input, "relu"
        acc = _accumulator(source)
        if acc is None:
            return
        multiplier = nn.DivOp(acc.scale, op.scale)
        rewriter.replace(op, [multiplier, nn.RequantizeOp(acc.input, multiplier, op.zero_point,
                                                          axis=acc.params.axis, activation=activation)])
        if relu is not None:
            rewriter.erase(relu)
        rewriter.erase(acc)


def _same_literal(a: SSAValue, b: SSAValue) -> bool:
    x, y = a.owner, b.owner
    return (isinstance(x, nn.ConstantOp) and isinstance(y, nn.ConstantOp) and x.data.dtype == y.data.dtype
            and x.data.shape == y.data.shape and bool(np.all(x.data == y.data)))


class QuantizeOfDequantize(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.QuantizeOp):
            return
        dq = op.input.owner
        if (isinstance(dq, nn.DequantizeOp) and dq.input.type == op.result.type and dq.params.axis == op.params.axis
                and _same_literal(dq.scale, op.scale) and _same_literal(dq.zero_point, op.zero_point)):
            rewriter.replace_all_uses_with(op.result, dq.input)
            rewriter.erase(op)
            if not dq.result.uses:
                rewriter.erase(dq)


class MaxPoolOnIntegers(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.QuantizeOp):
            return
        pool = op.input.owner
        if not isinstance(pool, nn.MaxPoolOp) or not op.input.has_one_use():
            return
        dq = _dequantize_of(pool.input)
        if (dq is None or dq.input.type.element_type != op.result.type.element_type
                or not _same_literal(dq.scale, op.scale)
                or not _same_literal(dq.zero_point, op.zero_point) or np.any(dq.scale.owner.data <= 0)
                or (shape_of(dq.scale.type) and dq.params.axis != op.params.axis)):
            return
        p = pool.params
        rewriter.replace(op, nn.MaxPoolOp(dq.input, p.kernel, strides=p.strides, pads=p.pads, dilations=p.dilations))
        rewriter.erase(pool)
        rewriter.erase(dq)


def fold_qdq(module: ModuleOp) -> None:
    PatternRewriteWalker(GreedyRewritePatternApplier(
        [QuantizeOfDequantize(), DequantizeFirst(), IntegerContraction(), BiasInAccumulator(),
         Requantize(), MaxPoolOnIntegers()])).rewrite_module(module)


class FoldQdqPass(ModulePass):
    """Run the contractions of a QDQ model (dequantize -> matmul|conv [+ bias] [relu] -> quantize) on the integers: qmatmul|qconv and requantize."""

    name = "fold-qdq"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fold_qdq(op)
