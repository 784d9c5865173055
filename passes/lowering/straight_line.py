"""The building blocks of straight-line neuron kernels, shared by the forward
(neuron_to_loops.py) and the backward (neuron_backward.py): the flat
parameter buffer and its names, the neurons the outputs need, chunks of about
CHUNK_EDGES edges, the kernel builder and the straight-line code of one row."""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import activations, nn
from ncc.dialects.neuron import NetOp, NeuronGraph, name_width, neuron_name
from ncc.passes.lowering.scalar import ArithScalar

DYN = nn.DYN


# ---------------------------------------------------------------------------
# Parameters: one flat buffer, named as in the equations.


def params_symbol(net_name: str) -> str:
    """The module-level weight holding a neuron kernel's parameters."""
    return f"{net_name}.params"


class SharedValueConflict(ValueError):
    def __init__(self, neuron: int, message: str):
        super().__init__(message)
        self.neuron = neuron


def neuron_params(g: NeuronGraph, seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """(names, initial values, slot of each name) of a net's flat parameter buffer.

    A symbol shared by several edges is one parameter, so its values must agree:
    a conflict raises SharedValueConflict naming the symbol and both neurons."""
    slot: dict[str, int] = {}
    values: list[float] = []
    first_use: list[int] = []

    def add(sym: str, value: float, j: int) -> None:
        if sym not in slot:
            slot[sym] = len(values)
            values.append(value)
            first_use.append(j)
        elif np.float32(values[slot[sym]]) != np.float32(value):
            w = name_width(g.size)
            raise SharedValueConflict(j, 
                f"symbol @{sym} is shared but has two values: {values[slot[sym]]} at "
                f"{neuron_name(first_use[slot[sym]], w)} and {value} at {neuron_name(j, w)} "
                f"(a shared symbol is one parameter)")

    for j in range(g.size):
        for sym, v in zip(g.weights[j], g.weight_values(j, seed)):
            add(sym, float(v), j)
    for j in range(g.size):
        if g.bias[j] is not None:
            add(g.bias[j], g.bias_of(j, seed), j)
    return list(slot), np.array(values, np.float32), slot


def net_params(net: NetOp, g: NeuronGraph, seed: int = 0
               ) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """neuron_params of a net op; a conflict is a pass error at the neuron's line."""
    try:
        return neuron_params(g, seed)
    except SharedValueConflict as e:
        err = PassFailedException(str(e))
        err.op = next(n for n in net.neurons if n.index.data == e.neuron)  # reported at its line
        raise err from None


# ---------------------------------------------------------------------------
# The kernel


def needed_neurons(g: NeuronGraph) -> list[int]:
    """The neurons the outputs depend on, in topological order."""
    live = set(g.outputs or [])
    depth = g.depths()
    order = sorted(range(g.size), key=lambda j: (depth[j], j))  # readable: layer by layer
    for j in reversed(order):
        if j in live:
            live.update(g.inputs[j])
    return [j for j in order if j in live]


# A basic block of thousands of values makes LLVM slow (superlinear: register
# allocation and scheduling; 5,500 edges in one block took 20 s at O3) and
# spills most values anyway. So a large net is split into chunks of about
# CHUNK_EDGES edges in topological order, each its own small loop over a tile of
# TILE_ROWS rows; the rows' inputs, the outputs and every value a later chunk
# reads go through a tile buffer in the arena (`tile[slot][row]`: unit stride
# along the batch, in L1/L2), filled and drained by copy loops. A net of one
# chunk -- every small net -- is a single loop over the batch reading x and
# writing y in place, no arena: measured faster than the tile even for wide rows
# (24 outputs: 47 vs 33 M rows/s), where LLVM's loop vectorizer gives up (too
# many address overflow checks) and its SLP vectorizer pairs neurons instead.
CHUNK_EDGES = 256
TILE_ROWS = 64


def chunk_neurons(g: NeuronGraph, neurons: list[int], max_edges: int = CHUNK_EDGES) -> list[list[int]]:
    """Consecutive groups of `neurons` (topological order) of at most `max_edges` edges."""
    chunks: list[list[int]] = [[]]
    edges = 0
    for j in neurons:
        k = max(len(g.inputs[j]), 1)
        if chunks[-1] and edges + k > max_edges:
            chunks.append([])
            edges = 0
        chunks[-1].append(j)
        edges += k
    return chunks


class KernelBuilder:
    """Ops of one kernel: shared constants go before the loops, each chunk's
    straight-line body into its own block."""

    def __init__(self):
        self.pre: list[Operation] = []
        self.ops: list[Operation] = []
        self._index: dict[int, SSAValue] = {}
        self._float: dict[float, SSAValue] = {}
        self.scalar = ArithScalar(self.emit, self.const)  # the activation table's builder

    def emit(self, op: Operation) -> SSAValue:
        self.ops.append(op)
        return op.results[0] if op.results else None

    def index(self, k: int) -> SSAValue:
        if k not in self._index:
            self.pre.append(op := arith.ConstantOp(IntegerAttr(k, IndexType())))
            self._index[k] = op.result
        return self._index[k]

    def const(self, v: float) -> SSAValue:
        if v not in self._float:
            self.pre.append(op := arith.ConstantOp(FloatAttr(v, f32)))
            self._float[v] = op.result
        return self._float[v]

    def loop(self, lb: SSAValue, ub: SSAValue, step: SSAValue, hint: str,
             body: Callable[[SSAValue], None]) -> None:
        """scf.for lb..ub with the ops `body(iv)` emits."""
        outer, self.ops = self.ops, []
        block = Block(arg_types=[IndexType()])
        block.args[0].name_hint = hint
        body(block.args[0])
        block.add_ops([*self.ops, scf.YieldOp()])
        self.ops = outer
        self.emit(scf.ForOp(lb, ub, step, [], Region(block)))


class RowCode:
    """The straight-line code of chunks of neurons for one batch row: `read(i)`
    gives the op loading neuron i when it is computed elsewhere (an input, a
    value crossing chunks), each parameter is loaded once, at its first use.
    `value[j]` and `z[j]` (the sum inside the activation) of the neurons
    emitted stay available to the code that follows (the backward)."""

    def __init__(self, B: KernelBuilder, g: NeuronGraph, params: SSAValue, slot: dict[str, int],
                 read: Callable[[int], Operation]):
        self.B, self.g, self.params, self.slot, self.read = B, g, params, slot, read
        self.value: dict[int, SSAValue] = {}
        self.z: dict[int, SSAValue] = {}
        self.loaded: dict[str, SSAValue] = {}

    def get(self, i: int) -> SSAValue:
        if i not in self.value:
            self.value[i] = self.B.emit(self.read(i))
        return self.value[i]

    def param(self, sym: str) -> SSAValue:
        if sym not in self.loaded:
            self.loaded[sym] = self.B.emit(memref.LoadOp.get(self.params,
                                                             [self.B.index(self.slot[sym])]))
        return self.loaded[sym]

    def forward(self, chunk: list[int],
                write: Callable[[int, SSAValue], Operation | None] = lambda j, v: None) -> None:
        """One multiply-add per edge, the activation inlined; `write(j, v)` gives
        the op keeping a value another loop needs (or None), emitted right after it."""
        B, g = self.B, self.g
        for j in chunk:
            z = self.param(g.bias[j]) if g.bias[j] is not None else None
            for i, sym in zip(g.inputs[j], g.weights[j]):
                m = B.emit(arith.MulfOp(self.get(i), self.param(sym)))
                z = m if z is None else B.emit(arith.AddfOp(z, m))
            self.z[j] = B.const(0.0) if z is None else z
            self.value[j] = activations.BY_NAME[g.activation[j]].emit(B.scalar, self.z[j])
            if (store := write(j, self.value[j])) is not None:
                B.emit(store)
