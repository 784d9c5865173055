"""The softmax family in ONNX, both directions: Softmax, LogSoftmax (their
pre-opset-13 flattened forms too), Hardmax, and the losses over them
(NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss).
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import to_onnx
from ncc.onnx.importer import Importer, ImportRule, from_onnx


# ---------------------------------------------------------------------------
# ONNX -> nn

def _softmax(cls: type) -> ImportRule:
    def f(b, a):
        x = b.v(0)
        shape = shape_of(x.type)
        if b.opset >= 13:
            return b.build(cls, x, a.get("axis", -1))
        # Before opset 13: over the flattened dimensions [axis, rank).
        axis = a.get("axis", 1) % max(len(shape), 1)
        if axis == len(shape) - 1:
            return b.build(cls, x, -1)
        flat = b.flatten(x, axis)
        return b.build(nn.ReshapeOp, b.build(cls, flat, -1), x.type)
    return f


from_onnx("Softmax")(_softmax(nn.SoftmaxOp))
from_onnx("LogSoftmax")(_softmax(nn.LogSoftmaxOp))


@from_onnx("Hardmax")
def _hardmax(b, a):
    """1 at the first maximum along the axis, else 0: argmax, then the rows of
    an identity table."""
    x = b.v(0)
    shape = shape_of(x.type)
    if b.opset < 13:  # over the flattened dimensions [axis, rank)
        axis = a.get("axis", 1) % max(len(shape), 1)
        flat = b.flatten(x, axis)
        return b.build(nn.ReshapeOp, _hardmax_last(b, flat), x.type)
    axis = a.get("axis", -1)
    rank = len(shape)
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if shape[axis] == DYN:
        raise b.error(f"the axis {axis} of {x.type} is dynamic")
    moved = x if axis == rank - 1 else b.build(
        nn.TransposeOp, x, [*range(axis), *range(axis + 1, rank), axis])
    return b.move_last_axis(_hardmax_last(b, moved), axis)


def _hardmax_last(b: Importer, x: SSAValue) -> SSAValue:
    n = shape_of(x.type)[-1]
    b.check_size([n, n], nn.numpy_dtype(x.type.element_type), "the one-hot rows (an identity matrix)")
    idx = b.build(nn.ARG_REDUCE_OPS["argmax"], x, -1)
    eye = b.emit(nn.ConstantOp(np.eye(n, dtype=nn.numpy_dtype(x.type.element_type))))
    return b.build(nn.GatherOp, eye, idx, 0)


def _reduction(b: Importer, a: dict) -> str:
    r = a.get("reduction", "mean")
    if r not in ("none", "sum", "mean"):
        raise b.error(f"unknown reduction '{r}' (known: none, sum, mean)")
    return r


def _pick(b: Importer, x: SSAValue, idx: SSAValue) -> SSAValue:
    """x[n, idx[n, d...], d...] for x (N, C, d...) and integer idx (N, d...) in [0, C):
    one gather_elements along the classes."""
    shape = list(shape_of(idx.type))
    lead = [-1 if shape[0] == DYN else shape[0]]
    at = b.reshape_to(idx, lead + [1] + shape[1:])
    return b.reshape_to(b.build(nn.GatherElementsOp, x, at, 1), lead + shape[1:])


def _nll(b: Importer, logp: SSAValue, target: SSAValue, weight: SSAValue | None,
         ignore_index: int | None, reduction: str) -> SSAValue:
    """NegativeLogLikelihoodLoss of log-probabilities logp (N, C, d...) at the
    integer labels target (N, d...): loss = -logp[n, target, d...] * weight[target],
    0 where target == ignore_index; reduced by sum, or by the mean weighted by
    the gathered weights. The ignored label is recognised without comparisons:
    a per-class weight table holds 0 at its slot (ignore_index itself when it
    is a class, else one extra slot that a clamp of the labels leads to)."""
    ls, ts = shape_of(logp.type), shape_of(target.type)
    if len(ls) < 2 or len(ts) != len(ls) - 1 or not all(
            nn.dims_compatible(p, q) for p, q in zip(ts, ls[:1] + ls[2:])):
        raise b.error(f"the input (N, C, d...) and the target (N, d...) do not match: "
                      f"{logp.type} and {target.type}")
    if nn.numpy_dtype(target.type.element_type).kind != "i":
        raise b.error(f"the target must hold integer labels, got {target.type}")
    c = ls[1]
    if c == DYN or DYN in ls[2:]:
        raise b.error(f"needs a static number of classes and sizes, got {logp.type}")
    ii = ignore_index
    cls = slot = target
    table = weight
    if ii is not None:
        size = c if 0 <= ii < c else c + 1
        keep = np.ones(size)
        if 0 <= ii < c:
            keep[ii] = 0
        elif ii < 0:  # labels are in [0, C) or ii: max(t, -1) + 1 takes ii to slot 0
            keep[0] = 0
            slot = b.binary("add", b.binary("max", target, b.scalar(-1, target)), b.scalar(1, target))
            cls = b.binary("max", target, b.scalar(0, target))
            if table is not None:
                table = b.build(nn.ConcatOp, [b.array([0], table), table], 0)
        else:  # ii >= C: min(t, C) takes ii to slot C
            keep[c] = 0
            slot = b.binary("min", target, b.scalar(c, target))
            cls = b.binary("min", target, b.scalar(c - 1, target))
            if table is not None:
                table = b.build(nn.ConcatOp, [table, b.array([0], table)], 0)
        table = b.array(keep, logp) if table is None else b.binary("mul", table, b.array(keep, table))
    picked = _pick(b, logp, cls)
    w = None if table is None else b.build(nn.GatherOp, table, slot, 0)
    loss = b.unary("neg", picked if w is None else b.binary("mul", picked, w))
    if reduction == "none":
        return loss
    if reduction == "sum" or w is None:
        return b.build(nn.REDUCE_OPS["reduce_" + reduction], loss, None)
    total = b.build(nn.REDUCE_OPS["reduce_sum"], loss, None)
    return b.binary("div", total, b.build(nn.REDUCE_OPS["reduce_sum"], w, None))


@from_onnx("NegativeLogLikelihoodLoss")
def _nll_loss(b, a):
    return _nll(b, b.v(0), b.v(1), b.v(2) if b.has(2) else None, a.get("ignore_index"),
                _reduction(b, a))


@from_onnx("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(b, a):
    # the negative log-likelihood of log_softmax over the classes (axis 1); the
    # optional second output is that log_softmax
    x = b.v(0)
    if len(shape_of(x.type)) < 2:
        raise b.error(f"the scores must be (N, C, d...), got {x.type}")
    logp = b.build(nn.LogSoftmaxOp, x, 1)
    loss = _nll(b, logp, b.v(1), b.v(2) if b.has(2) else None, a.get("ignore_index"),
                _reduction(b, a))
    return [loss, logp]


# ---------------------------------------------------------------------------
# nn -> ONNX

to_onnx(nn.SoftmaxOp)(lambda g, op, ins: g.node("Softmax", ins, axis=op.params.axis))
to_onnx(nn.LogSoftmaxOp)(lambda g, op, ins: g.node("LogSoftmax", ins, axis=op.params.axis))
