"""pack-weights: a matmul whose weight is known at compile time reads it as the
GEMM's packed panels, so that it is packed once instead of on every call.

    %w = nn.weight_ref @fc : tensor<784x500xf32>          %w = nn.weight_ref @fc : tensor<784x500xf32>
    %y = nn.fused_matmul %x, %w, %b activation relu  ==>   %p = nn.pad %w pads [0, 0, 0, 12]
                                                           %r = nn.reshape %p : ... -> tensor<784x16x32xf32>
                                                           %t = nn.transpose %r perm [1, 0, 2]
                                                           %y = nn.packed_matmul %x, %t, %b columns 500 activation relu

The panels are [ceil(N / 32), K, 32] (nn.packed_matmul's layout; every GEMM
tile's NR divides 32): pad, reshape and transpose of the weight, ops on
weights alone, which `fold-weights` then turns into a derived weight that the
runtime recomputes whenever the parameter is set (its layout stays the
file's). Only products the GEMM computes are rewritten: float32, a 2-D weight
of at least GEMM_MIN_WORK elements, and a left operand whose rows are the
batch or at least GEMM_MIN_ROWS.

A convolution the GEMM computes becomes nn.packed_conv where the transposed
product out^T = col^T @ w^T costs less (few output positions: ResNet's 7 x 7
and 14 x 14 stages; conv lowering's `transposed_is_cheaper`): w [M, C,
kernel...] reshaped to [M, C x kernel], padded to whole panels of output
channels, reshaped and transposed to [ceil(M / 32), C x kernel, 32].

    %y = nn.fused_conv %x, %w, %b activation relu   ==>   %r = nn.reshape %w : ... -> tensor<512x4608xf32>
                                                          %t = nn.reshape %r : ... -> tensor<16x32x4608xf32>
                                                          %p = nn.transpose %t perm [0, 2, 1]
                                                          %y = nn.packed_conv %x, %p, %b channels 512 kernel [3, 3] ...

A matmul (or a 1x1 convolution of stride 1) whose weight a prune left masked
(`prune`: `w * mask`, the mask an internal weight) at a density of at most
SPARSE_MAX_DENSITY (SPARSE_MAX_DENSITY_CONV) becomes nn.packed_sparse_matmul
(nn.packed_sparse_conv): the mask's pattern in the sparse kernel's two
packed forms (passes/lowering/spmm.py), its index tables constants, its
values gathers of the masked weight (derived weights: set the parameter and
they follow; the pattern is the mask's, fixed when compiled).

    %w = nn.weight_ref @fc                                 %wm = nn.mul %w, %m
    %m = nn.weight_ref @fc_mask                  ==>       %f = nn.reshape %wm ... ; %z = nn.pad %f pads [0, 1]
    %wm = nn.mul %w, %m                                    %sv = nn.gather %z, %slice_gather  %cv = nn.gather %z, %column_gather
    %y = nn.fused_matmul %x, %wm, %b activation relu       %y = nn.packed_sparse_matmul %x, %sv, %cv, %steps, ..., %b

An int8 matmul's weight becomes nn.qpack's panels (nn.packed_qmatmul), an
int8 convolution's nn.qpack_rows's rows (nn.packed_qconv): the layouts the
int8 GEMM reads as they are (passes/lowering/qgemm.py's PACKED_B, PACKED_A).
Its requantize (after an i32 bias add, if any: fold-qdq's QLinearConv
chain) becomes the packed op's epilogue, which the GEMM applies in its
tile: the i32 result is never stored.

    %a = nn.qconv %x, %w, %xz, %wz ...             %r = nn.reshape %w ; %p = nn.qpack_rows %r
    %b = nn.add %a, %bias                   ==>    %y = nn.packed_qconv %x, %p, %xz, %wz, %bias, %s, %yz
    %y = nn.requantize %b, %s, %yz                        kernel [3, 3] weight_signed ... -> tensor<...xi8>

`ncc.compile` runs it before fold-weights; training differentiates the
unpacked model.
"""

from __future__ import annotations

import math

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

import numpy as np
from xdsl.dialects.builtin import ModuleOp, UnitAttr, f32, i32

from ncc.dialects import nn
from ncc.dialects.nn import CONSTANT_MARK, DYN, shape_of
from ncc.dialects.nn.matmul import PANEL
from ncc.passes.lowering import spmm
from ncc.passes.prune.nn import MASK_OF
from ncc.passes.lowering.nn_to_loops.conv import transposed_is_cheaper
from ncc.passes.lowering.nn_to_loops.matmul import GEMM_MIN_ROWS, GEMM_MIN_WORK
from ncc.reference import EVAL

# The densest pruned weight (nonzeros / entries) the sparse kernel computes:
# denser, the dense GEMM is as fast. Measured on znver5 (AVX-512) with
# benchmarks/bench_sparse.py: matmuls (512 x 512 and 784 x 512, batch 1 and
# 64, --crossover) sparse 1.9-2.4x the dense GEMM's speed at 20 % density,
# 1.35-1.5x at 40 %, 1.13-1.61x at 50 %, 0.93-1.03x at 60 %; 1x1 convolutions
# (MobileNet's, batch 1) 1.09-1.46x at 30 %, 0.85-1.12x at 40 %, 0.7-0.92x at 50 %.
SPARSE_MAX_DENSITY = 0.5
SPARSE_MAX_DENSITY_CONV = 0.3


def weight_only(v: SSAValue) -> bool:
    """v is computed from weights and literals alone (known at compile time)."""
    op = v.owner
    if isinstance(op, (nn.WeightRefOp, nn.ConstantOp)):
        return True
    return isinstance(op, Operation) and type(op) in EVAL and bool(op.operands) \
        and all(weight_only(o) for o in op.operands)


def _packable(op: Operation) -> bool:
    x, w = op.operands[0], op.operands[1]
    xs, ws = shape_of(x.type), shape_of(w.type)
    if op.result.type.element_type != f32 or x.type.element_type != f32 or len(ws) != 2 or not xs:
        return False
    rows = DYN if DYN in xs[:-1] else math.prod(xs[:-1])
    return ws[0] * ws[1] >= GEMM_MIN_WORK and (rows == DYN or rows >= GEMM_MIN_ROWS) and weight_only(w)


def _pack_conv(op: Operation) -> list[Operation]:
    """The ops making nn.packed_conv of a conv or fused_conv (the last)."""
    w = op.operands[1]
    m, *rest = shape_of(w.type)
    k, panels = math.prod(rest), -(-m // PANEL)
    made: list[Operation] = [nn.ReshapeOp(w, [m, k])]
    if panels * PANEL != m:
        made.append(nn.PadOp(made[-1].results[0], [0, 0, panels * PANEL - m, 0]))
    made.append(nn.ReshapeOp(made[-1].results[0], [panels, PANEL, k]))
    made.append(nn.TransposeOp(made[-1].results[0], [0, 2, 1]))
    fused = isinstance(op, nn.FusedConvOp)
    p = op.params
    made.append(nn.PackedConvOp(op.operands[0], made[-1].results[0], m, rest[1:],
                                op.bias if fused else None, p.activation if fused else "identity",
                                strides=p.strides, pads=p.pads, dilations=p.dilations,
                                residual=op.residual if fused else None))
    return made


def _pack_matmul(op: Operation) -> list[Operation]:
    """The ops making nn.packed_matmul of a matmul, matmul_transpose_b (its
    weight transposed first) or fused_matmul (the last)."""
    x, v = op.operands[0], op.operands[1]
    made: list[Operation] = []
    if isinstance(op, nn.MatmulTransposeBOp):
        made.append(nn.TransposeOp(v, [1, 0]))
        v = made[-1].results[0]
    k, n = shape_of(v.type)
    panels = -(-n // PANEL)
    if panels * PANEL != n:
        made.append(nn.PadOp(v, [0, 0, 0, panels * PANEL - n]))
        v = made[-1].results[0]
    made.append(nn.ReshapeOp(v, [k, panels, PANEL]))
    made.append(nn.TransposeOp(made[-1].results[0], [1, 0, 2]))
    fused = isinstance(op, nn.FusedMatmulOp)
    made.append(nn.PackedMatmulOp(x, made[-1].results[0], n, op.bias if fused else None,
                                  op.params.activation if fused else "identity",
                                  residual=op.residual if fused else None))
    return made


def sparsity_pattern(v: SSAValue) -> np.ndarray | None:
    """Where a matmul's weight operand can be nonzero, if it is a masked weight
    (reached through transposes, reshapes and concatenations): the operand
    computed with the mask and ones for every other weight; else None."""
    masked = False

    def pattern(v: SSAValue) -> np.ndarray | None:
        nonlocal masked
        op = v.owner
        if isinstance(op, nn.WeightRefOp):
            w = op.resolve()
            if MASK_OF in w.attributes and w.data is not None:
                masked = True
                return (w.data != 0).astype(np.float32)
            return np.ones(shape_of(v.type), np.float32)
        if not isinstance(op, (nn.TransposeOp, nn.ReshapeOp, nn.ConcatOp, nn.BINARY_OPS["mul"])):
            return None
        args = [pattern(o) for o in op.operands]
        return None if any(a is None for a in args) else EVAL[type(op)](op, *args)
    found = pattern(v)
    return found != 0 if masked and found is not None else None


def _pointwise(op: Operation) -> bool:
    """A 1x1 convolution of stride 1, without padding or dilation, of one group."""
    p = op.params
    return isinstance(op, (nn.ConvOp, nn.FusedConvOp)) and all(d == 1 for d in shape_of(op.operands[1].type)[2:]) \
        and all(v == 1 for v in (*p.strides, *p.dilations)) and not any(p.pads) and p.group == 1


def _sparse_pattern(op: Operation) -> np.ndarray | None:
    """The K x N pattern of a float32 matmul's masked 2-D weight, or of a 1x1
    convolution's masked [N, K, 1, 1] filter, at most SPARSE_MAX_DENSITY
    dense, whose bias (if any) is one per output feature."""
    x, w = op.operands[0], op.operands[1]
    conv = isinstance(op, (nn.ConvOp, nn.FusedConvOp))
    if op.result.type.element_type != f32 or x.type.element_type != f32 or (conv and not _pointwise(op)) \
            or (not conv and len(shape_of(w.type)) != 2):
        return None
    rhs_t = isinstance(op, nn.MatmulTransposeBOp)  # w is [N, K]
    out = shape_of(w.type)[0] if conv or rhs_t else shape_of(w.type)[1]
    if isinstance(op, (nn.FusedMatmulOp, nn.FusedConvOp)) and (
            op.bias is not None and shape_of(op.bias.type) != (out,) or op.residual is not None):
        return None  # the sparse kernel's epilogue: a bias per output feature, no residual
    mask = sparsity_pattern(w)
    if mask is None or mask.mean() > (SPARSE_MAX_DENSITY_CONV if conv else SPARSE_MAX_DENSITY):
        return None
    return mask.reshape(mask.shape[0], -1).T if conv or rhs_t else mask


def _table(module: ModuleOp, name: str, data: np.ndarray, made: list[nn.WeightOp]) -> nn.WeightOp:
    """An internal constant weight (an index table) named after `name`, unique
    among the module's weights and those `made` so far."""
    names = {op.sym for op in [*module.ops, *made] if isinstance(op, nn.WeightOp)}
    sym, k = name, 1
    while sym in names:
        sym, k = f"{name}{k}", k + 1
    w = nn.WeightOp(sym, data)
    w.attributes[CONSTANT_MARK] = UnitAttr()
    return w


def _pack_sparse(op: Operation, mask: np.ndarray, module: ModuleOp, tables: list[nn.WeightOp]) -> list[Operation]:
    """The ops making nn.packed_sparse_matmul of a matmul, matmul_transpose_b or fused_matmul, or
    nn.packed_sparse_conv of a 1x1 conv or fused_conv (the last)."""
    x, w = op.operands[0], op.operands[1]
    k, n = mask.shape
    packed = spmm.pack(mask)
    stem = f"{op.name.split('.')[-1]}_sparse"
    conv = isinstance(op, (nn.ConvOp, nn.FusedConvOp))
    made: list[Operation] = []
    if conv or isinstance(op, nn.MatmulTransposeBOp):  # the filter [N, K, 1, 1] or w [N, K] as K x N
        made += [nn.ReshapeOp(w, [n, k])]
        made.append(nn.TransposeOp(made[-1].results[0], [1, 0]))
        w = made[-1].results[0]
    made.append(nn.ReshapeOp(w, [k * n]))
    made.append(nn.PadOp(made[-1].results[0], [0, 1]))  # one zero after W: empty slots gather it
    flat = made[-1].results[0]

    def const(suffix: str, data: np.ndarray) -> SSAValue:
        table = _table(module, f"{stem}_{suffix}", data, tables)
        tables.append(table)
        made.append(nn.WeightRefOp(table))
        return made[-1].results[0]
    values = []
    for gather in (packed.slice_gather, packed.column_gather):
        idx = const("slice_gather" if gather is packed.slice_gather else "column_gather", gather)
        made.append(nn.GatherOp(flat, idx, 0))
        values.append(made[-1].results[0])
    refs = [const(name, getattr(packed, name)) for name in ("steps", "blocks", "lanes", "colptr", "rowidx")]
    fused = isinstance(op, (nn.FusedMatmulOp, nn.FusedConvOp))
    kind = nn.PackedSparseConvOp if conv else nn.PackedSparseMatmulOp
    made.append(kind(x, *values, *refs, k, n, op.operands[2] if fused and len(op.operands) > 2 else None,
                     op.params.activation if fused else "identity"))
    return made


def _requantize_after(op: Operation, axis: int) -> tuple[list[Operation], list[SSAValue], nn.RequantizeOp] | None:
    """The chain an int8 contraction's result alone feeds: [nn.add of an i32
    bias along `axis` (the output channels)] -> nn.requantize per tensor or
    along `axis`, as (the ops made: the bias as [C] or zeros; the epilogue
    operands: bias, scale, zero point; the requantize); else None."""
    user = op.results[0].get_user_of_unique_use()
    acc = shape_of(op.results[0].type)
    axis %= len(acc)
    channels = acc[axis]
    bias = None
    if isinstance(user, nn.AddOp):
        bias = user.rhs if user.lhs == op.results[0] else user.lhs
        b = shape_of(bias.type)
        if bias.type.element_type != i32 or not nn.broadcasts_along(b, acc, axis) or math.prod(b) != channels:
            return None
        user = user.result.get_user_of_unique_use()
    if not isinstance(user, nn.RequantizeOp):
        return None
    if shape_of(user.scale.type) and user.params.axis % len(acc) != axis:
        return None
    made = [nn.ReshapeOp(bias, [channels])] if bias is not None else [nn.ConstantOp(np.zeros(channels, np.int32))]
    return made, [made[-1].results[0], user.scale, user.zero_point], user


def _pack_qmatmul(op: Operation, epilogue: list[SSAValue] = (), activation: str = "identity") -> list[Operation]:
    """qmatmul(a, w) -> packed_qmatmul(a, qpack(w)): the int8 GEMM's panels, packed once."""
    k, n = shape_of(op.rhs.type)
    pack = nn.QpackOp(op.rhs)
    return [pack, nn.PackedQmatmulOp(op.lhs, pack.result, op.lhs_zero, op.rhs_zero, k, n,
                                     op.rhs.type.element_type == nn.ui8, epilogue, activation)]


def _pack_qconv(op: Operation, epilogue: list[SSAValue] = (), activation: str = "identity") -> list[Operation]:
    """qconv(x, w) -> packed_qconv(x, qpack_rows(reshape(w, [M, C / group x kernel]))): the int8 GEMM's A, packed once."""
    m, *rest = shape_of(op.weight.type)
    p = op.params
    flat = nn.ReshapeOp(op.weight, [m, math.prod(rest)])
    pack = nn.QpackRowsOp(flat.result)
    return [flat, pack, nn.PackedQconvOp(op.input, pack.result, op.input_zero, op.weight_zero, rest[1:],
                                         op.weight.type.element_type == nn.i8, strides=p.strides, pads=p.pads,
                                         dilations=p.dilations, group=p.group, epilogue=epilogue,
                                         activation=activation)]


def _pack_requantized(op: Operation) -> tuple[list[Operation], Operation, list[Operation]] | None:
    """An int8 contraction and the requantize after it as one packed op with
    its epilogue: (the ops made, the op whose result they replace, the ops to erase)."""
    chain = _requantize_after(op, 1 if isinstance(op, nn.QconvOp) else -1)
    if chain is None:
        return None
    made, epilogue, requantize = chain
    pack = _pack_qconv if isinstance(op, nn.QconvOp) else _pack_qmatmul
    made += pack(op, epilogue, requantize.params.activation)
    dead = [requantize, *([requantize.input.owner] if requantize.input.owner is not op else []), op]
    return made, requantize, dead


def _packing(op: Operation, module: ModuleOp, tables: list[nn.WeightOp]):
    """The rewrite of `op` (a function of it) if it reads a weight packed (else
    None); a sparse one adds its index tables to `tables`."""
    if isinstance(op, (nn.MatmulOp, nn.MatmulTransposeBOp, nn.FusedMatmulOp, nn.ConvOp, nn.FusedConvOp)):
        mask = _sparse_pattern(op)
        if mask is not None:
            return lambda op: _pack_sparse(op, mask, module, tables)
    if isinstance(op, (nn.MatmulOp, nn.MatmulTransposeBOp, nn.FusedMatmulOp)) and _packable(op):
        return _pack_matmul
    if isinstance(op, (nn.ConvOp, nn.FusedConvOp)) and transposed_is_cheaper(op) and weight_only(op.operands[1]):
        return _pack_conv
    if isinstance(op, nn.QmatmulOp) and len(shape_of(op.rhs.type)) == 2 and weight_only(op.rhs):
        return _pack_qmatmul
    if isinstance(op, nn.QconvOp) and not shape_of(op.weight_zero.type) and weight_only(op.weight):
        return _pack_qconv
    return None


def pack_weights(module: ModuleOp) -> int:
    """Rewrite every packable matmul and fused_matmul, every conv and
    fused_conv the GEMM computes cheaper transposed, and every pruned one
    sparse enough for the sparse kernel, of `module`'s nn functions (the
    index tables become module weights before each function); returns how many."""
    count = 0
    tables: list[nn.WeightOp] = []
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]:
        for op in list(fn.body.block.ops):
            rewrite = _packing(op, module, tables)
            if rewrite is None:
                continue
            fused = _pack_requantized(op) if rewrite in (_pack_qmatmul, _pack_qconv) else None
            made, replaced, dead = fused or (rewrite(op), op, [op])
            for m in made:  # at the last op replaced: the epilogue's operands are defined there
                Rewriter.insert_op(m, InsertPoint.before(replaced))
            replaced.results[0].replace_all_uses_with(made[-1].results[0])
            for d in dead:
                Rewriter.erase_op(d)
            count += 1
        if tables:
            Rewriter.insert_op(tables, InsertPoint.before(fn))
            tables = []
    return count


class PackWeightsPass(ModulePass):
    """Matmuls and convolutions whose weight is known at compile time read it as packed GEMM panels
    (nn.packed_matmul, nn.packed_conv), or pruned ones in the sparse kernel's forms (nn.packed_sparse_matmul,
    nn.packed_sparse_conv); int8 ones as the int8 GEMM's (nn.packed_qmatmul, nn.packed_qconv), a requantize
    after them (and its bias add) in their epilogue."""

    name = "pack-weights"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pack_weights(op)
