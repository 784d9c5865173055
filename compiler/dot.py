"""A model's graph as Graphviz DOT (ncc-translate --emit-dot): for an nn
function, a node per op (its name, result shape, the parameters it reads
first and its FLOPs at the batch; passes/stats.py counts them), the inputs
and outputs, and an edge per value; for a neuron net, a node per neuron (its
activation) and an edge per synapse (its weight symbol)."""

from __future__ import annotations

import math
import shutil
import subprocess

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp, NeuronGraph, name_width, neuron_name
from ncc.passes.stats import op_count
from ncc.reference import arg_names, result_names, select_function


def _quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as DOT's backslash-n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(t) -> str:
    return "x".join("?" if d == nn.DYN else str(d) for d in nn.shape_of(t))


def emit_dot(module: ModuleOp, function: str | None = None, batch: int = 1) -> str:
    """DOT text of `module`'s function (or neuron net) `function`."""
    target = select_function(module, function)
    if isinstance(target, NetOp):
        return _net_dot(target)
    return _function_dot(module, target, batch)


def _function_dot(module: ModuleOp, fn: func.FuncOp, batch: int) -> str:
    weights = {w.sym: w for w in module.ops if isinstance(w, nn.WeightOp)}
    lines = [f"digraph {_quote(fn.sym_name.data)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, color="#808080"];']
    node: dict = {}
    for i, (arg, name) in enumerate(zip(fn.body.block.args, arg_names(fn))):
        node[arg] = f"in{i}"
        lines.append(f"  in{i} [label={_quote(f'{name}  {_shape(arg.type)}')}, shape=oval, fillcolor=\"#dbeafe\"];")
    seen: set[str] = set()
    for k, op in enumerate(fn.body.block.ops):
        if isinstance(op, (nn.WeightRefOp, nn.ConstantOp)):
            continue  # a weight is a line of its reader's label; a literal an operand
        if isinstance(op, func.ReturnOp):
            for j, (v, name) in enumerate(zip(op.arguments, result_names(fn))):
                lines.append(f"  out{j} [label={_quote(f'{name}  {_shape(v.type)}')}, shape=oval, "
                             'fillcolor="#dcfce7"];')
                if v in node:
                    lines.append(f"  {node[v]} -> out{j};")
            continue
        node.update((r, f"op{k}") for r in op.results)
        lines.append(f"  op{k} [label={_quote(_label(op, weights, seen, batch))}];")
        for v in dict.fromkeys(op.operands):
            if v in node:
                lines.append(f"  {node[v]} -> op{k} [label={_quote(_shape(v.type))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(op: Operation, weights: dict, seen: set[str], batch: int) -> str:
    parts = [op.name.removeprefix("nn."), " x ".join(_shape(r.type) for r in op.results)]
    for v in op.operands:
        if isinstance(v.owner, nn.WeightRefOp):
            sym = v.owner.sym
            size = math.prod(nn.shape_of(weights[sym].type))
            parts.append(f"@{sym} {_shape(weights[sym].type)}" + ("" if sym in seen else f" ({size:,} params)"))
            seen.add(sym)
    macs, flops = op_count(op, batch)
    if flops:
        parts.append(f"{flops:,} FLOPs" + (f" ({macs:,} MACs)" if macs else ""))
    return "\n".join(parts)


def _net_dot(net: NetOp) -> str:
    g = NeuronGraph.from_net(net)
    width = name_width(len(g.activation))
    names = g.names or [neuron_name(j, width) for j in range(len(g.activation))]
    lines = [f"digraph {_quote(net.sym_name.data)} {{", "  rankdir=LR;",
             '  node [shape=circle, style=filled, fillcolor="#f4f4f4", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    outputs = set(g.outputs or [])
    for j, act in enumerate(g.activation):
        label = names[j] if act is None else f"{names[j]}\n{act}" + (f"\n+ @{g.bias[j]}" if g.bias[j] else "")
        color = "#dbeafe" if act is None else "#dcfce7" if j in outputs else "#f4f4f4"
        lines.append(f"  n{j} [label={_quote(label)}, fillcolor={_quote(color)}];")
    for j, ins in enumerate(g.inputs):
        for i, w in zip(ins, g.weights[j]):
            lines.append(f"  n{i} -> n{j} [label={_quote('@' + w)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text: str, path: str) -> None:
    """Write `dot_text` rendered by Graphviz's `dot` to the SVG file `path`."""
    exe = shutil.which("dot")
    if exe is None:
        raise NccError("rendering SVG needs Graphviz's `dot` on the PATH (apt install graphviz); "
                       "write the DOT text instead (-o FILE.dot)", path)
    done = subprocess.run([exe, "-Tsvg", "-o", path], input=dot_text, text=True, capture_output=True)
    if done.returncode != 0:
        raise NccError(f"dot failed: {done.stderr.strip()}", path)
