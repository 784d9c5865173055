"""Lowering of the gather/scatter family: gather, gather_elements, scatter_elements,
scatter_nd (indices clamped)."""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, identity_map, index, map_nest


def _clamped_index(b: Builder, raw: SSAValue, dim: SSAValue) -> SSAValue:
    """An integer index loaded from a tensor as an index value: a negative one
    counts from the end, an out-of-range one is clamped (kernels cannot raise)."""
    i = b(arith.IndexCastOp, raw, index)
    i = b.select(b.cmpi("slt", i, b.idx(0)), b(arith.AddiOp, i, dim), i)
    return b(arith.MaxSIOp, b(arith.MinSIOp, i, b(arith.SubiOp, dim, b.idx(1))), b.idx(0))


def lower_gather(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[pre, j..., post] = x[pre, indices[j...], post]; a negative index
    counts from the end, an out-of-range one is clamped (kernels cannot raise)."""
    x, ind = ins
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    ri = len(ind.shape)
    dim = b.size(x.shape[a])

    def src(ivs):
        return [*ivs[:a], _clamped_index(b, b.load(ind, ivs[a:a + ri]), dim), *ivs[a + ri:]]

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def lower_gather_elements(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[i] = x[i with i[axis] = indices[i]] (negative from the end, clamped)."""
    x, ind = ins
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    dim = b.size(x.shape[a])

    def src(ivs):
        return [*ivs[:a], _clamped_index(b, b.load(ind, ivs), dim), *ivs[a + 1:]]

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def _scatter_store(b: Builder, op, out: Buf, pos: list[SSAValue], value: SSAValue) -> None:
    r = op.params.reduction
    if r != "none":
        value = b.binary(r, b.load(out, pos), value)
    b.store(value, out, pos)


def lower_scatter_elements(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Copy x, then for each index position in row-major order: out[i with
    i[axis] = indices[i]] = updates[i] (or combined by the reduction)."""
    x, ind, upd = ins
    map_nest(b, out.shape, out, identity_map, [(x, identity_map)], lambda v: v)
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    dim = b.size(x.shape[a])

    def body(ivs, _):
        pos = [*ivs[:a], _clamped_index(b, b.load(ind, ivs), dim), *ivs[a + 1:]]
        _scatter_store(b, op, out, pos, b.load(upd, ivs))

    b.nest(ind.shape, body)


def lower_scatter_nd(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Copy x, then for each index tuple t = indices[j, :] (in order): the
    slice out[t, ...] = updates[j, ...] (or combined by the reduction)."""
    x, ind, upd = ins
    map_nest(b, out.shape, out, identity_map, [(x, identity_map)], lambda v: v)
    k = ind.shape[-1]

    def tuple_(js, _):
        t = [_clamped_index(b, b.load(ind, [*js, b.idx(d)]), b.size(x.shape[d])) for d in range(k)]
        b.nest(x.shape[k:], lambda rs, _: _scatter_store(b, op, out, [*t, *rs],
                                                          b.load(upd, [*js, *rs])))

    b.nest(ind.shape[:-1], tuple_)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.GatherOp: lower_gather, nn.GatherElementsOp: lower_gather_elements,
    nn.ScatterElementsOp: lower_scatter_elements, nn.ScatterNDOp: lower_scatter_nd,
}

