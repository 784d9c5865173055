"""The conv family in ONNX, both directions: Conv, ConvTranspose and
CausalConvWithState in; conv, fused_conv, packed_conv, conv_transpose and conv_weight_grad
out.
"""

from __future__ import annotations

import math

from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.elementwise import activation_to_onnx
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import from_onnx, str_attr


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("Conv")
def _conv(b, a):
    x, w = b.v(0), b.v(1)
    wshape = shape_of(w.type)
    kernel = list(a.get("kernel_shape", wshape[2:]))
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = b.window(a, x, kernel, dil)
    y = b.build(nn.ConvOp, x, w, strides=strides, pads=pads, dilations=dil, group=a.get("group", 1))
    if b.has(2):  # bias[c] broadcast over the spatial dimensions
        bias = b.build(nn.ReshapeOp, b.v(2), [-1] + [1] * len(kernel))
        y = b.binary("add", y, bias)
    return y


@from_onnx("ConvTranspose")
def _conv_transpose(b, a):
    x, w = b.v(0), b.v(1)
    kernel = list(a.get("kernel_shape", shape_of(w.type)[2:]))
    k = len(kernel)
    strides = list(a.get("strides", [1] * k))
    dil = list(a.get("dilations", [1] * k))
    opad = list(a.get("output_padding", [0] * k))
    pads = list(a.get("pads", [0] * 2 * k))
    auto = str_attr(a, "auto_pad", "NOTSET")
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise b.error(f"unknown auto_pad '{auto}'")
    spatial = shape_of(x.type)[2:]
    base = [(s - 1) * st + (kk - 1) * d + 1 for s, st, kk, d in zip(spatial, strides, kernel, dil)]
    if "output_shape" in a or auto.startswith("SAME"):
        if DYN in spatial:
            raise b.error(f"output_shape and auto_pad need static spatial sizes, got {x.type}")
        out = list(a["output_shape"])[-k:] if "output_shape" in a else \
            [s * st for s, st in zip(spatial, strides)]
        total = [bs + op - o for bs, op, o in zip(base, opad, out)]
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        if auto == "VALID":
            pads = [0] * 2 * k
        begin = pads[:k]
        out = [bs + op - p0 - p1 for bs, op, p0, p1 in zip(base, opad, pads[:k], pads[k:])]
    if min(begin) < 0:
        raise b.error(f"the output shape {out} needs negative begin pads {begin}, which are not supported")
    # The end: cropped by pads, or extended by output_padding.
    end = [bs - p0 - o for bs, p0, o in zip(base, begin, out)]
    y = b.build(nn.ConvTransposeOp, x, w, strides=strides, dilations=dil, group=a.get("group", 1),
                pads=[*begin, *(max(e, 0) for e in end)], output_padding=[max(-e, 0) for e in end])
    if b.has(2):  # bias[c] broadcast over the spatial dimensions
        y = b.binary("add", y, b.build(nn.ReshapeOp, b.v(2), [-1] + [1] * k))
    return y


@from_onnx("CausalConvWithState")
def _causal_conv_with_state(b, a):
    # a depthwise conv over the input with the past state (or zeros) before it;
    # the present state is the last k - 1 positions of that padded input
    x, w = b.v(0), b.v(1)
    shape, wshape = shape_of(x.type), shape_of(w.type)
    if len(shape) != 3 or len(wshape) != 3 or DYN in shape[1:] or DYN in wshape:
        raise b.error(f"the input must be (batch, channels, length) and the weight (channels, 1, k), "
                      f"with static sizes but the batch: got {x.type} and {w.type}")
    c, k = shape[1], wshape[2]
    act = a.get("activation", "none")
    if act not in ("none", "silu", "swish"):
        raise b.error(f"unknown activation '{act}' (known: none, silu, swish)")
    if b.has(3):
        padded = b.build(nn.ConcatOp, [b.v(3), x], 2)
    else:
        padded = b.build(nn.PadOp, x, [0, 0, k - 1, 0, 0, 0])
    y = b.build(nn.ConvOp, padded, w, group=c)
    if b.has(2):
        y = b.binary("add", y, b.per_channel(b.v(2), 3))
    if act != "none":
        y = b.unary("silu", y)
    total = shape_of(padded.type)[2]
    return [y, b.build(nn.SliceOp, padded, [total - (k - 1)], [total], [2])]


# ---------------------------------------------------------------------------
# nn -> ONNX

@to_onnx(nn.ConvOp, nn.FusedConvOp)
def _export_conv(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    y = g.node("Conv", ins[:3], kernel_shape=list(shape_of(op.weight.type)[2:]), strides=list(p.strides),
               pads=list(p.pads), dilations=list(p.dilations), group=p.group)
    if len(ins) > 3:  # the residual
        y = g.node("Add", [y, ins[3]])
    return activation_to_onnx(g, getattr(p, "activation", "identity"), y, op.result)


@to_onnx(nn.PackedConvOp)
def _export_packed_conv(g: Graph, op: Operation, ins: list[str]) -> str:
    """The weight unpacked from its panels (transpose, reshape, slice, transpose,
    reshape), then as fused_conv."""
    p = op.params
    panels, k, width = shape_of(op.panels.type)
    w = g.node("Reshape", [g.node("Transpose", [ins[1]], perm=[1, 0, 2]), g.const([k, panels * width])])
    w = g.node("Slice", [w, g.const([0]), g.const([p.channels]), g.const([1])])
    w = g.node("Reshape", [g.node("Transpose", [w], perm=[1, 0]),
                           g.const([p.channels, k // math.prod(p.kernel), *p.kernel])])
    y = g.node("Conv", [ins[0], w, *ins[2:3]], kernel_shape=list(p.kernel), strides=list(p.strides),
               pads=list(p.pads), dilations=list(p.dilations))
    if len(ins) > 3:  # the residual
        y = g.node("Add", [y, ins[3]])
    return activation_to_onnx(g, p.activation, y, op.result)


@to_onnx(nn.ConvTransposeOp)
def _export_conv_transpose(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    return g.node("ConvTranspose", ins, kernel_shape=list(shape_of(op.weight.type)[2:]),
                  strides=list(p.strides), pads=list(p.pads), dilations=list(p.dilations),
                  group=p.group, output_padding=list(p.output_padding))


@to_onnx(nn.ConvWeightGradOp)
def _export_conv_weight_grad(g: Graph, op: Operation, ins: list[str]) -> str:
    """One Conv with the batch as the channels it sums over: x as (C/group,
    group * N, spatial) images, dy as (M, N, out) filters, the conv's strides
    and dilations swapped; the result (C/group, M, kernel'...) transposed, and
    cut to the kernel where the sizes leave room for more offsets."""
    p = op.params
    (_, c, *spatial), (_, m, *out) = shape_of(op.input.type), shape_of(op.output_grad.type)
    k, grp = len(spatial), p.group
    rest = list(range(3, 3 + k))
    xt = g.node("Reshape", [ins[0], g.const([0, grp, c // grp, *spatial])])
    xt = g.node("Transpose", [xt], perm=[2, 1, 0, *rest])
    xt = g.node("Reshape", [xt, g.const([c // grp, -1, *spatial])])
    dt = g.node("Reshape", [ins[1], g.const([0, grp, m // grp, *out])])
    dt = g.node("Transpose", [dt], perm=[1, 2, 0, *rest])
    dt = g.node("Reshape", [dt, g.const([m, -1, *out])])
    y = g.node("Conv", [xt, dt], kernel_shape=list(out), strides=list(p.dilations),
               dilations=list(p.strides), pads=list(p.pads), group=grp)
    y = g.node("Transpose", [y], perm=[1, 0, *range(2, 2 + k)])
    full = [(s + p.pads[i] + p.pads[i + k] - p.strides[i] * (o - 1) - 1) // p.dilations[i] + 1
            for i, (s, o) in enumerate(zip(spatial, out))]
    if full != list(p.kernel):
        y = g.node("Slice", [y, g.const([0] * k), g.const(list(p.kernel)), g.const(list(range(2, 2 + k)))])
    return y
