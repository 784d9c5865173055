"""The nn normalization family: `nn.batch_norm`, `nn.layer_norm`, `nn.rms_norm`."""

from __future__ import annotations

import numpy as np

from typing import Callable, ClassVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import NNOp, Param, need_float, need_rank, need_shape, nn_op, normalize_axis
from ncc.dialects.nn.base import numpy_dtype, same_element, shape_of
from ncc.dialects.nn.constants import ConstantOp
from ncc.dialects.nn.elementwise import BINARY_OPS, UNARY_OPS
from ncc.dialects.nn.reduce import ReduceMeanOp


@nn_op
class BatchNormOp(NNOp):
    """Inference batch norm over channel axis 1: (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "nn.batch_norm"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("epsilon", "float", 1e-5),)
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    mean = operand_def(TensorType)
    var = operand_def(TensorType)

    def __init__(self, x, scale, bias, mean, var, epsilon: float = 1e-5):
        self._build([x, scale, bias, mean, var], epsilon=epsilon)

    @classmethod
    def infer(cls, types, p):
        x = types[0]
        need_float(x, "input")
        need_rank(x, 2, "input (N, C, ...)", at_least=True)
        same_element(types)
        c = shape_of(x)[1]
        for what, t in zip(("scale", "bias", "mean", "var"), types[1:]):
            need_shape(t, (c,), f"{what} (one per channel)")
        if p.epsilon < 0:
            raise VerifyException(f"epsilon must be >= 0, got {p.epsilon}")
        return x


@nn_op
class LayerNormOp(NNOp):
    """Normalize over axes [axis, rank): (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "nn.layer_norm"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", -1), Param("epsilon", "float", 1e-5))
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)

    def __init__(self, x, scale, bias, axis: int = -1, epsilon: float = 1e-5):
        self._build([x, scale, bias], axis=axis, epsilon=epsilon)

    @classmethod
    def infer(cls, types, p):
        return _normalized(types, p, ("scale", "bias"))


def _normalized(types, p, params: tuple[str, ...]) -> TensorType:
    """The input's type, once `params` (the operands after it) are checked to
    have the normalized shape [axis, rank) and epsilon to be >= 0."""
    x = types[0]
    need_float(x, "input")
    same_element(types)
    shape = shape_of(x)
    norm = shape[normalize_axis(p.axis, len(shape)):]
    for t, name in zip(types[1:], params):
        need_shape(t, norm, f"{name} (the normalized shape)")
    if p.epsilon < 0:
        raise VerifyException(f"epsilon must be >= 0, got {p.epsilon}")
    return x


@nn_op
class RMSNormOp(NNOp):
    """Normalize over axes [axis, rank) by the root mean square, without centering
    (ONNX's RMSNormalization, LLaMA's RMSNorm): x / sqrt(mean(x^2) + eps) * scale."""

    name = "nn.rms_norm"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", -1), Param("epsilon", "float", 1e-5))
    input = operand_def(TensorType)
    scale = operand_def(TensorType)

    def __init__(self, x, scale, axis: int = -1, epsilon: float = 1e-5):
        self._build([x, scale], axis=axis, epsilon=epsilon)

    @classmethod
    def infer(cls, types, p):
        return _normalized(types, p, ("scale",))


def batch_norm_reference(x, scale, bias, mean, var, eps) -> np.ndarray:
    c = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + eps) * scale.reshape(c) + bias.reshape(c)


def layer_norm_reference(x, scale, bias, axis, eps) -> np.ndarray:
    axes = tuple(range(axis % x.ndim, x.ndim))
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def rms_norm_reference(x, scale, axis, eps) -> np.ndarray:
    ms = (x * x).mean(tuple(range(axis % x.ndim, x.ndim)), keepdims=True)
    return x / np.sqrt(ms + eps) * scale


def rms_norm_decomposed(op: RMSNormOp) -> tuple[list[Operation], SSAValue]:
    """The ops computing `op` one at a time (square, mean, add eps, sqrt, divide,
    scale: autodiff and ONNX export take these), and the value replacing its result."""
    x = op.input
    rank = len(shape_of(x.type))
    elt = x.type.element_type
    new: list[Operation] = []

    def emit(o: Operation) -> SSAValue:
        new.append(o)
        return o.results[0]
    square = emit(BINARY_OPS["mul"](x, x))
    ms = emit(ReduceMeanOp(square, list(range(normalize_axis(op.params.axis, rank), rank)), keepdims=True))
    eps = emit(ConstantOp(np.array(op.params.epsilon, numpy_dtype(elt)), TensorType(elt, [])))
    rms = emit(UNARY_OPS["sqrt"](emit(BINARY_OPS["add"](ms, eps))))
    return new, emit(BINARY_OPS["mul"](emit(BINARY_OPS["div"](x, rms)), op.scale))


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    BatchNormOp: lambda op, x, s, b, m, v: batch_norm_reference(x, s, b, m, v, op.params.epsilon),
    LayerNormOp: lambda op, x, s, b: layer_norm_reference(x, s, b, op.params.axis, op.params.epsilon),
    RMSNormOp: lambda op, x, s: rms_norm_reference(x, s, op.params.axis, op.params.epsilon),
}
