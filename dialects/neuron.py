"""The `neuron` dialect: a net written neuron by neuron, the adjacency formats' own level.

    neuron.net @net -> (n0c, n0d) {
      neuron.input n00
      neuron.input n01
      neuron.neuron n04 tanh(n00 * @w0004, n01 * @w0104)
      neuron.neuron n05 relu(n00 * @w0005 = 0.5, n01 * @w0105 = -1.0) + @b05 = 0.1
    }

One op per neuron. A neuron is named `n<hex index>`; its in-edges are terms
`n<i> * @<weight symbol>` in in-index order, each optionally with a value
(`= 0.5`), and an optional bias `+ @b<j>` (optionally `= value`). Weight
symbols are names, so two edges may share one weight. Without values, weights
are parameters, initialised by the seeded rule `initial_value` below.

The net computes, for every neuron j in topological order,
    n_j = f_j(sum_i n_i * w_ij + b_j)
Input neurons (`neuron.input`) take the net's input; the net's outputs are the
neurons listed after `->`, in that order.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntAttr,
    StringAttr,
    SymbolNameConstraint,
    f64,
    i64,
)
from xdsl.ir import Block, Dialect, Operation, Region
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import activations


class NeuronVerifyException(VerifyException):
    """A net-level verifier error that belongs to one neuron (reported at its line)."""

    def __init__(self, message: str, op: Operation):
        super().__init__(message)
        self.op = op


# ---------------------------------------------------------------------------
# Names: n04, w0004, b04 -- hex, zero-padded to the net's width.


def name_width(num_neurons: int) -> int:
    """2 hex digits up to 256 neurons, more after (as the adjacency format prints)."""
    return max(2, len(f"{max(num_neurons - 1, 0):x}"))


def neuron_name(index: int, width: int) -> str:
    return f"n{index:0{width}x}"


def weight_name(src: int, dst: int, width: int) -> str:
    return f"w{src:0{width}x}{dst:0{width}x}"


# Neurons named by labels (an adjacency matrix's row labels or column headers,
# as the seed's examples write them): `n10` (n and hex digits, perhaps sparse) or `a`
# (letters). The label is the neuron's name in the equations; its key is what
# follows `n` in an `n<digits>` label, else the label itself: activation
# `f<key>`, pre-activation `z<key>`. A weight is `w<key i><key j>` between two
# `n<digits>` neurons, else the two labels glued (`ae`: a feeds e).

_N_LABEL = re.compile(r"n[0-9a-fA-F]+")


def label_key(label: str) -> str:
    return label[1:] if _N_LABEL.fullmatch(label) else label


def labelled_weight_name(src: str, dst: str) -> str:
    if _N_LABEL.fullmatch(src) and _N_LABEL.fullmatch(dst):
        return f"w{label_key(src)}{label_key(dst)}"
    return src + dst


def bias_name(index: int, width: int) -> str:
    return f"b{index:0{width}x}"


_print_width: contextvars.ContextVar[int] = contextvars.ContextVar("neuron_print_width", default=2)


def _parse_neuron_ref(parser: Parser) -> int:
    pos = parser.pos
    ident = parser.parse_identifier(" (a neuron name such as n04)")
    try:
        if not ident.startswith("n") or len(ident) < 2:
            raise ValueError
        return int(ident[1:], 16)
    except ValueError:
        parser.raise_error(f"expected a neuron name such as n04, got '{ident}'", pos, parser.pos)


def initial_value(symbol: str, seed: int = 0) -> float:
    """The documented initial value of a weight that has none: uniform in [-1, 1),
    a pure function of (seed, symbol name) so that it does not depend on the
    order in which weights are visited and shared symbols get one value. Biases
    (symbols starting with `b`) start at 0."""
    if symbol.startswith("b"):
        return 0.0
    digest = hashlib.blake2b(f"{seed}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**63 - 1.0


# ---------------------------------------------------------------------------
# Ops


@irdl_op_definition
class InputOp(IRDLOperation):
    """An input neuron: its value is a column of the net's input."""

    name = "neuron.input"
    index = prop_def(IntAttr)

    def __init__(self, index: int):
        super().__init__(properties={"index": IntAttr(index)})

    def print(self, printer: Printer):
        printer.print_string(" " + neuron_name(self.index.data, _print_width.get()))

    @classmethod
    def parse(cls, parser: Parser) -> "InputOp":
        return cls(_parse_neuron_ref(parser))


@irdl_op_definition
class NeuronOp(IRDLOperation):
    """A computed neuron: n_j = f_j(sum_i n_i * w_ij [+ b_j])."""

    name = "neuron.neuron"
    index = prop_def(IntAttr)
    activation = prop_def(StringAttr)
    inputs = prop_def(DenseArrayBase)
    weights = prop_def(ArrayAttr[StringAttr])
    values = opt_prop_def(DenseArrayBase)
    bias = opt_prop_def(StringAttr)
    bias_value = opt_prop_def(FloatAttr)

    def __init__(self, index: int, activation: str, inputs: Sequence[int],
                 weights: Sequence[str], values: Sequence[float] | None = None,
                 bias: str | None = None, bias_value: float | None = None):
        props: dict = {
            "index": IntAttr(index),
            "activation": StringAttr(activation),
            "inputs": DenseArrayBase.from_list(i64, list(inputs)),
            "weights": ArrayAttr([StringAttr(w) for w in weights]),
        }
        if values is not None:
            props["values"] = DenseArrayBase.from_list(f64, [float(v) for v in values])
        if bias is not None:
            props["bias"] = StringAttr(bias)
        if bias_value is not None:
            props["bias_value"] = FloatAttr(float(bias_value), f64)
        super().__init__(properties=props)

    # Convenient views -------------------------------------------------------
    @property
    def in_indices(self) -> tuple[int, ...]:
        return self.inputs.get_values()

    @property
    def weight_symbols(self) -> tuple[str, ...]:
        return tuple(w.data for w in self.weights.data)

    @property
    def weight_values(self) -> tuple[float, ...] | None:
        return None if self.values is None else self.values.get_values()

    def verify_(self) -> None:
        if self.activation.data not in activations.BY_NAME:
            known = ", ".join(activations.BY_NAME)
            raise VerifyException(f"unknown activation '{self.activation.data}' (known: {known})")
        ins = self.in_indices
        if len(self.weights.data) != len(ins):
            raise VerifyException(
                f"has {len(ins)} in-indices but {len(self.weights.data)} weight symbols")
        if self.values is not None and len(self.values) != len(ins):
            raise VerifyException(f"has {len(ins)} in-indices but {len(self.values)} weight values")
        if self.index.data in ins:
            raise VerifyException(f"neuron {neuron_name(self.index.data, 2)} feeds itself (a self-loop)")
        if len(set(ins)) != len(ins):
            dup = next(i for i in ins if ins.count(i) > 1)
            raise VerifyException(f"in-index {neuron_name(dup, 2)} appears twice")
        vals = (self.weight_values or ()) + ((self.bias_value.value.data,) if self.bias_value else ())
        if not all(np.isfinite(vals)):
            raise VerifyException("weight and bias values must be finite numbers")
        if self.bias_value is not None and self.bias is None:
            raise VerifyException("has a bias value but no bias symbol")

    def print(self, printer: Printer):
        width = _print_width.get()
        values = self.weight_values
        terms = []
        for k, (src, sym) in enumerate(zip(self.in_indices, self.weight_symbols)):
            term = f"{neuron_name(src, width)} * @{sym}"
            if values is not None:
                term += f" = {_fmt(values[k])}"
            terms.append(term)
        text = f" {neuron_name(self.index.data, width)} {self.activation.data}({', '.join(terms)})"
        if self.bias is not None:
            text += f" + @{self.bias.data}"
            if self.bias_value is not None:
                text += f" = {_fmt(self.bias_value.value.data)}"
        printer.print_string(text)

    @classmethod
    def parse(cls, parser: Parser) -> "NeuronOp":
        index = _parse_neuron_ref(parser)
        act_pos = parser.pos
        act = parser.parse_identifier(" (an activation name)")
        if act not in activations.BY_NAME:
            parser.raise_error(
                f"unknown activation '{act}' (known: {', '.join(activations.BY_NAME)})",
                act_pos, parser.pos)
        inputs: list[int] = []
        weights: list[str] = []
        values: list[float] = []

        def parse_term():
            inputs.append(_parse_neuron_ref(parser))
            parser.parse_punctuation("*")
            weights.append(parser.parse_symbol_name().data)
            if parser.parse_optional_punctuation("=") is not None:
                values.append(_parse_signed_float(parser))

        terms_pos = parser.pos
        parser.parse_comma_separated_list(parser.Delimiter.PAREN, parse_term)
        if values and len(values) != len(inputs):
            parser.raise_error("either every weight of a neuron has a value or none has",
                               terms_pos, parser.pos)
        bias = bias_value = None
        if parser.parse_optional_punctuation("+") is not None:
            bias = parser.parse_symbol_name().data
            if parser.parse_optional_punctuation("=") is not None:
                bias_value = _parse_signed_float(parser)
        return cls(index, act, inputs, weights, values or None, bias, bias_value)


def _fmt(v: float) -> str:
    # Shortest round-trip repr, in MLIR's float syntax (which needs a '.' before an exponent).
    text = repr(float(v))
    if "e" in text and "." not in text:
        text = text.replace("e", ".0e")
    return text


def _parse_signed_float(parser: Parser) -> float:
    neg = parser.parse_optional_punctuation("-") is not None
    value = float(parser.parse_number())
    return -value if neg else value


@irdl_op_definition
class NetOp(IRDLOperation):
    """A net: one `neuron.input` or `neuron.neuron` op per neuron, indices 0..N-1."""

    name = "neuron.net"
    sym_name = prop_def(SymbolNameConstraint())
    outputs = prop_def(DenseArrayBase)
    body = region_def("single_block")
    traits = traits_def(NoTerminator(), SymbolOpInterface())

    def __init__(self, name: str, outputs: Sequence[int], ops: Sequence[Operation] | Region = (),
                 attributes: dict | None = None):
        region = ops if isinstance(ops, Region) else Region(Block(ops))
        super().__init__(
            properties={"sym_name": StringAttr(name),
                        "outputs": DenseArrayBase.from_list(i64, list(outputs))},
            regions=[region],
            attributes=attributes or {},
        )

    # Views ------------------------------------------------------------------
    @property
    def neurons(self) -> Iterator[InputOp | NeuronOp]:
        return iter(self.body.block.ops)  # type: ignore[return-value]

    @property
    def output_indices(self) -> tuple[int, ...]:
        return self.outputs.get_values()

    @property
    def spelling(self) -> str:
        attr = self.attributes.get("spelling")
        return attr.data if isinstance(attr, StringAttr) else "list"

    @property
    def labels(self) -> list[str] | None:
        """The neurons' names in index order when labels name them (`names`), else None."""
        attr = self.attributes.get("names")
        return [x.data for x in attr.data] if isinstance(attr, ArrayAttr) else None

    def graph(self) -> "NeuronGraph":
        return NeuronGraph.from_net(self)

    def verify_(self) -> None:
        by_index: dict[int, Operation] = {}
        w = name_width(len(self.body.block.ops))
        for op in self.body.block.ops:
            if not isinstance(op, (InputOp, NeuronOp)):
                raise NeuronVerifyException(f"'{op.name}' is not allowed in a neuron.net", op)
            idx = op.index.data
            if idx in by_index:
                raise NeuronVerifyException(f"neuron {neuron_name(idx, w)} is defined twice", op)
            by_index[idx] = op
        n = len(by_index)
        if n == 0:
            raise VerifyException("net has no neurons")
        for idx, op in by_index.items():
            if not 0 <= idx < n:
                raise NeuronVerifyException(
                    f"neuron {neuron_name(idx, w)} is out of range: a net of {n} neurons uses "
                    f"{neuron_name(0, w)}..{neuron_name(n - 1, w)}", op)
        for op in by_index.values():
            if isinstance(op, NeuronOp):
                for src in op.in_indices:
                    if src not in by_index:
                        raise NeuronVerifyException(
                            f"in-index {neuron_name(src, w)} of neuron {neuron_name(op.index.data, w)} is "
                            f"not a neuron of this net ({neuron_name(0, w)}..{neuron_name(n - 1, w)})", op)
        outs = self.output_indices
        for o in outs:
            if o not in by_index:
                raise VerifyException(f"output {neuron_name(o, w)} is not a neuron of this net")
        if len(set(outs)) != len(outs):
            raise VerifyException("an output neuron is listed twice")
        names = self.attributes.get("names")
        if names is not None:
            labels = self.labels
            if labels is None or len(labels) != n:
                raise VerifyException(f"`names` must be an array of {n} strings, one per neuron")
            if len(set(labels)) != n:
                dup = next(x for x in labels if labels.count(x) > 1)
                raise VerifyException(f"`names`: '{dup}' names two neurons")
        cycle = find_cycle({i: (op.in_indices if isinstance(op, NeuronOp) else ())
                            for i, op in by_index.items()})
        if cycle is not None:
            path = " -> ".join(neuron_name(i, w) for i in cycle)
            raise NeuronVerifyException(f"the net has a cycle: {path}", by_index[cycle[0]])

    def print(self, printer: Printer):
        width = name_width(len(self.body.block.ops))
        outs = ", ".join(neuron_name(o, width) for o in self.output_indices)
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string(f" -> ({outs})")
        if self.attributes:
            printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        token = _print_width.set(width)
        try:
            printer.print_region(self.body, print_entry_block_args=False, print_empty_block=False)
        finally:
            _print_width.reset(token)

    @classmethod
    def parse(cls, parser: Parser) -> "NetOp":
        name = parser.parse_symbol_name().data
        parser.parse_punctuation("->")
        outputs = parser.parse_comma_separated_list(parser.Delimiter.PAREN,
                                                    lambda: _parse_neuron_ref(parser))
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region()
        if not region.blocks:  # `{}` parses as a region without a block
            region.add_block(Block())
        return cls(name, outputs, region, attributes=dict(attrs.data) if attrs else None)


def find_cycle(preds: dict[int, Sequence[int]]) -> list[int] | None:
    """A cycle in the graph given by in-edges, as a path a -> ... -> a, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(preds, WHITE)
    for root in preds:
        if color[root] != WHITE:
            continue
        # Iterative DFS along in-edges; a grey node reached again closes a cycle.
        stack: list[tuple[int, int]] = [(root, 0)]
        color[root] = GREY
        while stack:
            node, k = stack[-1]
            ins = preds[node]
            if k < len(ins):
                stack[-1] = (node, k + 1)
                nxt = ins[k]
                if color.get(nxt, BLACK) == GREY:
                    path = [s for s, _ in stack]
                    # We walked edges backwards (dst -> src): reverse, then start the
                    # cycle at its smallest index so that the report is deterministic.
                    cyc = list(reversed(path[path.index(nxt):]))
                    k = cyc.index(min(cyc))
                    cyc = cyc[k:] + cyc[:k]
                    return cyc + [cyc[0]]
                if color.get(nxt, BLACK) == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
            else:
                color[node] = BLACK
                stack.pop()
    return None


# ---------------------------------------------------------------------------
# A plain-Python view of a net, for builders, passes and evaluation.


@dataclass
class NeuronGraph:
    """A net as arrays: neuron j has activation `activation[j]` (None for an
    input), in-indices `inputs[j]`, weight symbols `weights[j]`, optional
    weight values `values[j]`, optional bias symbol/value."""

    activation: list[str | None]
    inputs: list[list[int]]
    weights: list[list[str]] = field(default_factory=list)
    values: list[list[float] | None] = field(default_factory=list)
    bias: list[str | None] = field(default_factory=list)
    bias_value: list[float | None] = field(default_factory=list)
    outputs: list[int] | None = None
    spelling: str = "list"
    names: list[str] | None = None  # labels naming the neurons (None: n<hex index>)

    def __post_init__(self):
        n = len(self.activation)
        width = name_width(n)
        if self.names is not None and self.names == [neuron_name(j, width) for j in range(n)]:
            self.names = None
        if not self.weights:
            self.weights = [[weight_name(i, j, width) if self.names is None else
                             labelled_weight_name(self.names[i], self.names[j]) for i in ins]
                            for j, ins in enumerate(self.inputs)]
        if not self.values:
            self.values = [None] * n
        if not self.bias:
            self.bias = [None] * n
        if not self.bias_value:
            self.bias_value = [None] * n
        if self.outputs is None:
            fed = {i for ins in self.inputs for i in ins}
            self.outputs = [j for j in range(n) if j not in fed and self.activation[j] is not None]

    @property
    def size(self) -> int:
        return len(self.activation)

    @property
    def input_indices(self) -> list[int]:
        return [j for j, a in enumerate(self.activation) if a is None]

    def topological_order(self) -> list[int]:
        """Neurons so that every neuron comes after its in-neurons (Kahn; stable by index)."""
        n = self.size
        indeg = [len(ins) for ins in self.inputs]
        succs: list[list[int]] = [[] for _ in range(n)]
        for j, ins in enumerate(self.inputs):
            for i in ins:
                succs[i].append(j)
        ready = [j for j in range(n) if indeg[j] == 0]
        order: list[int] = []
        while ready:
            j = ready.pop()
            order.append(j)
            for k in succs[j]:
                indeg[k] -= 1
                if indeg[k] == 0:
                    ready.append(k)
        if len(order) != n:
            raise ValueError("the net has a cycle")
        return order

    def depths(self) -> list[int]:
        """Longest path from an input: inputs are depth 0."""
        depth = [0] * self.size
        for j in self.topological_order():
            if self.inputs[j]:
                depth[j] = 1 + max(depth[i] for i in self.inputs[j])
        return depth

    def weight_values(self, j: int, seed: int = 0) -> np.ndarray:
        """Neuron j's in-weights: the given values, else the seeded initial rule."""
        vals = self.values[j]
        if vals is None:
            vals = [initial_value(w, seed) for w in self.weights[j]]
        return np.asarray(vals, dtype=np.float64)

    def bias_of(self, j: int, seed: int = 0) -> float:
        if self.bias[j] is None:
            return 0.0
        if self.bias_value[j] is not None:
            return float(self.bias_value[j])
        return initial_value(self.bias[j], seed)

    @classmethod
    def from_net(cls, net: NetOp) -> "NeuronGraph":
        ops = sorted(net.neurons, key=lambda op: op.index.data)
        g = cls(
            activation=[op.activation.data if isinstance(op, NeuronOp) else None for op in ops],
            inputs=[list(op.in_indices) if isinstance(op, NeuronOp) else [] for op in ops],
            weights=[list(op.weight_symbols) if isinstance(op, NeuronOp) else [] for op in ops],
            values=[(list(op.weight_values) if op.weight_values is not None else None)
                    if isinstance(op, NeuronOp) else None for op in ops],
            bias=[op.bias.data if isinstance(op, NeuronOp) and op.bias is not None else None for op in ops],
            bias_value=[op.bias_value.value.data if isinstance(op, NeuronOp) and op.bias_value is not None
                        else None for op in ops],
            outputs=list(net.output_indices),
            spelling=net.spelling,
            names=net.labels,
        )
        return g

    def to_net(self, name: str = "net") -> NetOp:
        """Build the IR directly through the Python API (no text round trip)."""
        ops: list[Operation] = []
        for j in range(self.size):
            act = self.activation[j]
            if act is None:
                ops.append(InputOp(j))
            else:
                ops.append(NeuronOp(j, act, self.inputs[j], self.weights[j], self.values[j],
                                    self.bias[j], self.bias_value[j]))
        attrs = {} if self.spelling == "list" else {"spelling": StringAttr(self.spelling)}
        if self.names is not None:
            attrs["names"] = ArrayAttr([StringAttr(x) for x in self.names])
        return NetOp(name, self.outputs or [], ops, attributes=attrs)


Neuron = Dialect("neuron", [NetOp, InputOp, NeuronOp])
