"""Calling native code: numpy arrays straight to kernel pointers.

The pieces every caller of a compiled kernel shares (the inference model,
the gradient kernels of training, the optimizers' update kernel):

    ArgSpec          one kernel argument's dtype and shape (-1: the batch)
    check_input      an array the kernel may read, or an NccError naming the input
    invoker(n)       call(kernel_address, *arrays, batch) for kernels of n buffers
    function_address a function's address in a native library
    aligned_empty    a 64-byte aligned numpy buffer
    ArenaCache       one arena per thread and batch size (the last few sizes)
    BoundKernel      a kernel with its argument roles bound: weights to buffers,
                     inputs by name, fresh outputs, the arena
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import numpy as np
from xdsl.dialects.builtin import MemRefType

from ncc.diagnostics import NccError
from ncc.dialects.nn import numpy_dtype
from ncc.passes.lowering.abi import KernelABI
from ncc.runtime import engine

ARENAS_KEPT = 4  # batch sizes whose arena a thread keeps
ALIGN = 64


# ---------------------------------------------------------------------------
# Calling native code: numpy arrays straight to kernel pointers.
#
# A tiny net's kernel runs in well under a microsecond, so the call itself must
# be cheap: ctypes costs ~0.9 us per call plus ~2 us per `a.ctypes.data`. The
# invoker is instead a builtin function (METH_FASTCALL) written in LLVM IR, one
# per argument count: `call(kernel_address, *arrays, batch)` reads each array's
# data pointer from numpy's PyArrayObject (`data` follows the object header),
# releases the GIL, calls the kernel and returns None (~0.2 us in all). Only
# arrays the model has checked are ever passed. A self-test checks the layout
# once per process; if it differs, a plain ctypes invoker is used instead.

_INVOKERS: dict[int, Any] = {}
_KEEP: list[Any] = []  # code and method tables the invokers use: never freed
_LOCK = threading.Lock()
_DATA_OFFSET = 16  # offsetof(PyArrayObject_fields, data) on 64-bit CPython
_METH_FASTCALL = 0x80


class _PyMethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


def _jit(ir: str, name: str) -> int:
    lib = engine.compile_llvm_ir(ir)
    _KEEP.append(lib)
    return lib.address(name)


def _capi(name: str) -> str:
    """A C-API function of this process as an LLVM constant."""
    return f"inttoptr (i64 {ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value} to ptr)"


def _layout_ok() -> bool:
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    addr = _jit(f"define ptr @data_of(ptr %o) {{\n  %p = getelementptr i8, ptr %o, i64 {_DATA_OFFSET}\n"
                "  %d = load ptr, ptr %p\n  ret ptr %d\n}\n", "data_of")
    data_of = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.py_object)(addr)
    probes = [np.zeros(3, np.float32), np.arange(12.0).reshape(3, 4)[1:], np.empty((0, 2))]
    return all(data_of(a) == (a.ctypes.data or None) for a in probes)


def invoker(nargs: int):
    """call(kernel_address, *arrays, batch) for kernels of `nargs` buffers."""
    with _LOCK:
        if -1 not in _INVOKERS:
            _INVOKERS[-1] = _layout_ok()
        if nargs not in _INVOKERS:
            _INVOKERS[nargs] = (_fastcall_invoker if _INVOKERS[-1] else _ctypes_invoker)(nargs)
        return _INVOKERS[nargs]


def _fastcall_invoker(nargs: int):
    none = f"inttoptr (i64 {id(None)} to ptr)"
    loads = "".join(f"  %p{i} = getelementptr ptr, ptr %args, i64 {i + 1}\n"
                    f"  %o{i} = load ptr, ptr %p{i}\n"
                    f"  %q{i} = getelementptr i8, ptr %o{i}, i64 {_DATA_OFFSET}\n"
                    f"  %d{i} = load ptr, ptr %q{i}\n" for i in range(nargs))
    ptrs = "".join(f"ptr %d{i}, " for i in range(nargs))
    ir = f"""define ptr @invoke(ptr %self, ptr %args, i64 %nargs) {{
entry:
  %ok = icmp eq i64 %nargs, {nargs + 2}
  br i1 %ok, label %go, label %bad
bad:                                    ; SystemError in Python; ncc never calls it so
  ret ptr null
go:
  %a = load ptr, ptr %args
  %fn = call ptr {_capi("PyLong_AsVoidPtr")}(ptr %a)
{loads}  %pb = getelementptr ptr, ptr %args, i64 {nargs + 1}
  %ob = load ptr, ptr %pb
  %batch = call i64 {_capi("PyLong_AsLongLong")}(ptr %ob)
  %ts = call ptr {_capi("PyEval_SaveThread")}()
  call void %fn({ptrs}i64 %batch)
  call void {_capi("PyEval_RestoreThread")}(ptr %ts)
  call void {_capi("Py_IncRef")}(ptr {none})
  ret ptr {none}
}}
"""
    table = _PyMethodDef(b"ncc_invoke", _jit(ir, "invoke"), _METH_FASTCALL, None)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p] * 3
    fn = new(ctypes.addressof(table), None, None)
    _KEEP.append((table, fn))
    return fn


def _ctypes_invoker(nargs: int):
    raw = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * nargs, ctypes.c_int64)

    def call(address, *args):
        raw(address)(*[a.ctypes.data for a in args[:-1]], args[-1])
    return call


class ArgSpec:
    """One kernel argument: dtype and shape (-1: the batch), with what the call
    path compares against precomputed."""

    __slots__ = ("dtype", "shape", "ndim", "dyn", "tail")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        self.dtype, self.shape, self.ndim = dtype, shape, len(shape)
        self.dyn = int(bool(shape) and shape[0] < 0)  # 1 if dimension 0 is the batch
        self.tail = shape[self.dyn:]  # the static dimensions
        if any(d < 0 for d in self.tail):
            raise NccError(f"kernel argument of shape {list(shape)}: only dimension 0 may be dynamic")

    @classmethod
    def of(cls, t: Any) -> "ArgSpec":
        if not isinstance(t, MemRefType):
            raise NccError(f"kernel argument of type {t}: the runtime passes memrefs only")
        return cls(numpy_dtype(t.element_type), tuple(d if d >= 0 else -1 for d in t.get_shape()))

    def describe(self) -> str:
        return "[" + ", ".join("batch" if d < 0 else str(d) for d in self.shape) + f"] {self.dtype}"


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(n + ALIGN, np.uint8)
    off = (-raw.ctypes.data) % ALIGN
    return raw[off:off + n].view(dtype).reshape(shape)


class ArenaCache:
    """One arena per thread and batch size, `nbytes(batch)` each; a thread keeps
    the last ARENAS_KEPT sizes."""

    def __init__(self, nbytes: Callable[[int], int]):
        self.nbytes = nbytes
        self._local = threading.local()

    def __call__(self, batch: int) -> np.ndarray:
        kept = getattr(self._local, "by_batch", None)
        if kept is None:
            kept = self._local.by_batch = {}
        arena = kept.get(batch)
        if arena is None:
            if len(kept) >= ARENAS_KEPT:
                kept.pop(next(iter(kept)))
            check_allocation(self.nbytes(batch), f"the arena of batch {batch}")
            arena = kept[batch] = aligned_empty((self.nbytes(batch),), np.dtype(np.uint8))
        return arena


def function_address(lib: Any, name: str) -> int:
    for attr in ("address", "get_function_address", "function_address"):
        if hasattr(lib, attr):
            addr = getattr(lib, attr)(name)
            break
    else:
        raise NccError("the native library exposes no function addresses")
    if not addr:
        raise NccError(f"native code has no function '{name}'")
    return int(addr)


def memory_bytes() -> int:
    """The machine's physical memory (what no one buffer may exceed)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 46


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_allocation(nbytes: int, what: str) -> None:
    """An NccError, before anything is allocated, if `what` needs more than the machine's memory."""
    if nbytes > memory_bytes():
        raise NccError(f"{what} needs {human_bytes(nbytes)}, more than this machine's memory "
                       f"({human_bytes(memory_bytes())})")


def check_input(name: str, a: Any, spec: ArgSpec) -> np.ndarray:
    """`a` as an array the kernel may read, or an NccError saying what is wrong."""
    if not isinstance(a, np.ndarray):
        if isinstance(a, np.generic) and not spec.shape:  # a numpy scalar for a rank-0 input
            return check_input(name, np.asarray(a), spec)
        raise NccError(f"input '{name}' must be a numpy array of shape {spec.describe()}, "
                       f"got {type(a).__name__}")
    a = np.asarray(a)  # a subclass (matrix, memmap) as a plain array
    if a.ndim != len(spec.shape) or any(d >= 0 and d != s for d, s in zip(spec.shape, a.shape)):
        raise NccError(f"input '{name}' has shape {list(a.shape)}, expected {spec.describe()}")
    if a.dtype != spec.dtype or not (a.flags.c_contiguous and a.flags.aligned):  # copied: a view of zero
        check_allocation(a.size * spec.dtype.itemsize, f"input '{name}' of shape {list(a.shape)} "
                         f"as a contiguous {spec.dtype} array")  # strides (broadcast_to) may be huge
    if a.dtype != spec.dtype:
        a = cast_input(name, a, spec.dtype)
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = np.ascontiguousarray(a) if a.flags.aligned else a.copy(order="C")
    return a


def cast_input(name: str, a: np.ndarray, dt: np.dtype) -> np.ndarray:
    src = a.dtype
    if src.kind not in "biuf":
        raise NccError(f"input '{name}' has dtype {src}, expected {dt} (or a real dtype to cast)")
    if dt.kind == "f":
        try:
            with np.errstate(over="raise", invalid="ignore"):
                return a.astype(dt)
        except FloatingPointError:
            raise NccError(f"input '{name}': {src} values overflow {dt} (finite values beyond "
                           f"±{np.finfo(dt).max:.3g})") from None
    if src.kind == "f":
        raise NccError(f"input '{name}' has dtype {src}, expected {dt}: floats are not "
                       + ("cast to bool" if dt.kind == "b" else "truncated to integers"))
    b = a.astype(dt)
    if not np.array_equal(b, a):
        raise NccError(f"input '{name}': {src} values out of range of {dt}")
    return b


# ---------------------------------------------------------------------------
# A kernel bound to its arguments


class BoundKernel:
    """A native kernel with its argument roles bound: the one object the
    inference model, the gradient kernels and the optimizers' update kernel
    call native code through. Weights are the buffers `weight(symbol, spec)`
    returns (without `weight`, the caller passes every array: `invoke`);
    inputs are checked as `model.run` checks them; outputs are fresh arrays;
    intermediate values live in one arena per thread and batch size."""

    def __init__(self, abi: KernelABI, specs: Sequence[ArgSpec], lib: Any,
                 weight: Callable[[str, ArgSpec], np.ndarray] | None = None,
                 info: dict[str, Any] | None = None):
        self.abi, self.lib, self.info = abi, lib, info if info is not None else {}
        self.address = function_address(lib, abi.name)
        self.invoker = invoker(len(specs))
        self.template: list[Any] = [None] * len(specs)
        self.inputs: dict[str, tuple[int, ArgSpec]] = {}
        self.outputs: dict[str, tuple[int, ArgSpec]] = {}
        self.weight_syms: list[str] = []
        self.arena_pos: int | None = None
        for pos, (role, spec) in enumerate(zip(abi.roles, specs)):
            if role.kind == "input":
                self.inputs[role.name] = (pos, spec)
            elif role.kind == "output":
                self.outputs[role.name] = (pos, spec)
            elif role.kind == "arena":
                self.arena_pos = pos
            elif weight is not None:
                self.template[pos] = weight(role.name, spec)
                self.weight_syms.append(role.name)
        self.arenas = ArenaCache(abi.arena_bytes)

    def invoke(self, *arrays: np.ndarray, batch: int = 0) -> None:
        """Call with every argument given, in ABI order (checked by the caller)."""
        self.invoker(self.address, *arrays, batch)

    def __call__(self, feeds: Mapping[str, Any], what: Mapping[str, str] | None = None
                 ) -> dict[str, np.ndarray]:
        """The outputs by role name for `feeds` by input role name; `what`
        names each input in messages (default: its role name, quoted)."""
        what = what or {}
        args = list(self.template)
        batch, batch_from = None, None
        for name, (pos, spec) in self.inputs.items():
            label = what.get(name, f"'{name}'")
            a = _checked(label, feeds[name], spec)
            if spec.dyn:
                if batch is None:
                    batch, batch_from = a.shape[0], label
                elif a.shape[0] != batch:
                    raise NccError(f"{batch_from} and {label} disagree on the batch size: "
                                   f"{batch} vs {a.shape[0]}")
            args[pos] = a
        batch = 0 if batch is None else batch
        outs = {}
        for name, (pos, spec) in self.outputs.items():
            outs[name] = args[pos] = np.empty((batch, *spec.tail) if spec.dyn else spec.tail, spec.dtype)
        if self.arena_pos is not None:
            args[self.arena_pos] = self.arenas(batch)
        self.invoker(self.address, *args, batch)
        return outs

    def positional_call(self, unset: set[str]) -> Callable[..., Any]:
        """call(*inputs) -> output or (outputs...), as straight-line Python made
        for this kernel: a tiny net's kernel runs in well under a microsecond,
        so the checks are plain comparisons against precomputed shapes
        (anything unusual goes to `check_input`), the arguments put in ABI order
        once, here. Raises while `unset` (parameters without values) is not empty."""
        in_names = list(self.inputs)
        env: dict[str, Any] = {"ndarray": np.ndarray, "empty": np.empty, "invoke": self.invoker,
                               "address": self.address, "unset": unset, "NccError": NccError,
                               "check": check_input, "arena_of": self.arenas, "in_names": in_names}
        args = [f"w{pos}" for pos in range(len(self.template))]
        env.update((f"w{pos}", buf) for pos, buf in enumerate(self.template) if buf is not None)
        xs = [f"x{k}" for k in range(len(in_names))]
        lines = [f"def call({', '.join(xs)}):",
                 "    if unset:",
                 "        raise NccError('parameters without values must be set before a call: '"
                 " + ', '.join(sorted(unset)))"]
        batch_of = None
        for k, (pos, spec) in enumerate(self.inputs.values()):
            env[f"s{k}"] = spec
            x = xs[k]
            lines += [f"    if not (type({x}) is ndarray and {x}.dtype == s{k}.dtype and {x}.ndim == "
                      f"{spec.ndim} and {x}.shape[{spec.dyn}:] == s{k}.tail and "
                      f"(f := {x}.flags).c_contiguous and f.aligned):",
                      f"        {x} = check(in_names[{k}], {x}, s{k})"]
            if spec.dyn and batch_of is None:
                batch_of = k
                lines.append(f"    batch = {x}.shape[0]")
            elif spec.dyn:
                lines += [f"    if {x}.shape[0] != batch:",
                          f"        raise NccError(f\"inputs '{{in_names[{batch_of}]}}' and "
                          f"'{{in_names[{k}]}}' disagree on the batch size: {{batch}} vs "
                          f"{{{x}.shape[0]}}\")"]
            args[pos] = x
        if batch_of is None:
            lines.append("    batch = 0")
        outs = []
        for k, (pos, spec) in enumerate(self.outputs.values()):
            env[f"o{k}_tail"], env[f"o{k}_dtype"] = spec.tail, spec.dtype
            shape = f"(batch, *o{k}_tail)" if spec.dyn else f"o{k}_tail"
            lines.append(f"    o{k} = empty({shape}, o{k}_dtype)")
            args[pos] = f"o{k}"
            outs.append(f"o{k}")
        if self.arena_pos is not None:
            lines.append("    arena = arena_of(batch)")
            args[self.arena_pos] = "arena"
        lines += [f"    invoke(address, {', '.join(args)}, batch)",
                  f"    return {outs[0] if len(outs) == 1 else '(' + ''.join(o + ', ' for o in outs) + ')'}"]
        exec("\n".join(lines), env)
        return env["call"]


def _checked(label: str, a: Any, spec: ArgSpec) -> np.ndarray:
    """check_input with the input named by `label` (say "cotangent 'y'")."""
    if (type(a) is np.ndarray and a.dtype == spec.dtype and a.ndim == spec.ndim
            and a.shape[spec.dyn:] == spec.tail and a.flags.c_contiguous and a.flags.aligned):
        return a
    try:
        return check_input("\0", a, spec)
    except NccError as e:
        raise NccError(str(e).replace("input '\0'", label)) from None
