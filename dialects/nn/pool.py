"""The nn pool family: `nn.max_pool`, `nn.avg_pool`, `nn.max_pool_indices`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar, Sequence

from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, fmt_shape, need_float, need_len, need_rank, nn_op, shape_of
from ncc.dialects.nn.base import window_out
from ncc.dialects.nn.conv import WINDOW, ones


# ---------------------------------------------------------------------------
# Pools


_POOL_WINDOW = (*WINDOW, Param("dilations", "ints", ones))


def _pool_infer(x: TensorType, p: SimpleNamespace) -> TensorType:
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
    """Max over (dilated) windows (NCHW); padding never wins (it is -inf)."""

    name = "nn.max_pool"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations)

    @classmethod
    def infer(cls, types, p):
        return _pool_infer(types[0], p)


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
