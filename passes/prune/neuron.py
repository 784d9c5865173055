"""prune at the neuron level: synapses, then the neurons they leave without a purpose.

    neuron.net @net -> (n04) {                                 neuron.net @net -> (n03) {
      neuron.input n00                                           neuron.input n00
      neuron.input n01                                           neuron.input n01
      neuron.neuron n02 relu(n00 * @w0002 = 0.01) + @b02 = 1.0   neuron.neuron n02 tanh(n00 * @w0003 = 1.0, n01 * @w0103 = 0.5)
      neuron.neuron n03 tanh(n00 * @w0003 = 1.0,          ==>                           + @b03 = 2.2
                             n01 * @w0103 = 0.5,                 neuron.neuron n03 identity(n02 * @w0304 = 2.0)
                             n02 * @w0203 = 1.2)               }
      neuron.neuron n04 identity(n03 * @w0304 = 2.0)
    }

(threshold=0.1: w0002 goes; n02 has no input left, so it is the constant
relu(1.0) = 1.0, folded into n03's bias as 1.2 x 1.0 (a bias symbol made
for it, `b03`, when n03 had none); n02 then feeds nothing and goes; the
neurons are numbered again in order.) Shared weight symbols are pruned as
one. Input neurons stay, used or not (they are the net's input columns),
and so do the outputs.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.rewriter import Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import activations
from ncc.dialects.neuron import NetOp, NeuronGraph, NeuronOp, bias_name, name_width, neuron_name
from ncc.passes.prune.common import LayerReport, PruneOptions, magnitude_keep


def _check(net: NetOp, g: NeuronGraph, opts: PruneOptions) -> None:
    if opts.structure != "unstructured":
        raise NccError.at_op(net, f"prune: structure {opts.structure} is for nn weights; a neuron net "
                                  f"prunes synapses one by one (run layerize first)")
    for op in net.neurons:
        if isinstance(op, NeuronOp) and op.in_indices and op.weight_values is None:
            raise NccError.at_op(op, f"prune: neuron {neuron_name(op.index.data, name_width(g.size))} has no "
                                     f"weight values to rank (prune a trained net, or give the values)")
    symbols = {s for ws in g.weights for s in ws}
    for option in ("weights", "frozen"):
        unknown = [n for n in getattr(opts, option) if n not in symbols]
        if unknown:
            raise NccError.at_op(net, f"prune: option {option}: {', '.join(unknown)} "
                                      f"{'is not a synapse' if len(unknown) == 1 else 'are not synapses'} "
                                      f"of net @{net.sym_name.data}")


def _pruned_symbols(g: NeuronGraph, opts: PruneOptions) -> set[str]:
    """The synapse symbols that go: one value per symbol (shared edges rank once);
    scope layer ranks each neuron's synapses on its own, global all of them."""
    value = {s: v for ws, vs in zip(g.weights, g.values) for s, v in zip(ws, vs or ())}
    allowed = [s for s in value if (not opts.weights or s in opts.weights) and s not in opts.frozen]
    allowed_set = set(allowed)
    groups = [allowed] if opts.scope == "global" or opts.threshold is not None else \
        [[s for s in dict.fromkeys(ws) if s in allowed_set] for ws in g.weights]
    gone: set[str] = set()
    for group, keep in zip(groups, magnitude_keep([np.array([value[s] for s in grp]) for grp in groups], opts)):
        gone |= {s for s, k in zip(group, keep) if not k}
    return gone


def _fold_constants_and_dead(g: NeuronGraph) -> int:
    """To a fixed point: a neuron without inputs (not an output) is the constant
    f(bias), added to each consumer's bias times the synapse's value; a
    neuron no output depends on goes. Returns the neurons folded."""
    outputs = set(g.outputs)
    symbols = {s for ws in g.weights for s in ws} | {b for b in g.bias if b}
    width = name_width(g.size)
    folded = 0
    changed = True
    while changed:
        changed = False
        for j in range(g.size):
            if g.activation[j] is None or g.inputs[j] or j in outputs:
                continue
            consumers = [k for k in range(g.size) if j in g.inputs[k]]
            if not consumers:
                continue
            c = float(activations.BY_NAME[g.activation[j]].fn(np.float64(g.bias_of(j))))
            for k in consumers:
                e = g.inputs[k].index(j)
                if g.bias[k] is None:
                    name, n = bias_name(k, width), 0
                    while name in symbols:
                        name, n = f"{bias_name(k, width)}_{n}", n + 1
                    g.bias[k], g.bias_value[k] = name, 0.0
                    symbols.add(name)
                g.bias_value[k] = g.bias_of(k) + g.values[k][e] * c
                del g.inputs[k][e], g.weights[k][e], g.values[k][e]
            folded += 1
            changed = True
    return folded


def _live(g: NeuronGraph) -> list[int]:
    """Neurons kept: inputs, outputs, and those an output depends on."""
    live = set(g.outputs)
    stack = list(g.outputs)
    while stack:
        for i in g.inputs[stack.pop()]:
            if i not in live:
                live.add(i)
                stack.append(i)
    return [j for j in range(g.size) if j in live or g.activation[j] is None]


def prune_net(module: ModuleOp, net: NetOp, opts: PruneOptions) -> list[LayerReport]:
    """Prune one neuron net of `module` (replaced by the pruned net); one report row."""
    g = net.graph()
    _check(net, g, opts)
    synapses_before = sum(len(ins) for ins in g.inputs)
    neurons_before = g.size
    gone = _pruned_symbols(g, opts)
    for j in range(g.size):
        if g.values[j] is None:
            continue
        kept = [e for e, s in enumerate(g.weights[j]) if s not in gone]
        g.inputs[j], g.weights[j], g.values[j] = ([seq[e] for e in kept] for seq in
                                                  (g.inputs[j], g.weights[j], g.values[j]))
    folded = _fold_constants_and_dead(g)
    live = _live(g)
    new_index = {old: new for new, old in enumerate(live)}
    pruned = NeuronGraph(
        activation=[g.activation[j] for j in live],
        inputs=[[new_index[i] for i in g.inputs[j]] for j in live],
        weights=[g.weights[j] for j in live], values=[g.values[j] for j in live],
        bias=[g.bias[j] for j in live], bias_value=[g.bias_value[j] for j in live],
        outputs=[new_index[o] for o in g.outputs], spelling=g.spelling,
        names=None if g.names is None else [g.names[j] for j in live])
    new_net = pruned.to_net(net.sym_name.data)
    Rewriter.replace_op(net, new_net)
    synapses_after = sum(len(ins) for ins in pruned.inputs)
    note = f"neurons {neurons_before} -> {pruned.size}" + (f", {folded} folded into biases" if folded else "")
    return [LayerReport(f"@{net.sym_name.data}", "neuron.net synapses", (synapses_before,), synapses_before,
                        synapses_after, synapses_before, synapses_after, note)]
