"""The quant family in ONNX, both directions: QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv and onnxruntime's com.microsoft.QGemm in; quantize, dequantize,
qmatmul, qconv and requantize out.

QLinearMatMul and QLinearConv become the integer contraction, the i32 bias
add and `nn.requantize` at the multiplier a_scale * b_scale / y_scale,
computed in f32 in that order, as onnxruntime does. Scales and zero points
given as initializers are literals (quantization parameters, not parameters
to train).
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import f32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import Importer, element_dtype, from_onnx


# ---------------------------------------------------------------------------
# ONNX -> nn


def _qparam(b: Importer, i: int, what: str) -> SSAValue:
    """A scale or zero point: a literal when it is a constant, else its value."""
    if not b.has(i):
        raise b.error(f"the {what} (input {i}) is required")
    name = b.node.input[i]
    if name in b.consts:
        try:
            return b.emit(nn.ConstantOp(np.asarray(b.consts[name])))
        except ValueError as e:
            raise b.error(f"the {what} '{name}': {e}") from None
    return b.v(i)


def _scale(b: Importer, i: int, data: SSAValue, axis: int, what: str = "scale") -> SSAValue:
    """Scale input i for data: f32, rank 0 or 1; a 1-D scale of one value on an
    axis of another size is the per-tensor scale it means."""
    s = _qparam(b, i, what)
    if s.type.element_type != f32:
        raise b.error(f"the {what} must be float32, got {s.type} (ncc quantizes f32 data)")
    shape = shape_of(s.type)
    if shape == (1,):
        dims = shape_of(data.type)
        if not dims or dims[axis % len(dims)] != 1:
            s = b.build(nn.ReshapeOp, s, [])
    elif len(shape) > 1:
        raise b.error(f"the {what} must be a scalar or 1-D (per axis), got {s.type}; "
                      "blocked quantization is not supported")
    return s


def _zero_point(b: Importer, i: int, like: SSAValue, dtype: np.dtype, what: str = "zero point") -> SSAValue:
    """Zero point input i (one value: a scalar), or zeros of dtype in the scale's shape when absent."""
    if b.has(i):
        return _qparam_scalar(b, i, what) if shape_of(like.type) == () else _qparam(b, i, what)
    return b.emit(nn.ConstantOp(np.zeros(shape_of(like.type), dtype)))


def _axis(b: Importer, a: dict) -> int:
    if a.get("block_size", 0):
        raise b.error("blocked quantization (block_size) is not supported")
    return int(a.get("axis", 1))


@from_onnx("QuantizeLinear")
def _quantize_linear(b, a):
    x, axis = b.v(0), _axis(b, a)
    scale = _scale(b, 1, x, axis)
    out = element_dtype(a.get("output_dtype", 0) or 2, "the output", b.where) if not b.has(2) else None
    zero = _zero_point(b, 2, scale, out)
    return b.build(nn.QuantizeOp, x, scale, zero, axis=axis)


@from_onnx("DequantizeLinear")
def _dequantize_linear(b, a):
    x, axis = b.v(0), _axis(b, a)
    scale = _scale(b, 1, x, axis)
    zero = _zero_point(b, 2, scale, nn.numpy_dtype(x.type.element_type))
    return b.build(nn.DequantizeOp, x, scale, zero, axis=axis)


@from_onnx("DynamicQuantizeLinear")
def _dynamic_quantize_linear(b, a):
    """uint8 over the range of x widened to hold 0 (nn.dynamic_parameters)."""
    x = b.v(0)
    if x.type.element_type != f32:
        raise b.error(f"the input must be float32, got {x.type}")
    scale, zp = nn.dynamic_parameters(b.emit, x)
    return [b.build(nn.QuantizeOp, x, scale, zp), scale, zp]


def _integer_zero(b: Importer, i: int, data: SSAValue, what: str, per: str | None = None) -> SSAValue:
    """The zero point of an integer contraction's operand: per tensor (a literal
    of equal values, or of one, is one), or one per `per` (column, output channel)."""
    if not b.has(i):
        return b.emit(nn.ConstantOp(np.zeros((), nn.numpy_dtype(data.type.element_type))))
    literal = b.consts.get(b.node.input[i])
    if literal is not None and literal.size and np.all(literal == literal.reshape(-1)[0]):
        return b.emit(nn.ConstantOp(np.asarray(literal.reshape(-1)[0])))
    z = _qparam_scalar(b, i, what)
    if len(shape_of(z.type)) > (0 if per is None else 1):
        raise b.error(f"the {what} must be one per tensor" + (f" or one per {per}" if per else "")
                      + f", got {z.type}")
    return z


def _integer_matmul(b: Importer, x: SSAValue, w: SSAValue, a_zero: int, b_zero: int) -> SSAValue:
    """(x - zero point input a_zero) @ (w - zero point input b_zero, per column) in i32."""
    return b.build(nn.QmatmulOp, x, w, _integer_zero(b, a_zero, x, "a zero point"),
                   _integer_zero(b, b_zero, w, "b zero point", "column"))


@from_onnx("MatMulInteger")
def _matmul_integer(b, a):
    return _integer_matmul(b, b.v(0), b.v(1), 2, 3)


def _conv_window(b: Importer, a: dict, x: SSAValue, w: SSAValue) -> dict:
    kernel = list(a.get("kernel_shape", shape_of(w.type)[2:]))
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = b.window(a, x, kernel, dil)
    return dict(strides=strides, pads=pads, dilations=dil, group=a.get("group", 1))


@from_onnx("ConvInteger")
def _conv_integer(b, a):
    x, w = b.v(0), b.v(1)
    return b.build(nn.QconvOp, x, w, _integer_zero(b, 2, x, "x zero point"),
                   _integer_zero(b, 3, w, "w zero point", "output channel"), **_conv_window(b, a, x, w))


def _qparam_scalar(b: Importer, i: int, what: str) -> SSAValue:
    """A zero point of one value (input i), given as a scalar or one element."""
    z = _qparam(b, i, what)
    if shape_of(z.type) == (1,):
        z = b.build(nn.ReshapeOp, z, [])
    return z


def _output_zero(b: Importer) -> SSAValue:
    """y_zero_point (input 7): one per tensor."""
    return _qparam_scalar(b, 7, "y zero point")


def _multiplier(b: Importer, a_scale: SSAValue, b_scale: SSAValue, y_scale: SSAValue) -> SSAValue:
    """a_scale * b_scale / y_scale in f32, in onnxruntime's order."""
    return b.binary("div", b.binary("mul", a_scale, b_scale), y_scale)


@from_onnx("QLinearMatMul")
def _qlinear_matmul(b, a):
    x, w = b.v(0), b.v(3)
    acc = _integer_matmul(b, x, w, 2, 5)
    scale = _multiplier(b, _scale(b, 1, x, -1, "a scale"), _scale(b, 4, w, -1, "b scale"),
                        _scale(b, 6, acc, -1, "y scale"))
    return b.build(nn.RequantizeOp, acc, scale, _output_zero(b), axis=-1)


@from_onnx("QLinearConv")
def _qlinear_conv(b, a):
    x, w = b.v(0), b.v(3)
    acc = b.build(nn.QconvOp, x, w, _integer_zero(b, 2, x, "x zero point"),
                  _integer_zero(b, 5, w, "w zero point", "output channel"), **_conv_window(b, a, x, w))
    if b.has(8):  # bias: i32 at scale x_scale * w_scale
        acc = b.binary("add", acc, b.per_channel(b.v(8), len(shape_of(acc.type))))
    scale = _multiplier(b, _scale(b, 1, x, 1, "x scale"), _scale(b, 4, acc, 1, "w scale"),
                        _scale(b, 6, acc, 1, "y scale"))
    return b.build(nn.RequantizeOp, acc, scale, _output_zero(b), axis=1)


@from_onnx("com.microsoft.QGemm")
def _qgemm(b, a):
    """onnxruntime's QGemm: alpha (A' - a_zero)(B' - b_zero) a_scale b_scale + C (int32
    at that scale), requantized at y_scale (its multiplier alpha * a_scale * b_scale[j] / y_scale,
    in that order) or, without y_scale, in f32."""
    x, w = b.v(0), b.v(3)
    if a.get("transA", 0):
        x = b.build(nn.TransposeOp, x, [1, 0])
    if a.get("transB", 0):
        w = b.build(nn.TransposeOp, w, [1, 0])
    acc = _integer_matmul(b, x, w, 2, 5)
    if b.has(6):
        acc = b.binary("add", acc, b.v(6))
    alpha = b.emit(nn.ConstantOp(np.asarray(a.get("alpha", 1.0), np.float32)))
    scale = b.binary("mul", b.binary("mul", alpha, _scale(b, 1, x, -1, "a scale")), _scale(b, 4, acc, -1, "b scale"))
    if b.has(7):
        return b.build(nn.RequantizeOp, acc, b.binary("div", scale, _scale(b, 7, acc, -1, "y scale")),
                       _qparam_scalar(b, 8, "y zero point"), axis=-1)
    return b.build(nn.DequantizeOp, acc, scale, b.emit(nn.ConstantOp(np.zeros(shape_of(scale.type), np.int32))),
                   axis=-1)


# ---------------------------------------------------------------------------
# nn -> ONNX


@to_onnx(nn.QuantizeOp)
def _export_quantize(g: Graph, op: Operation, ins: list[str]) -> str:
    return g.node("QuantizeLinear", ins, axis=op.params.axis)


@to_onnx(nn.DequantizeOp)
def _export_dequantize(g: Graph, op: Operation, ins: list[str]) -> str:
    return g.node("DequantizeLinear", ins, axis=op.params.axis)


@to_onnx(nn.QmatmulOp)
def _export_qmatmul(g: Graph, op: Operation, ins: list[str]) -> str:
    return g.node("MatMulInteger", ins)


@to_onnx(nn.QconvOp)
def _export_qconv(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    return g.node("ConvInteger", ins, kernel_shape=list(shape_of(op.weight.type)[2:]), strides=list(p.strides),
                  pads=list(p.pads), dilations=list(p.dilations), group=p.group)


@to_onnx(nn.RequantizeOp)
def _export_requantize(g: Graph, op: Operation, ins: list[str]) -> str:
    """float(acc) * scale, then QuantizeLinear at scale 1: the same roundings."""
    acc, scale, zero = ins
    rank = len(shape_of(op.input.type))
    if shape_of(op.scale.type):  # per axis: shaped to broadcast along it
        shape = [1] * rank
        shape[op.params.axis % rank] = -1
        scale = g.node("Reshape", [scale, g.const(shape)])
    y = g.node("Mul", [g.node("Cast", [acc], to=1), scale])
    if op.params.activation == "relu":
        y = g.node("Relu", [y])
    return g.node("QuantizeLinear", [y, g.const(1.0, np.float32), zero])
