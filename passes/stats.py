"""Counting a model exactly: parameters, multiply-accumulates, FLOPs and bytes
per op (`count`), for nn functions and neuron nets.

Conventions (the README's table states them for users):

* One multiply-accumulate (MAC) is 2 FLOPs. MACs are counted for the
  contractions only: matmul (M x N x K), conv (output elements x C/group x
  kernel), conv_transpose and conv_weight_grad (the same products seen from
  the other side), attention (q @ k^T and scores @ v), their fused, packed,
  sparse (stored nonzeros) and int8 forms.
* Every other op counts FLOPs per element (`PER_ELEMENT`): 1 per result
  element for an elementwise op (transcendentals included), the ops of a
  fused chain each, a fused product's bias, residual and activation each;
  softmax 5 per element (max, subtract, exp, sum, divide), layer_norm 7
  (mean, subtract, square, sum, scale by 1/sigma, weight, bias), rms_norm 4,
  batch_norm 2 (inference: a scale and a shift), pools one per window
  element read (an average pool and a mean one more per result: the
  division), reductions one per input element. Per-row scalars (a
  norm's square root, a softmax's reciprocal) are not counted.
* Data movement counts 0 FLOPs: reshape, transpose, slice, concat, pad,
  broadcast, gather/scatter, cast, quantize packing.
* A dynamic dimension (`?`) is the batch given to `count`.
* Parameters are the module's `nn.weight`s, each counted once however many
  ops read it (tied weights); trainable unless batch-norm statistics, an
  ncc.constant or not float (`weight_kinds`). Large constants in the code
  (`nn.constant`, e.g. a light model's ConstantOfShape weights) are
  counted apart, as constant elements.
* Neuron nets: parameters are the distinct weight and bias symbols; MACs are
  the synapses; FLOPs 2 per synapse, 1 per bias and 1 per activation.
* `bytes` of an op: its operands read once and its result written once
  (elements x width); arithmetic intensity = FLOPs / bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp, NeuronGraph
from ncc.dialects.nn import DYN
from ncc.passes.autodiff.core import weight_kinds
from ncc.reference import select_function  # the reference's rule for which function runs

MAC_FLOPS = 2


def _elements(v: SSAValue, batch: int) -> int:
    return math.prod(batch if d == DYN else d for d in nn.shape_of(v.type))


def _bytes(v: SSAValue, batch: int) -> int:
    t = v.type
    if not isinstance(t, TensorType):
        return 0
    return _elements(v, batch) * nn.numpy_dtype(t.element_type).itemsize


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(nn.shape_of(v.type))


# ---------------------------------------------------------------------------
# Multiply-accumulates of the contractions, per op class: (op, batch) -> MACs


def _matmul_macs(depth: Callable[[Operation], int]) -> Callable[[Operation, int], int]:
    return lambda op, batch: _elements(op.results[0], batch) * depth(op)


def _conv_macs(op: Operation, batch: int) -> int:
    """output elements x (C / group) x kernel: the weight's [M, C/g, k...] after its first axis."""
    return _elements(op.results[0], batch) * math.prod(_shape(op.operands[1])[1:])


def _packed_conv_macs(op: Operation, batch: int) -> int:
    """output elements x (C / group) x kernel, of the weight the packed operand holds."""
    if hasattr(op, "weight_type"):  # the int8 convolutions
        return _elements(op.results[0], batch) * math.prod(nn.shape_of(op.weight_type())[1:])
    return _elements(op.results[0], batch) * _shape(op.operands[0])[1] * math.prod(op.params.kernel)


def _transpose_macs(op: Operation, batch: int) -> int:
    """conv_transpose(x, w [C, M/g, k...]): each input element times M/g x kernel."""
    return _elements(op.operands[0], batch) * math.prod(_shape(op.operands[1])[1:])


def _weight_grad_macs(op: Operation, batch: int) -> int:
    """conv_weight_grad(x, dy) -> dw [M, C/g, k...]: each dy element times C/g x kernel."""
    return _elements(op.operands[1], batch) * math.prod(_shape(op.results[0])[1:])


def _attention_macs(op: Operation, batch: int) -> int:
    """q [..., S, D] @ k^T [..., D, T], then scores [..., S, T] @ v [..., T, Dv]."""
    q, v = _shape(op.query), _shape(op.values)
    scores = _elements(op.query, batch) // q[-1] * _shape(op.keys_t)[-1]
    return scores * (q[-1] + v[-1])


def _sparse_macs(op: Operation, batch: int) -> int:
    """rows x stored nonzeros (what the sparse kernel multiplies)."""
    rows = _elements(op.operands[0], batch) // _shape(op.operands[0])[-1]
    stored = len(op.params.rows) if isinstance(op, nn.SparseMatmulOp) else _elements(op.operands[1], batch)
    return rows * stored


def _last(i: int = 0) -> Callable[[Operation], int]:
    return lambda op: _shape(op.operands[i])[-1]


MACS: dict[type, Callable[[Operation, int], int]] = {
    nn.MatmulOp: _matmul_macs(_last()), nn.MatmulTransposeBOp: _matmul_macs(_last()),
    nn.MatmulTransposeAOp: _matmul_macs(lambda op: _shape(op.operands[0])[-2]),
    nn.FusedMatmulOp: _matmul_macs(_last()), nn.PackedMatmulOp: _matmul_macs(_last()),
    nn.QmatmulOp: _matmul_macs(_last()), nn.PackedQmatmulOp: _matmul_macs(_last()),
    nn.ConvOp: _conv_macs, nn.FusedConvOp: _conv_macs, nn.QconvOp: _conv_macs,
    nn.PackedConvOp: _packed_conv_macs, nn.PackedQconvOp: _packed_conv_macs,
    nn.PackedQconvNhwcOp: _packed_conv_macs,
    nn.ConvTransposeOp: _transpose_macs, nn.ConvWeightGradOp: _weight_grad_macs,
    nn.AttentionOp: _attention_macs,
    nn.SparseMatmulOp: _sparse_macs, nn.PackedSparseMatmulOp: _sparse_macs, nn.PackedSparseConvOp: _sparse_macs,
}


# ---------------------------------------------------------------------------
# FLOPs besides the MACs: per result element, or a rule of the op


def _epilogue(op: Operation) -> int:
    """A fused product's bias, residual and activation: one FLOP each per element."""
    parts = len(getattr(op, "epilogue", ()))
    parts += 1 if getattr(op.params, "activation", "identity") != "identity" else 0
    return parts


def _attention_extra(op: Operation) -> int:
    """Per score: the scale, the bias (if any) and softmax's 5."""
    return 1 + (op.bias is not None) + PER_ELEMENT[nn.SoftmaxOp]


def _fused_chain(op: Operation) -> int:
    return sum(1 for inner in op.block.ops if not isinstance(inner, nn.YieldOp))


def _window(op: Operation) -> int:
    return math.prod(op.params.kernel) + (1 if isinstance(op, nn.AvgPoolOp) else 0)


def _resize(op: Operation) -> int:
    """Interpolation weights per resized axis: nearest reads (0), linear 3 (two products and a sum), cubic 8."""
    axes = sum(a != b for a, b in zip(_shape(op.operands[0]), _shape(op.results[0])))
    return {"nearest": 0, "linear": 3, "cubic": 8}.get(op.params.mode, 0) * axes


# FLOPs per result element (int) or a rule giving them (op -> int); input-sized reductions below
PER_ELEMENT: dict[type, int | Callable[[Operation], int]] = {
    **{cls: 1 for cls in (*nn.UNARY_OPS.values(), *nn.BINARY_OPS.values())},
    **{cls: 1 for cls in (*nn.COMPARE_OPS.values(), *nn.LOGICAL_OPS.values())},
    nn.NotOp: 1, nn.SelectOp: 1, nn.IsNanOp: 1, nn.IsInfOp: 1,
    nn.SoftmaxOp: 5, nn.LogSoftmaxOp: 5, nn.LayerNormOp: 7, nn.RMSNormOp: 4, nn.BatchNormOp: 2,
    nn.QuantizeOp: 2, nn.DequantizeOp: 2, nn.RequantizeOp: 2,
    nn.FusedElementwiseOp: _fused_chain, nn.MaxPoolOp: _window, nn.AvgPoolOp: _window,
    nn.MaxPoolIndicesOp: _window, nn.ResizeOp: _resize, nn.AttentionOp: _attention_extra,
    **{cls: _epilogue for cls in (nn.FusedMatmulOp, nn.PackedMatmulOp, nn.FusedConvOp, nn.PackedConvOp,
                                  nn.PackedSparseMatmulOp, nn.PackedSparseConvOp)},
}
# One FLOP per input element: reductions and scans
PER_INPUT = (*nn.REDUCE_OPS.values(), *nn.ARG_REDUCE_OPS.values(), nn.CumSumOp)
MEAN = nn.REDUCE_OPS["reduce_mean"]
# Data movement and values: no arithmetic
MOVES = (nn.ReshapeOp, nn.BroadcastOp, nn.TransposeOp, nn.ConcatOp, nn.SliceOp, nn.PadOp,
         nn.CastOp, nn.GatherOp, nn.GatherElementsOp, nn.ScatterElementsOp, nn.ScatterNDOp,
         *nn.TRIANGLE_OPS.values(), nn.QpackOp, nn.QpackRowsOp, nn.ConstantOp, nn.WeightRefOp)


def counted_classes() -> set[type]:
    """Every op class some rule above counts (a test checks it covers the dialect)."""
    return {*MACS, *PER_ELEMENT, *PER_INPUT, *MOVES}


# ---------------------------------------------------------------------------
# The report


@dataclass
class OpCount:
    """One op: `params` are the elements of the weights first read by it."""

    op: str
    shape: tuple[int, ...]
    weights: list[str]
    params: int
    macs: int
    flops: int
    bytes: int

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass
class ModelCount:
    """Totals and rows of `count`: parameters by kind (trainable, and the
    rest by why not), constant elements, weight bytes, MACs, FLOPs, bytes."""

    batch: int
    rows: list[OpCount] = field(default_factory=list)
    trainable: int = 0
    non_trainable: dict[str, int] = field(default_factory=dict)
    constants: int = 0
    weight_bytes: int = 0
    synapses: int | None = None  # neuron nets

    @property
    def params(self) -> int:
        return self.trainable + sum(self.non_trainable.values())

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


def op_count(op: Operation, batch: int) -> tuple[int, int]:
    """(MACs, FLOPs) of one nn op at `batch`."""
    cls = type(op)
    macs = MACS[cls](op, batch) if cls in MACS else 0
    flops = MAC_FLOPS * macs
    if cls in PER_ELEMENT:
        rule = PER_ELEMENT[cls]
        flops += _elements(op.results[0], batch) * (rule if isinstance(rule, int) else rule(op))
    elif cls in PER_INPUT:  # a mean also divides each result once
        flops += _elements(op.operands[0], batch) + (_elements(op.results[0], batch) if cls is MEAN else 0)
    elif cls not in MACS and cls not in MOVES:
        raise NccError.at_op(op, f"ncc-stats has no count for '{op.name}'")
    return macs, flops


def _function_ops(module: ModuleOp, fn: func.FuncOp, seen: set[str]) -> list[Operation]:
    """The ops `fn` runs, callees' bodies inlined in call order (each call counts)."""
    ops: list[Operation] = []
    for op in fn.body.block.ops:
        if isinstance(op, func.CallOp):
            name = op.callee.root_reference.data
            callee = next((f for f in module.ops if isinstance(f, func.FuncOp) and f.sym_name.data == name
                           and f.body.blocks), None)
            if callee is None:
                raise NccError.at_op(op, f"func.call: no function body for @{name}")
            if name in seen:
                raise NccError.at_op(op, f"func.call: @{name} calls itself; ncc-stats counts straight-line code")
            ops += _function_ops(module, callee, seen | {name})
        elif not isinstance(op, func.ReturnOp):
            ops.append(op)
    return ops


def count(module: ModuleOp, function: str | None = None, batch: int = 1) -> ModelCount:
    """Parameters, MACs, FLOPs and bytes of `module`'s function (or neuron net)
    `function` (the only one, else `main`), with every `?` dimension `batch`."""
    if batch < 1:
        raise NccError(f"the batch must be at least 1, got {batch}")
    target = select_function(module, function)
    if isinstance(target, NetOp):
        return _count_net(target, batch)
    kinds = weight_kinds(module)
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    result = ModelCount(batch)
    counted: set[str] = set()
    for op in _function_ops(module, target, {target.sym_name.data}):
        if isinstance(op, (nn.WeightRefOp, nn.ConstantOp)):
            if isinstance(op, nn.ConstantOp) and op.data.size > 1:
                result.constants += op.data.size
            continue
        macs, flops = op_count(op, batch)
        read = [v.owner.sym for v in op.operands if isinstance(v.owner, nn.WeightRefOp)]
        fresh = [s for s in dict.fromkeys(read) if s not in counted]
        counted.update(fresh)
        params = sum(math.prod(nn.shape_of(weights[s].type)) for s in fresh)
        data = sum(_bytes(v, batch) for v in op.operands) + sum(_bytes(r, batch) for r in op.results)
        shape = tuple(batch if d == DYN else d for d in _shape(op.results[0])) if op.results else ()
        result.rows.append(OpCount(op.name, shape, read, params, macs, flops, data))
    for sym, w in weights.items():  # every weight, read or not, is a parameter of the model
        size = math.prod(nn.shape_of(w.type))
        kind = kinds[sym]
        if kind == "trainable":
            result.trainable += size
        else:
            result.non_trainable[kind] = result.non_trainable.get(kind, 0) + size
        result.weight_bytes += size * nn.numpy_dtype(w.type.element_type).itemsize
    return result


def _count_net(net: NetOp, batch: int) -> ModelCount:
    g = NeuronGraph.from_net(net)
    symbols = {s for ws in g.weights for s in ws} | {b for b in g.bias if b is not None}
    synapses = sum(len(ins) for ins in g.inputs)
    biases = sum(b is not None for b in g.bias)
    activations = sum(a is not None and a != "identity" for a in g.activation)
    row = OpCount("neuron.net", (batch, len(g.outputs)), [], len(symbols), batch * synapses,
                  batch * (MAC_FLOPS * synapses + biases + activations),
                  4 * (len(symbols) + batch * len(g.activation)))  # weights read, every neuron's value written
    return ModelCount(batch, [row], trainable=len(symbols), weight_bytes=4 * len(symbols), synapses=synapses)

