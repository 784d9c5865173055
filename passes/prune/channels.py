"""prune{structure=channel}: remove whole output channels (a convolution's
filters, a matmul's output features) of the smallest L1 or L2 norm, and
shrink everything downstream, so that the result is a smaller dense model.

    %w = nn.weight_ref @conv1 : tensor<8x3x3x3xf32>          @conv1 : tensor<4x3x3x3xf32>  (the kept filters)
    %c = nn.conv %x, %w -> tensor<?x8x5x5xf32>      ==>       %c = nn.conv %x, %w -> tensor<?x4x5x5xf32>
    %b = nn.add %c, %bias (tensor<8x1x1xf32>)                 @bias : tensor<4x1x1xf32>
    %r = nn.relu %b                                           ...
    %y = nn.conv %r, %w2 (tensor<16x8x3x3xf32>)               @conv2's weight : tensor<16x4x3x3xf32>

From a product's output the pass follows the channels through what carries
them unchanged -- activations and other unary ops, a bias added or
multiplied (a weight broadcast along the channels, sliced too), batch norm
(its four parameters sliced), pools, zero padding of other axes, concat
(its other inputs' channels stay), a flatten (a channel becomes its block of
features), a reduction over other axes (a global average pool), a depthwise
convolution (its filters and group shrink with them)
-- to the products that read them: a convolution's input channels, a
matmul's rows, sliced. If the channels reach anything else (a residual add
of two computed values, a function result, a reduction over them...), the
layer is left whole and the report says where. Layers are pruned in order,
each on the model its predecessors left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.prune.common import LayerReport, PruneOptions
from ncc.passes.prune.nn import Target, find_targets, macs_of, reads_description, selected_targets, trace_weight

CONVS = (nn.ConvOp, nn.FusedConvOp)
MATMULS = (nn.MatmulOp, nn.FusedMatmulOp)
UNARY = tuple(nn.UNARY_OPS.values())
BIASED = tuple(nn.BINARY_OPS[k] for k in ("add", "sub", "mul", "div"))
REDUCTIONS = tuple(nn.REDUCE_OPS.values())


@dataclass
class Plan:
    """What removing some channels of one product changes."""

    slices: dict[str, tuple[nn.WeightOp, int, np.ndarray]] = field(default_factory=dict)  # name -> (w, axis, kept)
    groups: list[tuple[Operation, int]] = field(default_factory=list)  # depthwise convs' new group
    reshapes: dict[Operation, tuple[int, int]] = field(default_factory=dict)  # reshape -> (axis, new length)

    def slice(self, w: nn.WeightOp, axis: int, kept: np.ndarray) -> str | None:
        if w.sym in self.slices:
            return f"@{w.sym} would be sliced twice"
        self.slices[w.sym] = (w, axis, kept)
        return None


class Blocked(Exception):
    """The channels reach something the pass cannot shrink (the message says what)."""


def _weight(v: SSAValue, axis: int, plan: Plan, kept: np.ndarray, length: int) -> None:
    """Slice the weight `v` is read from (through transposes, and its mask) so that
    its `axis` (of v) keeps `kept` of `length`; a broadcast axis (1) is left."""
    if shape_of(v.type)[axis] == 1:
        return
    traced = trace_weight(v, axis)
    if traced is None:
        what = v.owner.name if isinstance(v.owner, Operation) else "an input of the function"
        raise Blocked(f"the channels meet a value computed at run time ({what}): a residual add, say")
    w, w_axis, mask = traced
    if w_axis is None:  # through a reshape: a bias [M] seen as [M, 1, 1] or [1, M, 1, 1]
        big = [a for a, d in enumerate(w.data.shape) if d != 1]
        if len(big) != 1 or w.data.shape[big[0]] != length or not isinstance(v.owner, nn.ReshapeOp):
            raise Blocked(f"@{w.sym} is reshaped across the channels")
        w_axis = big[0]
        plan.reshapes[v.owner] = (axis, len(kept))
    for weight in (w, mask):
        if weight is not None:
            why = plan.slice(weight, w_axis, kept)
            if why:
                raise Blocked(why)


def _follow(v: SSAValue, axis: int, kept: np.ndarray, length: int, plan: Plan) -> None:
    """Every use of `v`, whose `axis` holds the channels (`kept` of `length`)."""
    for use in list(v.uses):
        op, i = use.operation, use.index
        rank = len(shape_of(v.type))
        if isinstance(op, func.ReturnOp):
            raise Blocked("the channels are a result of the function")
        if isinstance(op, UNARY) or (isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp)) and axis == 1 and i == 0):
            _follow(op.results[0], axis, kept, length, plan)
        elif isinstance(op, nn.BatchNormOp) and i == 0 and axis == 1:
            for param in op.operands[1:]:
                _weight(param, 0, plan, kept, length)
            _follow(op.results[0], axis, kept, length, plan)
        elif isinstance(op, BIASED):
            other = op.operands[1 - i]
            shift = rank - len(shape_of(other.type))
            if len(shape_of(op.results[0].type)) != rank:
                raise Blocked(f"{op.name} broadcasts the channels into more axes")
            if axis - shift >= 0:
                _weight(other, axis - shift, plan, kept, length)
            _follow(op.results[0], axis, kept, length, plan)
        elif isinstance(op, CONVS) and i == 0 and axis == 1:
            group = op.params.group
            if group == 1:
                _weight(op.operands[1], 1, plan, kept, length)
            elif group == length and shape_of(op.operands[1].type)[:2] == (length, 1):  # depthwise
                if isinstance(op, nn.FusedConvOp) and op.residual is not None:
                    raise Blocked(f"{op.name} adds a residual connection's channels (prune before fuse)")
                _weight(op.operands[1], 0, plan, kept, length)
                if isinstance(op, nn.FusedConvOp) and op.bias is not None:
                    _weight(op.bias, 0, plan, kept, length)
                plan.groups.append((op, len(kept)))
                _follow(op.results[0], 1, kept, length, plan)
            else:
                raise Blocked(f"a grouped convolution ({group} groups) reads the channels")
        elif isinstance(op, MATMULS) and i == 0 and axis == rank - 1:
            _weight(op.operands[1], len(shape_of(op.operands[1].type)) - 2, plan, kept, length)
        elif isinstance(op, nn.ReshapeOp):
            into, out = shape_of(v.type), shape_of(op.results[0].type)
            if out[:axis] != into[:axis] or len(out) != axis + 1 or -1 in into[axis:]:
                raise Blocked("a reshape moves the channels other than by flattening the axes after them")
            block = math.prod(into[axis + 1:])
            plan.reshapes[op] = (axis, len(kept) * block)
            _follow(op.results[0], axis, (kept[:, None] * block + np.arange(block)).ravel(), length * block, plan)
        elif isinstance(op, nn.ConcatOp) and op.params.axis % rank == axis:
            sizes = [shape_of(o.type)[axis] for o in op.operands]
            start = sum(sizes[:i])
            total = sum(sizes)
            wide = np.concatenate([np.arange(start), start + kept, np.arange(start + length, total)])
            _follow(op.results[0], axis, wide, total, plan)
        elif isinstance(op, nn.PadOp) and op.params.pads[axis] == 0 and op.params.pads[axis + rank] == 0:
            _follow(op.results[0], axis, kept, length, plan)
        elif isinstance(op, REDUCTIONS) and axis not in nn.normalize_axes(op.params.axes, rank):
            gone = nn.normalize_axes(op.params.axes, rank)  # a global average pool, say: channels stay
            _follow(op.results[0], axis if op.params.keepdims else axis - sum(a < axis for a in gone), kept,
                    length, plan)
        else:
            raise Blocked(f"the channels reach {op.name}" + _where(op))


def _where(op: Operation) -> str:
    loc = op.location
    return f" (line {loc.line.data})" if hasattr(loc, "line") else ""


def _norms(w: np.ndarray, axis: int, norm: str) -> np.ndarray:
    moved = np.moveaxis(np.abs(w.astype(np.float64)), axis, 0).reshape(w.shape[axis], -1)
    return moved.sum(1) if norm == "l1" else np.sqrt((moved ** 2).sum(1))


def _kept(norms: np.ndarray, opts: PruneOptions) -> np.ndarray:
    """Channels kept (in order): all but the round(s x M) of smallest norm, or
    those of norm >= threshold; always at least the largest."""
    order = np.argsort(norms, kind="stable")
    if opts.threshold is not None:
        keep = norms >= opts.threshold
    else:
        keep = np.ones(len(norms), bool)
        keep[order[:min(round(opts.sparsity * len(norms)), len(norms) - 1)]] = False
    keep[order[-1]] = True
    return np.flatnonzero(keep)


def _apply(module: ModuleOp, plan: Plan) -> None:
    """Slice the planned weights, then rebuild every op whose type changed."""
    for w, axis, kept in plan.slices.values():
        data = np.take(w.data, kept, axis=axis)
        w.properties["type"] = TensorType(w.type.element_type, list(data.shape))
        w.data = data
    for op, group in plan.groups:
        param = next(p for p in type(op).PARAMS if p.name == "group")
        op.properties["group"] = param.to_attr(group)
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]:
        for op in list(fn.walk()):
            if isinstance(op, nn.WeightRefOp):
                w = weights[op.weight.root_reference.data]
                if op.result.type != w.type:
                    Rewriter.replace_op(op, nn.WeightRefOp(w))
            elif isinstance(op, nn.NNOp):
                types = [o.type for o in op.operands]
                if op in plan.reshapes:  # a reshape's shape is its result type's
                    axis, size = plan.reshapes[op]
                    shape = list(shape_of(op.results[0].type))
                    shape[axis] = size
                    want = TensorType(op.results[0].type.element_type, shape)
                else:
                    want = type(op).infer(types, type(op)._values(op.properties, types))
                if want is not None and want != op.results[0].type:
                    Rewriter.replace_op(op, type(op).create(operands=list(op.operands), result_types=[want],
                                                            properties=dict(op.properties),
                                                            attributes=dict(op.attributes)))


def _producer_axis(t: Target) -> tuple[Operation, int] | None:
    """The product a weight feeds (alone) and the axis of its result that holds
    the channels: a convolution's filters (group 1), a matmul's right operand."""
    if len(t.reads) != 1:
        return None
    op = t.reads[0].op
    if isinstance(op, CONVS) and op.params.group == 1 and t.reads[0].axis == 1:
        return op, 1
    traced = trace_weight(op.operands[1], len(shape_of(op.operands[1].type)) - 2) if isinstance(op, MATMULS) \
        else None
    if traced is not None and traced[0] is t.weight:  # the right operand, not the left
        return op, len(shape_of(op.results[0].type)) - 1
    return None


def prune_channels(module: ModuleOp, opts: PruneOptions) -> list[LayerReport]:
    """Remove channels layer by layer (in the module's weight order); one report
    row per weight a product reads."""
    before = {name: (t.weight.data.size, sum(macs_of(r) for r in t.reads), t.weight.data.shape,
                     reads_description(t.reads)) for name, t in find_targets(module).items()}
    if not before:
        raise NccError("prune: no matmul or convolution of the module reads a weight with values")
    notes: dict[str, str] = {}
    for name in list(before):
        targets = find_targets(module)
        t = targets.get(name)
        if t is None or name not in selected_targets(targets, opts):
            notes.setdefault(name, "frozen")
            continue
        found = _producer_axis(t)
        if found is None:
            notes[name] = "left whole: not a product's filters or output features read once"
            continue
        op, axis = found
        traced = trace_weight(op.operands[1], 0 if isinstance(op, CONVS) else len(shape_of(op.operands[1].type)) - 1)
        w, w_axis, mask = traced
        effective = w.data * (mask.data if mask is not None else 1)
        length = w.data.shape[w_axis]
        kept = _kept(_norms(effective, w_axis, opts.norm), opts)
        if len(kept) == length:
            notes[name] = f"channels {length} -> {length}"
            continue
        plan = Plan()
        try:
            for weight in (w, mask):
                if weight is not None:
                    plan.slice(weight, w_axis, kept)
            if isinstance(op, nn.FusedConvOp | nn.FusedMatmulOp) and op.residual is not None:
                raise Blocked(f"{op.name} adds a residual connection's channels (prune before fuse)")
            if isinstance(op, nn.FusedConvOp | nn.FusedMatmulOp) and op.bias is not None:
                _weight(op.bias, len(shape_of(op.bias.type)) - 1 if isinstance(op, nn.FusedMatmulOp) else 0,
                        plan, kept, length)
            _follow(op.results[0], axis, kept, length, plan)
        except Blocked as why:
            notes[name] = f"left whole: {why}"
            continue
        _apply(module, plan)
        notes[name] = f"channels {length} -> {len(kept)}"
    after = {name: (t.weight.data.size, sum(macs_of(r) for r in t.reads))
             for name, t in find_targets(module).items()}
    rows = []
    for name, (size, macs, shape, reads) in before.items():
        size_after, macs_after = after.get(name, (0, 0))
        rows.append(LayerReport(name, reads, tuple(shape), size, size_after, macs, macs_after, notes.get(name, "")))
    return rows
