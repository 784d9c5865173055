"""The shape family in ONNX, both directions: reshapes (Reshape, Flatten,
Squeeze, Unsqueeze), Transpose, Concat, Split, Slice, Pad, Expand, Tile,
Trilu, DepthToSpace / SpaceToDepth, CenterCropPad, Identity and Dropout;
Shape and Size read at import time.
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import Importer, from_onnx, str_attr


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("Identity", "Dropout")
def _identity(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    if b.node.op_type == "Dropout" and b.opset >= 12 and b.has(2) and (
            b.node.input[2] not in b.consts or b.static(2).any()):
        raise b.error("training mode (random dropout) is not supported: training_mode must be "
                      "a constant false")
    if b.node.op_type == "Dropout" and len(b.node.output) > 1 and b.node.output[1] and DYN not in shape:
        b.consts[b.node.output[1]] = np.ones(shape, np.bool_)  # inference: nothing is dropped
    return x


@from_onnx("Flatten")
def _flatten_op(b, a):
    x = b.v(0)
    axis = a.get("axis", 1)
    return b.flatten(x, axis + len(shape_of(x.type)) if axis < 0 else axis)


@from_onnx("Reshape")
def _reshape(b, a):
    x = b.v(0)
    if b.opset < 5 or "shape" in a:
        target = list(a["shape"])
    else:
        target = b.ints(1)
    shape = shape_of(x.type)
    if not a.get("allowzero", 0):  # a 0 copies the input's dimension at that index
        if any(d == 0 and i >= len(shape) for i, d in enumerate(target)):
            raise b.error(f"shape {target} copies dimension {len(shape)} (a 0) of the rank-{len(shape)} input")
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    return b.reshape_to(x, target)


@from_onnx("Transpose")
def _transpose(b, a):
    x = b.v(0)
    return b.build(nn.TransposeOp, x, a.get("perm", list(range(len(shape_of(x.type))))[::-1]))


@from_onnx("Concat")
def _concat(b, a):
    return b.build(nn.ConcatOp, [b.v(i) for i in range(len(b.node.input)) if b.has(i)], a["axis"])


@from_onnx("Slice")
def _slice(b, a):
    x = b.v(0)
    if b.opset < 10:
        starts, ends, axes, steps = list(a["starts"]), list(a["ends"]), a.get("axes"), None
    else:
        starts, ends = b.ints(1), b.ints(2)
        axes = b.ints(3) if b.has(3) else None
        steps = b.ints(4) if b.has(4) else None
    return b.build(nn.SliceOp, x, starts, ends, None if axes is None else list(axes), steps)


@from_onnx("Pad")
def _pad(b, a):
    x = b.v(0)
    mode = a.get("mode", "constant")
    rank = len(shape_of(x.type))
    if b.opset < 11:
        pads, value = list(a.get("pads", a.get("paddings", []))), a.get("value", 0.0)
    else:
        pads = b.ints(1)
        value = float(b.static(2).reshape(-1)[0]) if b.has(2) else 0.0
        if b.has(3):  # opset 18: pads for the listed axes only
            axes = [ax % rank for ax in b.ints(3)]
            full = [0] * 2 * rank
            for j, ax in enumerate(axes):
                full[ax], full[ax + rank] = pads[j], pads[j + len(axes)]
            pads = full
    if min(pads, default=0) < 0:
        raise b.error(f"negative pads {pads} are not supported")
    return b.build(nn.PadOp, x, pads, mode, value)


@from_onnx("Squeeze")
def _squeeze(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    axes = b.axes_input(a, 1, 13)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [ax % len(shape) for ax in axes]
    for ax in axes:
        if shape[ax] != 1:
            raise b.error(f"cannot squeeze axis {ax} of {x.type}: its size is not 1")
    return b.reshape_to(x, [d for i, d in enumerate(shape) if i not in axes])


@from_onnx("Unsqueeze")
def _unsqueeze(b, a):
    x = b.v(0)
    shape = list(shape_of(x.type))
    axes = b.axes_input(a, 1, 13) or []
    rank = len(shape) + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        shape.insert(ax, 1)
    return b.reshape_to(x, shape)


@from_onnx("Shape")
def _shape(b, a):
    shape = list(shape_of(b.v(0).type))
    start, end = a.get("start", 0), a.get("end", len(shape))
    part = shape[start:end]
    if DYN in part:
        raise b.error(f"the shape of '{b.node.input[0]}' is dynamic ({b.v(0).type}): "
                      "ncc needs it at import time")
    b.consts[b.node.output[0]] = np.array(part, np.int64)


@from_onnx("Expand")
def _expand(b, a):
    """x broadcast to the shape (numpy's rules: the shape may also be smaller), any element type."""
    x = b.v(0)
    try:
        out = nn.broadcast_shapes(shape_of(x.type), b.ints(1))
    except ValueError as e:
        raise b.error(str(e)) from None
    if list(out) == list(shape_of(x.type)):
        return x
    return b.build(nn.BroadcastOp, x, TensorType(x.type.element_type, out))


@from_onnx("Split")
def _split(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    axis = b.axis(a.get("axis", 0), len(shape))
    n_out = len(b.node.output)
    sizes = list(a["split"]) if "split" in a else (b.ints(1) if b.opset >= 13 and b.has(1) else None)
    if sizes is None:
        if shape[axis] == DYN:
            raise b.error(f"cannot split the dynamic axis {axis} of {x.type}")
        n = a.get("num_outputs", n_out)
        if n != n_out:
            raise b.error(f"num_outputs is {n} but the node has {n_out} outputs")
        step = -(-shape[axis] // n)
        sizes = [max(0, min(step, shape[axis] - k * step)) for k in range(n)]
    if len(sizes) != n_out or min(sizes, default=0) < 0 or (shape[axis] != DYN and sum(sizes) != shape[axis]):
        raise b.error(f"split sizes {sizes} must be {n_out} (one per output), >= 0, summing to the "
                      f"axis's {shape[axis]}")
    outs, start = [], 0
    for size in sizes:
        outs.append(b.build(nn.SliceOp, x, [start], [start + size], [axis]))
        start += size
    return outs


@from_onnx("Trilu")
def _trilu(b, a):
    k = b.one_value(1, "k") if b.has(1) else 0
    return b.build(nn.TRIANGLE_OPS["triu" if a.get("upper", 1) else "tril"], b.v(0), k)


@from_onnx("Tile")
def _tile(b, a):
    """Copies concatenated along each axis (exact, any element type)."""
    x = b.v(0)
    reps = b.ints(1)
    rank = len(shape_of(x.type))
    if len(reps) != rank or min(reps, default=0) < 0:
        raise b.error(f"repeats {reps} must be {rank} values >= 0 (one per axis of {x.type})")
    for axis, r in enumerate(reps):
        if r == 0:
            x = b.build(nn.SliceOp, x, [0], [0], [axis])
        elif r > 1:
            x = b.build(nn.ConcatOp, [x] * r, axis)
    return x


def _space_depth(b: Importer, a: dict, to_space: bool) -> SSAValue:
    """DepthToSpace / SpaceToDepth: a reshape, a transpose, a reshape."""
    x = b.v(0)
    bs = a["blocksize"]
    mode = str_attr(a, "mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise b.error(f"unknown mode '{mode}' (known: DCR, CRD)")
    shape = shape_of(x.type)
    if len(shape) != 4 or DYN in shape[1:]:
        raise b.error(f"needs an input (N, C, H, W) with static C, H, W, got {x.type}")
    n, c, h, w = shape
    n = -1 if n == DYN else n
    if to_space:
        if c % (bs * bs):
            raise b.error(f"{c} channels are not divisible by blocksize^2 = {bs * bs}")
        cb = c // (bs * bs)
        if mode == "DCR":
            parts, perm = [n, bs, bs, cb, h, w], [0, 3, 4, 1, 5, 2]
        else:
            parts, perm = [n, cb, bs, bs, h, w], [0, 1, 4, 2, 5, 3]
        out = [n, cb, h * bs, w * bs]
    else:
        if h % bs or w % bs:
            raise b.error(f"spatial size {h}x{w} is not divisible by the blocksize {bs}")
        parts = [n, c, h // bs, bs, w // bs, bs]
        perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
        out = [n, c * bs * bs, h // bs, w // bs]
    y = b.build(nn.TransposeOp, b.reshape_to(x, parts), perm)
    return b.reshape_to(y, out)


from_onnx("DepthToSpace")(lambda b, a: _space_depth(b, a, True))
from_onnx("SpaceToDepth")(lambda b, a: _space_depth(b, a, False))


@from_onnx("CenterCropPad")
def _center_crop_pad(b, a):
    # per axis: a centered slice when the input is longer, zero padding (the
    # extra one at the end) when it is shorter
    x = b.v(0)
    shape = shape_of(x.type)
    target = b.ints(1)
    axes = [ax % len(shape) for ax in a.get("axes", range(len(shape)))]
    if len(target) != len(axes):
        raise b.error(f"shape {target} must have one size per axis {axes}")
    pads = [0] * (2 * len(shape))
    for ax, t in zip(axes, target):
        n = shape[ax]
        if n == DYN:
            raise b.error(f"cannot crop or pad the dynamic axis {ax} of {x.type}")
        if n > t:
            x = b.build(nn.SliceOp, x, [(n - t) // 2], [(n - t) // 2 + t], [ax])
        elif n < t:
            pads[ax], pads[ax + len(shape)] = (t - n) // 2, t - n - (t - n) // 2
    return b.build(nn.PadOp, x, pads) if any(pads) else x


@from_onnx("Size")
def _size(b, a):
    shape = shape_of(b.v(0).type)
    if DYN in shape:
        raise b.error(f"the size of '{b.node.input[0]}' is dynamic ({b.v(0).type}): ncc needs it at "
                      "import time")
    b.consts[b.node.output[0]] = np.array(math.prod(shape), np.int64)


# ---------------------------------------------------------------------------
# nn -> ONNX

@to_onnx(nn.ReshapeOp)
def _export_reshape(g: Graph, op: Operation, ins: list[str]) -> str:
    dims = [-1 if d == DYN else d for d in shape_of(op.result.type)]
    # allowzero: a 0 in the target is a zero-size dimension, not "copy the input's"
    return g.node("Reshape", [ins[0], g.const(dims)], allowzero=int(0 in dims))


@to_onnx(nn.BroadcastOp)
def _export_broadcast(g: Graph, op: Operation, ins: list[str]) -> str:
    src, dst = shape_of(op.operands[0].type), shape_of(op.result.type)
    src = (1,) * (len(dst) - len(src)) + tuple(src)
    if not any(d == DYN and s == 1 for s, d in zip(src, dst)):  # Expand keeps a dim where 1 is given
        return g.node("Expand", [ins[0], g.const([1 if d == DYN else d for d in dst])])
    if g.batch_of is None or DYN in dst[1:]:  # verified IR has the batch in dimension 0 only
        raise NccError.at_op(op, "nn.broadcast to a `?` dimension that no input's dimension 0 carries")
    batch = g.node("Shape", [g.batch_of], start=0, end=1)
    return g.node("Expand", [ins[0], g.node("Concat", [batch, g.const(list(dst[1:]))], axis=0)])


@to_onnx(nn.SliceOp)
def _export_slice(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    return g.node("Slice", [ins[0], *(g.const(list(v)) for v in (p.starts, p.ends, p.axes, p.steps))])


@to_onnx(nn.PadOp)
def _export_pad(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    extra = [g.scalar(p.value, op.result)] if p.mode == "constant" else []
    return g.node("Pad", [ins[0], g.const(list(p.pads)), *extra], mode=p.mode)


to_onnx(nn.TransposeOp)(lambda g, op, ins: g.node("Transpose", ins, perm=list(op.params.perm)))
to_onnx(nn.ConcatOp)(lambda g, op, ins: g.node("Concat", ins, axis=op.params.axis))
for _nn, _cls in nn.TRIANGLE_OPS.items():
    to_onnx(_cls)(lambda g, op, ins, upper=int(_nn == "triu"): g.node(
        "Trilu", [ins[0], g.const(op.params.k)], upper=upper))
