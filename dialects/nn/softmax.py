"""The nn softmax family: `nn.softmax`, `nn.log_softmax`."""

from __future__ import annotations

import numpy as np

from typing import Callable, ClassVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def

from ncc.dialects.nn.base import NNOp, Param, add_param_props, need_float, nn_op, normalize_axis, shape_of


class _AxisOp(NNOp):
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", -1),)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int = -1):
        self._build([x], axis=axis)

    @classmethod
    def infer(cls, types, p):
        need_float(types[0], "operand")
        normalize_axis(p.axis, len(shape_of(types[0])))
        return types[0]


add_param_props(_AxisOp)


@nn_op
class SoftmaxOp(_AxisOp):
    """exp(x - max) / sum(exp(x - max)) along `axis` (default -1)."""

    name = "nn.softmax"


@nn_op
class LogSoftmaxOp(_AxisOp):
    """x - max - log(sum(exp(x - max))) along `axis` (default -1)."""

    name = "nn.log_softmax"



def softmax_reference(x, axis) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax_reference(x, axis) -> np.ndarray:
    s = x - x.max(axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis, keepdims=True))


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    SoftmaxOp: lambda op, x: softmax_reference(x, op.params.axis),
    LogSoftmaxOp: lambda op, x: log_softmax_reference(x, op.params.axis),
}
