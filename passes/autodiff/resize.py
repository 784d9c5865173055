"""VJP rules of the resize family: resize (the transposed tap tables)."""

from __future__ import annotations

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule


def _resize_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Resize is linear in x: along each resized axis y = M x, M[o, i] the sum
    of the weights of o's taps at i (zero rows where extrapolated). dx applies
    each M^T: a matmul by the constant M with that axis moved last (the other
    axes keep their order, so a batch stays in dimension 0)."""
    x = op.operands[0]
    r = len(shape_of(x.type))
    dtype = nn.numpy_dtype(g.type.element_type)
    cur = g
    for t in op.taps():
        n_out, n_in = t.index.shape[0], shape_of(x.type)[t.axis]
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out)[:, None], t.index), t.weights)
        if t.outside is not None:
            m[t.outside] = 0
        perm = [i for i in range(r) if i != t.axis] + [t.axis]
        moved = cur if t.axis == r - 1 else bw.emit(nn.TransposeOp(cur, perm))
        cur = bw.emit(nn.MatmulOp(moved, bw.emit(nn.ConstantOp(m.astype(dtype)))))
        if t.axis != r - 1:
            cur = bw.emit(nn.TransposeOp(cur, [perm.index(i) for i in range(r)]))
    return [cur]


VJP: dict[type, Rule] = {
    nn.ResizeOp: _resize_vjp,
}

