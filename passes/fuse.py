"""fuse: matmul/conv + bias add + activation -> one fused op; chains of
elementwise ops -> one nn.fused_elementwise (one loop nest, no buffer between).

    %0 = nn.matmul %x, %w                      %2 = nn.fused_matmul %x, %w, %b
    %1 = nn.add %0, %b              ==>             activation "relu"
    %2 = nn.relu %1

    %3 = nn.mul %x, %x                         %4 = nn.fused_elementwise %x : ... {
    %4 = nn.tanh %3                 ==>        ^bb0(%e: tensor<f32>):
                                                 %a = nn.mul %e, %e   %b = nn.tanh %a   nn.yield %b }

Common subexpressions are computed once first (xDSL's CSE: nn ops are pure).
Then small patterns, applied greedily to a fixed point, in two walks. First:
  * RemoveIdentity:  a reshape, broadcast or cast to the operand's own type, an
                     identity transpose, nn.identity -> the operand; a reshape
                     of a reshape -> one reshape
  * RecognizeActivation: an activation exported as its formula (Gelu before
                     ONNX opset 20, exact or tanh) -> nn.gelu / nn.gelu_tanh
  * RecognizeLayerNorm: LayerNormalization exported as its formula (before
                     opset 17: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
                     Mul, Add) -> nn.layer_norm
  * RecognizeRMSNorm: x * rsqrt(mean(x^2) + eps) [* scale] (LLaMA's RMSNorm as
                     PyTorch exports it; RMSNormalization before opset 23) -> nn.rms_norm
  * RecognizeSoftmax: exp(x - max(x)) / sum(...) over one axis -> nn.softmax
  * RecognizeAttention: softmax(q @ kt [scaled] [+ mask]) @ v -> nn.attention
Then:
  * FuseClip:        min(max(x, 0), 6), or max(min(x, 6), 0) -> relu6(x)
                     (ONNX's Clip, as PyTorch exports ReLU6)
  * FuseBias:        add(matmul|conv, bias)          -> fused(identity)
  * FuseResidual:    add(matmul|conv|fused(identity), r), r of its type
                                                     -> fused(identity) + residual r
  * FuseActivation:  act(matmul|conv|fused(identity)) -> fused(act)
  * FuseElementwise: an elementwise op (or fused chain) and an elementwise
                     producer (or chain) -> one nn.fused_elementwise; constants
                     of one element move into its body
Then, products side by side:
  * CombineParallelMatmul: matmuls of one input by weights (each with its bias
                     or none, the same activation) -> one matmul by the weights
                     concatenated (weight-only: fold-weights computes it once),
                     a slice of its columns per product (attention's q, k, v)
Last, the products fusion left alone:
  * FoldTranspose:   matmul(transpose(a), b) -> matmul_transpose_a(a, b),
                     matmul(x, transpose(w)) -> matmul_transpose_b(x, w) (and
                     back): the GEMM reads the operand transposed (autodiff's
                     dy @ w^T needs no transpose)
A producer is only absorbed when the fused op is its only user, so no work is
done twice; an elementwise producer also only at the consumer's own shape (a
smaller one, broadcast, would be computed again per row). A bias must add
along the output features only (matmul: shape [N] or [1, ..., N]; conv:
[C, 1, 1] or [1, C, 1, 1], as numpy broadcasts along the channels); it is
reshaped to [C].
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import FileLineColLoc, Float32Type, ModuleOp, TensorType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint
from xdsl.transforms.common_subexpression_elimination import cse
from xdsl.utils.exceptions import PassFailedException
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from ncc.dialects import activations, nn
from ncc.passes.fold_weights import FoldWeightsPass
from ncc.passes.pack_weights import sparsity_pattern, weight_only
from ncc.passes.lowering.nn_to_loops import LowerToLoopsPass, is_nn_function

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


def _fused(producer: Operation, bias: SSAValue | None, activation: str,
           residual: SSAValue | None = None) -> Operation:
    """The fused op computing activation(producer + bias + residual)."""
    if isinstance(producer, FUSED):
        bias = producer.bias if bias is None else bias
        residual = producer.residual if residual is None else residual
    x, w = producer.operands[0], producer.operands[1]
    if isinstance(producer, (nn.MatmulOp, nn.FusedMatmulOp)):
        return nn.FusedMatmulOp(x, w, bias, activation, residual=residual)
    p = producer.params
    return nn.FusedConvOp(x, w, bias, activation, strides=p.strides, pads=p.pads,
                          dilations=p.dilations, group=p.group, residual=residual)


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


class FuseResidual(RewritePattern):
    """add(matmul|conv|fused(identity), r), r of the product's type (a residual
    connection's other branch) -> fused(identity) with r as its residual,
    which the GEMM adds in its tile; a zero bias where the product has none
    (a residual comes with a bias)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.AddOp) or op.lhs.type != op.rhs.type:
            return
        for prod_val, residual in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            producer = prod_val.owner
            if (not isinstance(producer, Operation) or not _absorbable(producer, with_bias=False)
                    or not prod_val.has_one_use() or isinstance(producer, FUSED) and producer.residual is not None):
                continue
            new: list[Operation] = []
            bias = producer.bias if isinstance(producer, FUSED) else None
            if bias is None:
                axis = -1 if isinstance(producer, (nn.MatmulOp, nn.FusedMatmulOp)) else 1
                n, elt = _shape(prod_val)[axis], prod_val.type.element_type
                if n < 0:
                    continue
                new.append(nn.ConstantOp(np.zeros(n, nn.numpy_dtype(elt)), TensorType(elt, [n])))
                bias = new[-1].results[0]
            rewriter.replace(op, [*new, _fused(producer, bias, "identity", residual)])
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


# ---------------------------------------------------------------------------
# A transposed matrix operand of a product -> the product that reads it transposed

# (lhs read transposed, rhs read transposed) -> the op; both is no op (left alone)
PRODUCT_OF = {(False, False): nn.MatmulOp, (True, False): nn.MatmulTransposeAOp, (False, True): nn.MatmulTransposeBOp}


def _swapped_matrix(v: SSAValue) -> SSAValue | None:
    """m if v is transpose(m) of a matrix m (perm [1, 0])."""
    t = v.owner
    return t.operands[0] if isinstance(t, nn.TransposeOp) and list(t.params.perm) == [1, 0] else None


class FoldTranspose(RewritePattern):
    """matmul(transpose(a), b) -> matmul_transpose_a(a, b); matmul(x, transpose(w))
    -> matmul_transpose_b(x, w); and back (a transposed operand of those): the
    GEMM reads an operand transposed at no cost (it packs it either way), so the
    transpose is not computed. Matrices only (2-D; matmul_transpose_b's lhs any
    rank). After the fusion walk: a product fused with its bias keeps the
    transpose, which fold-weights computes once where it is a weight's."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        flags = next((f for f, cls in PRODUCT_OF.items() if type(op) is cls), None)
        if flags is None:
            return
        lhs, rhs = op.operands
        for i, v in enumerate((lhs, rhs)):
            inner = _swapped_matrix(v)
            flipped = (flags[0] ^ (i == 0), flags[1] ^ (i == 1))
            if inner is None or flipped not in PRODUCT_OF:
                continue
            operands = [inner, rhs] if i == 0 else [lhs, inner]
            if len(_shape(operands[1])) != 2 or (flipped != (False, True) and len(_shape(operands[0])) != 2):
                continue
            transpose = v.owner
            rewriter.replace(op, PRODUCT_OF[flipped](*operands))
            if not transpose.results[0].uses:
                rewriter.erase(transpose)
            return


# ---------------------------------------------------------------------------
# Products of one input by several weights -> one product by the weights side by side


def _parallel_key(op: Operation) -> tuple | None:
    """What a product must share with its siblings to be computed with them as
    one: its kind, activation, whether it has a bias, its weight's depth,
    whether the weight is pruned (pruned ones together keep the sparse
    kernel: pack-weights reads the mask through the concatenation) (None: not
    a product of an f32 input by a 2-D weight, or with a residual)."""
    if type(op) not in (nn.MatmulOp, nn.FusedMatmulOp) or op.results[0].type.element_type != nn.f32:
        return None
    fused = isinstance(op, nn.FusedMatmulOp)
    w, bias = op.operands[1], op.bias if fused else None
    if fused and op.residual is not None or len(_shape(w)) != 2 or not weight_only(w) \
            or bias is not None and not weight_only(bias):
        return None
    return (type(op), op.params.activation if fused else None, bias is not None, _shape(w)[0],
            sparsity_pattern(w) is not None)


def _hoist(v: SSAValue, before: Operation) -> None:
    """Move the ops computing weight-only `v` (weights, literals, ops on them) above `before`."""
    owner, block = v.owner, before.parent_block()
    if not isinstance(owner, Operation) or owner.parent_block() is not block:
        return
    ops = list(block.ops)
    if ops.index(owner) < ops.index(before):
        return
    for operand in owner.operands:
        _hoist(operand, before)
    owner.detach()
    block.insert_op_before(owner, before)


class CombineParallelMatmul(RewritePattern):
    """Products of one input by weights, each with its bias or none and the
    same activation -> one product by the weights side by side, then a slice
    of its columns per product (TVM's CombineParallelDense): attention's q, k
    and v projections as one GEMM of 3 N columns, not three narrow ones. The
    weights' and biases' concatenation is weight-only: fold-weights computes
    it once (again when a parameter is set)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        key = _parallel_key(op)
        if key is None:
            return
        x, block = op.operands[0], op.parent_block()
        siblings = list(dict.fromkeys(u.operation for u in x.uses if u.index == 0 and u.operation.parent_block()
                                      is block and _parallel_key(u.operation) == key))
        if len(siblings) < 2:
            return
        order = {o: i for i, o in enumerate(block.ops)}
        siblings.sort(key=order.__getitem__)
        first = siblings[0]
        for s in siblings:
            for v in s.operands[1:]:
                _hoist(v, first)
        kind, activation, has_bias, _, _ = key
        weight = nn.ConcatOp([s.operands[1] for s in siblings], axis=1)
        bias = nn.ConcatOp([s.bias for s in siblings], axis=0) if has_bias else None
        product = nn.FusedMatmulOp(x, weight, bias, activation) if kind is nn.FusedMatmulOp else nn.MatmulOp(x, weight)
        new = [weight, *([bias] if bias is not None else []), product]
        last, start, pieces = len(_shape(product.results[0])) - 1, 0, []
        for s in siblings:
            width = _shape(s.operands[1])[1]
            pieces.append(nn.SliceOp(product, [start], [start + width], axes=[last]))
            start += width
        rewriter.insert([*new, *pieces], InsertPoint.before(first))
        for s, piece in zip(siblings, pieces):
            rewriter.replace(s, [], [piece.results[0]])


# ---------------------------------------------------------------------------
# Ops that compute nothing -> their operand


class RemoveIdentity(RewritePattern):
    """A reshape, broadcast or cast to the operand's own type, a transpose by the
    identity permutation, nn.identity, and a reshape of a reshape (one reshape)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, nn.ReshapeOp) and isinstance(op.operands[0].owner, nn.ReshapeOp):
            rewriter.replace(op, nn.ReshapeOp(op.operands[0].owner.operands[0], op.result.type))
            return
        same = (isinstance(op, (nn.ReshapeOp, nn.BroadcastOp, nn.CastOp)) and op.operands[0].type == op.result.type
                or isinstance(op, nn.TransposeOp) and list(op.params.perm) == list(range(len(op.params.perm)))
                or isinstance(op, nn.UNARY_OPS["identity"]))
        if same:
            rewriter.replace(op, [], [op.operands[0]])


# ---------------------------------------------------------------------------
# Activations exported as their formula -> the nn op (Gelu before ONNX opset 20:
# Div, Erf, Add, Mul, Mul, or the tanh form's nine ops, in whatever order the
# exporter wrote them)

RECOGNIZED = ("gelu", "gelu_tanh")
PROBE = np.concatenate([np.linspace(-8, 8, 161), [0.0, 1e-3, -1e-3]]).astype(np.float32)
MAX_FORMULA_OPS = 16


def _formula(root: Operation, x: SSAValue) -> list[Operation] | None:
    """The elementwise ops computing `root` from `x` and one-element constants
    alone, in block order, if no value they compute but root's is used elsewhere."""
    ops: set[Operation] = set()
    stack = [root]
    while stack:
        op = stack.pop()
        if op in ops:
            continue
        if not isinstance(op, nn.ELEMENTWISE) or len(ops) == MAX_FORMULA_OPS:
            return None
        ops.add(op)
        for v in op.operands:
            owner = v.owner
            if v is x or isinstance(owner, nn.ConstantOp) and owner.data.size == 1:
                continue
            if not isinstance(owner, Operation):
                return None
            stack.append(owner)
    if any(u.operation not in ops for op in ops if op is not root for u in op.results[0].uses):
        return None
    order = {op: i for i, op in enumerate(root.parent_block().ops)}
    return sorted(ops, key=order.__getitem__)


def _evaluate(ops: list[Operation], x: SSAValue, z: np.ndarray) -> np.ndarray:
    """The formula on the values z of x, each op by its reference rule in its element type."""
    env: dict[SSAValue, np.ndarray] = {x: z}
    for op in ops:
        args = [env[v] if v in env else np.asarray(v.owner.data).reshape(()) for v in op.operands]
        value = nn.REFERENCE[type(op)](op, *args)
        env[op.results[0]] = np.asarray(value).astype(nn.numpy_dtype(op.results[0].type.element_type), copy=False)
    return env[ops[-1].results[0]]


class RecognizeActivation(RewritePattern):
    """A formula of one float tensor x that computes a RECOGNIZED activation of it
    -> that nn op. Found by value, not by shape: the candidate formula (at most
    MAX_FORMULA_OPS elementwise ops of x and scalar constants, ending in a mul,
    its intermediate values used nowhere else) runs on PROBE points and must
    match the activation's float64 values to float32 rounding; the exact and the
    tanh Gelu differ by up to 5e-4, far above it."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.MulOp) or not isinstance(op.result.type.element_type, Float32Type):
            return
        for x in self._candidates(op):
            ops = _formula(op, x)
            if ops is None or len(ops) < 3:
                continue
            with np.errstate(all="ignore"):
                got = _evaluate(ops, x, PROBE).astype(np.float64)
            for name in RECOGNIZED:
                want = activations.BY_NAME[name].fn(PROBE.astype(np.float64))
                if got.shape == want.shape and np.all(np.abs(got - want) <= 2e-6 * np.maximum(1, np.abs(want))):
                    rewriter.replace(op, nn.UNARY_OPS[name](x))
                    for dead in reversed(ops[:-1]):
                        rewriter.erase(dead)
                    return

    @staticmethod
    def _candidates(root: Operation) -> list[SSAValue]:
        """Values of root's shape read at least twice in the elementwise ops above it (x in
        x * Phi(x)), nearest first."""
        seen: dict[SSAValue, int] = {}
        stack, visited = [root], set()
        while stack and len(visited) < MAX_FORMULA_OPS:
            op = stack.pop()
            if op in visited or not isinstance(op, nn.ELEMENTWISE):
                continue
            visited.add(op)
            for v in op.operands:
                seen[v] = seen.get(v, 0) + 1
                if isinstance(v.owner, Operation):
                    stack.append(v.owner)
        return [v for v, n in seen.items() if n >= 2 and v.type == root.results[0].type]


def _scalar_value(v: SSAValue) -> float | None:
    """The value of a one-element nn.constant, else None."""
    c = v.owner
    return float(c.data.reshape(-1)[0]) if isinstance(c, nn.ConstantOp) and c.data.size == 1 else None


def _mean_over_tail(v: SSAValue, x: SSAValue) -> int | None:
    """The first axis of [axis, rank) if v is reduce_mean(x) over those axes with keepdims."""
    op = v.owner
    if not isinstance(op, nn.ReduceMeanOp) or op.operands[0] is not x or not op.params.keepdims:
        return None
    rank = len(_shape(x))
    axes = sorted(nn.normalize_axes(op.params.axes, rank))
    return axes[0] if axes and axes == list(range(axes[0], rank)) else None


def _only_user(v: SSAValue) -> Operation | None:
    users = {u.operation for u in v.uses}
    return users.pop() if len(users) == 1 else None


class RecognizeLayerNorm(RewritePattern):
    """LayerNormalization as exported before ONNX opset 17 -> nn.layer_norm:

        d = x - mean(x);  d / sqrt(mean(d^2 or d * d) + eps)  [* scale]  [+ bias]

    both means over the same trailing axes (keepdims), eps a constant, scale and
    bias of the normalized shape (without them: ones and zeros), every inner
    value used inside the formula only."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.DivOp) or not isinstance(op.result.type.element_type, Float32Type):
            return
        sub, root = op.lhs.owner, op.rhs.owner
        if not isinstance(sub, nn.SubOp) or not isinstance(root, nn.SqrtOp):
            return
        d, x = op.lhs, sub.lhs
        axis = _mean_over_tail(sub.rhs, x)
        found = _plus_constant(root.operands[0])
        if axis is None or found is None or _shape(op.result) != _shape(x):
            return
        var, eps = found
        square = var.owner.operands[0] if isinstance(var.owner, nn.ReduceMeanOp) else None
        if eps < 0 or square is None or _squared(square) is not d or _mean_over_tail(var, square) != axis:
            return
        formula = [sub.rhs.owner, sub, square.owner, var.owner, root.operands[0].owner, root]
        if any(u.operation not in (*formula, op) for o in formula for u in o.results[0].uses):
            return
        last, params = _affine(op, x, axis, formula, ("scale", "bias"))
        rewriter.replace(last, [*params.pop("new"), nn.LayerNormOp(
            x, params["scale"], params["bias"], axis=axis - len(_shape(x)), epsilon=eps)])
        for dead in reversed(formula):
            rewriter.erase(dead)


AFFINE = {"scale": (nn.MulOp, np.ones), "bias": (nn.AddOp, np.zeros)}  # op applying it, its identity value


def _affine(op: Operation, x: SSAValue, axis: int, formula: list[Operation], keys: tuple[str, ...]
            ) -> tuple[Operation, dict]:
    """The scale (and bias) following a normalization `op` of x over [axis, rank)
    alone, each of the normalized shape and x's element type, in `keys`' order:
    the last op, and the values by key (ones and zeros made where absent, their
    ops under "new"); the ops absorbed are appended to `formula`."""
    norm, elt = _shape(x)[axis:], x.type.element_type
    last, params = op, {"new": []}
    for key in keys:
        user = _only_user(last.results[0])
        if isinstance(user, AFFINE[key][0]) and _shape(user.results[0]) == _shape(x):
            other = user.rhs if user.lhs is last.results[0] else user.lhs
            if _shape(other) == norm and other.type.element_type == elt:
                params[key] = other
                formula.append(last)
                last = user
    for key in keys:
        if key not in params:
            params["new"].append(nn.ConstantOp(AFFINE[key][1](norm, nn.numpy_dtype(elt)), TensorType(elt, norm)))
            params[key] = params["new"][-1].results[0]
    return last, params


def _plus_constant(v: SSAValue) -> tuple[SSAValue, float] | None:
    """(a, c) if v is a + c or c + a, c a one-element constant."""
    plus = v.owner
    if not isinstance(plus, nn.AddOp):
        return None
    for a, c in ((plus.lhs, plus.rhs), (plus.rhs, plus.lhs)):
        if _scalar_value(c) is not None:
            return a, _scalar_value(c)
    return None


def _squared(v: SSAValue) -> SSAValue | None:
    """d if v is d * d or d ** 2."""
    sq = v.owner
    if isinstance(sq, nn.MulOp) and sq.lhs is sq.rhs or isinstance(sq, nn.PowOp) and _scalar_value(sq.rhs) == 2.0:
        return sq.lhs
    return None


class RecognizeRMSNorm(RewritePattern):
    """RMSNorm as PyTorch exports LLaMA's (and ONNX's RMSNormalization before
    opset 23) -> nn.rms_norm:

        x * rsqrt(mean(x^2 or x * x) + eps)  [* scale]     (rsqrt: 1 / sqrt, reciprocal(sqrt))
        x / sqrt(mean(x^2 or x * x) + eps)   [* scale]

    the mean over trailing axes (keepdims), eps a constant, the scale of the
    normalized shape (without it: ones), every inner value used inside the
    formula only."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, (nn.MulOp, nn.DivOp)) or not isinstance(op.result.type.element_type, Float32Type):
            return
        sides = ((op.lhs, op.rhs),) if isinstance(op, nn.DivOp) else ((op.lhs, op.rhs), (op.rhs, op.lhs))
        for x, r in sides:
            root, formula = r.owner, []
            if isinstance(op, nn.MulOp):  # r = 1 / sqrt(...)
                inverse = root
                if isinstance(inverse, nn.ReciprocalOp):
                    root = inverse.operands[0].owner
                elif isinstance(inverse, nn.DivOp) and _scalar_value(inverse.lhs) == 1.0:
                    root = inverse.rhs.owner
                else:
                    continue
                formula.append(inverse)
            if not isinstance(root, nn.SqrtOp) or (found := _plus_constant(root.operands[0])) is None:
                continue
            ms, eps = found
            axis = _mean_over_tail(ms, ms.owner.operands[0]) if isinstance(ms.owner, nn.ReduceMeanOp) else None
            if axis is None or eps < 0 or _squared(ms.owner.operands[0]) is not x or _shape(op.result) != _shape(x):
                continue
            formula = [ms.owner.operands[0].owner, ms.owner, root.operands[0].owner, root, *formula]
            if any(u.operation not in (*formula, op) for o in formula for u in o.results[0].uses):
                continue
            last, params = _affine(op, x, axis, formula, ("scale",))
            rewriter.replace(last, [*params.pop("new"), nn.RMSNormOp(x, params["scale"], axis=axis - len(_shape(x)),
                                                                      epsilon=eps)])
            for dead in reversed(formula):
                rewriter.erase(dead)
            return


def _reduced_axis(v: SSAValue, cls: type, x: SSAValue) -> int | None:
    """The axis if v is cls(x) over exactly one axis, with keepdims."""
    op = v.owner
    if not isinstance(op, cls) or op.operands[0] is not x or not op.params.keepdims:
        return None
    axes = nn.normalize_axes(op.params.axes, len(_shape(x)))
    return axes[0] if len(axes) == 1 else None


class RecognizeSoftmax(RewritePattern):
    """Softmax written out -> nn.softmax:

        e = exp(x - max(x)) or exp(x);  e / sum(e)

    the max and the sum over the same one axis (keepdims), every inner value
    used inside the formula only. (nn.softmax subtracts the max either way: the
    same values where exp(x) does not overflow.)"""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.DivOp) or not isinstance(op.result.type.element_type, Float32Type):
            return
        e = op.lhs
        exp = e.owner
        axis = _reduced_axis(op.rhs, nn.ReduceSumOp, e)
        if not isinstance(exp, nn.ExpOp) or axis is None:
            return
        x, formula = exp.operands[0], [exp, op.rhs.owner]
        sub = x.owner
        if isinstance(sub, nn.SubOp) and _reduced_axis(sub.rhs, nn.ReduceMaxOp, sub.lhs) == axis:
            x, formula = sub.lhs, [sub.rhs.owner, sub, *formula]
        if _shape(op.result) != _shape(x) or any(u.operation not in (*formula, op)
                                                 for o in formula for u in o.results[0].uses):
            return
        rewriter.replace(op, nn.SoftmaxOp(x, axis=axis - len(_shape(x))))
        for dead in reversed(formula):
            rewriter.erase(dead)


def _single_use_owner(v: SSAValue, cls: type | tuple[type, ...]) -> Operation | None:
    """v's producer if it is a `cls` and v has no other user."""
    return v.owner if isinstance(v.owner, cls) and v.has_one_use() else None


# A bias at most this masks its score: exp(score + MASKED - max) is 0 in float32 for any score
# under 9,000 (older exports write -1e4, newer float32's lowest).
MASKED = -1e4


def _is_causal(bias: SSAValue | None, sq: int, sk: int) -> bool:
    """bias is a constant [1..., Sq, Sk], 0 where key j <= query i, at most MASKED where j > i."""
    if bias is None or not isinstance(bias.owner, nn.ConstantOp) or nn.DYN in (sq, sk):
        return False
    data = np.asarray(bias.owner.data)
    if data.shape[-2:] != (sq, sk) or any(d != 1 for d in data.shape[:-2]):
        return False
    data, keep = data.reshape(sq, sk), np.tri(sq, sk, dtype=bool)
    return bool(np.all(data[keep] == 0) and np.all(data[~keep] <= MASKED))


class RecognizeAttention(RewritePattern):
    """Scaled dot-product attention, as exporters write it -> nn.attention:

        softmax(matmul(q, kt) [/ c or * c] [+ bias or select(mask, ., fill)]) @ v

    the softmax over the last axis, c a one-element constant, the boolean
    mask and its fill constants (the mask becomes the additive bias
    where(mask, 0, fill): the same scores after the softmax), q, kt and v of one
    rank with equal leading dimensions, every inner value used once. A constant
    bias that is 0 up to the diagonal and at most MASKED after it (GPT-2's mask)
    becomes `causal`: the lowering skips what it masks."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, nn.MatmulOp) or not isinstance(op.result.type.element_type, Float32Type):
            return
        soft = _single_use_owner(op.lhs, nn.SoftmaxOp)
        rank = len(_shape(op.result))
        if soft is None or nn.normalize_axis(soft.params.axis, rank) != rank - 1:
            return
        chain, value, bias, new = [soft], soft.operands[0], None, []
        masked = _single_use_owner(value, (nn.AddOp, nn.SelectOp))
        if isinstance(masked, nn.AddOp):
            scores, bias = ((masked.lhs, masked.rhs) if _shape(masked.lhs) == _shape(masked.result)
                            else (masked.rhs, masked.lhs))
        elif isinstance(masked, nn.SelectOp):
            mask, fill = masked.operands[0].owner, _scalar_value(masked.operands[2])
            if (not isinstance(mask, nn.ConstantOp) or fill is None
                    or _shape(masked.operands[1]) != _shape(masked.result)):
                return
            elt = masked.result.type.element_type
            data = np.where(mask.data, 0.0, fill).astype(nn.numpy_dtype(elt))
            new.append(nn.ConstantOp(data, TensorType(elt, mask.data.shape)))
            scores, bias = masked.operands[1], new[-1].results[0]
        else:
            scores = value
        if masked is not None:
            chain.append(masked)
        scale = 1.0
        scaling = _single_use_owner(scores, (nn.DivOp, nn.MulOp))
        if scaling is not None:
            sides = [(scaling.lhs, scaling.rhs)]
            if isinstance(scaling, nn.MulOp):
                sides.append((scaling.rhs, scaling.lhs))
            for other, factor in sides:  # scores / c, scores * c or c * scores
                c = _scalar_value(factor)
                if c is not None and c != 0 and _shape(other) == _shape(scaling.result):
                    scale = 1.0 / c if isinstance(scaling, nn.DivOp) else c
                    chain.append(scaling)
                    scores = other
                    break
        product = _single_use_owner(scores, nn.MatmulOp)
        if product is None:
            return
        chain.append(product)
        q, kt, v = product.lhs, product.rhs, op.rhs
        ranks = {len(_shape(t)) for t in (q, kt, v)}
        if len(ranks) != 1 or ranks.pop() < 2 or not _shape(q)[:-2] == _shape(kt)[:-2] == _shape(v)[:-2]:
            return
        if bias is not None and bias.type.element_type != q.type.element_type:
            return
        causal = _is_causal(bias, _shape(op.result)[-2], _shape(kt)[-1])
        if causal and new:  # the bias made of the select's mask: not needed
            new = []
        new.append(nn.AttentionOp(q, kt, v, None if causal else bias, scale=float(np.float32(scale)),
                                  causal=causal))
        rewriter.replace(op, new)
        for dead in chain:
            rewriter.erase(dead)


# ---------------------------------------------------------------------------
# Chains of elementwise ops -> nn.fused_elementwise (one loop nest, no buffer between)

FUSABLE = (*nn.ELEMENTWISE, nn.FusedElementwiseOp)


def _body(op: Operation) -> tuple[list[SSAValue], Block]:
    """op's operands and a fused body computing it: a copy of a fused op's own,
    or the elementwise op applied to its block's arguments."""
    if isinstance(op, nn.FusedElementwiseOp):
        region = op.body.clone()
        block = region.block
        region.detach_block(block)
        return list(op.inputs), block
    inputs = list(dict.fromkeys(op.operands))  # an operand read twice (x * x) is one argument
    block = Block(arg_types=[nn.element_tensor(v.type) for v in inputs])
    inner = type(op).create(operands=[block.args[inputs.index(v)] for v in op.operands],
                            result_types=[nn.element_tensor(op.results[0].type)],
                            properties=dict(op.properties))
    block.add_ops([inner, nn.YieldOp(inner.results[0])])
    return inputs, block


def _inline_scalar_constants(inputs: list[SSAValue], block: Block, out: tuple[int, ...]) -> None:
    """Constant operands of one element become nn.constant ops in the body, where the
    others still broadcast to the result's shape without them."""
    for i in reversed(range(len(inputs))):
        c = inputs[i].owner
        rest = [_shape(x) for j, x in enumerate(inputs) if j != i]
        if not isinstance(c, nn.ConstantOp) or c.data.size != 1 or not rest:
            continue
        try:
            if nn.broadcast_shapes(*rest) != out:
                continue
        except ValueError:
            continue
        const = nn.ConstantOp(c.data.reshape(()), nn.element_tensor(c.result.type))
        block.insert_op_before(const, block.first_op)
        block.args[i].replace_all_uses_with(const.result)
        block.erase_arg(block.args[i])
        del inputs[i]


def _merged(producer: Operation, consumer: Operation, value: SSAValue) -> nn.FusedElementwiseOp:
    """consumer(..., producer(...), ...) as one fused op: the producer's body, then
    the consumer's on its result; operands shared by both are read once."""
    inputs, block = _body(producer)
    produced_by = block.last_op
    produced = produced_by.value
    produced_by.detach()
    produced_by.erase()
    c_inputs, c_block = _body(consumer)
    for arg, x in zip(list(c_block.args), c_inputs):
        if x is value:
            arg.replace_all_uses_with(produced)
            continue
        if x not in inputs:
            inputs.append(x)
            block.insert_arg(arg.type, len(block.args))
        arg.replace_all_uses_with(block.args[inputs.index(x)])
    for inner in list(c_block.ops):
        inner.detach()
        block.add_op(inner)
    _inline_scalar_constants(inputs, block, _shape(consumer.results[0]))
    return nn.FusedElementwiseOp(inputs, consumer.results[0].type, Region(block))


class FuseElementwise(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, FUSABLE) or isinstance(op.parent_op(), nn.FusedElementwiseOp):
            return
        for v in op.operands:
            producer = v.owner
            # the producer's result only read here, at the result's own shape (nothing computed twice)
            if (isinstance(producer, FUSABLE) and all(u.operation is op for u in v.uses)
                    and _shape(v) == _shape(op.results[0])):
                rewriter.replace(op, _merged(producer, op, v))
                rewriter.erase(producer)
                return


# ---------------------------------------------------------------------------
# What fused: patterns applied, and the loop level before and after (--fuse-stats)


@dataclass
class LoopLevel:
    """A module's cost once lowered to loops: nn ops, top-level loop nests, arena bytes at batch 1."""

    ops: int
    nests: int | None = None  # None: not lowerable (why: `reason`)
    arena_bytes: int | None = None
    reason: str = ""


@dataclass
class FuseStats:
    """What `fuse` did to a module: rewrites per pattern, the loop level before and after."""

    patterns: dict[str, int]
    before: LoopLevel
    after: LoopLevel

    def __str__(self) -> str:
        def change(a, b, unit=""):
            if a is None or b is None:
                return f"{a} -> {b}"
            return f"{a:,}{unit} -> {b:,}{unit} ({b - a:+,})"
        lines = ["fuse: " + (", ".join(f"{name} {n}" for name, n in self.patterns.items() if n) or "nothing fused")]
        lines.append(f"  nn ops:               {change(self.before.ops, self.after.ops)}")
        if self.before.nests is None or self.after.nests is None:
            lines.append(f"  loop level:           not lowerable ({self.before.reason or self.after.reason})")
        else:
            lines.append(f"  loop nests:           {change(self.before.nests, self.after.nests)}")
            lines.append(f"  arena bytes, batch 1: {change(self.before.arena_bytes, self.after.arena_bytes)}")
        return "\n".join(lines)


def loop_level(module: ModuleOp) -> LoopLevel:
    """`module`'s LoopLevel, from a copy lowered to loops as ncc.compile lowers it
    (fold-weights first: values of weights alone are derived weights, computed
    when a weight is set, not in the kernel); the module is unchanged."""
    fns = [op for op in module.ops if isinstance(op, func.FuncOp) and is_nn_function(op)]
    ops = sum(1 for fn in fns for op in fn.body.block.ops
              if not isinstance(op, (nn.WeightRefOp, nn.ConstantOp, func.ReturnOp)))
    lowered = module.clone()
    try:
        FoldWeightsPass().apply(Context(), lowered)
        LowerToLoopsPass().apply(Context(), lowered)
    except PassFailedException as e:
        return LoopLevel(ops, reason=str(e))
    nests, arena = 0, 0
    for fn in lowered.ops:
        if isinstance(fn, func.FuncOp) and fn.body.blocks:
            nests += sum(isinstance(op, scf.ForOp) for op in fn.body.block.ops)
            sizes = fn.attributes.get("ncc.arena_bytes")
            if sizes is not None:
                per_batch, constant = sizes.get_values()
                arena += per_batch + constant
    return LoopLevel(ops, nests, arena)


class _Counted(RewritePattern):
    """A pattern counting its rewrites into `counts` under its class's name."""

    def __init__(self, pattern: RewritePattern, counts: Counter):
        self.pattern, self.counts = pattern, counts

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        done = rewriter.has_done_action
        block, where = op.parent_block(), op.location
        before, after = _neighbours(op, "prev_op"), _neighbours(op, "next_op")
        self.pattern.match_and_rewrite(op, rewriter)
        if rewriter.has_done_action and not done:
            self.counts[type(self.pattern).__name__] += 1
            if block is None or not isinstance(where, FileLineColLoc):
                return
            # the new ops (between the nearest neighbours still there) keep the location of the op they replace
            first = next((o for o in before if o.parent_block() is block), None)
            stop = next((o for o in after if o.parent_block() is block), None)
            made = first.next_op if first is not None else block.first_op
            while made is not None and made is not stop:
                if not isinstance(made.location, FileLineColLoc):
                    made.location = where
                made = made.next_op


def _neighbours(op: Operation, direction: str, count: int = 16) -> list[Operation]:
    """Up to `count` ops before (prev_op) or after (next_op) `op`, nearest first."""
    found, o = [], getattr(op, direction)
    while o is not None and len(found) < count:
        found.append(o)
        o = getattr(o, direction)
    return found


# Four walks: formulas are recognized whole before fusion merges their ops into
# chains; products are combined once each has its bias and activation;
# transposes are folded into the products fusion left alone.
RECOGNIZE = (RemoveIdentity, RecognizeActivation, RecognizeLayerNorm, RecognizeRMSNorm, RecognizeSoftmax,
             RecognizeAttention)
PATTERNS = (FuseClip, FuseBias, FuseResidual, FuseActivation, FuseElementwise)
COMBINE = (CombineParallelMatmul,)
FOLD = (FoldTranspose,)


def fuse(module: ModuleOp) -> dict[str, int]:
    """Common subexpressions once (xDSL's CSE: nn ops are pure), then the recognition
    and the fusion patterns, in place; rewrites per pattern (CSE: ops removed)."""
    counts: Counter = Counter({p.__name__: 0 for p in (*RECOGNIZE, *PATTERNS, *COMBINE, *FOLD)})
    ops = sum(1 for _ in module.walk())
    cse(module)
    counts["CSE"] = ops - sum(1 for _ in module.walk())
    for patterns in (RECOGNIZE, PATTERNS, COMBINE, FOLD):
        PatternRewriteWalker(GreedyRewritePatternApplier([_Counted(p(), counts) for p in patterns])
                             ).rewrite_module(module)
    return dict(counts)


def fuse_stats(module: ModuleOp) -> FuseStats:
    """What `fuse` would do to `module` (left unchanged): patterns, loop nests, arena bytes."""
    before = loop_level(module)
    fused = module.clone()
    patterns = fuse(fused)
    return FuseStats(patterns, before, loop_level(fused))


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Fuse matmul/conv with a following bias add and activation into one op (a clip to [0, 6] is relu6;
    the formulas of Gelu, LayerNorm, RMSNorm and softmax are their nn ops), attention's matmul, scale, mask,
    softmax and matmul into one nn.attention, chains of elementwise ops into one
    nn.fused_elementwise (one loop nest), and products of one input by several weights into one.

    Option stats: print what fused to stderr (ncc-opt --fuse-stats): rewrites
    per pattern, nn ops, loop nests and arena bytes before and after."""

    name = "fuse"
    stats: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        before = loop_level(op) if self.stats else None
        patterns = fuse(op)
        if before is not None:
            print(FuseStats(patterns, before, loop_level(op)), file=sys.stderr)
