"""VJP rules of the conv family: conv, fused_conv, conv_transpose (the input gradient of a
sliding window is the transposed window; the weight gradient nn.conv_weight_grad)."""

from __future__ import annotations

from typing import Sequence

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.passes.autodiff.core import Backward, Rule
from ncc.passes.autodiff.elementwise import activation_vjp


# ---------------------------------------------------------------------------
# Convolutions and pools. The input gradient of a sliding window is a
# transposed conv of the cotangent (output_padding restores the input
# positions past the last window); the weight gradient sums over the batch in
# dimension 0, so it is its own op, nn.conv_weight_grad.


def window_params(p) -> dict:
    return {"strides": p.strides, "pads": p.pads, "dilations": p.dilations}


def static_windows(op: Operation) -> None:
    """The rules compute paddings and counts from the sizes: only the batch may be `?`."""
    if any(DYN in shape_of(v.type)[1:] for v in (*op.operands, op.results[0])):
        raise NccError.at_op(op, f"cannot differentiate '{op.name}' with a dynamic size other than "
                                 "the batch (dimension 0)")


def transposed_output_padding(x: TensorType, g: TensorType, kernel: Sequence[int], p) -> list[int]:
    """What conv_transpose adds so that `g`'s windows cover `x` again."""
    xs, gs, k = shape_of(x)[2:], shape_of(g)[2:], len(kernel)
    return [s - ((o - 1) * st + (kk - 1) * d + 1 - p.pads[i] - p.pads[i + k])
            for i, (s, o, kk, st, d) in enumerate(zip(xs, gs, kernel, p.strides, p.dilations))]


def _conv_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = conv(x, w): dx = conv_transpose(g, w), dw = conv_weight_grad(x, g)."""
    static_windows(op)
    x, w = op.operands[:2]
    p = op.params
    kernel = shape_of(w.type)[2:]
    dx = dw = None
    if bw.wants(op, 0):
        dx = bw.emit(nn.ConvTransposeOp(g, bw.primal(w), **window_params(p), group=p.group,
                                        output_padding=transposed_output_padding(x.type, g.type, kernel, p)))
    if bw.wants(op, 1):
        dw = bw.emit(nn.ConvWeightGradOp(bw.primal(x), g, kernel, **window_params(p), group=p.group))
    return [dx, dw]


def _fused_conv_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = act(conv(x, w) + bias [+ residual]): the conv's rule on dz = act'(.) g;
    dbias = dz summed over all but the channels, dresidual = dz."""
    x, w = op.operands[:2]
    bias, residual = op.bias, op.residual
    p = op.params

    def pre() -> SSAValue:
        return bw.emit(nn.FusedConvOp(bw.primal(x), bw.primal(w),
                                      bw.primal(bias) if bias is not None else None,
                                      **window_params(p), group=p.group,
                                      residual=bw.primal(residual) if residual is not None else None))

    dz = activation_vjp(bw, op, g, pre)
    axes = [0, *range(2, len(shape_of(g.type)))]  # every axis but the channels
    return _conv_vjp(bw, op, dz) + ([bw.reduce("reduce_sum", dz, axes, keepdims=False)
                                     if bw.wants(op, 2) else None] if bias is not None else []) \
        + ([dz if bw.wants(op, 3) else None] if residual is not None else [])


def _conv_transpose_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = conv_transpose(x, w), the input gradient of a conv: dx = conv(g, w),
    dw = conv_weight_grad(g, x) (the conv's input and output swapped). An
    output_padding of a stride or more (which ONNX forbids) leaves room for
    windows past x: dx drops them, and x is padded to meet them for dw."""
    static_windows(op)
    x, w = op.operands
    p = op.params
    kernel = shape_of(w.type)[2:]
    xs, k = shape_of(x.type), len(kernel)
    extra = [o // s for o, s in zip(p.output_padding, p.strides)]
    dx = dw = None
    if bw.wants(op, 0):
        dx = bw.emit(nn.ConvOp(g, bw.primal(w), **window_params(p), group=p.group))
        if any(extra):
            dx = bw.emit(nn.SliceOp(dx, [0] * k, list(xs[2:]), list(range(2, 2 + k))))
    if bw.wants(op, 1):
        xv = bw.primal(x)
        if any(extra):
            xv = bw.emit(nn.PadOp(xv, [0] * len(xs) + [0, 0, *extra]))
        dw = bw.emit(nn.ConvWeightGradOp(g, xv, kernel, **window_params(p), group=p.group))
    return [dx, dw]


VJP: dict[type, Rule] = {
    nn.ConvOp: _conv_vjp, nn.FusedConvOp: _fused_conv_vjp, nn.ConvTransposeOp: _conv_transpose_vjp,
}

