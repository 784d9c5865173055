"""prune: remove weights by magnitude -- the nn level's weights of matmuls
and convolutions, the neuron level's synapses and the neurons they leave
without a purpose.

    ncc-opt model.mlir --prune="sparsity=0.9"                     90 % of every layer's weights
    ncc-opt model.mlir -p 'prune{sparsity=0.8 scope=global}'      80 % of all of them, smallest first
    ncc-opt model.mlir -p 'prune{threshold=0.01 report=true}'     |w| < 0.01; a table on stderr
    ncc-opt model.mlir -p 'prune{structure="2:4"}'                2 of every 4 along the products' sums
    report = ncc.prune(module, sparsity=0.9, frozen=["fc3.weight"])

nn (passes/prune/nn.py): a weight that a matmul or convolution reads
(directly or through transposes and reshapes) is pruned by a mask: the pass
zeroes its pruned entries and makes the product read `weight * mask`, with
the mask an internal weight (`@<name>_mask`, `ncc.mask_of`). The parameter
keeps its name, shape and layout; the reference, native code, autodiff (a
pruned entry's gradient is the mask's zero: every optimizer leaves it zero)
and ONNX export all see the same masked product. Pruning again tightens the
same mask.

neuron (passes/prune/neuron.py): synapses below the threshold (or the
smallest fraction) are removed, then, to a fixed point, a neuron left
without inputs becomes the constant f(bias) folded into its consumers'
biases, and a neuron that reaches no output is removed; input and output
neurons stay (they are the net's signature). The equations have fewer terms.

Options (`PruneOptions`; errors name the option):
  sparsity   fraction of the weights removed, in [0, 1): the smallest |w| first
  threshold  remove |w| < threshold instead (sparsity or threshold, not both)
  scope      layer (each weight tensor / each neuron on its own, the default)
             or global (one ranking over all of them)
  structure  unstructured (the default), "N:M" (keep the N largest of every M
             consecutive weights along the product's sum: the input features
             of a matmul, the input channels of a convolution; nn only), or
             channel (remove a layer's output channels of smallest norm, and
             shrink what reads them: a smaller dense model; passes/prune/channels.py)
  norm       l1 (the default) or l2: a channel's norm over its weights
  weights    only these weights (nn: weight symbols; neuron: synapse symbols)
  frozen     never these; nor a weight marked `ncc.frozen`, nor an internal one
  report     print the table of PruneReport to stderr (ncc-opt)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from ncc.diagnostics import NccError
from ncc.dialects.neuron import NetOp
from ncc.passes.prune.channels import prune_channels
from ncc.passes.prune.common import FROZEN_MARK, LayerReport, PruneOptions, PruneReport
from ncc.passes.prune.neuron import prune_net
from ncc.passes.prune.nn import prune_weights

__all__ = ["FROZEN_MARK", "LayerReport", "PruneOptions", "PrunePass", "PruneReport", "prune"]


def _names(names: str | Iterable[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def prune(module: ModuleOp, *, sparsity: float | None = None, threshold: float | None = None,
          scope: str = "layer", structure: str = "unstructured", weights=(), frozen=(),
          norm: str = "l1") -> PruneReport:
    """Prune `module` in place (its nn functions' weights and its neuron nets'
    synapses) and return the report. See the module docstring for the options."""
    opts = PruneOptions(sparsity, threshold, scope, structure, _names(weights), _names(frozen), norm)
    nets = [op for op in module.ops if isinstance(op, NetOp)]
    has_nn = any(isinstance(op, func.FuncOp) and op.body.blocks for op in module.ops)
    if not nets and not has_nn:
        raise NccError("prune: the module has no nn function and no neuron net")
    report = PruneReport()
    if has_nn and opts.structure == "channel":
        report.layers += prune_channels(module, opts)
    elif has_nn:
        report.layers += prune_weights(module, opts, require_some=not nets)
    for net in nets:
        report.layers += prune_net(module, net, opts)
    return report


@dataclass(frozen=True)
class PrunePass(ModulePass):
    """Prune weights by magnitude: nn matmul and conv weights through a mask (unstructured or N:M) or
    whole channels (the model shrinks), neuron synapses and the neurons left without a path."""

    name = "prune"

    sparsity: float | int | None = None
    threshold: float | int | None = None
    scope: str = "layer"
    structure: str = "unstructured"
    weights: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    norm: str = "l1"
    report: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        result = prune(op, sparsity=self.sparsity, threshold=self.threshold, scope=self.scope,
                       structure=self.structure, weights=self.weights, frozen=self.frozen, norm=self.norm)
        if self.report:
            print(result, file=sys.stderr)
