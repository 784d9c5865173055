"""VJP rules of the matmul family: matmul, matmul_transpose_a, matmul_transpose_b, fused_matmul."""

from __future__ import annotations

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule
from ncc.passes.autodiff.elementwise import activation_vjp


def _transpose_last2(bw: Backward, x: SSAValue) -> SSAValue:
    r = len(shape_of(x.type))
    return bw.emit(nn.TransposeOp(x, [*range(r - 2), r - 1, r - 2]))


def _matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """numpy.matmul: da = g @ b^T, db = a^T @ g, each summed over broadcast batch
    dimensions; 1-D operands are promoted to matrices and back."""
    a, b = op.operands
    sa, sb = shape_of(a.type), shape_of(b.type)
    elt = a.type.element_type
    a2t = TensorType(elt, [1, *sa]) if len(sa) == 1 else a.type
    b2t = TensorType(elt, [*sb, 1]) if len(sb) == 1 else b.type
    gs = list(shape_of(g.type))
    if len(sa) == 1:
        gs.insert(len(gs) - (len(sb) > 1), 1)
    if len(sb) == 1:
        gs.append(1)
    g2 = bw.reshape(g, TensorType(elt, gs))
    out: list[SSAValue | None] = [None, None]
    if bw.wants(op, 0):
        bt = _transpose_last2(bw, bw.reshape(bw.primal(b), b2t))
        out[0] = bw.reshape(bw.unbroadcast(bw.emit(nn.MatmulOp(g2, bt)), a2t), a.type)
    if bw.wants(op, 1):
        av = bw.reshape(bw.primal(a), a2t)
        if len(shape_of(a2t)) == 2 and len(shape_of(b2t)) == 2:  # rows of a may be the batch
            db = bw.emit(nn.MatmulTransposeAOp(av, g2))
        else:
            db = bw.unbroadcast(bw.emit(nn.MatmulOp(_transpose_last2(bw, av), g2)), b2t)
        out[1] = bw.reshape(db, b.type)
    return out


def _matmul_transpose_a_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = a^T b: da = b g^T, db = a g."""
    a, b = op.operands
    return [bw.emit(nn.MatmulOp(bw.primal(b), bw.emit(nn.TransposeOp(g, [1, 0]))))
            if bw.wants(op, 0) else None,
            bw.emit(nn.MatmulOp(bw.primal(a), g)) if bw.wants(op, 1) else None]


def _matmul_transpose_b_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = a b^T, b [N, K]: da = g b, db = g^T a (a's and g's leading axes as the rows)."""
    a, b = op.operands
    out: list[SSAValue | None] = [None, None]
    if bw.wants(op, 0):
        out[0] = bw.emit(nn.MatmulOp(g, bw.primal(b)))
    if bw.wants(op, 1):
        av = bw.primal(a)
        if len(shape_of(a.type)) == 1:  # a vector: the outer product g a
            av, g = (bw.reshape(v, TensorType(v.type.element_type, [1, *shape_of(v.type)])) for v in (av, g))
        if len(shape_of(av.type)) == 2:  # rows of a may be the batch
            out[1] = bw.emit(nn.MatmulTransposeAOp(g, av))
        else:
            out[1] = bw.unbroadcast(bw.emit(nn.MatmulOp(_transpose_last2(bw, g), av)), b.type)
    return out


def _fused_matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = act(x @ w + bias [+ residual]): the matmul's rule on dz = act'(.) g;
    dbias = dz summed to the bias's shape, dresidual = dz."""
    x, w = op.operands[:2]
    bias, residual = op.bias, op.residual

    def pre() -> SSAValue:
        z = bw.emit(nn.MatmulOp(bw.primal(x), bw.primal(w)))
        z = bw.bin("add", z, bw.primal(bias)) if bias is not None else z
        return bw.bin("add", z, bw.primal(residual)) if residual is not None else z

    dz = activation_vjp(bw, op, g, pre)
    dx, dw = _matmul_vjp(bw, _MatmulView(op), dz)
    return [dx, dw] + ([bw.unbroadcast(dz, bias.type) if bw.wants(op, 2) else None] if bias else []) \
        + ([dz if bw.wants(op, 3) else None] if residual is not None else [])


class _MatmulView:
    """The (x, w) part of a fused matmul, as the matmul rule reads it."""

    def __init__(self, op: Operation):
        self.operands = op.operands[:2]
        self._op = op

    def __getattr__(self, name):
        return getattr(self._op, name)


VJP: dict[type, Rule] = {
    nn.MatmulOp: _matmul_vjp, nn.MatmulTransposeAOp: _matmul_transpose_a_vjp,
    nn.MatmulTransposeBOp: _matmul_transpose_b_vjp,
    nn.FusedMatmulOp: _fused_matmul_vjp,
}

