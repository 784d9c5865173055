"""The nn gather/scatter family: `nn.gather`, `nn.gather_elements`,
`nn.scatter_elements`, `nn.scatter_nd`."""

from __future__ import annotations

import numpy as np

from typing import Callable, ClassVar

from xdsl.dialects.builtin import TensorType, i32, i64
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, need_numeric, need_rank, need_shape, nn_op, normalize_axis
from ncc.dialects.nn.base import same_element, shape_of
from ncc.dialects.nn.reduce import need_indices


@nn_op
class GatherOp(NNOp):
    """ONNX Gather: out = take(x, indices, axis); result = x[:axis] + indices + x[axis+1:]."""

    name = "nn.gather"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation, axis: int = 0):
        self._build([x, indices], axis=axis)

    @classmethod
    def infer(cls, types, p):
        x, idx = types
        if idx.element_type not in (i64, i32):
            raise VerifyException(f"indices must be i64 or i32, got {idx}")
        need_rank(x, 1, "input", at_least=True)
        shape = shape_of(x)
        a = normalize_axis(p.axis, len(shape))
        return TensorType(x.element_type, [*shape[:a], *shape_of(idx), *shape[a + 1:]])


def _same_rank_indices(x: TensorType, idx: TensorType, axis: int, what: str = "indices") -> None:
    """indices of an element gather/scatter: the input's rank, and no larger
    than the input in any other dimension (the batch only against the batch)."""
    need_indices(idx, what)
    sx, si = shape_of(x), shape_of(idx)
    if len(si) != len(sx):
        raise VerifyException(f"{what} must have the input's rank {len(sx)}, got {idx}")
    for i, (dx, di) in enumerate(zip(sx, si)):
        if i != axis and (di > dx if DYN not in (dx, di) else dx != di):
            raise VerifyException(f"{what} dimension {i} ({'?' if di == DYN else di}) exceeds "
                                  f"the input's ({'?' if dx == DYN else dx})")


@nn_op
class GatherElementsOp(NNOp):
    """ONNX GatherElements: out[i] = x[i with i[axis] = indices[i]]; the
    result has the indices' shape. A negative index counts from the end."""

    name = "nn.gather_elements"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation, axis: int = 0):
        self._build([x, indices], axis=axis)

    @classmethod
    def infer(cls, types, p):
        x, idx = types
        need_rank(x, 1, "input", at_least=True)
        a = normalize_axis(p.axis, len(shape_of(x)))
        _same_rank_indices(x, idx, a)
        return TensorType(x.element_type, shape_of(idx))


SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_reduction(r: str, x: TensorType) -> None:
    if r not in SCATTER_REDUCTIONS:
        raise VerifyException(f"unknown reduction '{r}' (known: {', '.join(SCATTER_REDUCTIONS)})")
    if r != "none":
        need_numeric(x, f"the input of a reduction {r}")


@nn_op
class ScatterElementsOp(NNOp):
    """ONNX ScatterElements: a copy of x in which, for every position i of
    `indices`, out[i with i[axis] = indices[i]] = updates[i] (reduction none)
    or is combined with it (add, mul, max, min), in row-major order of i."""

    name = "nn.scatter_elements"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0), Param("reduction", "str", "none"))
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    updates = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation,
                 updates: SSAValue | Operation, axis: int = 0, reduction: str = "none"):
        self._build([x, indices, updates], axis=axis, reduction=reduction)

    @classmethod
    def infer(cls, types, p):
        x, idx, upd = types
        _check_reduction(p.reduction, x)
        need_rank(x, 1, "input", at_least=True)
        a = normalize_axis(p.axis, len(shape_of(x)))
        _same_rank_indices(x, idx, a)
        need_shape(upd, shape_of(idx), "updates (the indices' shape)")
        same_element([x, upd], "input and updates")
        return x


@nn_op
class ScatterNDOp(NNOp):
    """ONNX ScatterND: a copy of x in which, for every index tuple
    t = indices[j, :] (k = indices' last dimension), the slice out[t] is set
    to updates[j] (reduction none) or combined with it (add, mul, max, min)."""

    name = "nn.scatter_nd"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("reduction", "str", "none"),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    updates = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation,
                 updates: SSAValue | Operation, reduction: str = "none"):
        self._build([x, indices, updates], reduction=reduction)

    @classmethod
    def infer(cls, types, p):
        x, idx, upd = types
        _check_reduction(p.reduction, x)
        need_indices(idx)
        need_rank(idx, 1, "indices", at_least=True)
        sx, si = shape_of(x), shape_of(idx)
        k = si[-1]
        if k == DYN or not 1 <= k <= len(sx):
            raise VerifyException(f"the indices' last dimension must be 1..{len(sx)} (the input's "
                                  f"rank), got {idx}")
        need_shape(upd, (*si[:-1], *sx[k:]), "updates (indices' shape[:-1] + input's shape[k:])")
        same_element([x, upd], "input and updates")
        return x



def _from_end(idx: np.ndarray, dim: int) -> np.ndarray:
    return np.where(idx < 0, idx + dim, idx)


def gather_elements_reference(x, idx, axis: int) -> np.ndarray:
    # indices may be smaller than x in the other dimensions: their leading part
    part = x[tuple(slice(None) if i == axis else slice(n) for i, n in enumerate(idx.shape))]
    return np.take_along_axis(part, _from_end(idx, x.shape[axis]).astype(np.intp), axis=axis)


_SCATTER = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(x, where: tuple, upd, reduction: str) -> np.ndarray:
    """x with x[where] set to (or combined with) upd; repeated positions combine
    in order (reduction none: the last one wins)."""
    out = x.copy()
    if reduction == "none":
        out[where] = upd
    else:
        _SCATTER[reduction].at(out, where, upd)
    return out


def scatter_elements_reference(x, idx, upd, axis: int, reduction: str) -> np.ndarray:
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = _from_end(idx, x.shape[axis])
    return _scatter(x, tuple(np.broadcast_arrays(*where)), upd, reduction)


def scatter_nd_reference(x, idx, upd, reduction: str) -> np.ndarray:
    k = idx.shape[-1]
    where = tuple(_from_end(idx[..., t], x.shape[t]) for t in range(k))
    return _scatter(x, where, upd, reduction)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    GatherOp: lambda op, x, i: np.take(x, i, axis=op.params.axis),
    GatherElementsOp: lambda op, x, i: gather_elements_reference(x, i, op.params.axis % x.ndim),
    ScatterElementsOp: lambda op, x, i, u: scatter_elements_reference(x, i, u, op.params.axis % x.ndim,
                                                               op.params.reduction),
    ScatterNDOp: lambda op, x, i, u: scatter_nd_reference(x, i, u, op.params.reduction),
}
