"""fold-batch-norm: an inference batch norm after a convolution (or a matmul
whose [N, C] result has the channels as columns) is folded into it.

    %y = nn.conv %x, %w ...                         %s = scale / sqrt(var + eps)         (ops on weights)
    %z = nn.batch_norm %y, %scale, %bias,    ==>    %w2 = %w * reshape(%s, [M, 1, 1, 1])
                       %mean, %var                  %y = nn.conv %x, %w2 ...
                                                    %z = %y + reshape(%bias - %mean * %s, [M, 1, 1])

bn(conv(x, w) + b) = conv(x, w * s) + (b - mean) * s + bias, s = scale / sqrt(var + eps):
the new weight and bias are ops on weights alone, which `fold-weights` makes
derived weights (recomputed when a parameter is set), and `fuse` then merges
the conv, the bias add and a following activation into one `nn.fused_conv`,
whose bias and relu the GEMM applies in its tile. A matmul's weight [K, C]
is scaled per column (BatchNorm1d after a Linear). Folded when the product's
result has no other user, its activation (if fused) is none and it adds no
residual, and the batch norm's parameters are known at compile time. `ncc.compile` runs it (with fuse)
for inference; training differentiates the batch norm as written.
"""

from __future__ import annotations

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.dialects import nn
from ncc.dialects.nn import numpy_dtype, shape_of
from ncc.passes.pack_weights import weight_only


MATMULS = (nn.MatmulOp, nn.FusedMatmulOp)
PRODUCTS = (nn.ConvOp, nn.FusedConvOp, *MATMULS)


def _foldable(bn: nn.BatchNormOp) -> bool:
    prod = bn.input.owner
    if not isinstance(prod, PRODUCTS) or len(list(prod.results[0].uses)) != 1:
        return False
    if isinstance(prod, (nn.FusedConvOp, nn.FusedMatmulOp)) and (
            prod.params.activation != "identity" or prod.residual is not None):
        return False  # the batch norm would scale the activation's output or the residual too
    if isinstance(prod, MATMULS):  # [N, C] = x @ w [K, C]: the batch norm's channels are the columns
        out = shape_of(prod.results[0].type)
        bias = prod.bias if isinstance(prod, nn.FusedMatmulOp) else None
        if len(out) != 2 or len(shape_of(prod.operands[1].type)) != 2 or (
                bias is not None and shape_of(bias.type) != (out[-1],)):
            return False
    return all(weight_only(v) for v in (bn.scale, bn.bias, bn.mean, bn.var, prod.operands[1]))


def fold_batch_norm(module: ModuleOp) -> int:
    """Fold every foldable batch norm of `module`'s nn functions; returns how many."""
    count = 0
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]:
        for bn in [op for op in fn.body.block.ops if isinstance(op, nn.BatchNormOp)]:
            if not _foldable(bn):
                continue
            prod = bn.input.owner
            made: list[Operation] = []

            def emit(op: Operation):
                made.append(op)
                return op.results[0]
            w = prod.operands[1]
            matmul = isinstance(prod, MATMULS)
            wshape = shape_of(w.type)
            m, rank = (wshape[-1] if matmul else wshape[0]), len(wshape)
            dtype = numpy_dtype(w.type.element_type)
            eps = emit(nn.ConstantOp(np.asarray(bn.params.epsilon, dtype)))
            s = emit(nn.BINARY_OPS["div"](bn.scale, emit(nn.UNARY_OPS["sqrt"](emit(nn.BINARY_OPS["add"](bn.var, eps))))))
            # the weight scaled per output channel: w's columns (matmul) or its first axis (conv)
            w2 = emit(nn.BINARY_OPS["mul"](w, emit(nn.ReshapeOp(s, [1, m] if matmul else [m] + [1] * (rank - 1)))))
            shift = emit(nn.BINARY_OPS["mul"](bn.mean, s))
            if isinstance(prod, (nn.FusedConvOp, nn.FusedMatmulOp)) and prod.bias is not None:
                shift = emit(nn.BINARY_OPS["sub"](shift, emit(nn.BINARY_OPS["mul"](prod.bias, s))))
            shift = emit(nn.BINARY_OPS["sub"](bn.bias, shift))
            if matmul:
                y = emit(nn.MatmulOp(prod.operands[0], w2))
                z = emit(nn.BINARY_OPS["add"](y, shift))
            else:
                p = prod.params
                y = emit(nn.ConvOp(prod.input, w2, strides=p.strides, pads=p.pads, dilations=p.dilations,
                                   group=p.group))
                z = emit(nn.BINARY_OPS["add"](y, emit(nn.ReshapeOp(shift, [m] + [1] * (rank - 2)))))
            for op in made:
                Rewriter.insert_op(op, InsertPoint.before(bn))
            bn.result.replace_all_uses_with(z)
            Rewriter.erase_op(bn)
            Rewriter.erase_op(prod)
            count += 1
    return count


class FoldBatchNormPass(ModulePass):
    """Fold an inference batch norm after a convolution (or a matmul of [N, C]
    rows) into its weight and a bias (inference only)."""

    name = "fold-batch-norm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fold_batch_norm(op)
