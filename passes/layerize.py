"""layerize: neuron -> nn. Group a net's neurons into layers of tensor ops.

Neurons are grouped by depth (longest path from an input) and activation: every
in-edge of a layer comes from a shallower layer, so layers run in depth order.
A layer whose neurons all read the same inputs is fully connected and becomes a
dense `nn.matmul`; otherwise an `nn.sparse_matmul` holds just its edges. Then
an `nn.add` of the biases (if any neuron has one) and the activation op.

    neuron.net @net -> (n03) {                 func.func @net(%x: tensor<?x2xf32>)
      neuron.input n00                             -> tensor<?x1xf32> {
      neuron.input n01              ==>          %w = nn.weight_ref @net_l1_w ...
      neuron.neuron n02 tanh(...)                %0 = nn.matmul %x, %w ...
      neuron.neuron n03 relu(n02 ...)            %1 = nn.tanh %0 ...
    }                                            ...

The function takes one `[batch, inputs]` tensor (input neurons in index order)
and returns one `[batch, outputs]` tensor (the net's outputs in listed order),
the batch dimension dynamic. A layer's input columns are taken whole from one
earlier tensor when they are exactly its columns; otherwise they are gathered
from the running concatenation of all earlier tensors (the "state").
Weights without values get the seeded initial rule (`neuron.initial_value`),
so the reference interpreter gives the same numbers before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import nn
from ncc.dialects.neuron import NetOp, NeuronGraph

# ---------------------------------------------------------------------------
# The plan: which layers, which columns, which weights (pure Python).


@dataclass
class Layer:
    neurons: list[int]  # output columns, in this order
    activation: str
    sources: list[int]  # the neurons feeding the layer: the matmul's input columns
    dense: bool
    weight: np.ndarray | None = None  # [len(sources), len(neurons)] when dense
    rows: list[int] = field(default_factory=list)  # sparse edges: source column,
    cols: list[int] = field(default_factory=list)  # output column,
    values: list[float] = field(default_factory=list)  # value
    bias: np.ndarray | None = None
    # The neuron-level symbol of each weight entry (flat, row-major; "" for the
    # zeros of a dense layer) and of each bias entry: where params live.
    weight_symbols: list[str] = field(default_factory=list)
    bias_symbols: list[str] = field(default_factory=list)


def plan_layers(g: NeuronGraph, seed: int = 0, dense_density: float = 1.0) -> list[Layer]:
    """The layers of `g` in evaluation order. A layer is dense when its edges fill
    at least `dense_density` of its [sources x neurons] matrix (default: only
    fully connected layers; absent edges are zeros in a dense weight)."""
    depth = g.depths()
    groups: dict[tuple[int, str], list[int]] = {}
    for j in sorted(range(g.size), key=lambda j: (depth[j], j)):
        if g.activation[j] is not None:
            groups.setdefault((depth[j], g.activation[j]), []).append(j)
    layers = []
    for (_, act), neurons in sorted(groups.items()):
        sources = sorted({i for j in neurons for i in g.inputs[j]})
        col_of = {i: c for c, i in enumerate(sources)}
        edges = sum(len(g.inputs[j]) for j in neurons)
        dense = edges >= dense_density * len(sources) * len(neurons)
        layer = Layer(neurons, act, sources, dense)
        if dense:
            layer.weight = np.zeros((len(sources), len(neurons)), np.float32)
            layer.weight_symbols = [""] * layer.weight.size
        for k, j in enumerate(neurons):
            vals = g.weight_values(j, seed)
            for i, v, sym in zip(g.inputs[j], vals, g.weights[j]):
                if dense:
                    layer.weight[col_of[i], k] = v
                    layer.weight_symbols[col_of[i] * len(neurons) + k] = sym
                else:
                    layer.rows.append(col_of[i])
                    layer.cols.append(k)
                    layer.values.append(float(v))
                    layer.weight_symbols.append(sym)
        if any(g.bias[j] is not None for j in neurons):
            layer.bias = np.array([g.bias_of(j, seed) for j in neurons], np.float32)
            layer.bias_symbols = [g.bias[j] or "" for j in neurons]
        layers.append(layer)
    return layers


# ---------------------------------------------------------------------------
# Emitting nn IR from the plan.


class _Emitter:
    """Builds the function body; tracks which tensor column holds each neuron."""

    def __init__(self, prefix: str, x: SSAValue, inputs: list[int]):
        self.prefix = prefix
        self.ops: list[Operation] = []
        self.weights: list[Operation] = []
        self.tensors: list[tuple[SSAValue, list[int]]] = [(x, inputs)]
        self.state: tuple[SSAValue, list[int]] | None = None  # concat of tensors[:k]
        self.state_len = 0

    def emit(self, op: Operation) -> SSAValue:
        self.ops.append(op)
        return op.results[0]

    def weight(self, suffix: str, data: np.ndarray) -> SSAValue:
        name = weight_symbol(self.prefix, suffix)
        self.weights.append(nn.WeightOp(name, data))
        return self.emit(nn.WeightRefOp(name, TensorType(f32, data.shape)))

    def columns(self, neurons: list[int]) -> SSAValue:
        """A [batch, len(neurons)] tensor holding `neurons` in that order."""
        for value, cols in self.tensors:
            if cols == neurons:
                return value
        self._extend_state()
        state, cols = self.state
        where = {n: c for c, n in enumerate(cols)}
        idx = np.array([where[n] for n in neurons], np.int64)
        if np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            return self.emit(nn.SliceOp(state, starts=[int(idx[0])], ends=[int(idx[0]) + len(idx)],
                                        axes=[1]))
        return self.emit(nn.GatherOp(state, self.emit(nn.ConstantOp(idx)), axis=1))

    def _extend_state(self) -> None:
        new = self.tensors[self.state_len:]
        if not new:
            return
        parts = ([self.state] if self.state else []) + new
        if len(parts) == 1:
            self.state = parts[0]
        else:
            value = self.emit(nn.ConcatOp([v for v, _ in parts], axis=1))
            self.state = (value, [n for _, cols in parts for n in cols])
        self.state_len = len(self.tensors)

    def layer(self, k: int, layer: Layer) -> None:
        x = self.columns(layer.sources)
        if layer.dense:
            y = self.emit(nn.MatmulOp(x, self.weight(f"l{k}_w", layer.weight)))
        else:
            values = self.weight(f"l{k}_w", np.array(layer.values, np.float32))
            y = self.emit(nn.SparseMatmulOp(x, values, layer.rows, layer.cols,
                                            len(layer.sources), len(layer.neurons)))
        if layer.bias is not None:
            y = self.emit(nn.AddOp(y, self.weight(f"l{k}_b", layer.bias)))
        if layer.activation != "identity":
            y = self.emit(nn.UNARY_OPS[layer.activation](y))
        self.tensors.append((y, layer.neurons))


def weight_symbol(net: str, suffix: str) -> str:
    """The nn.weight that holds a layer's weights (`l3_w`) or biases (`l3_b`)."""
    return f"{net}_{suffix}"


def param_places(net: NetOp, seed: int = 0, dense_density: float = 1.0,
                 ) -> dict[str, list[tuple[str, int]]]:
    """Where each weight and bias symbol of `net` lands in layerize's weights:
    symbol -> [(nn.weight symbol, flat index), ...] (several for a shared symbol)."""
    places: dict[str, list[tuple[str, int]]] = {}
    name = net.sym_name.data
    for k, layer in enumerate(plan_layers(net.graph(), seed, dense_density), start=1):
        for suffix, symbols in ((f"l{k}_w", layer.weight_symbols), (f"l{k}_b", layer.bias_symbols)):
            for index, sym in enumerate(symbols):
                if sym:
                    places.setdefault(sym, []).append((weight_symbol(name, suffix), index))
    return places


def layerize_net(net: NetOp, seed: int = 0, dense_density: float = 1.0,
                 ) -> tuple[list[Operation], func.FuncOp]:
    """The weights and the function computing `net` with nn ops."""
    g = net.graph()
    inputs = g.input_indices
    name = net.sym_name.data
    in_type = TensorType(f32, [nn.DYN, len(inputs)])
    out_type = TensorType(f32, [nn.DYN, len(g.outputs)])
    fn = func.FuncOp(name, ((in_type,), (out_type,)))
    x = fn.body.block.args[0]
    x.name_hint = "x"
    em = _Emitter(name, x, inputs)
    for k, layer in enumerate(plan_layers(g, seed, dense_density), start=1):
        em.layer(k, layer)
    out = em.columns(list(g.outputs))
    em.ops.append(func.ReturnOp(out))
    fn.body.block.add_ops(em.ops)
    return em.weights, fn


@dataclass(frozen=True)
class LayerizePass(ModulePass):
    """Lower every neuron.net to nn ops: one dense or sparse layer per depth."""

    name = "layerize"
    dense_density: float | int = 1.0  # a layer at least this full becomes a dense matmul
    seed: int = 0  # seed of the initial-value rule for weights without values

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not 0.0 < self.dense_density <= 1.0:
            raise PassFailedException(f"dense-density must be in (0, 1], got {self.dense_density}")
        for net in [o for o in op.walk() if isinstance(o, NetOp)]:
            weights, fn = layerize_net(net, self.seed, self.dense_density)
            Rewriter.insert_op([*weights, fn], InsertPoint.before(net))
            Rewriter.erase_op(net)
