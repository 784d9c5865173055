"""VJP rules of the quant family: quantize and dequantize as the clipped
straight-through estimator (quantization-aware training).

The integers between them carry, as their cotangent, a float tensor of
their shape: the gradient with respect to the quantized value taken as a
real number. dequantize, y = (q - z) * s: dq = g * s. quantize, q =
clamp(round(x / s) + z): dx = dq / s where x / s + z rounds into the
integer range, 0 where it saturates. So dequantize(quantize(x)) passes g
through where x is representable and stops it where x is clipped. Scales and
zero points get no gradient (calibration fixes them); the integer ops
(qmatmul, qconv, requantize) have no rule: train the QDQ form, then compile."""

from __future__ import annotations

from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward


def _along(bw: Backward, v: SSAValue, op: Operation) -> SSAValue:
    """A scale or zero point shaped to broadcast against op's data (per tensor, or along its axis)."""
    if not shape_of(v.type):
        return v
    rank = len(shape_of(op.input.type))
    shape = [1] * rank
    shape[op.params.axis % rank] = -1
    return bw.reshape(v, shape)


def _dequantize_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.bin("mul", g, _along(bw, bw.primal(op.scale), op)), None, None]


def _quantize_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    s = _along(bw, bw.primal(op.scale), op)
    z = bw.emit(nn.CastOp(_along(bw, bw.primal(op.zero_point), op), op.input.type.element_type))
    r = bw.bin("add", bw.bin("div", bw.primal(op.input), s), z)
    lo, hi = nn.RANGE[op.result.type.element_type]
    inside = bw.emit(nn.LOGICAL_OPS["and"](bw.cmp("greater_equal", r, bw.constant(lo - 0.5, r)),
                                            bw.cmp("less", r, bw.constant(hi + 0.5, r))))
    return [bw.select(inside, bw.bin("div", g, s), bw.zeros(g.type)), None, None]


VJP = {nn.DequantizeOp: _dequantize_vjp, nn.QuantizeOp: _quantize_vjp}
