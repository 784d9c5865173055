"""`ncc.compile`: a model source to a `CompiledModel`, stage by stage.

    load_source      a path, text, ModuleOp or onnx.ModelProto as a fresh module
    lower_to_loops   neuron nets and nn functions to loop-level kernels
    native_library   (runtime/native.py) the kernel's native code, cached or compiled
    CompiledModel    (runtime/compiled_model.py) the kernel bound to its weights: the call path

Pipeline:

    neuron.net --neuron-to-loops{mode}--> kernel            (mode neuron)
               \\-> layerize --> nn --(fuse)--> lower-to-loops --> kernel   (mode layers)
    nn funcs   --(fuse)--> lower-to-loops --> kernel
    kernel --lower-to-llvm--> llvm dialect --engine--> native code (or the on-disk cache)

`neuron_mode="auto"` lets `choose_neuron_lowering` pick by size and density.
A model compiled from an nn module, an ONNX model or a neuron net keeps its
unlowered source for training (runtime/training.py, one `Training` subclass
per kind of source). Compile errors are `NccError`s.
"""

from __future__ import annotations

import hashlib
import io
import contextlib
import gc
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, UnitAttr

from ncc.adjacency import import_adjacency, import_adjacency_text
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import CONSTANT_MARK
from ncc.dialects.neuron import NetOp
from ncc.ir import parse_module, print_module
from ncc.onnx import import_onnx
from ncc.passes.quantize import set_runner
from ncc.passes.fold_weights import fold_weights
from ncc.passes.layerize import param_places
from ncc.passes.lowering.abi import ARG_ROLES, ArgRole, KernelABI
from ncc.passes.lowering.neuron_to_loops import choose_neuron_lowering
from ncc.pipeline import check_flat, run_passes
from ncc.reference import pick_function
from ncc.runtime.calling import ArgSpec
from ncc.runtime.compiled_model import CompiledModel
from ncc.runtime.cache import CompileCache, sources_fingerprint
from ncc.runtime.engine import NativeLibrary, kernels_called, library_fingerprint, openmp_runtime
from ncc.runtime.native import COMPILE_LOCK, Clock, link_gemm, native_library, open_cache
from ncc.runtime.training import TRAINING_KINDS

NEURON_MODES = ("auto", "neuron", "layers")
_MLIR_MARKERS = ("builtin.module", "module", "func.func", "neuron.net", "nn.weight", "\"")


# ---------------------------------------------------------------------------
# Compiling


def compile(source: Any, *, fuse: bool = True, neuron_mode: str = "auto",
            cache: bool | str | os.PathLike = True, function: str | None = None,
            name: str = "net", constants: Mapping[str, Any] | None = None,
            threads: int | None = None) -> CompiledModel:
    """Compile `source` to native code. `fuse` runs the fuse pass on nn code;
    `neuron_mode` is auto|neuron|layers for neuron nets; `cache` is True (the
    default directory, see ncc.runtime.cache), False, or a cache directory;
    `function` picks the kernel when a module has several; `name` names a net
    read from adjacency text; `constants` (ONNX models only) maps graph inputs
    to values imported as constants (`ncc.import_onnx`): the model's inputs
    are then the others. `threads`: the OpenMP team of each large matmul or
    convolution (a GEMM) and of the loops parallelize-loops proves
    independent (default: the cores this process may run on; 1 without
    libgomp); results are the same for any count."""
    if neuron_mode not in NEURON_MODES:
        raise NccError(f"neuron_mode must be one of {', '.join(NEURON_MODES)}, got '{neuron_mode}'")
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise NccError(f"threads must be an integer >= 1, got {threads!r}")
    with COMPILE_LOCK, _compiling():  # building xDSL IR is not thread-safe: one compile at a time
        return _compile(source, fuse, neuron_mode, cache, function, name, constants, threads)


@contextlib.contextmanager
def _compiling():
    """What a compile turns off, and back on after it:
      * cyclic garbage collection: the IR is millions of small objects, and
        each full collection the parser's allocations trigger walks every
        live one (of the models compiled before too: a cached compile of
        light_resnet50 after its cold compile spent more than half its time
        there); reference counting still frees what dies;
      * numpy's transparent huge pages for new arrays, where the kernel's
        THP defrag setting makes a page fault compact memory first: 100 MB
        of fresh weights took 0.15-0.7 s to fault in instead of 0.05 s on
        such a host (the model runs as fast either way)."""
    enabled = gc.isenabled()
    gc.disable()
    huge_pages = _set_huge_pages(False)
    try:
        yield
    finally:
        _set_huge_pages(huge_pages)
        if enabled:
            gc.enable()


def _set_huge_pages(enabled: bool | None) -> bool | None:
    """numpy's madvise(MADV_HUGEPAGE) of large arrays (Linux) on or off; the
    previous setting (None where numpy has no such switch)."""
    switch = getattr(getattr(np, "_core", None), "multiarray", None)
    switch = getattr(switch, "_set_madvise_hugepage", None)
    if switch is None or enabled is None:
        return None
    return bool(switch(enabled))


def default_threads() -> int:
    """The cores this process may run on, if the OpenMP runtime is there; else 1."""
    if openmp_runtime() is None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _compile(source: Any, fuse: bool, neuron_mode: str, cache: Any, function: str | None,
             name: str, constants: Mapping[str, Any] | None = None, threads: int = 1) -> CompiledModel:
    info: dict[str, Any] = {"seconds": {}}
    clock = Clock(info["seconds"])
    start = time.perf_counter()
    with clock("import"):
        module = load_source(source, name, constants)
        check_flat(module)
        places = layered_param_places(module, neuron_mode)
        unlowered = _unlowered_functions(module)
        kept = module.clone() if unlowered else None  # what training differentiates
    info["threads"] = threads
    store = open_cache(cache)
    lowered = None
    if store is not None:
        with clock("cache-key"):
            key = store.key(print_module(module, elide_weights_if_larger=0),
                            {"stage": "nn-to-kernel", "fuse": fuse, "neuron_mode": neuron_mode,
                             "function": function, "threads": threads, "sources": sources_fingerprint(),
                             "library": library_fingerprint(), "constants": constants_digest(module)})
        with clock("load-lowered"):
            lowered = _cached_lowering(store, key, module, info)
    if lowered is not None:
        abi, specs, weights, lib, recipes = lowered
    else:
        imported = {op.sym for op in module.ops if op.name == "nn.weight"}
        with clock("lower-to-loops"):
            info["neuron_mode"], recipes = lower_to_loops(module, fuse=fuse, neuron_mode=neuron_mode,
                                                          threads=threads)
        kernel = select_kernel(module, function)
        abi = KernelABI.of(kernel)
        specs = [ArgSpec.of(t) for t in kernel.function_type.inputs.data]
        weights = {op.sym: op for op in module.ops if op.name == "nn.weight"}
        with clock("native"):
            lib = native_library(module, abi, cache, info, clock)
        if store is not None and info.get("cache_key"):
            _store_lowering(store, key, abi, specs, recipes, info,
                            {k: w for k, w in weights.items() if k not in imported})
    info["kernels"] = kernels_called(lib.object_code())  # which library kernels, which variant (ncc-run says)
    info["seconds"]["total"] = time.perf_counter() - start
    model = CompiledModel(abi, specs, weights, lib, info, places.get(abi.name), recipes)
    kind = unlowered.get(abi.name)
    if kept is not None and kind is not None:
        if kind == "net":
            kind = "layers" if abi.name in places else "neuron"
        model.training = TRAINING_KINDS[kind](model, kept, abi.name, places.get(abi.name), cache, threads)
    return model


def constants_digest(module: ModuleOp) -> str:
    """A digest of the internal constant weights' data (`ncc.constant`: prune's
    masks among them), which compile-time decisions read -- the sparse kernel's
    pattern is a mask's -- unlike parameters, whose values come at run time."""
    digest = hashlib.sha256()
    for op in module.ops:
        if isinstance(op, nn.WeightOp) and CONSTANT_MARK in op.attributes and op.data is not None:
            digest.update(op.sym.encode() + b"\0" + np.ascontiguousarray(op.data).tobytes())
    return digest.hexdigest()[:16]


def _store_lowering(store: CompileCache, key: str, abi: KernelABI, specs: list[ArgSpec], recipes: ModuleOp,
                    info: dict, made: dict[str, Any]) -> None:
    """Remember what lowering made besides the code, under the nn-level key:
    the ABI, the argument types and the code's own key (the header), the
    derived weights' recipes and the data of the weights the lowering filled
    (literals too large for the code) as an .npz payload. A weight the
    lowering made without data, other than a derived one, is not kept: such
    a model takes the passes on every compile."""
    derived = {f.sym_name.data for f in recipes.ops if isinstance(f, func.FuncOp)}
    data = {sym: np.asarray(w.data) for sym, w in made.items() if sym not in derived}
    if any(w.data is None for sym, w in made.items() if sym not in derived):
        return
    payload = io.BytesIO()
    np.savez(payload, **{"recipes": np.frombuffer(print_module(recipes, elide_weights_if_larger=0).encode(),
                                                  np.uint8)}, **{f"w:{sym}": v for sym, v in data.items()})
    meta = {"kernel": abi.name, "roles": [str(r) for r in abi.roles],
            "arena": [abi.arena_per_batch, abi.arena_constant], "param_names": list(abi.param_names),
            "specs": [[s.dtype.str, list(s.shape)] for s in specs], "code_key": info["cache_key"],
            "neuron_mode": info.get("neuron_mode"),
            "constants": sorted(sym for sym in data if nn.CONSTANT_MARK in made[sym].attributes)}
    store.store(key, payload.getvalue(), meta)


def _cached_lowering(store: CompileCache, key: str, module: ModuleOp, info: dict):
    """(abi, specs, weights, library, recipes) of a compile cached at the nn
    level, with the imported module's weights and those the lowering filled;
    None on a miss (or if the object code it names is gone: then the passes
    run again)."""
    entry = store.load(key)
    if entry is None:
        return None
    payload, meta = entry
    code = store.load(meta.get("code_key", ""))
    if code is None:
        return None
    weights = {op.sym: op for op in module.ops if op.name == "nn.weight"}
    try:
        abi = KernelABI(meta["kernel"], tuple(ArgRole.parse(r) for r in meta["roles"]), *meta["arena"],
                        tuple(meta["param_names"]))
        specs = [ArgSpec(np.dtype(dt), tuple(shape)) for dt, shape in meta["specs"]]
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            recipes = parse_module(arrays["recipes"].tobytes().decode())
            for name in (k for k in arrays.files if k.startswith("w:")):
                w = weights[name[2:]] = nn.WeightOp(name[2:], arrays[name])
                if w.sym in meta["constants"]:
                    w.attributes[nn.CONSTANT_MARK] = UnitAttr()
        link_gemm(store, code[0])
        lib = NativeLibrary.from_object(code[0])
    except Exception:  # noqa: BLE001 -- an entry this build cannot read: compile afresh
        store.stats["corrupt"] += 1
        return None
    info.update(cache="hit", cache_key=meta["code_key"], cache_stats=store.stats, neuron_mode=meta["neuron_mode"])
    return abi, specs, weights, lib, recipes


def _unlowered_functions(module: ModuleOp) -> dict[str, str]:
    """Functions of `module` that training can differentiate: name -> 'nn' or 'net'."""
    found = {}
    for op in module.ops:
        if isinstance(op, NetOp):
            found[op.sym_name.data] = "net"
        elif isinstance(op, func.FuncOp) and op.body.blocks and ARG_ROLES not in op.attributes:
            found[op.sym_name.data] = "nn"
    return found


def layered_param_places(module: ModuleOp, neuron_mode: str) -> dict[str, dict]:
    """For each neuron net that will be layerized: where its equation-named
    parameters (`w0004`, `b04`) land in the layer weights, so that `params` has
    the same names in either lowering."""

    return {net.sym_name.data: param_places(net) for net in module.ops
            if isinstance(net, NetOp) and choose_neuron_lowering(net, neuron_mode) == "layers"}


def load_source(source: Any, name: str = "net", constants: Mapping[str, Any] | None = None
                ) -> ModuleOp:
    """A fresh module for `source` (a path, text, ModuleOp or onnx.ModelProto);
    `constants` are given to the ONNX importer."""
    import onnx

    onnx_source = isinstance(source, onnx.ModelProto) or (
        isinstance(source, (str, os.PathLike)) and str(source).endswith(".onnx"))
    if constants is not None and not onnx_source:
        raise NccError("constants= applies to ONNX models only (a ModelProto or a .onnx path)")
    if isinstance(source, ModuleOp):
        return source.clone()
    if onnx_source:
        return import_onnx(source, constants=constants)
    if isinstance(source, str) and "\n" in source:
        if source.lstrip().startswith(_MLIR_MARKERS):
            return parse_module(source, "<text>")
        return import_adjacency_text(source, "<text>", name=name)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            raise NccError("is a directory: expected a model file (.mlir, .onnx or an adjacency file)", path)
        if not os.path.isfile(path):
            raise NccError("no such file (compile takes a path, adjacency or MLIR text with "
                           "newlines, or a module)", path)
        if path.endswith(".mlir"):
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise NccError(f"cannot read the file: {e}", path) from None
            return parse_module(text, path)
        return import_adjacency(path, name=name)
    raise NccError(f"cannot compile a {type(source).__name__}: expected a path, adjacency or MLIR "
                   "text, or an xDSL ModuleOp")


def lower_to_loops(module: ModuleOp, *, fuse: bool = True, neuron_mode: str = "auto", threads: int = 1
                   ) -> tuple[str | None, ModuleOp]:
    """Lower `module` in place to loop-level kernels; returns the lowering
    chosen for its neuron net ('neuron' or 'layers', None for an nn module)
    and the recipes of the weights folded on the way (passes/fold_weights.py)."""

    chosen = None
    nets = [op for op in module.ops if isinstance(op, NetOp)]
    if nets:
        chosen = ",".join(sorted({choose_neuron_lowering(n, neuron_mode) for n in nets}))
        run_passes(module, f"neuron-to-loops{{mode={neuron_mode}}}")
    layerized = {op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)
                 and op.body.blocks and ARG_ROLES not in op.attributes}
    recipes = ModuleOp([])
    if layerized:
        run_passes(module, "fold-qdq")  # a QDQ model's contractions on the integers
        if fuse:  # batch norms into their convolutions first (inference), then conv + bias + activation
            run_passes(module, "fold-batch-norm,fuse")
        run_passes(module, "pack-weights,channels-last")  # the GEMMs' weights as panels: packed once, below;
        # int8 convolutions on channels-last images (their rows the int8 GEMM's A, read in place)
        recipes = fold_weights(module, compute=False)  # the model computes their data
        run_passes(module, f"lower-to-loops{{threads={threads}}}")
    for net in nets:  # a net's I/O is `x` and `y` however it was lowered
        kernel = next((op for op in module.ops if isinstance(op, func.FuncOp)
                       and op.sym_name.data == net.sym_name.data), None)
        if kernel is not None and kernel.sym_name.data in layerized:
            abi = KernelABI.of(kernel)
            io = {"input": "x", "output": "y"}
            roles = tuple(ArgRole(r.kind, io.get(r.kind, r.name)) for r in abi.roles)
            replace(abi, roles=roles).attach(kernel)
    return chosen, recipes


def select_kernel(module: ModuleOp, function: str | None) -> func.FuncOp:
    kernels = {op.sym_name.data: op for op in module.ops
               if isinstance(op, func.FuncOp) and ARG_ROLES in op.attributes}
    return pick_function(kernels, function, "to run")


def calibration_runner(module: ModuleOp, function: str):
    """The quantize pass's calibration, natively: `module` compiled once, run per batch."""
    model = compile(module, cache=False, function=function)
    return lambda batch: model.run(batch)


set_runner(calibration_runner)
