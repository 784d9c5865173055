"""The nn reduce family: reductions, `nn.argmax` / `nn.argmin`, `nn.cumsum`."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType, i32, i64
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import NNOp, Param, add_param_props, need_float, need_numeric, nn_op, normalize_axes
from ncc.dialects.nn.base import normalize_axis, shape_of
from ncc.dialects.nn.elementwise import generate


# ---------------------------------------------------------------------------
# Reductions, softmax, norms


def _all_axes(ts, v):
    return tuple(range(len(shape_of(ts[0]))))


class ReduceOp(NNOp):
    """Reduce over `axes` (default: all), keeping them as size 1 with `keepdims`."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axes", "ints", _all_axes),
                                           Param("keepdims", "flag", False))
    FLOAT_ONLY: ClassVar[bool] = False
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axes: Sequence[int] | None = None,
                 keepdims: bool = False):
        self._build([x], axes=axes, keepdims=keepdims)

    @classmethod
    def infer(cls, types, p):
        x = types[0]
        if cls.FLOAT_ONLY:
            need_float(x, "operand")
        need_numeric(x, "operand")
        shape = shape_of(x)
        axes = normalize_axes(p.axes, len(shape))
        out = [1 if i in axes else d for i, d in enumerate(shape) if p.keepdims or i not in axes]
        return TensorType(x.element_type, out)


add_param_props(ReduceOp)
# name -> (numpy reduction, float only)
REDUCE: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "reduce_sum": (np.sum, False), "reduce_mean": (np.mean, True), "reduce_max": (np.max, False),
    "reduce_min": (np.min, False), "reduce_prod": (np.prod, False),
}
REDUCE_OPS: dict[str, type[ReduceOp]] = {
    n: generate(ReduceOp, n, {"fn": staticmethod(f), "FLOAT_ONLY": flt,
                               "__annotations__": {"FLOAT_ONLY": ClassVar[bool]},
                               "__doc__": f"nn.{n}: {f.__name__} over axes."}, globals())
    for n, (f, flt) in REDUCE.items()}


# ---------------------------------------------------------------------------
# Index-valued reductions, scans, element gathers and scatters, triangles


def need_indices(t: TensorType, what: str = "indices") -> None:
    if t.element_type not in (i64, i32):
        raise VerifyException(f"{what} must be i64 or i32, got {t}")


class ArgReduceOp(NNOp):
    """The index (i64) of the extreme element along `axis`: the first one on
    ties, the last with `select_last_index`; the axis stays as size 1 with
    `keepdims`."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0), Param("keepdims", "flag", False),
                                           Param("select_last_index", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int = 0, keepdims: bool = False,
                 select_last_index: bool = False):
        self._build([x], axis=axis, keepdims=keepdims, select_last_index=select_last_index)

    @classmethod
    def infer(cls, types, p):
        need_numeric(types[0], "operand")
        shape = shape_of(types[0])
        a = normalize_axis(p.axis, len(shape))
        if shape[a] == 0:
            raise VerifyException(f"axis {a} is empty: {cls.name} has no index to give")
        return TensorType(i64, [1 if i == a else d for i, d in enumerate(shape) if p.keepdims or i != a])


add_param_props(ArgReduceOp)
# name -> numpy rule (the first index of the extreme on ties)
ARG_REDUCE: dict[str, Callable[..., np.ndarray]] = {"argmax": np.argmax, "argmin": np.argmin}
ARG_REDUCE_OPS: dict[str, type[ArgReduceOp]] = {
    n: generate(ArgReduceOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: {ArgReduceOp.__doc__}"}, globals())
    for n, f in ARG_REDUCE.items()}


@nn_op
class CumSumOp(NNOp):
    """Running sum along `axis`: y[j] = x[0] + ... + x[j]; `exclusive` leaves
    x[j] itself out, `reverse` sums from the end (ONNX CumSum)."""

    name = "nn.cumsum"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int"), Param("exclusive", "flag", False),
                                           Param("reverse", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int, exclusive: bool = False,
                 reverse: bool = False):
        self._build([x], axis=axis, exclusive=exclusive, reverse=reverse)

    @classmethod
    def infer(cls, types, p):
        need_numeric(types[0], "operand")
        normalize_axis(p.axis, len(shape_of(types[0])))
        return types[0]



def arg_reduce_reference(fn, x, axis: int, keepdims: bool, last: bool) -> np.ndarray:
    """numpy's argmax/argmin (first index on ties), or the last index on ties."""
    idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis) if last else fn(x, axis=axis)
    return np.expand_dims(idx, axis) if keepdims else idx


def cumsum_reference(x, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    y = np.flip(x, axis) if reverse else x
    c = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:  # shifted by one: the sum of the elements before
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)),
                            np.take(c, range(c.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(c, axis) if reverse else c


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    **{cls: (lambda op, x: type(op).fn(x, axis=op.params.axes, keepdims=op.params.keepdims))
       for cls in REDUCE_OPS.values()},
    **{cls: (lambda op, x: arg_reduce_reference(type(op).fn, x, op.params.axis % x.ndim, op.params.keepdims,
                                      op.params.select_last_index))
       for cls in ARG_REDUCE_OPS.values()},
    CumSumOp: lambda op, x: cumsum_reference(x, op.params.axis % x.ndim, op.params.exclusive,
                                      op.params.reverse),
}
