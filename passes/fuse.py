"""fuse: matmul/conv + bias add + activation -> one fused op.

    %0 = nn.matmul %x, %w                      %2 = nn.fused_matmul %x, %w, %b
    %1 = nn.add %0, %b              ==>             activation "relu"
    %2 = nn.relu %1

Three small patterns, applied greedily to a fixed point:
  * FuseClip:       min(max(x, 0), 6), or max(min(x, 6), 0) -> relu6(x)
                    (ONNX's Clip, as PyTorch exports ReLU6)
  * FuseBias:       add(matmul|conv, bias)          -> fused(identity)
  * FuseActivation: act(matmul|conv|fused(identity)) -> fused(act)
A producer is only absorbed when the fused op is its only user, so no work is
done twice. A bias must add along the output features only (matmul: shape [N]
or [1, ..., N]; conv: [C, 1, 1] or [1, C, 1, 1], as numpy broadcasts along
the channels); it is reshaped to [C].
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from ncc.dialects import activations, nn

# The nn ops that apply an activation of the table, and its name.
ACTIVATION_OF: dict[type, str] = {cls: name for name, cls in nn.UNARY_OPS.items()
                                  if name in activations.BY_NAME}
FUSED = (nn.FusedMatmulOp, nn.FusedConvOp)


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def _bias_features(producer: Operation, bias: SSAValue) -> int | None:
    """The feature count if `bias` adds along the producer's output features only."""
    out = _shape(producer.results[0])
    b = _shape(bias)
    if not out:
        return None
    # matmul: the last axis; conv: the channels, axis 1 of [N, C, spatial...] (numpy's broadcasting
    # aligns the right, so a [C] bias adds along the last spatial axis, not the channels)
    axis = -1 if isinstance(producer, (nn.MatmulOp, nn.FusedMatmulOp)) else 1
    n = out[axis]
    ok = nn.broadcasts_along(b, out, axis) and math.prod(b) == n
    return n if ok and n >= 0 else None


def _absorbable(producer: Operation, *, with_bias: bool) -> bool:
    """A matmul/conv, or a fused op that has not yet applied (a bias and) an activation."""
    if isinstance(producer, (nn.MatmulOp, nn.ConvOp)):
        return True
    return (isinstance(producer, FUSED) and producer.params.activation == "identity"
            and not (with_bias and producer.bias is not None))


def _fused(producer: Operation, bias: SSAValue | None, activation: str) -> Operation:
    """The fused op computing activation(producer + bias)."""
    if isinstance(producer, FUSED) and bias is None:
        bias = producer.bias
    x, w = producer.operands[0], producer.operands[1]
    if isinstance(producer, (nn.MatmulOp, nn.FusedMatmulOp)):
        return nn.FusedMatmulOp(x, w, bias, activation)
    p = producer.params
    return nn.FusedConvOp(x, w, bias, activation, strides=p.strides, pads=p.pads,
                          dilations=p.dilations, group=p.group)


def _literal(v: SSAValue, value: float) -> bool:
    """v is an nn.constant (of any shape) whose every element is `value`."""
    op = v.owner
    return isinstance(op, nn.ConstantOp) and op.data.size > 0 and bool(np.all(op.data == value))


CLIPS = {"min": ("max", 6.0, 0.0), "max": ("min", 0.0, 6.0)}  # outer op: (inner op, outer bound, inner bound)


class FuseClip(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        outer = next((name for name in CLIPS if isinstance(op, nn.BINARY_OPS[name])), None)
        if outer is None:
            return
        inner_name, outer_bound, inner_bound = CLIPS[outer]
        inner = op.lhs.owner
        if (not isinstance(inner, nn.BINARY_OPS[inner_name]) or not op.lhs.has_one_use()
                or not _literal(op.rhs, outer_bound) or not _literal(inner.rhs, inner_bound)
                or _shape(op.result) != _shape(inner.lhs)
                or inner.lhs.type.element_type != op.result.type.element_type):
            return
        rewriter.replace(op, nn.UNARY_OPS["relu6"](inner.lhs))
        rewriter.erase(inner)


class FuseBias(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.AddOp):
            return
        for prod_val, bias in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            producer = prod_val.owner
            if (not isinstance(producer, Operation) or not _absorbable(producer, with_bias=True)
                    or not prod_val.has_one_use() or bias.type.element_type != prod_val.type.element_type):
                continue
            n = _bias_features(producer, bias)
            if n is None or _shape(op.result) != _shape(prod_val):
                continue
            new_ops: list[Operation] = []
            if _shape(bias) != (n,):
                reshape = nn.ReshapeOp(bias, [n])
                new_ops.append(reshape)
                bias = reshape.results[0]
            fused = _fused(producer, bias, "identity")
            rewriter.replace(op, [*new_ops, fused])
            rewriter.erase(producer)
            return


class FuseActivation(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        activation = ACTIVATION_OF.get(type(op))
        if activation is None:
            return
        producer = op.operands[0].owner
        if (not isinstance(producer, Operation) or not _absorbable(producer, with_bias=False)
                or not op.operands[0].has_one_use()):
            return
        rewriter.replace(op, _fused(producer, None, activation))
        rewriter.erase(producer)


class FusePass(ModulePass):
    """Fuse matmul/conv with a following bias add and activation into one op (a clip to [0, 6] is relu6)."""

    name = "fuse"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([FuseClip(), FuseBias(), FuseActivation()])).rewrite_module(op)
