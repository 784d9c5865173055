"""Lowering of the resize family: per-axis tap tables computed at compile time."""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import i64
from xdsl.ir import Operation

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, index


def resize_tables(op) -> list[tuple[str, np.ndarray]]:
    """Per resized axis (nn.ResizeOp.taps): its tap indices (out, taps) i64,
    their weights (out, taps) in the element type unless nearest, and where
    some position is outside the input (tf_crop_and_resize) a 0/1 i64 flag
    per output position."""
    dtype = nn.numpy_dtype(op.result.type.element_type)
    tables = []
    for t in op.taps():
        tables.append((f"index{t.axis}", t.index))
        if op.params.mode != "nearest":
            tables.append((f"weights{t.axis}", t.weights.astype(dtype)))
        if t.outside is not None:
            tables.append((f"outside{t.axis}", t.outside.astype(np.int64)))
    return tables


def lower_resize(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per output point: the sum over the taps of every resized axis (their
    indices and weights are tables computed at compile time) of the product of
    the weights times the input there; nearest reads its one tap; the
    extrapolation value where some axis is outside the input."""
    x, *tables = ins
    nearest = op.params.mode == "nearest"
    it = iter(tables)
    axes = [(t.axis, t.index.shape[1], next(it), None if nearest else next(it),
             None if t.outside is None else next(it)) for t in op.taps()]

    def point(ivs, _):
        def read(taps):
            pos, weight = list(ivs), None
            for (axis, _, index_t, weight_t, _), tv in zip(axes, taps):
                pos[axis] = b(arith.IndexCastOp, b.load(index_t, [ivs[axis], tv]), index)
                if weight_t is not None:
                    w = b.load(weight_t, [ivs[axis], tv])
                    weight = w if weight is None else b(arith.MulfOp, weight, w)
            return b.load(x, pos), weight

        if nearest:
            v, _ = read([b.idx(0)] * len(axes))
        else:
            def acc(taps, c):
                v, w = read(taps)
                return [b(arith.AddfOp, c[0], b(arith.MulfOp, w, v))]

            v, = b.nest([n for _, n, *_ in axes], acc, [b.const(0.0, out.elt)])
        outside = None
        for axis, _, _, _, flag_t in axes:
            if flag_t is not None:
                o = b.cmpi("ne", b.load(flag_t, [ivs[axis]]), b.const(0, i64))
                outside = o if outside is None else b(arith.OrIOp, outside, o)
        if outside is not None:
            v = b.select(outside, b.const(op.params.extrapolation_value, out.elt), v)
        b.store(v, out, ivs)

    b.nest(out.shape, point)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.ResizeOp: lower_resize,
}


# Ops that read tables computed at compile time (extra weights after their operands).
TABLES: dict[type, Callable[[Operation], list[tuple[str, np.ndarray]]]] = {nn.ResizeOp: resize_tables}

