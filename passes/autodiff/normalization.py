"""VJP rules of the normalization family: batch_norm (inference mode), layer_norm."""

from __future__ import annotations

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Backward, Rule, scaled_product


def _batch_norm_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = (x - mean) inv scale + bias per channel (axis 1), inv = 1/sqrt(var + eps):
    dx = g scale inv; dbias = S(g); dscale = S(g (x - mean)) inv;
    dmean = -dbias scale inv; dvar = -dscale scale inv^2 / 2 (S: the sum over all axes but 1)."""
    x, scale, bias, mean, var = op.operands
    sx = shape_of(x.type)
    ct = TensorType(x.type.element_type, [sx[1], *[1] * (len(sx) - 2)])  # broadcasts against x

    def per_channel(v: SSAValue) -> SSAValue:  # (C,) -> (C, 1, ...)
        return bw.reshape(v, ct)

    def channel_sum(v: SSAValue) -> SSAValue:  # x-shaped -> (C,)
        return bw.reduce("reduce_sum", v, [i for i in range(len(sx)) if i != 1], keepdims=False)

    out: list[SSAValue | None] = [None] * 5
    if bw.wants(op, 2) or bw.wants(op, 3):
        out[2] = channel_sum(g)
    if not any(bw.wants(op, i) for i in (0, 1, 3, 4)):
        return out
    eps = bw.constant(op.params.epsilon, x)
    inv = bw.un("reciprocal", bw.un("sqrt", bw.bin("add", bw.primal(var), eps)))
    s_inv = bw.bin("mul", bw.primal(scale), inv)
    if bw.wants(op, 0):
        out[0] = bw.bin("mul", g, per_channel(s_inv))
    if bw.wants(op, 3):
        out[3] = bw.un("neg", bw.bin("mul", out[2], s_inv))
    if bw.wants(op, 1) or bw.wants(op, 4):
        s = channel_sum(bw.bin("mul", g, bw.bin("sub", bw.primal(x), per_channel(bw.primal(mean)))))
        out[1] = bw.bin("mul", s, inv)
        if bw.wants(op, 4):
            out[4] = scaled_product(bw, out[1], bw.bin("mul", s_inv, inv), -0.5)
    return out


def _layer_norm_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = xhat scale + bias, xhat = (x - mean) rstd over the axes [axis, rank):
    dbias, dscale: g, g xhat summed over the leading axes; with h = g scale,
    dx = rstd (h - mean(h) - xhat mean(h xhat)). mean and rstd are recomputed
    from x (only x is saved)."""
    x, scale, bias = op.operands
    r = len(shape_of(x.type))
    axes = list(range(nn.normalize_axis(op.params.axis, r), r))
    out: list[SSAValue | None] = [None, None, bw.unbroadcast(g, bias.type) if bw.wants(op, 2) else None]
    if not (bw.wants(op, 0) or bw.wants(op, 1)):
        return out

    def mean(v: SSAValue) -> SSAValue:
        return bw.reduce("reduce_mean", v, axes, keepdims=True)

    xv = bw.primal(x)
    xc = bw.bin("sub", xv, mean(xv))
    rstd = bw.un("reciprocal", bw.un("sqrt", bw.bin("add", mean(bw.bin("mul", xc, xc)),
                                                    bw.constant(op.params.epsilon, x))))
    xhat = bw.bin("mul", xc, rstd)
    if bw.wants(op, 1):
        out[1] = bw.unbroadcast(bw.bin("mul", g, xhat), scale.type)
    if bw.wants(op, 0):
        h = bw.bin("mul", g, bw.primal(scale))
        centered = bw.bin("sub", h, mean(h))
        along = bw.bin("mul", xhat, mean(bw.bin("mul", h, xhat)))  # the part along xhat
        out[0] = bw.bin("mul", rstd, bw.bin("sub", centered, along))
    return out


VJP: dict[type, Rule] = {
    nn.BatchNormOp: _batch_norm_vjp, nn.LayerNormOp: _layer_norm_vjp,
}

