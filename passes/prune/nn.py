"""prune at the nn level: the weights that matmuls and convolutions read,
masked where they are pruned.

    nn.weight @fc : tensor<4x3xf32> = dense<...>         nn.weight @fc : tensor<4x3xf32> = dense<...>  (zeros where pruned)
                                                   ==>   nn.weight @fc_mask {ncc.constant, ncc.mask_of = "fc"} : ... = dense<0/1>
    %w = nn.weight_ref @fc : tensor<4x3xf32>             %w = nn.weight_ref @fc : tensor<4x3xf32>
    %y = nn.matmul %x, %w                                %m = nn.weight_ref @fc_mask : tensor<4x3xf32>
                                                         %wm = nn.mul %w, %m
                                                         %y = nn.matmul %x, %wm

A weight is a product's operand (a matmul's either side, a convolution's
filter, a sparse matmul's values) reached from `nn.weight_ref` through
transposes and reshapes; the axis along which the product sums (for N:M) is
followed through the transposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, UnitAttr
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import CONSTANT_MARK, shape_of
from ncc.passes.stats import MACS
from ncc.passes.prune.common import FROZEN_MARK, LayerReport, PruneOptions, magnitude_keep

MASK_OF = "ncc.mask_of"  # on a mask weight: the symbol of the weight it masks

# product op -> {operand index: the axis (of that operand) its sum runs along}
PRODUCTS: dict[type, dict[int, int]] = {
    nn.MatmulOp: {0: -1, 1: -2}, nn.FusedMatmulOp: {0: -1, 1: -2}, nn.MatmulTransposeAOp: {0: -2, 1: -2},
    nn.MatmulTransposeBOp: {0: -1, 1: -1},
    nn.ConvOp: {1: 1}, nn.FusedConvOp: {1: 1}, nn.SparseMatmulOp: {1: 0},
}


@dataclass
class Read:
    """One product reading a weight: the op, and the weight's axis it sums
    along (None when a reshape hides it)."""

    op: Operation
    axis: int | None


@dataclass
class Target:
    weight: nn.WeightOp
    reads: list[Read] = field(default_factory=list)
    mask: nn.WeightOp | None = None


def _trace(v: SSAValue, axis: int | None) -> tuple[nn.WeightRefOp, int | None] | None:
    """The weight_ref a product's operand comes from through transposes,
    reshapes and an earlier prune's mask, with the operand's `axis` as an
    axis of the weight (None through a reshape)."""
    while True:
        op = v.owner
        if isinstance(op, nn.WeightRefOp):
            return op, axis
        if isinstance(op, nn.TransposeOp):
            axis = None if axis is None else op.params.perm[axis]
        elif isinstance(op, nn.ReshapeOp):
            axis = None
        elif isinstance(op, nn.BINARY_OPS["mul"]) and _mask_ref(op.operands[1]) is not None:
            pass
        else:
            return None
        v = op.operands[0]


def trace_weight(v: SSAValue, axis: int) -> tuple[nn.WeightOp, int | None, nn.WeightOp | None] | None:
    """The weight (with data) an operand is read from, the weight's axis for the
    operand's `axis` (None through a reshape), and its mask if pruned."""
    traced = _trace(v, axis)
    if traced is None:
        return None
    ref, w_axis = traced
    w = ref.resolve()
    if w is None or w.data is None:
        return None
    masks = [op for op in w.parent_block().ops if isinstance(op, nn.WeightOp)
             and op.attributes.get(MASK_OF) is not None and op.attributes[MASK_OF].data == w.sym]
    return w, w_axis, (masks[0] if masks else None)


def _mask_ref(v: SSAValue) -> nn.WeightRefOp | None:
    op = v.owner
    if isinstance(op, nn.WeightRefOp) and MASK_OF in op.resolve().attributes:
        return op
    return None


def _functions(module: ModuleOp) -> list[func.FuncOp]:
    return [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]


def find_targets(module: ModuleOp) -> dict[str, Target]:
    """Every weight with data that a product reads, by symbol (in module order)."""
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    found: dict[str, Target] = {}
    for fn in _functions(module):
        for op in fn.walk():
            for index, axis in PRODUCTS.get(type(op), {}).items():
                operand = op.operands[index]
                traced = _trace(operand, axis % len(shape_of(operand.type)))
                if traced is None:
                    continue
                ref, w_axis = traced
                w = weights.get(ref.weight.root_reference.data)
                if w is None or w.data is None or MASK_OF in w.attributes:
                    continue
                found.setdefault(w.sym, Target(w)).reads.append(Read(op, w_axis))
    masks = {op.attributes[MASK_OF].data: op for op in weights.values() if MASK_OF in op.attributes}
    for t in found.values():
        t.mask = masks.get(t.weight.sym)
    return dict(sorted(found.items(), key=lambda kv: list(weights).index(kv[0])))


def macs_of(read: Read) -> int:
    """Multiply-adds per sample (a dynamic dimension counts as 1) of the
    product `read.op` (passes/stats.py's count)."""
    return MACS[type(read.op)](read.op, 1)


def reads_description(reads: list[Read]) -> str:
    names = sorted({r.op.name for r in reads})
    return ", ".join(names) + (f" x{len(reads)}" if len(reads) > 1 else "")


def _n_of_m_keep(values: np.ndarray, axis: int, n: int, m: int) -> np.ndarray:
    """The n largest |w| of every m consecutive entries along `axis` (ties by position)."""
    moved = np.moveaxis(np.abs(values), axis, -1)
    groups = moved.reshape(-1, m)
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, np.argsort(-groups, axis=1, kind="stable")[:, :n], True, axis=1)
    return np.moveaxis(keep.reshape(moved.shape), -1, axis)


def _n_of_m_axis(t: Target, m: int) -> tuple[int | None, str]:
    """The weight's axis to group along for N:M, or None and why not."""
    axes = {r.axis for r in t.reads}
    if None in axes:
        return None, "left dense: a reshape hides the axis its product sums along"
    if len(axes) > 1:
        return None, "left dense: its products sum along different axes"
    axis = axes.pop()
    if t.weight.data.shape[axis] % m:
        return None, f"left dense: the summed axis has {t.weight.data.shape[axis]} entries, not a multiple of {m}"
    return axis, ""


def _apply_mask(module: ModuleOp, t: Target, keep: np.ndarray) -> None:
    """Zero the weight where `keep` is False and make every read of it go
    through its mask (made on the first prune, tightened on later ones)."""
    w = t.weight
    dtype = w.data.dtype
    if t.mask is None:
        names = {op.sym for op in module.ops if isinstance(op, nn.WeightOp)}
        name, k = f"{w.sym}_mask", 1
        while name in names:
            name, k = f"{w.sym}_mask{k}", k + 1
        t.mask = nn.WeightOp(name, np.ones(w.data.shape, dtype), w.type)
        t.mask.attributes[CONSTANT_MARK] = UnitAttr()
        t.mask.attributes[MASK_OF] = StringAttr(w.sym)
        Rewriter.insert_op(t.mask, InsertPoint.after(w))
        for fn in _functions(module):
            for ref in [op for op in fn.walk() if isinstance(op, nn.WeightRefOp)
                        and op.weight.root_reference.data == w.sym]:
                mask_ref = nn.WeightRefOp(t.mask)
                masked = nn.BINARY_OPS["mul"](ref.result, mask_ref.result)
                Rewriter.insert_op([mask_ref, masked], InsertPoint.after(ref))
                ref.result.replace_uses_with_if(masked.results[0], lambda use: use.operation is not masked)
    keep = keep & (t.mask.data != 0)
    w.data = np.where(keep, w.data, 0).astype(dtype)
    t.mask.data = keep.astype(dtype)


def selected_targets(targets: dict[str, Target], opts: PruneOptions) -> dict[str, Target]:
    """The targets the options allow: not frozen (by name or mark), and among
    `weights` if given; a name that is no weight is an error."""
    for option in ("weights", "frozen"):
        unknown = [n for n in getattr(opts, option) if n not in targets]
        if unknown:
            listed = ", ".join(list(targets)[:20]) + (", ..." if len(targets) > 20 else "")
            raise NccError(f"prune: option {option}: {', '.join(unknown)} "
                           f"{'is not a weight' if len(unknown) == 1 else 'are not weights'} that a matmul "
                           f"or convolution reads (those are: {listed or 'none'})")
    return {name: t for name, t in targets.items()
            if (not opts.weights or name in opts.weights) and name not in opts.frozen
            and FROZEN_MARK not in t.weight.attributes and CONSTANT_MARK not in t.weight.attributes}


def prune_weights(module: ModuleOp, opts: PruneOptions, require_some: bool = True) -> list[LayerReport]:
    """Prune the weights of `module`'s nn functions; one report row per weight
    a product reads (frozen ones too, marked so)."""
    targets = find_targets(module)
    if require_some and not targets:
        raise NccError("prune: no matmul or convolution of the module reads a weight with values")
    chosen = selected_targets(targets, opts)
    effective = {name: t.weight.data * (t.mask.data if t.mask is not None else 1) for name, t in chosen.items()}
    notes = {name: "frozen" for name in targets if name not in chosen}
    keeps: dict[str, np.ndarray] = {}
    if opts.n_of_m is not None:
        n, m = opts.n_of_m
        for name, t in chosen.items():
            axis, why = _n_of_m_axis(t, m)
            if axis is None:
                notes[name] = why
            else:
                keeps[name] = _n_of_m_keep(effective[name], axis, n, m)
    else:
        keeps = dict(zip(effective, magnitude_keep(list(effective.values()), opts)))
    rows = []
    for name, t in targets.items():
        before = int(np.count_nonzero(t.weight.data * (t.mask.data if t.mask is not None else 1)))
        if name in keeps:
            _apply_mask(module, t, keeps[name])
        after = int(np.count_nonzero(t.weight.data * (t.mask.data if t.mask is not None else 1)))
        size = t.weight.data.size
        macs = sum(macs_of(r) for r in t.reads)
        rows.append(LayerReport(name, reads_description(t.reads), tuple(t.weight.data.shape), before, after,
                                macs * before // max(size, 1), macs * after // max(size, 1), notes.get(name, "")))
    return rows


def fold_masks(module: ModuleOp) -> int:
    """Each mask multiplied into its weight's data, its reads and the mask
    gone (in place): the pruned model as plain weights with zeros, as ONNX
    export writes it. Returns the masks folded."""
    masks = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp) and MASK_OF in op.attributes}
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    for mask in masks.values():
        target = weights.get(mask.attributes[MASK_OF].data)
        if target is not None and target.data is not None and mask.data is not None:
            target.data = (target.data * mask.data).astype(target.data.dtype)
    for fn in _functions(module):
        for op in [op for op in fn.walk() if isinstance(op, nn.BINARY_OPS["mul"])]:
            ref = op.operands[1].owner
            if isinstance(ref, nn.WeightRefOp) and ref.weight.root_reference.data in masks:
                op.results[0].replace_all_uses_with(op.operands[0])
                Rewriter.erase_op(op)
                if not ref.results[0].uses:
                    Rewriter.erase_op(ref)
    for mask in masks.values():
        Rewriter.erase_op(mask)
    return len(masks)
