"""The equations emitter: a `neuron.net` as plain-text equations.

    emit_equations(net, direction="forward" | "backward" | "table") -> str

`net` is a `neuron.net` op, a module holding exactly one, or a `NeuronGraph`.
Names are hex indices padded to the net's width (`n04`, 3 digits past 256
neurons), or the labels that name the neurons of a labelled matrix (`n10`,
`a`; see `neuron.label_key`): neuron `e` has activation `fe` and sum `ze`,
its weight from `a` is `ae` (the seed's style for letter names), while `n10`
has `f10`, `z10` and `w0010` from `n00`. Weight and bias symbols are the ones
stored in the IR, so shared or renamed weights print as such. Every line ends
with a newline.

Forward -- one line per non-input neuron, in index order, its in-edges in
in-index order, and a neuron's bias (if it has one) as the last term:

    n04 = f04( +n00*w0004 +n01*w0104)
    n05 = f05( +n00*w0005 +n01*w0105 +b05)

`fj` is neuron j's activation. A net read from a matrix (`spelling =
"matrix"`) also gets a line per input neuron, `n00 = f00()`. The lines can be
evaluated top to bottom: when a neuron is fed by a higher index (the formats
allow any DAG), the order is the topological order that takes the smallest
ready index first -- which is index order whenever index order is a valid
evaluation order, as in every net whose in-edges come from lower indices.

Table -- the seed's term matrix ("another output"): a header of four
numbers, the neuron names, then one row per source neuron i (every neuron,
in index order): its name and one cell per destination j, `+ni*wij` where i
feeds j, else underscores, all cells as wide as the widest term (10
characters for the seed net):

    14 1 196 56
    n00 n01 n02 n03 n04 n05 n06 n07 n08 n09 n0a n0b n0c n0d
    n00 __________ __________ __________ __________ +n00*w0004 +n00*w0005 __________ ...

The four numbers are the neurons N, the weight blocks (1: the net's weights
are one N x N block), the cells N * N, and the flops of a forward pass at two
per synapse (a multiply and an add): for the seed net 14, 1, 196 and 56.

Backward -- the reverse-mode chain rule for a scalar loss L, where `dX`
stands for dL/dX, `zj` for the sum inside `fj( ... )` and `fj'` for the
derivative of fj. Two `%` comment lines head the text and name the given
cotangents: `dyj` = dL/dnj for each output neuron j. Then, for every neuron j
in the reverse of the forward lines' order:

    dn08 = +dz0c*w080c +dz0d*w080d      sum over the neurons k fed by j
                                        (plus `+dy08` if j is an output)
    dz08 = dn08*f08'(z08)               (not for input neurons)
    dw0408 = +dz08*n04                  one per in-edge ...
    db08 = +dz08                        ... and for the bias, if any

`dnj = 0` when nothing depends on j. A weight or bias symbol shared by
several edges gets one line summing all its uses, printed once all of them
are known. Input neurons get `dn` lines: the gradient with respect to the
net's inputs.
"""

from __future__ import annotations

import heapq

from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.dialects.neuron import NetOp, NeuronGraph, label_key, name_width, neuron_name

DIRECTIONS = ("forward", "backward", "table")


def _graph(net: NetOp | ModuleOp | NeuronGraph) -> NeuronGraph:
    if isinstance(net, NeuronGraph):
        return net
    if isinstance(net, ModuleOp):
        nets = [op for op in net.ops if isinstance(op, NetOp)]
        if len(nets) != 1:
            raise NccError(f"expected a module holding one neuron.net, found {len(nets)}")
        net = nets[0]
    return NeuronGraph.from_net(net)


def _order(g: NeuronGraph) -> list[int]:
    """A topological order, taking the smallest ready index first."""
    indeg = [len(ins) for ins in g.inputs]
    succs: list[list[int]] = [[] for _ in range(g.size)]
    for j, ins in enumerate(g.inputs):
        for i in ins:
            succs[i].append(j)
    ready = [j for j in range(g.size) if indeg[j] == 0]
    order = []
    while ready:
        j = heapq.heappop(ready)
        order.append(j)
        for k in succs[j]:
            indeg[k] -= 1
            if indeg[k] == 0:
                heapq.heappush(ready, k)
    if len(order) != g.size:
        raise NccError("the net has a cycle")
    return order


def _forward(g: NeuronGraph, nm: list[str], x: list[str]) -> list[str]:
    lines = []
    for j in _order(g):
        if g.activation[j] is None and g.spelling != "matrix":
            continue
        terms = "".join(f" +{nm[i]}*{w}" for i, w in sorted(zip(g.inputs[j], g.weights[j])))
        if g.bias[j] is not None:
            terms += f" +{g.bias[j]}"
        lines.append(f"{nm[j]} = f{x[j]}({terms})")
    return lines


def _table(g: NeuronGraph, nm: list[str], x: list[str]) -> list[str]:
    """The seed's term matrix: a row per source neuron, a cell per destination."""
    term = {(i, j): f"+{nm[i]}*{w}" for j in range(g.size) for i, w in zip(g.inputs[j], g.weights[j])}
    width = max((len(t) for t in term.values()), default=10)
    synapses = len(term)
    lines = [f"{g.size} 1 {g.size * g.size} {2 * synapses}", " ".join(nm)]
    for i in range(g.size):
        cells = [term[i, j].ljust(width) if (i, j) in term else "_" * width for j in range(g.size)]
        lines.append(f"{nm[i]} " + " ".join(cells))
    return lines


def _backward(g: NeuronGraph, nm: list[str], x: list[str]) -> list[str]:
    outs = g.outputs or []
    lines = ["% backward: reverse-mode chain rule for a loss L; dX = dL/dX, zj = the sum in fj( ... )",
             "% given: " + " ".join(f"dy{x[o]}" for o in outs) + " = dL/dn of the outputs "
             + " ".join(nm[o] for o in outs)]
    consumers: list[list[tuple[int, str]]] = [[] for _ in range(g.size)]
    uses: dict[str, int] = {}
    for j in range(g.size):
        for i, w in zip(g.inputs[j], g.weights[j]):
            consumers[i].append((j, w))
            uses[w] = uses.get(w, 0) + 1
        if g.bias[j] is not None:
            uses[g.bias[j]] = uses.get(g.bias[j], 0) + 1
    pending: dict[str, list[str]] = {}

    def grad(symbol: str, term: str):  # a parameter's line, once all its uses are in
        pending.setdefault(symbol, []).append(term)
        if len(pending[symbol]) == uses[symbol]:
            lines.append(f"d{symbol} =" + "".join(pending.pop(symbol)))

    out_set = set(outs)
    for j in reversed(_order(g)):
        terms = [f" +dy{x[j]}"] if j in out_set else []
        terms += [f" +dz{x[k]}*{w}" for k, w in sorted(consumers[j])]
        lines.append(f"d{nm[j]} =" + ("".join(terms) or " 0"))
        if g.activation[j] is None:
            continue
        lines.append(f"dz{x[j]} = d{nm[j]}*f{x[j]}'(z{x[j]})")
        for i, w in sorted(zip(g.inputs[j], g.weights[j])):
            grad(w, f" +dz{x[j]}*{nm[i]}")
        if g.bias[j] is not None:
            grad(g.bias[j], f" +dz{x[j]}")
    return lines


_EMITTERS = {"forward": _forward, "backward": _backward, "table": _table}


def emit_equations(net: NetOp | ModuleOp | NeuronGraph, direction: str = "forward") -> str:
    """The net's forward or backward equations (see the module docstring)."""
    if direction not in _EMITTERS:
        raise NccError(f"unknown direction '{direction}' (expected one of: {', '.join(DIRECTIONS)})")
    g = _graph(net)
    w = name_width(g.size)
    names = g.names or [neuron_name(j, w) for j in range(g.size)]
    return "".join(line + "\n" for line in _EMITTERS[direction](g, names, [label_key(n) for n in names]))


__all__ = ["DIRECTIONS", "emit_equations"]
