"""VJP rules of the sparse family: sparse_matmul."""

from __future__ import annotations

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule, int_constant


def _sparse_matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y[..., c] += x[..., r] v: dx is the sparse product of g with the
    transposed entries; dv[e] sums x[..., r_e] g[..., c_e] over the leading axes."""
    x, v = op.operands
    p = op.params
    out: list[SSAValue | None] = [None, None]
    if bw.wants(op, 0):
        out[0] = bw.emit(nn.SparseMatmulOp(g, bw.primal(v), rows=p.cols, cols=p.rows,
                                           in_features=p.out_features, out_features=p.in_features))
    if bw.wants(op, 1):
        last = len(shape_of(x.type)) - 1
        xr = bw.emit(nn.GatherOp(bw.primal(x), int_constant(bw, np.array(p.rows)), axis=last))
        gc = bw.emit(nn.GatherOp(g, int_constant(bw, np.array(p.cols)), axis=last))
        out[1] = bw.unbroadcast(bw.bin("mul", xr, gc), v.type)
    return out


VJP: dict[type, Rule] = {
    nn.SparseMatmulOp: _sparse_matmul_vjp,
}

