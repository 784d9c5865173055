"""The nn pool family: `nn.max_pool`, `nn.avg_pool`, `nn.max_pool_indices`."""

from __future__ import annotations

from functools import reduce

import numpy as np

from types import SimpleNamespace
from typing import Callable, ClassVar, Sequence

from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, fmt_shape, need_float, need_len, need_rank, nn_op, shape_of, spatial_pads, windows
from ncc.dialects.nn.base import FLOAT_TYPES, i8, ui8, window_out
from ncc.dialects.nn.conv import WINDOW, ones


# ---------------------------------------------------------------------------
# Pools


_POOL_WINDOW = (*WINDOW, Param("dilations", "ints", ones))


def _pool_infer(x: TensorType, p: SimpleNamespace, integers: bool = False) -> TensorType:
    """The pooled type; `integers`: int8 and uint8 data too (a max needs no arithmetic)."""
    if integers and x.element_type not in (i8, ui8) and not isinstance(x.element_type, FLOAT_TYPES):
        raise VerifyException(f"input must have a float element type or i8 / ui8 (int8 data), got {x}")
    if not integers:
        need_float(x, "input")
    need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    k = len(shape_of(x)) - 2
    need_len(p.kernel, k, "kernel")
    need_len(p.strides, k, "strides")
    need_len(p.pads, 2 * k, "pads (begin..., end...)")
    need_len(p.dilations, k, "dilations")
    if min(p.kernel) < 1 or min(p.strides) < 1 or min(p.dilations) < 1 or min(p.pads) < 0:
        raise VerifyException("kernel, strides and dilations must be >= 1 and pads >= 0")
    span = [(kk - 1) * d + 1 for kk, d in zip(p.kernel, p.dilations)]  # the dilated window
    if any(pd >= kk for pd, kk in zip(p.pads, span * 2)):
        raise VerifyException(f"pads {list(p.pads)} must be smaller than the kernel {list(p.kernel)}"
                              + (f" dilated by {list(p.dilations)}" if max(p.dilations) > 1 else ""))
    n, c, *spatial = shape_of(x)
    out = [window_out(s, kk, st, p.pads[i], p.pads[i + k], d)
           for i, (s, kk, st, d) in enumerate(zip(spatial, p.kernel, p.strides, p.dilations))]
    if any(o != DYN and o < 1 for o in out):
        raise VerifyException(f"the output would be empty: spatial size {fmt_shape(out)}")
    return TensorType(x.element_type, [n, c, *out])


@nn_op
class MaxPoolOp(NNOp):
    """Max over (dilated) windows (NCHW); padding never wins (it is -inf, or the
    type's least value: the op takes int8 and uint8 data, as ONNX's MaxPool)."""

    name = "nn.max_pool"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations)

    @classmethod
    def infer(cls, types, p):
        return _pool_infer(types[0], p, integers=True)


@nn_op
class AvgPoolOp(NNOp):
    """Mean over (dilated) windows (NCHW); padded cells count only with count_include_pad."""

    name = "nn.avg_pool"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW,
                                           Param("count_include_pad", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 count_include_pad: bool = False, dilations: Sequence[int] | None = None):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                    count_include_pad=count_include_pad)

    @classmethod
    def infer(cls, types, p):
        return _pool_infer(types[0], p)


@nn_op
class MaxPoolIndicesOp(NNOp):
    """Where nn.max_pool finds each maximum (ONNX MaxPool's Indices output):
    the flat i64 index into the input of the window's first maximum, the
    spatial position row-major, or column-major with `column_major` (ONNX
    storage_order 1); padding never wins."""

    name = "nn.max_pool_indices"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW,
                                           Param("column_major", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, column_major: bool = False):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                    column_major=column_major)

    @classmethod
    def infer(cls, types, p):
        return TensorType(i64, shape_of(_pool_infer(types[0], p)))



def max_pool_reference(x, kernel, strides, pads, dilations=None) -> np.ndarray:
    least = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
    xp = np.pad(x, spatial_pads(x, pads), constant_values=least)
    return reduce(np.maximum, (v for _, v in windows(xp, kernel, strides, dilations or (1,) * len(kernel))))


def max_pool_indices_reference(x, kernel, strides, pads, dilations, column_major: bool) -> np.ndarray:
    """The flat index into x of each window's first maximum (padding never wins)."""
    n, c, *spatial = x.shape
    k = len(kernel)
    xp = np.pad(x, spatial_pads(x, pads), constant_values=-np.inf)
    order = range(k) if column_major else reversed(range(k))
    step, steps = 1, [0] * k
    for i in order:
        steps[i], step = step, step * spatial[i]
    base = (np.arange(n * c) * step).reshape(n, c, *(1,) * k)
    best = found = index = None
    for off, v in windows(xp, kernel, strides, dilations):
        lin, ok = base, True
        for i in range(k):  # the input coordinate along axis i of each output point
            pos = np.arange(v.shape[2 + i]) * strides[i] + off[i] * dilations[i] - pads[i]
            shape = (1, 1, *(-1 if j == i else 1 for j in range(k)))
            lin = lin + (pos * steps[i]).reshape(shape)
            ok = ok & ((pos >= 0) & (pos < spatial[i])).reshape(shape)
        if best is None:
            best, found, index = v, np.broadcast_to(ok, v.shape), np.broadcast_to(lin, v.shape)
            continue
        take = ok & (~found | (v > best))
        best, found, index = np.where(take, v, best), found | ok, np.where(take, lin, index)
    return index


def avg_pool_reference(x, kernel, strides, pads, count_include_pad: bool, dilations=None) -> np.ndarray:
    def window_sum(a):
        ap = np.pad(a, spatial_pads(a, pads))
        return sum(v for _, v in windows(ap, kernel, strides, dilations or (1,) * len(kernel)))
    count = np.prod(kernel) if count_include_pad else window_sum(np.ones_like(x))
    return window_sum(x) / count


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    MaxPoolOp: lambda op, x: max_pool_reference(x, op.params.kernel, op.params.strides, op.params.pads,
                                         op.params.dilations),
    AvgPoolOp: lambda op, x: avg_pool_reference(x, op.params.kernel, op.params.strides, op.params.pads,
                                         op.params.count_include_pad, op.params.dilations),
    MaxPoolIndicesOp: lambda op, x: max_pool_indices_reference(x, op.params.kernel, op.params.strides,
                                                        op.params.pads, op.params.dilations,
                                                        op.params.column_major),
}
