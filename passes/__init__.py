"""ncc's passes. `ALL_PASSES` maps each pass name (as used by ncc-opt) to a loader of its class."""

from __future__ import annotations

import importlib
from typing import Callable

from xdsl.passes import ModulePass

# name -> "module:Class". Loaded lazily so that `ncc-opt --help` stays fast and a
# broken pass cannot break the others.
PASS_TABLE: dict[str, str] = {
    "layerize": "ncc.passes.layerize:LayerizePass",
    "fuse": "ncc.passes.fuse:FusePass",
    "fold-batch-norm": "ncc.passes.fold_batch_norm:FoldBatchNormPass",
    "fold-qdq": "ncc.passes.fold_qdq:FoldQdqPass",
    "fold-weights": "ncc.passes.fold_weights:FoldWeightsPass",
    "pack-weights": "ncc.passes.pack_weights:PackWeightsPass",
    "channels-last": "ncc.passes.channels_last:ChannelsLastPass",
    "prune": "ncc.passes.prune:PrunePass",
    "quantize": "ncc.passes.quantize:QuantizePass",
    "autodiff": "ncc.passes.autodiff:AutodiffPass",
    "lower-to-loops": "ncc.passes.lowering.nn_to_loops:LowerToLoopsPass",
    "neuron-to-loops": "ncc.passes.lowering.neuron_to_loops:NeuronToLoopsPass",
    "lower-to-llvm": "ncc.passes.lowering.loops_to_llvm:LowerToLLVMPass",
    "expand-math": "ncc.passes.lowering.expand_math:ExpandMathPass",
    "outline-loops": "ncc.passes.lowering.outline_loops:OutlineLoopsPass",
    "parallelize-loops": "ncc.passes.lowering.parallelize_loops:ParallelizeLoopsPass",
}


def _loader(target: str) -> Callable[[], type[ModulePass]]:
    module, _, cls = target.partition(":")
    return lambda: getattr(importlib.import_module(module), cls)


ALL_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    name: _loader(target) for name, target in PASS_TABLE.items()}
