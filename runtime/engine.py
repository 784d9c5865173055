"""The JIT engine: llvm dialect -> llvmlite IR -> O3 for the host CPU -> native code.

    lib = compile_module(llvm_module)          # after `lower-to-llvm`
    addr = lib.address("kernel")               # an int; call through ctypes
    lib.llvm_ir                                # the optimised LLVM IR text
    blob = lib.object_code()                   # the native object (for the on-disk cache)
    lib2 = NativeLibrary.from_object(blob)     # loads it again, skipping LLVM's optimiser

`compile_module` converts with `xdsl.backend.llvm.convert`, verifies, optimises
with LLVM's new pass manager at O3 (loop and SLP vectorizers on) for a target
machine created with the host's CPU name and real features (AVX-512 where
present), emits an object file and loads it into an MCJIT engine. Compiled and
cached code thus go through the same loader: an object loaded from the cache is
the very code that was compiled.

Thread safety: LLVM's global state is not safe to use from several threads at
once, so every compile and load holds one process-wide lock. Building xDSL IR
(parsing, passes) is not thread-safe either (xDSL's implicit builders): callers
lowering in several threads must serialize that themselves. The native functions
touch only the buffers they are given: several threads may call them at once
with distinct output and arena buffers.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from types import SimpleNamespace
from typing import Callable

import llvmlite
import llvmlite.binding as llvm
from xdsl.dialects import func
from xdsl.dialects import llvm as llvm_dialect
from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.dialects.neuron import NetOp
from ncc.passes.lowering import gemm, openmp, qgemm, spmm, transpose
from ncc.passes.lowering.abi import ARG_ROLES
from ncc.passes.lowering.llvmlite_ir import kernel_module
from ncc.passes.lowering.parallelize_loops import PARALLEL, PARALLEL_LOOP
from ncc.pipeline import run_passes

_LOCK = threading.RLock()


@functools.cache
def _initialize() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    openmp_runtime()


@functools.cache
def openmp_runtime() -> str | None:
    """The OpenMP runtime (libgomp) that threaded GEMMs call, loaded for native
    code; None when this system has none (the GEMMs then run their threads'
    shares one after another, `serial_openmp`)."""
    import ctypes.util

    for name in (ctypes.util.find_library("gomp"), "libgomp.so.1"):
        if name:
            try:
                llvm.load_library_permanently(name)
                return name
            except RuntimeError:
                continue
    return None


def new_target_machine(cpu: str | None = None) -> llvm.TargetMachine:
    """The host's target machine: its CPU and features (e.g. znver4 + AVX-512), O3;
    or, for a named `cpu` (LLVM's names: haswell, skylake-avx512, znver3, ...),
    that CPU with its own features, as llc -mcpu does."""
    _initialize()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    if cpu is None or cpu == "host":
        return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                            features=llvm.get_host_cpu_features().flatten(),
                                            opt=3, codemodel="jitdefault")
    return target.create_target_machine(cpu=cpu, features="", opt=3, codemodel="jitdefault")


@functools.cache
def target_machine(cpu: str | None = None) -> llvm.TargetMachine:
    """The shared target machine (the host's, or a named CPU's) for optimising and
    emitting code. Never given to an execution engine: an MCJIT engine takes
    ownership of (and frees) its target machine."""
    return new_target_machine(cpu)


def host_description() -> str:
    """What native code depends on besides the IR: part of the compile cache's key."""
    tm = target_machine()
    return (f"llvmlite {llvmlite.__version__}; llvm {'.'.join(map(str, llvm.llvm_version_info))}; "
            f"{tm.triple}; {llvm.get_host_cpu_name()}; {llvm.get_host_cpu_features().flatten()}")


def host_summary() -> str:
    """The host as a benchmark names it: LLVM's CPU name, the processor's model
    name, cores, and the vector ISA (widest registers) native code uses."""
    features = {k for k, v in llvm.get_host_cpu_features().items() if v}
    isa = ("AVX-512 (512-bit vectors)" if "avx512f" in features else
           "AVX2 (256-bit vectors)" if "avx2" in features else
           "AVX (256-bit vectors)" if "avx" in features else "SSE (128-bit vectors)")
    extras = [name for flag, name in (("fma", "FMA"), ("avx512vnni", "VNNI"), ("avxvnni", "AVX-VNNI"),
                                      ("amx-tile", "AMX")) if flag in features]
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return (f"{llvm.get_host_cpu_name()}{f' ({model})' if model else ''}, {os.cpu_count()} cores, "
            f"{isa}{', ' + ', '.join(extras) if extras else ''}")


def host_features() -> frozenset[str]:
    """The host CPU's LLVM feature names that are on (avx2, fma, avx512f, ...)."""
    return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)


def gemm_tile(cpu: str | None = None) -> gemm.Tile:
    """The GEMM micro-kernel tile for code compiled for the host, or for a named CPU."""
    if cpu is None or cpu == "host":
        return gemm.tile_for_cpu(llvm.get_host_cpu_name(), host_features())
    return gemm.tile_for_cpu(cpu)


def _vector_features(cpu: str | None) -> set[str]:
    """The host's features, or a named CPU's vector ISA as the one feature that names it."""
    if cpu is None or cpu == "host":
        return host_features()
    return {"avx512f"} if cpu in gemm.AVX512_CPUS else {"avx2"} if cpu in gemm.AVX2_CPUS else set()


def spmm_variant(cpu: str | None = None) -> spmm.Variant:
    """The sparse kernel's variant for code compiled for the host, or for a named CPU."""
    return spmm.Variant.for_features(_vector_features(cpu))


def qgemm_variant(cpu: str | None = None) -> qgemm.Variant:
    """The int8 GEMM's variant for code compiled for the host, or for a named CPU."""
    if cpu is None or cpu == "host":
        return qgemm.Variant.for_features(host_features())
    return qgemm.variant_for_cpu(cpu)


def transpose_lanes(cpu: str | None = None) -> int:
    """The transpose kernel's block (vector lanes) for code compiled for the host, or for a named CPU."""
    return transpose.lanes_for_features(_vector_features(cpu))


# The library kernels loop-level code calls, by symbol: (define(module, variant), the variant for
# the host or a named CPU, the variant's name)
LIBRARY_KERNELS: dict[str, tuple[Callable, Callable, Callable]] = {
    gemm.SYMBOL: (gemm.define_gemm, gemm_tile, lambda v: v.tag),
    spmm.SYMBOL: (spmm.define_spmm, spmm_variant, lambda v: v.tag),
    qgemm.SYMBOL: (qgemm.define_qgemm, qgemm_variant, lambda v: v.tag),
    transpose.SYMBOL: (transpose.define_transpose, transpose_lanes, lambda lanes: f"{lanes}x{lanes}"),
}


def names_a_kernel(code: bytes) -> bool:
    """Whether object code calls a kernel of the library."""
    return any(symbol.encode() in code for symbol in LIBRARY_KERNELS)


def kernels_called(obj: bytes) -> dict[str, str]:
    """The library kernels that native code calls, and the variant each runs
    on this host: {"ncc_qgemm": "vnni512", ...}."""
    return {sym: tag(variant()) for sym, (_, variant, tag) in LIBRARY_KERNELS.items() if sym.encode() in obj}


# The packages whose sources generate the kernel library (passes/lowering: the kernels and
# their IR builders; dialects/nn: the packed layouts' constants they import)
LIBRARY_SOURCES = ("passes/lowering", "dialects/nn")


@functools.cache
def library_fingerprint(cpu: str | None = None) -> str:
    """A digest of what the code kernels link against is made from (the
    GEMM, the sparse and the int8 kernels for this CPU): the variants chosen,
    the target, whether OpenMP is there, and the sources that generate them;
    part of the compile cache's keys, so that neither a cached kernel nor the
    cached library outlives a change of them. The library itself is not built
    (that took 0.3-0.7 s of a cached compile in a fresh process)."""
    import hashlib
    from pathlib import Path

    tm = target_machine(cpu)
    variants = " ".join(tag(variant(cpu)) for _, variant, tag in LIBRARY_KERNELS.values())
    h = hashlib.sha256(f"{variants} {tm.triple} {tm.target_data} openmp: {openmp_runtime() is not None}".encode())
    root = Path(__file__).resolve().parent.parent
    for package in LIBRARY_SOURCES:
        for path in sorted((root / package).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def to_llvmlite(module: ModuleOp, cpu: str | None = None, gemm_inside: bool = True):
    """The llvmlite IR module of an llvm-dialect module, for the host or a named
    CPU: a call of `ncc_sgemm` gets its definition for that CPU's vector ISA
    (passes/lowering/gemm.py), unless `gemm_inside=False` (native code for
    this process, which links against `load_gemm`'s copy). Non-LLVM
    module-level ops (such as nn.weight, whose data the runtime passes as
    buffers) are ignored."""
    from xdsl.backend.llvm.convert import convert_module

    tm = target_machine(cpu)
    llvm_ops = [op for op in module.ops if isinstance(op, (llvm_dialect.FuncOp,
                                                          llvm_dialect.GlobalOp))]
    stray = [op for op in module.ops if op.dialect_name() in ("func", "memref", "scf", "arith")]
    if stray:
        raise NccError(f"'{stray[0].name}' is not lowered to the llvm dialect: run lower-to-llvm "
                         "first")
    view = SimpleNamespace(attributes=module.attributes, ops=llvm_ops)
    ir_module = convert_module(view, fallback_target_triple=tm.triple,
                               data_layout=str(tm.target_data))
    for op in llvm_ops:  # outlined loop nests stay functions (see outline-loops)
        if "ncc.outlined" in op.attributes:
            fn = ir_module.get_global(op.sym_name.data)
            fn.attributes.add("noinline")
            fn.linkage = "internal"
    for op in llvm_ops:  # parallel loops' launchers (see parallelize-loops)
        if PARALLEL_LOOP in op.attributes:
            team, step, min_trips = (a.value.data for a in op.attributes[PARALLEL])
            openmp.define_launcher(ir_module, op.sym_name.data, op.attributes[PARALLEL_LOOP].data, team, step,
                                   min_trips)
    for symbol, (define, variant, _) in LIBRARY_KERNELS.items() if gemm_inside else ():
        declared = ir_module.globals.get(symbol)
        if declared is not None and declared.is_declaration:
            define(ir_module, variant(cpu))
    if openmp_runtime() is None:
        openmp.serial_openmp(ir_module)
    return ir_module


def optimize(mod: llvm.ModuleRef, cpu: str | None = None) -> None:
    """LLVM's O3 pipeline for the host, vectorizers on, in place. LLVM's loop
    unroller is off: ncc's loops unroll what pays (matmul's k, conv's channels)
    and the vectorizer still interleaves its loops; the unroller multiplied the
    code of a CNN by 5 and its LLVM time by 4, and made it slower to run."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = True
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(target_machine(cpu), pto)
    pb.getModulePassManager().run(mod, pb)


def compile_llvm_ir(text: str) -> "NativeLibrary":
    """Native code for LLVM IR text (parsed, verified, optimised, loaded)."""
    with _LOCK:
        _initialize()
        mod = llvm.parse_assembly(text)
        mod.verify()
        optimize(mod)
        tm = target_machine()
        return NativeLibrary.from_object(tm.emit_object(mod), llvm_ir=str(mod))


def compile_module(module: ModuleOp) -> "NativeLibrary":
    """Native code for an llvm-dialect module (the output of `lower-to-llvm`);
    its GEMM calls link against the process's one copy (`load_gemm`)."""
    with _LOCK:
        return compile_llvm_ir(str(to_llvmlite(module, gemm_inside=False)))


_GEMM_LIBRARY: "NativeLibrary | None" = None


def kernel_library_module(cpu: str | None = None):
    """The llvmlite module of the kernels native code links against, for the
    host or a named CPU: each of LIBRARY_KERNELS for its vector ISA."""
    tm = target_machine(cpu)
    return kernel_module("ncc_kernels", tm.triple, str(tm.target_data), lambda module: [
        define(module, variant(cpu)) for define, variant, _ in LIBRARY_KERNELS.values()])


def gemm_object() -> bytes:
    """Object code of the host's kernel library (LIBRARY_KERNELS for its vector
    ISA, and the serial stand-in for OpenMP where libgomp is missing)."""
    with _LOCK:
        _initialize()
        tm = target_machine()
        module = kernel_library_module()
        if openmp_runtime() is None:
            openmp.serial_openmp(module)
        mod = llvm.parse_assembly(str(module))
        mod.verify()
        optimize(mod)
        return tm.emit_object(mod)


def load_gemm(obj: bytes | None = None) -> "NativeLibrary":
    """The host's GEMM as a native library of its own, loaded once per process
    (from `obj`, e.g. the compile cache's copy of `gemm_object()`, else
    compiled here), its `ncc_sgemm` a process symbol that every kernel calling
    it links against: a model's compile does not compile the GEMM again."""
    global _GEMM_LIBRARY
    with _LOCK:
        if _GEMM_LIBRARY is None:
            lib = NativeLibrary.from_object(obj or gemm_object(), link=False)
            for symbol in LIBRARY_KERNELS:
                llvm.add_symbol(symbol, lib.address(symbol))
            _GEMM_LIBRARY = lib
        return _GEMM_LIBRARY


def gemm_loaded() -> bool:
    """Whether this process has loaded its GEMM library (`load_gemm`)."""
    return _GEMM_LIBRARY is not None


def optimized_llvm_ir(module: ModuleOp, cpu: str | None = None) -> str:
    """The O3-optimised LLVM IR of an llvm-dialect module (for the host, or for a
    named CPU), without loading it."""
    with _LOCK:
        _initialize()
        mod = llvm.parse_assembly(str(to_llvmlite(module, cpu)))
        mod.verify()
        optimize(mod, cpu)
        return str(mod)


class NativeLibrary:
    """Loaded native code: function addresses by name. Keep it alive while calling them."""

    def __init__(self, engine: llvm.ExecutionEngine, obj: bytes, llvm_ir: str | None):
        self._engine = engine
        self._object = obj
        self.llvm_ir = llvm_ir  # the optimised IR; None when loaded from an object file

    @classmethod
    def from_object(cls, obj: bytes, llvm_ir: str | None = None, link: bool = True) -> "NativeLibrary":
        """Load native object code (from `object_code()`), skipping compilation;
        code that names a kernel of the library first gets the process's copy (`load_gemm`)."""
        with _LOCK:
            _initialize()
            if link and names_a_kernel(obj):
                load_gemm()
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
            engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(obj)))
            engine.finalize_object()
            return cls(engine, bytes(obj), llvm_ir)

    def object_code(self) -> bytes:
        return self._object

    def address(self, name: str) -> int:
        """The address of function `name`; KeyError if there is none."""
        with _LOCK:
            addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"native code has no function '{name}'")
        return addr

    get_function_address = address

    def kernel(self, name: str, n_buffers: int):
        """A ctypes callable for a kernel of the ABI: `f(ptr_0, ..., ptr_{n-1}, batch)`
        with integer addresses (e.g. `array.ctypes.data`)."""
        proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n_buffers, ctypes.c_int64)
        f = proto(self.address(name))
        f._library = self  # the code must outlive the callable
        return f


def llvm_ir_text(module: ModuleOp, optimized: bool = True, cpu: str | None = None) -> str:
    """LLVM IR of a module at any level ncc lowers (neuron, nn, loops, llvm): the module
    is lowered in place to the llvm dialect, then converted (and optimised at O3 for the
    host, or for the named `cpu`, unless `optimized=False`). For `ncc-translate --emit-llvm`."""
    if cpu not in (None, "host") and not is_known_cpu(cpu):
        raise NccError(f"unknown target CPU '{cpu}' (LLVM's names: haswell, skylake-avx512, "
                       "znver3, znver4, x86-64-v3, ...; 'host' for this machine)")
    if any(isinstance(op, NetOp) for op in module.ops):
        run_passes(module, "neuron-to-loops")
    if any(isinstance(op, func.FuncOp) and op.body.blocks and ARG_ROLES not in op.attributes
           and _has_tensors(op) for op in module.ops):
        run_passes(module, "lower-to-loops")
    if any(isinstance(op, func.FuncOp) for op in module.ops):
        run_passes(module, "lower-to-llvm")
    return optimized_llvm_ir(module, cpu) if optimized else str(to_llvmlite(module))


def is_known_cpu(cpu: str) -> bool:
    """LLVM knows `cpu` for this target (an unknown name only warns on stderr)."""
    import contextlib
    import tempfile

    _initialize()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    with tempfile.TemporaryFile() as err:  # LLVM prints its warning to fd 2
        saved = os.dup(2)
        try:
            os.dup2(err.fileno(), 2)
            with contextlib.suppress(Exception):
                target.create_target_machine(cpu=cpu, features="", opt=0)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        return b"not a recognized processor" not in err.read()


def _has_tensors(fn) -> bool:
    from xdsl.dialects.builtin import TensorType

    return any(isinstance(t, TensorType) for t in (*fn.function_type.inputs.data,
                                                   *fn.function_type.outputs.data))
