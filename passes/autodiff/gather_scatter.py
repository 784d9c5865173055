"""VJP rules of the gather/scatter family: gather, gather_elements, scatter_elements,
scatter_nd (reductions none and add)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.passes.autodiff.core import Backward, Rule, int_constant, no_rule


def _gather_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """take(x, indices, axis): the cotangent is added into zeros at the taken
    positions (repeated indices add up; negative ones count from the end). On
    axis 0 each index names a slice of x: one scatter_nd, whatever the indices'
    shape (an embedding's batch of token ids stays the batch). On another axis:
    the indices flattened and broadcast over the cotangent, one scatter_elements."""
    if not bw.wants(op, 0):
        return [None, None]
    x, idx = op.operands
    sx, si = shape_of(x.type), shape_of(idx.type)
    a = nn.normalize_axis(op.params.axis, len(sx))
    ielt = idx.type.element_type
    zeros = bw.zeros(x.type)
    if a == 0:
        ind = bw.reshape(bw.primal(idx), TensorType(ielt, [*si, 1]))
        return [bw.emit(nn.ScatterNDOp(zeros, ind, g, reduction="add")), None]
    if DYN in si:  # its dimensions would follow x's first ones: not the batch
        raise no_rule(op, f"on axis {a} with indices of a dynamic shape")
    k = math.prod(si)
    gk = bw.reshape(g, TensorType(g.type.element_type, [*sx[:a], k, *sx[a + 1:]]))
    flat = bw.reshape(bw.primal(idx), TensorType(ielt, [*[1] * a, k, *[1] * (len(sx) - a - 1)]))
    ind = bw.broadcast(flat, TensorType(ielt, shape_of(gk.type)))
    return [bw.emit(nn.ScatterElementsOp(zeros, ind, gk, axis=a, reduction="add")), None]


def _gather_elements_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    if not bw.wants(op, 0):
        return [None, None]
    x, idx = op.operands
    return [bw.emit(nn.ScatterElementsOp(bw.zeros(x.type), bw.primal(idx), g, axis=op.params.axis,
                                         reduction="add")), None]


def _gather_nd(bw: Backward, t: SSAValue, idx: SSAValue) -> SSAValue:
    """t[idx[j, 0], ..., idx[j, k-1], ...] for every j (ONNX GatherND): a gather
    along axis 0 by the first component, then one gather_elements per further
    component (t is never flattened, so its dimension 0 may be the batch)."""
    sj = list(shape_of(idx.type)[:-1])
    k, st, ielt = shape_of(idx.type)[-1], shape_of(t.type), idx.type.element_type
    nj = len(sj)

    def component(c: int) -> SSAValue:
        return bw.reshape(bw.emit(nn.SliceOp(idx, [c], [c + 1], [nj])), TensorType(ielt, sj))

    cur = bw.emit(nn.GatherOp(t, component(0), axis=0))  # sj + st[1:]
    for c in range(1, k):
        rest = list(st[c + 1:])
        ind = bw.reshape(component(c), TensorType(ielt, [*sj, *[1] * (1 + len(rest))]))
        ind = bw.broadcast(ind, TensorType(ielt, [*sj, 1, *rest]))
        cur = bw.reshape(bw.emit(nn.GatherElementsOp(cur, ind, axis=nj)),
                         TensorType(t.type.element_type, [*sj, *rest]))
    return cur


def _write_ids(bw: Backward, shape: Sequence[int]) -> SSAValue:
    """i64 row-major positions 0, 1, ... of a tensor of `shape` (whose
    dimension 0 may be the run-time batch)."""
    if DYN not in shape:
        return int_constant(bw, np.arange(math.prod(shape)).reshape(shape))
    rest = list(shape[1:])
    ones = bw.broadcast(int_constant(bw, np.array(1)), TensorType(i64, [DYN, *[1] * len(rest)]))
    rows = bw.bin("sub", bw.emit(nn.CumSumOp(ones, axis=0)), int_constant(bw, np.array(1)))
    per_row = math.prod(rest)
    return bw.bin("add", bw.bin("mul", rows, int_constant(bw, np.array(per_row))),
                  int_constant(bw, np.arange(per_row).reshape([1, *rest])))


def _unique_constant(v: SSAValue, positions: Callable[[np.ndarray], np.ndarray]) -> bool:
    """`v` is a constant whose scatter positions (rows of `positions(data)`,
    negative indices not yet counted from the end) are all distinct."""
    if not isinstance(v.owner, nn.ConstantOp):
        return False
    pos = positions(np.asarray(v.owner.data))
    return len(np.unique(pos, axis=0)) == len(pos)


def _scatter_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """scatter_elements / scatter_nd. reduction add: dx = g, dupdates = g at the
    positions (a gather). reduction none: the positions written get no
    cotangent in dx, and an update only the cotangent of the position it
    wrote last (of repeated positions, the last in row-major order wins, as in
    the forward): which one is found by scattering the writers' ids and
    reading them back (skipped for constant indices without repeats)."""
    x, idx, upd = op.operands
    p = op.params
    if p.reduction not in ("none", "add"):
        raise no_rule(op, f"with reduction {p.reduction}")
    elements = isinstance(op, nn.ScatterElementsOp)
    sx = shape_of(x.type)
    iv = bw.primal(idx)
    axis = nn.normalize_axis(p.axis, len(sx)) if elements else 0
    k = 0 if elements else shape_of(idx.type)[-1]

    def scatter(into: SSAValue, values: SSAValue) -> SSAValue:
        return bw.emit(nn.ScatterElementsOp(into, iv, values, axis=axis) if elements
                       else nn.ScatterNDOp(into, iv, values))

    def gather(t: SSAValue) -> SSAValue:
        return bw.emit(nn.GatherElementsOp(t, iv, axis=axis)) if elements else _gather_nd(bw, t, iv)

    out: list[SSAValue | None] = [None, None, None]
    if p.reduction == "add":
        out[0] = g if bw.wants(op, 0) else None
        out[2] = gather(g) if bw.wants(op, 2) else None
        return out
    if bw.wants(op, 0):
        out[0] = scatter(g, bw.zeros(upd.type))
    if not bw.wants(op, 2):
        return out
    du = gather(g)

    def positions(ind: np.ndarray) -> np.ndarray:
        if not elements:
            return np.mod(ind.reshape(-1, k), sx[:k])
        where = np.indices(ind.shape).reshape(ind.ndim, -1)
        where[axis] = np.mod(ind.reshape(-1), sx[axis])
        return where.T

    if DYN in sx or not _unique_constant(idx, positions):
        writers = shape_of(idx.type) if elements else shape_of(idx.type)[:-1]
        ids = _write_ids(bw, writers)
        minus1 = bw.broadcast(int_constant(bw, np.array(-1)), TensorType(i64, sx if elements else sx[:k]))
        won = bw.cmp("equal", gather(scatter(minus1, ids)), ids)
        if not elements:  # one writer per slice
            won = bw.reshape(won, TensorType(won.type.element_type, [*writers, *[1] * (len(sx) - k)]))
        du = bw.select(won, du, bw.constant(0, g))
    out[2] = du
    return out


VJP: dict[type, Rule] = {
    nn.GatherOp: _gather_vjp, nn.GatherElementsOp: _gather_elements_vjp,
    nn.ScatterElementsOp: _scatter_vjp, nn.ScatterNDOp: _scatter_vjp,
}

