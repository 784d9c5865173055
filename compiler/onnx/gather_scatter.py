"""The gather/scatter family in ONNX, both directions: Gather, GatherElements,
GatherND, ScatterElements, ScatterND, TensorScatter, Compress and OneHot.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import Importer, from_onnx, str_attr


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("Gather")
def _gather(b, a):
    x, axis = b.v(0), a.get("axis", 0)
    name = b.node.input[1]
    if name in b.consts and (b.consts[name] < 0).any():  # negative indices count from the end
        dim = shape_of(x.type)[axis]
        idx = b.consts[name]
        fixed = np.where(idx < 0, idx + dim, idx).astype(idx.dtype)
        return b.build(nn.GatherOp, x, b.emit(nn.ConstantOp(fixed)), axis)
    return b.build(nn.GatherOp, x, b.v(1), axis)


@from_onnx("GatherElements")
def _gather_elements(b, a):
    return b.build(nn.GatherElementsOp, b.v(0), b.v(1), a.get("axis", 0))


@from_onnx("ScatterElements", "Scatter")
def _scatter_elements(b, a):
    return b.build(nn.ScatterElementsOp, b.v(0), b.v(1), b.v(2), a.get("axis", 0),
                   str_attr(a, "reduction", "none"))


@from_onnx("ScatterND")
def _scatter_nd(b, a):
    return b.build(nn.ScatterNDOp, b.v(0), b.v(1), b.v(2), str_attr(a, "reduction", "none"))


@from_onnx("TensorScatter")
def _tensor_scatter(b, a):
    """The update written into the cache along `axis` from each batch row's
    write index: a scatter_elements whose indices are write index + position
    (wrapped once past the end in circular mode)."""
    past, upd = b.v(0), b.v(1)
    ps, us = shape_of(past.type), shape_of(upd.type)
    r = len(ps)
    axis = a.get("axis", -2)
    if not -r <= axis < r or axis % r == 0:
        raise b.error(f"axis {axis} must name a non-batch axis of {past.type}")
    axis %= r
    mode = str_attr(a, "mode", "linear")
    if mode not in ("linear", "circular"):
        raise b.error(f"unknown mode '{mode}' (known: linear, circular)")
    if DYN in us:
        raise b.error(f"needs an update of static shape, got {upd.type}")
    positions = np.arange(us[axis]).reshape([-1 if i == axis else 1 for i in range(r)])
    idx = b.emit(nn.ConstantOp(np.ascontiguousarray(np.broadcast_to(positions, us), np.int64)))
    if b.has(2):
        w = b.v(2)
        if w.type.element_type != nn.i64:
            raise b.error(f"write_indices must be int64, got {w.type}")
        idx = b.binary("add", idx, b.reshape_to(w, [us[0]] + [1] * (r - 1)))
    if mode == "circular":  # past the end: one wrap around
        size = ps[axis]
        over = b.binary("min", b.binary("max", b.binary("sub", idx, b.full_like(size - 1, idx)),
                                          b.full_like(0, idx)), b.full_like(1, idx))
        idx = b.binary("sub", idx, b.binary("mul", over, b.full_like(size, idx)))
    return b.build(nn.ScatterElementsOp, past, idx, upd, axis)


def _eye_rows(b: Importer, depth: int, dtype: np.dtype, off: float = 0.0, on: float = 1.0) -> SSAValue:
    """A (depth + 2, depth) table: row i + 1 is one-hot at i (`on`, else `off`);
    rows 0 and depth + 1 are all `off` (the rows of indices out of range)."""
    table = np.full((depth + 2, depth), off, dtype=dtype)
    table[np.arange(1, depth + 1), np.arange(depth)] = on
    return b.emit(nn.ConstantOp(table))


def _one_hot_rows(b: Importer, idx: SSAValue, depth: int) -> SSAValue:
    """The row of `_eye_rows` for each integer index: negative indices count
    from the end, out-of-range ones pick a row of `off` (comparison-free:
    integer min/max arithmetic)."""
    k = lambda v: b.full_like(v, idx)  # noqa: E731
    neg = b.binary("min", b.binary("max", b.binary("sub", k(0), idx), k(0)), k(1))  # idx < 0
    idx = b.binary("add", idx, b.binary("mul", neg, k(depth)))
    return b.binary("add", b.binary("min", b.binary("max", idx, k(-1)), k(depth)), k(1))


@from_onnx("OneHot")
def _one_hot(b, a):
    idx = b.v(0)
    depth = int(np.asarray(b.static(1)).reshape(-1)[0])
    if depth < 1:
        raise b.error(f"depth must be >= 1, got {depth}")
    axis = a.get("axis", -1)
    rank = len(shape_of(idx.type)) + 1
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for the output's rank {rank}")
    values = b.v(2)
    if idx.type.element_type not in (nn.i64, nn.i32):  # float indices, truncated
        if values.type.element_type != idx.type.element_type:
            raise b.error(f"float indices ({idx.type.element_type}) need values of their type, "
                          f"got {values.type} (ncc has no cast from float to integer)")
        return b.move_last_axis(_one_hot_float(b, idx, depth, values), axis)
    rows = _one_hot_rows(b, idx, depth)
    if b.node.input[2] in b.consts:  # off/on known: the table holds them
        off, on = np.asarray(b.consts[b.node.input[2]]).reshape(-1)[:2]
        y = b.build(nn.GatherOp, _eye_rows(b, depth, np.asarray(off).dtype, off, on), rows, 0)
    else:
        hot = b.build(nn.GatherOp, _eye_rows(b, depth, nn.numpy_dtype(values.type.element_type)), rows, 0)
        y = _off_on(b, hot, values)
    return b.move_last_axis(y, axis)


def _off_on(b: Importer, hot: SSAValue, values: SSAValue) -> SSAValue:
    """off + (on - off) * hot, for values = [off, on]."""
    if shape_of(values.type) != (2,):
        raise b.error(f"values must be [off, on], got {values.type}")
    ones = [1] * len(shape_of(hot.type))
    off = b.reshape_to(b.build(nn.SliceOp, values, [0], [1]), ones)
    on = b.reshape_to(b.build(nn.SliceOp, values, [1], [2]), ones)
    return b.binary("add", b.binary("mul", hot, b.binary("sub", on, off)), off)


def _one_hot_float(b: Importer, idx: SSAValue, depth: int, values: SSAValue) -> SSAValue:
    """One-hot of float indices (truncated toward zero, as ONNX casts them):
    hot[..., j] = max(1 - |t - j|, 0), exact for integral t."""
    k = lambda v: b.full_like(v, idx)  # noqa: E731
    t = b.binary("add", b.unary("ceil", b.binary("min", idx, k(0))),
                b.unary("floor", b.binary("max", idx, k(0))))
    neg = b.binary("min", b.binary("max", b.unary("neg", t), k(0)), k(1))  # t <= -1
    t = b.binary("add", t, b.binary("mul", neg, k(depth)))
    t = b.reshape_to(t, [*shape_of(idx.type), 1])
    j = b.emit(nn.ConstantOp(np.arange(depth, dtype=nn.numpy_dtype(idx.type.element_type))))
    one = b.full_like(1, t)
    hot = b.binary("max", b.binary("sub", one, b.unary("abs", b.binary("sub", t, j))),
                  b.full_like(0, t))
    return _off_on(b, hot, values)


@from_onnx("Compress")
def _compress(b, a):
    # a gather of the positions where the (import-time) condition holds
    x = b.v(0)
    keep = np.flatnonzero(np.asarray(b.static(1)).reshape(-1))
    if "axis" not in a:
        x, axis = b.reshape_to(x, [-1]), 0
    else:
        axis = a["axis"] % len(shape_of(x.type))
    n = shape_of(x.type)[axis]
    if keep.size and (n == DYN or keep[-1] >= n):
        raise b.error(f"the condition selects position {keep[-1]} of an axis of size {n}")
    return b.build(nn.GatherOp, x, b.emit(nn.ConstantOp(keep.astype(np.int64))), axis)


@from_onnx("GatherND")
def _gather_nd(b, a):
    # the index tuples as linear positions into data with the indexed axes
    # merged (batch entries offset), then one gather; an index -s..-1 is taken
    # to s-1..0 by a lookup (nn has no comparisons)
    data, idx = b.v(0), b.v(1)
    ds, ish = shape_of(data.type), shape_of(idx.type)
    bd = a.get("batch_dims", 0)
    k = ish[-1] if ish else 0
    if DYN in ds or DYN in ish or not 1 <= k <= len(ds) - bd or list(ds[:bd]) != list(ish[:bd]):
        raise b.error(f"data {data.type} and indices {idx.type} (batch_dims {bd}) do not fit, "
                      "or have dynamic sizes")
    itype = nn.numpy_dtype(idx.type.element_type)
    dims = ds[bd:bd + k]
    for d in dims:  # each indexed axis gets a lookup of 2 d entries
        b.check_size([2 * d], itype, "an index lookup")
    strides = [math.prod(dims[j + 1:]) for j in range(k)]
    lin = None
    for j, (d, st) in enumerate(zip(dims, strides)):
        comp = b.reshape_to(b.build(nn.SliceOp, idx, [j], [j + 1], [-1]), list(ish[:-1]))
        wrap = b.emit(nn.ConstantOp(np.concatenate([np.arange(d), np.arange(d)]).astype(itype)))
        comp = b.build(nn.GatherOp, wrap, b.binary("add", comp, b.scalar(d, comp)), 0)
        term = comp if st == 1 else b.binary("mul", comp, b.scalar(st, comp))
        lin = term if lin is None else b.binary("add", lin, term)
    inner, batch = math.prod(dims), math.prod(ds[:bd])
    if bd:
        offsets = (np.arange(batch) * inner).reshape(list(ds[:bd]) + [1] * (len(ish) - 1 - bd))
        lin = b.binary("add", lin, b.emit(nn.ConstantOp(offsets.astype(itype))))
    flat = b.reshape_to(data, [batch * inner, *ds[bd + k:]])
    return b.build(nn.GatherOp, flat, lin, 0)


# ---------------------------------------------------------------------------
# nn -> ONNX

to_onnx(nn.GatherOp)(lambda g, op, ins: g.node("Gather", ins, axis=op.params.axis))
to_onnx(nn.GatherElementsOp)(lambda g, op, ins: g.node("GatherElements", ins, axis=op.params.axis))


def _export_scatter(op_type: str) -> Callable[[Graph, Operation, list[str]], str]:
    def rule(g: Graph, op: Operation, ins: list[str]) -> str:
        p = op.params
        if p.reduction in ("max", "min"):
            g.needs_opset(op, 18, f"reduction {p.reduction}")
        axis = {"axis": p.axis} if op_type == "ScatterElements" else {}
        return g.node(op_type, ins, reduction=p.reduction, **axis)
    return rule


to_onnx(nn.ScatterElementsOp)(_export_scatter("ScatterElements"))
to_onnx(nn.ScatterNDOp)(_export_scatter("ScatterND"))
