"""Native code for a loop-level module: from the on-disk compile cache, else
lowered to the llvm dialect and compiled by LLVM (and stored). Shared by the
inference model, the gradient kernels and the optimizers' update kernel.

    COMPILE_LOCK     building xDSL IR is not thread-safe: one compile at a time
    Clock(into)      `with clock("stage"):` adds the stage's seconds to `into`
    native_library   the NativeLibrary of a module, cached or compiled
    compile_kernel   a function of an nn or loop module as a BoundKernel
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError

from ncc.ir import print_module
from ncc.passes.lowering import gemm, spmm
from ncc.passes.lowering.abi import KernelABI
from ncc.pipeline import run_passes
from ncc.runtime import engine
from ncc.runtime.cache import CompileCache, sources_fingerprint
from ncc.runtime.calling import ArgSpec, BoundKernel, aligned_empty

COMPILE_LOCK = threading.RLock()


class Clock:
    """Seconds per named stage, added into a dict."""

    def __init__(self, into: dict[str, float]):
        self.into = into

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.into[stage] = self.into.get(stage, 0.0) + time.perf_counter() - t


def open_cache(cache: Any) -> CompileCache | None:
    """The compile cache `cache` names: True (the default directory), a directory, or False (None)."""
    return None if cache is False else CompileCache(None if cache is True else cache)


def link_gemm(store: CompileCache | None, code: bytes | None = None) -> None:
    """Load the process's kernel library (engine.load_gemm: LIBRARY_KERNELS)
    before code that calls it (object `code` that names one, or code about to
    be compiled): from the compile cache when it holds it,
    else compiled (and stored)."""
    if engine.gemm_loaded() or (code is not None and not engine.names_a_kernel(code)):
        return
    key = store and store.key(gemm.SYMBOL, {"library": engine.library_fingerprint()})
    entry = store.load(key) if store else None
    if entry is not None:
        try:
            engine.load_gemm(entry[0])
            return
        except Exception:  # noqa: BLE001 -- unloadable despite its checksum: compile it below
            store.stats["corrupt"] += 1
    lib = engine.load_gemm()
    if store is not None:
        store.store(key, lib.object_code(), {"kernel": gemm.SYMBOL})


def native_library(module: ModuleOp, abi: KernelABI, cache: Any, info: dict, clock: Clock):
    """The module's native code: from the cache, else lowered and compiled (and stored)."""

    store = open_cache(cache)
    if store is not None:
        with clock("cache-key"):
            # the sources too: the loop IR stays the same when lower-to-llvm changes
            key = store.key(print_module(module, elide_weights_if_larger=0),
                            {"kernel": abi.name, "pipeline": "lower-to-llvm",
                             "library": engine.library_fingerprint(), "sources": sources_fingerprint()})
        entry = store.load(key)
        info.update(cache="hit" if entry else "miss", cache_key=key, cache_stats=store.stats)
        if entry is not None:
            try:
                with clock("load-object"):
                    link_gemm(store, entry[0])
                    return engine.NativeLibrary.from_object(entry[0])
            except Exception:  # unloadable despite its checksum: rebuild it below
                store.stats["corrupt"] += 1
                info["cache"] = "miss"
    else:
        info["cache"] = "off"
    for op in list(module.ops):  # the weight data is held by the model, not the code
        if op.name == "nn.weight":
            op.detach()
    with clock("lower-to-llvm"):
        run_passes(module, "lower-to-llvm", verify=False)  # LLVM verifies what it compiles
    with clock("llvm"):
        if any(getattr(op, "sym_name", None) is not None and op.sym_name.data in (gemm.SYMBOL, spmm.SYMBOL)
               for op in module.ops):
            link_gemm(store)
        lib = engine.compile_module(module)
    if store is not None:
        with clock("cache-store"):
            store.store(key, lib.object_code(), {"kernel": abi.name})
    return lib


def compile_kernel(module: ModuleOp, name: str, cache: Any, buffer_of: Callable[[str], Any],
                   pipeline: str | None = "fuse,lower-to-loops") -> BoundKernel:
    """Function `name` of `module` (the other functions with bodies are dropped, in place) lowered
    by `pipeline` (None: it is loop code already) to a native kernel whose
    weights are the buffers `buffer_of(symbol)` gives, or, for a weight the
    lowering made (None), the module's own data."""
    info: dict[str, Any] = {"seconds": {}}
    clock = Clock(info["seconds"])
    for op in list(module.ops):  # the other kernels; declarations (the GEMM's) stay
        if isinstance(op, func.FuncOp) and op.sym_name.data != name and op.body.blocks:
            op.detach()
            op.erase()
    if pipeline:
        with clock("lower-to-loops"):
            run_passes(module, pipeline)
    own = {op.sym: op.data for op in module.ops if op.name == "nn.weight"}  # native_library drops them
    kernel = next(op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)
    abi = KernelABI.of(kernel)
    specs = [ArgSpec.of(t) for t in kernel.function_type.inputs.data]
    with clock("native"):
        lib = native_library(module, abi, cache, info, clock)

    def weight(sym: str, spec: ArgSpec) -> np.ndarray:
        buf = buffer_of(sym)
        if buf is None:  # a constant the lowering made for this kernel
            buf = aligned_empty(spec.shape, spec.dtype)
            buf[...] = np.asarray(own[sym]).reshape(spec.shape)
        elif buf.shape != spec.shape or buf.dtype != spec.dtype:
            raise NccError(f"internal: weight @{sym} is {buf.shape} {buf.dtype} in the model, "
                           f"{spec.describe()} in the kernel")
        return buf

    return BoundKernel(abi, specs, lib, weight, info)
