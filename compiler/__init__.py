"""ncc: a neural-net compiler toolchain in Python.

    import ncc
    module = ncc.import_adjacency("net.txt")      # neuron dialect (a file path)
    print(ncc.emit_equations(module))             # n04 = f04( +n00*w0004 +n01*w0104) ...
    ncc.run_passes(module, "layerize,fuse")       # neuron -> nn, then fusion
    print(ncc.prune(module, sparsity=0.9))        # prune weights in place; the table of what went
    print(ncc.quantize(module, batches))          # int8 QDQ in place (calibrated); the table of what is int8
    print(ncc.fuse_stats(module))                 # what fuse would fuse: patterns, loop nests, arena bytes
    print(ncc.stats("model.onnx"))                 # parameters, MACs, FLOPs, memory (ncc-stats)
    ncc.emit_c("model.onnx", "net").write("out")   # out/net.c, out/net.h: portable C99
    module = ncc.import_onnx("model.onnx")         # nn dialect (a path, bytes or ModelProto)
    ncc.export_onnx(module, "net.onnx")            # an ONNX model (any nn module)
    y, = ncc.reference.run(module, [x])           # numpy reference semantics
    print(ncc.print_module(module))               # MLIR text
    model = ncc.compile("net.txt"); y = model(x)  # native code (ncc.runtime)
    loss, grads = model.value_and_grad(x, t)      # native backward kernels (ncc.runtime.training)
    ncc.optim.Adam(model).step(grads)             # native update kernels; ncc.train(...)
"""

from xdsl.dialects.builtin import ModuleOp

from ncc import reference
from ncc.adjacency import import_adjacency, import_adjacency_text, parse_adjacency
from ncc.diagnostics import NccError
from ncc.equations import emit_equations
from ncc.ir import make_context, parse_module, print_module, verify_module
from ncc.onnx import export_onnx
from ncc.onnx import import_onnx
from ncc.passes.fuse import fuse_stats as _fuse_stats
from ncc.passes.prune import prune as _prune_module
from ncc.passes.quantize import quantize as _quantize_module
from ncc.pipeline import run_passes
from ncc import optim
from ncc.runtime.build import compile
from ncc.runtime.compiled_model import CompiledModel
from ncc.runtime.optim import train
from ncc.stats_report import StatsReport, stats
from ncc.c_source import CSource, emit_c


def prune(target, **options):
    """Prune a module in place (its nn weights and neuron synapses; the
    `prune` pass, passes/prune), or a compiled model's parameters in place
    (`CompiledModel.prune`: tightening the masks it was compiled with).
    Returns the PruneReport; print it for the table."""
    if isinstance(target, CompiledModel):
        return target.prune(**options)
    if not isinstance(target, ModuleOp):
        raise NccError(f"prune takes a module (ncc.import_onnx, ncc.import_adjacency, ncc.parse_module) or a "
                       f"compiled model, got {type(target).__name__}")
    return _prune_module(target, **options)


def quantize(module, calibration_data=None, **options):
    """Quantize a module's matmuls and convolutions to int8 in place, as QDQ
    (the `quantize` pass, passes/quantize): `calibration_data` is an iterable
    of {input name: array} batches the float model runs on natively (static
    mode); options: mode ("static" | "dynamic"), method ("minmax" |
    "percentile" | "entropy"), per_channel, activation_type ("int8" |
    "uint8"), percentile, function. `ncc.compile` then runs the int8 layers
    on the integers; `ncc.export_onnx` writes the QDQ model. Returns the
    QuantizeReport; print it for the table of what is int8 and why not."""
    if not isinstance(module, ModuleOp):
        raise NccError(f"quantize takes a module (ncc.import_onnx, ncc.import_adjacency then layerize, "
                       f"ncc.parse_module), got {type(module).__name__}")
    return _quantize_module(module, calibration_data, **options)


def fuse_stats(module):
    """What the fuse pass would do to `module` (left unchanged): rewrites per
    pattern, and nn ops, loop nests and arena bytes (batch 1) before and after;
    print it for the summary (ncc-opt --fuse --fuse-stats prints the same)."""
    if not isinstance(module, ModuleOp):
        raise NccError(f"fuse_stats takes a module (ncc.import_onnx, ncc.parse_module), got {type(module).__name__}")
    return _fuse_stats(module)


__all__ = [
    "CompiledModel", "NccError", "compile", "emit_equations", "export_onnx", "import_adjacency",
    "fuse_stats", "import_adjacency_text", "stats", "StatsReport", "emit_c", "CSource", "import_onnx", "make_context", "optim", "parse_adjacency", "parse_module", "print_module", "prune", "quantize", "reference", "run_passes", "train", "verify_module",
]
