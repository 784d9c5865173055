"""`ncc.compile` and `CompiledModel`: a model as a native function of numpy arrays.

    import ncc
    model = ncc.compile("examples/xor_values.txt")      # a path, adjacency text or a module
    y = model(x)                                         # one output: one array
    y, = model.run({"x": x})                             # by name: a list, like onnxruntime
    model.params["w0002"] = 0.5                          # weights are buffers: writable

Sources: a path (`.mlir`: MLIR text; `.onnx`: the ONNX importer; any other
file: an adjacency list, matrix or edge list), an `onnx.ModelProto`, adjacency
or MLIR text (a string with a newline), or an xDSL `ModuleOp` at the neuron, nn
or loop level (it is copied, never modified). For an ONNX model,
`constants={"axes": array}` imports those graph inputs as constants (see
`ncc.import_onnx`): the compiled model's inputs are the others. Pipeline:

    neuron.net --neuron-to-loops{mode}--> kernel            (mode neuron)
               \\-> layerize --> nn --(fuse)--> lower-to-loops --> kernel   (mode layers)
    nn funcs   --(fuse)--> lower-to-loops --> kernel
    kernel --lower-to-llvm--> llvm dialect --engine--> native code (or the on-disk cache)

`neuron_mode="auto"` lets `choose_neuron_lowering` pick by size and density.
Compile errors are `NccError`s.

Inputs (checked before native code runs; every failure is an `NccError`
naming the input): `model(*arrays)` takes one array per input in
`input_names` order, `model.run(feeds)` a mapping with exactly those names.
Each must be a numpy array (not a list, scalar or None; a rank-0 input also
takes a numpy scalar such as `np.float32(1)`) of the kernel's rank and static
dimensions; dimension 0, where it is `?`, is the batch, free per
call but the same for every input of one call. Element types: an array of the
kernel's dtype is used as is (copied only if not C-contiguous or not aligned);
another real dtype (bool, integer, float) is cast to the kernel's dtype by
numpy's rounding rules, except that a cast that would overflow (a finite
float64 beyond float32's range), turn a float into an integer or a bool, or
change an integer's value (an integer other than 0 and 1 for a bool input) is
an error. Complex, object and string arrays are errors. Bool tensors (i1) are
numpy bool arrays, one byte per element.

Outputs are fresh arrays on every call (never reused: keeping a result is
safe). A neuron net takes one `[batch, n_inputs]` array (input neurons in
index order) and returns `[batch, n_outputs]` (outputs in the net's order).

`params` maps each weight to its buffer, the very memory the kernel reads:
writing into it (`params[k][...] = v`, or `params[k] = v`, which copies into
the buffer and checks the shape) changes the next call's result. For an nn
model the keys are the weight symbols (`fc1_w`); for a neuron net they are the
symbols of the equations (`w0004`, `b04`) in either lowering, each a 0-d
float32 view of the one place the kernel reads it (the flat parameter buffer,
or its entry in a layer's weights). A symbol shared by several edges and
lowered as layers has several copies: it reads as a read-only view and is set
with `params[name] = v`, which writes them all.

Intermediate values live in one arena per call size, kept per thread and batch
size (the last few sizes), so concurrent calls from several threads are safe
(the GIL is released while native code runs).

Training (runtime/training.py): a model compiled from an nn module, an ONNX
model or a neuron net keeps its unlowered source and differentiates it on
demand: `vjp`, `grad`, `value_and_grad` (native backward kernels reading the
same weight buffers as `params`), `trainable`, `memory()` and `export_onnx`;
`ncc.optim` updates `params` in place with native kernels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from ncc.adjacency import import_adjacency, import_adjacency_text
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp
from ncc.dialects.nn import CONSTANT_MARK, numpy_dtype
from ncc.ir import parse_module
from ncc.onnx import export_onnx
from ncc.onnx import import_onnx
from ncc.passes.fold_weights import fold_weights
from ncc.passes.layerize import param_places
from ncc.passes.lowering.abi import ARG_ROLES, ArgRole, KernelABI
from ncc.passes.lowering.neuron_to_loops import choose_neuron_lowering
from ncc.pipeline import run_passes
from ncc.reference import pick_function, run
from ncc.runtime import training
from ncc.runtime.native import COMPILE_LOCK, Clock, native_library
from ncc.runtime.calling import ArenaCache, ArgSpec, aligned_empty, check_input, function_address, invoker

NEURON_MODES = ("auto", "neuron", "layers")
_MLIR_MARKERS = ("builtin.module", "module", "func.func", "neuron.net", "nn.weight", "\"")


# ---------------------------------------------------------------------------
# Compiling


def compile(source: Any, *, fuse: bool = True, neuron_mode: str = "auto",
            cache: bool | str | os.PathLike = True, function: str | None = None,
            name: str = "net", constants: Mapping[str, Any] | None = None) -> "CompiledModel":
    """Compile `source` to native code. `fuse` runs the fuse pass on nn code;
    `neuron_mode` is auto|neuron|layers for neuron nets; `cache` is True (the
    default directory, see ncc.runtime.cache), False, or a cache directory;
    `function` picks the kernel when a module has several; `name` names a net
    read from adjacency text; `constants` (ONNX models only) maps graph inputs
    to values imported as constants (`ncc.import_onnx`): the model's inputs
    are then the others."""
    if neuron_mode not in NEURON_MODES:
        raise NccError(f"neuron_mode must be one of {', '.join(NEURON_MODES)}, got '{neuron_mode}'")
    with COMPILE_LOCK:  # building xDSL IR is not thread-safe: one compile at a time
        return _compile(source, fuse, neuron_mode, cache, function, name, constants)




def _compile(source: Any, fuse: bool, neuron_mode: str, cache: Any, function: str | None,
             name: str, constants: Mapping[str, Any] | None = None) -> "CompiledModel":
    info: dict[str, Any] = {"seconds": {}}
    clock = Clock(info["seconds"])
    start = time.perf_counter()
    with clock("import"):
        module = load_source(source, name, constants)
        places = layered_param_places(module, neuron_mode)
        unlowered = _unlowered_functions(module)
        kept = module.clone() if unlowered else None  # what training differentiates
    with clock("lower-to-loops"):
        info["neuron_mode"], recipes = lower_to_loops(module, fuse=fuse, neuron_mode=neuron_mode)
    kernel = select_kernel(module, function)
    abi = KernelABI.of(kernel)
    specs = [ArgSpec.of(t) for t in kernel.function_type.inputs.data]
    weights = {op.sym: op for op in module.ops if op.name == "nn.weight"}
    with clock("native"):
        lib = native_library(module, abi, cache, info, clock)
    info["seconds"]["total"] = time.perf_counter() - start
    model = CompiledModel(abi, specs, weights, lib, info, places.get(abi.name), recipes)
    kind = unlowered.get(abi.name)
    if kept is not None and kind is not None:
        from ncc.runtime.training import Training

        if kind == "net":
            kind = "layers" if abi.name in places else "neuron"
        model._training = Training(model, kept, kind, abi.name, places.get(abi.name), cache)
    return model


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


def lower_to_loops(module: ModuleOp, *, fuse: bool = True, neuron_mode: str = "auto"
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
        if fuse:
            run_passes(module, "fuse")
        recipes = fold_weights(module, compute=False)  # the model computes their data
        run_passes(module, "lower-to-loops")
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


# ---------------------------------------------------------------------------
# The model



class Params(MutableMapping):
    """Weight name -> the buffer the kernel reads. Assigning copies into the
    buffer (shape checked, numpy casting), so the kernel sees the new values.
    A name held in several places (a shared neuron-level symbol lowered as
    layers), or one the kernels read through a copy of their own (a derived
    weight: a transposed Gemm weight, a weight computed from several
    parameters), reads as a read-only view and is set with
    `params[name] = value`, which writes every copy and recomputes the
    derived ones."""

    def __init__(self, buffers: dict[str, np.ndarray], unset: set[str],
                 ties: dict[str, list[np.ndarray]] | None = None,
                 dependents: dict[str, list[Any]] | None = None):
        self._buffers, self._unset, self._ties = buffers, unset, ties or {}
        self._dependents = dependents or {}  # name -> derived weights computed from it

    def __getitem__(self, key: str) -> np.ndarray:
        return self._buffers[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._buffers:
            raise NccError(f"no parameter '{key}' (has: {_names(self._buffers)})")
        buf = self._buffers[key]
        try:
            v = np.asarray(value)
            if v.dtype.kind not in "biuf":
                raise ValueError(f"dtype {v.dtype} is not a real number type")
            if v.shape != buf.shape and v.size != 1:
                raise ValueError(f"got shape {list(v.shape)}")
            with np.errstate(over="raise"):
                for place in self._ties.get(key, [buf]):
                    np.copyto(place, np.broadcast_to(v, buf.shape), casting="unsafe")
        except (ValueError, TypeError, FloatingPointError) as e:
            raise NccError(f"cannot set parameter '{key}' (shape {list(buf.shape)}, "
                           f"{buf.dtype}): {e}") from None
        self._unset.discard(key)
        self.sync([key])

    def sync(self, names: Sequence[str]) -> None:
        """Recompute the derived weights of `names` after their buffers were
        written in place (optimizers call this after each step)."""
        for derived in dict.fromkeys(d for n in names for d in self._dependents.get(n, ())):
            derived.compute(self._unset)

    def __delitem__(self, key: str) -> None:
        raise NccError("parameters cannot be removed from a compiled model")

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)

    def __repr__(self) -> str:
        return f"Params({_names(self._buffers)})"


class _Derived:
    """A derived weight's buffer and how to compute it from its sources'
    buffers: a view of the source for a reshape, else a recipe run by the
    reference interpreter whenever a source is set."""

    def __init__(self, sym: str, recipes: ModuleOp, spec: "ArgSpec", sources: Mapping[str, np.ndarray]):
        recipe = next(f for f in recipes.ops if isinstance(f, func.FuncOp) and f.sym_name.data == sym)
        self.sym, self.recipes = sym, recipes
        self.sources = {s: sources[s] for s in dict.fromkeys(
            op.sym for op in recipe.body.block.ops if isinstance(op, nn.WeightRefOp))}
        body = [op for op in recipe.body.block.ops if not isinstance(op, (nn.WeightRefOp, func.ReturnOp))]
        (src,) = self.sources.values() if len(self.sources) == 1 else (None,)
        self.is_view = (src is not None and src.dtype == spec.dtype
                        and all(isinstance(op, nn.ReshapeOp) for op in body))
        self.buffer = src.reshape(spec.shape) if self.is_view else aligned_empty(spec.shape, spec.dtype)

    def compute(self, unset: set[str]) -> None:
        if self.is_view or any(s in unset for s in self.sources):
            return
        value = run(self.recipes, {}, function=self.sym, params=self.sources)[0]
        np.copyto(self.buffer, value, casting="unsafe")


def _names(d: Mapping[str, Any]) -> str:
    names = list(d)
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "") \
        if names else "none"


def _is_internal(w: Any) -> bool:
    """A weight lowering made of a literal (not one of the model's parameters)."""
    return w is not None and CONSTANT_MARK in w.attributes


def _dtype_of(w: Any) -> np.dtype:
    return np.dtype(numpy_dtype(w.type.element_type))


class CompiledModel:
    """A compiled kernel with its weights: see the module docstring."""

    def __init__(self, abi: KernelABI, specs: Sequence[ArgSpec], weights: Mapping[str, Any],
                 lib: Any, info: dict[str, Any],
                 param_places: Mapping[str, list[tuple[str, int]]] | None = None,
                 recipes: ModuleOp | None = None):
        self.abi, self.compile_info, self._lib = abi, info, lib
        self._address = function_address(lib, abi.name)
        self._invoke = invoker(len(specs))
        self._template: list[Any] = [None] * len(specs)
        self._in_pos, self._in_specs, self._out_pos, self._out_specs = [], [], [], []
        self._arena_pos: int | None = None
        names_in, names_out = [], []
        buffers: dict[str, np.ndarray] = {}
        unset: set[str] = set()
        self._weights: dict[str, np.ndarray] = {}  # weight symbol -> the buffer the kernel reads
        self._training: Any = None  # set by compile for models it can differentiate
        recipes = recipes if recipes is not None else ModuleOp([])
        for w in recipes.ops:  # the sources of derived weights, which the kernel need not read
            if w.name == "nn.weight":
                spec = ArgSpec(_dtype_of(w), tuple(w.type.get_shape()))
                self._weights[w.sym] = buffers[w.sym] = self._weight_buffer(w.sym, spec, weights, unset)
        derived_syms = {f.sym_name.data for f in recipes.ops if isinstance(f, func.FuncOp)}
        derived: dict[str, _Derived] = {}
        for pos, (role, spec) in enumerate(zip(abi.roles, specs)):
            if role.kind == "input":
                self._in_pos.append(pos), self._in_specs.append(spec), names_in.append(role.name)
            elif role.kind == "output":
                self._out_pos.append(pos), self._out_specs.append(spec), names_out.append(role.name)
            elif role.kind == "arena":
                self._arena_pos = pos
            elif role.name in derived_syms:
                d = derived[role.name] = _Derived(role.name, recipes, spec, self._weights)
                d.compute(unset)
                self._template[pos] = d.buffer
            else:
                buf = self._weights.get(role.name)
                if buf is None:
                    buf = self._weight_buffer(role.name, spec, weights, unset)
                self._template[pos] = buf
                self._weights[role.name] = buf
                if abi.param_names:  # a neuron kernel's flat buffer: one 0-d view per name
                    buffers.update((n, buf[k:k + 1].reshape(())) for k, n in enumerate(abi.param_names))
                    if role.name in unset:
                        unset.discard(role.name)
                        unset.update(abi.param_names)
                elif not _is_internal(weights.get(role.name)):
                    buffers[role.name] = buf
        self.input_names: tuple[str, ...] = tuple(names_in)
        self.output_names: tuple[str, ...] = tuple(names_out)
        ties: dict[str, list[np.ndarray]] = {}
        if param_places:  # a neuron net lowered as layers: params by their equation names
            flat = {sym: buf.reshape(-1) for sym, buf in buffers.items()}
            buffers = {}
            for name, where in param_places.items():
                views = [flat[sym][i:i + 1].reshape(()) for sym, i in where]
                buffers[name] = views[0]
                if len(views) > 1:
                    ties[name] = views
                    buffers[name] = views[0].view()
                    buffers[name].flags.writeable = False
        dependents: dict[str, list[_Derived]] = {}
        for d in derived.values():
            if not d.is_view:
                for src in d.sources:
                    dependents.setdefault(src, []).append(d)
        for src in dependents:  # written through params[name] = value only, which recomputes
            ties[src] = [buffers[src]]
            buffers[src] = buffers[src].view()
            buffers[src].flags.writeable = False
        order = [sym for sym in weights if sym in buffers]  # the module's (the file's) order
        buffers = {k: buffers[k] for k in [*order, *buffers]}
        self.params = Params(buffers, unset, ties, dependents)
        self._arenas = ArenaCache(abi.arena_bytes)
        self._input_set = frozenset(self.input_names)
        self._call = self._build_call()

    @staticmethod
    def _weight_buffer(sym: str, spec: ArgSpec, weights: Mapping[str, Any], unset: set[str]):
        if any(d < 0 for d in spec.shape):
            raise NccError(f"weight @{sym} has a dynamic shape: weights must be static")
        buf = aligned_empty(spec.shape, spec.dtype)
        op = weights.get(sym)
        data = None if op is None else op.data
        if data is None:  # a parameter without data: the user sets it before calling
            buf[...] = 0
            unset.add(sym)
        else:
            buf[...] = np.asarray(data).reshape(spec.shape)
        return buf

    # -- calling ------------------------------------------------------------

    def __call__(self, *arrays: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        if len(arrays) == len(self._in_specs):
            return self._call(*arrays)
        raise NccError(f"the model takes {len(self._in_specs)} input(s) "
                       f"({', '.join(self.input_names)}), got {len(arrays)}")

    def run(self, feeds: Mapping[str, Any], output_names: Sequence[str] | None = None
            ) -> list[np.ndarray]:
        """Outputs (all, or those named, in that order) for inputs given by name."""
        if not (type(feeds) is dict or isinstance(feeds, Mapping)):
            raise NccError(f"run takes a mapping of input name -> array, got {type(feeds).__name__}")
        names = self.input_names
        if feeds.keys() != self._input_set:
            missing = [n for n in names if n not in feeds]
            unknown = [str(k) for k in feeds if k not in names]
            raise NccError(f"the model takes inputs {', '.join(names)}"
                           + (f"; missing: {', '.join(missing)}" if missing else "")
                           + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        outs = self._call(*[feeds[n] for n in names])
        outs = [outs] if len(self._out_specs) == 1 else list(outs)
        if output_names is None:
            return outs
        index = {n: k for k, n in enumerate(self.output_names)}
        bad = [str(n) for n in output_names if n not in index]
        if bad:
            raise NccError(f"no output named {', '.join(bad)} (outputs: {', '.join(self.output_names)})")
        return [outs[index[n]] for n in output_names]

    # -- training (runtime/training.py) ---------------------------------------

    def vjp(self, inputs: Any, cotangents: Any, *, frozen: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Gradients of sum(cotangent * output) by parameter name and float input
        name, from a native backward kernel (see runtime/training.py)."""
        return training.vjp(self, inputs, cotangents, frozen)

    def grad(self, inputs: Any, targets: Any = None, *, loss: str = "mse", cotangents: Any = None,
             output: str | None = None, frozen: Sequence[str] = (), wrt: str = "all"
             ) -> dict[str, np.ndarray]:
        """Gradients of a loss ("mse", "cross_entropy") of an output against
        `targets`, or a vjp with `cotangents`; `wrt="params"` skips the inputs'."""
        return training.value_and_grad(self, inputs, targets, loss=loss, cotangents=cotangents,
                                       output=output, frozen=frozen, wrt=wrt)[1]

    def value_and_grad(self, inputs: Any, targets: Any = None, *, loss: str = "mse",
                       cotangents: Any = None, output: str | None = None,
                       frozen: Sequence[str] = (), wrt: str = "all") -> tuple[Any, dict[str, np.ndarray]]:
        """(loss, gradients) from one native kernel; with `cotangents`: (outputs by name, vjp)."""
        return training.value_and_grad(self, inputs, targets, loss=loss, cotangents=cotangents,
                                       output=output, frozen=frozen, wrt=wrt)

    @property
    def trainable(self) -> list[str]:
        """The parameters gradients are computed for by default: float weights
        except ncc.constant ones and batch-norm running statistics."""
        from ncc.runtime.training import training_of

        return training_of(self).trainable

    def memory(self, batch: int | None = None) -> Any:
        """The memory plan (runtime/training.py `MemoryPlan`), or its bytes at `batch`."""
        from ncc.runtime.training import training_of

        plan = training_of(self).memory()
        return plan if batch is None else plan.at(int(batch))

    def export_onnx(self, path: str | os.PathLike | None = None, *, opset: int | None = None) -> Any:
        """The model as ONNX (an onnx.ModelProto, written to `path` if given),
        its initializers holding the current `params` values."""
        from ncc.runtime.training import training_of

        t = training_of(self)
        return export_onnx(t.export_module(), path, function=t.function, opset=opset)

    def _build_call(self):
        """The per-call path as straight-line Python made for this kernel: a
        tiny net's kernel runs in well under a microsecond, so the checks are
        plain comparisons against precomputed shapes (anything unusual goes to
        `check_input`), and the arguments are put in ABI order once, here."""
        env: dict[str, Any] = {"ndarray": np.ndarray, "empty": np.empty, "invoke": self._invoke,
                               "address": self._address, "unset": self.params._unset,
                               "NccError": NccError, "check": check_input,
                               "arena_of": self._arenas, "in_names": self.input_names}
        args = [f"w{pos}" for pos in range(len(self._template))]
        env.update((f"w{pos}", buf) for pos, buf in enumerate(self._template) if buf is not None)
        xs = [f"x{k}" for k in range(len(self._in_specs))]
        lines = [f"def call({', '.join(xs)}):",
                 "    if unset:",
                 "        raise NccError('parameters without values must be set before a call: '"
                 " + ', '.join(sorted(unset)))"]
        batch_of = None
        for k, (pos, spec) in enumerate(zip(self._in_pos, self._in_specs)):
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
        for k, (pos, spec) in enumerate(zip(self._out_pos, self._out_specs)):
            env[f"o{k}_tail"], env[f"o{k}_dtype"] = spec.tail, spec.dtype
            shape = f"(batch, *o{k}_tail)" if spec.dyn else f"o{k}_tail"
            lines.append(f"    o{k} = empty({shape}, o{k}_dtype)")
            args[pos] = f"o{k}"
            outs.append(f"o{k}")
        if self._arena_pos is not None:
            lines.append("    arena = arena_of(batch)")
            args[self._arena_pos] = "arena"
        lines += [f"    invoke(address, {', '.join(args)}, batch)",
                  f"    return {outs[0] if len(outs) == 1 else '(' + ''.join(o + ', ' for o in outs) + ')'}"]
        exec("\n".join(lines), env)
        return env["call"]

    # -- introspection ------------------------------------------------------

    @property
    def input_shapes(self) -> list[list[int | str]]:
        return [["batch" if d < 0 else d for d in s.shape] for s in self._in_specs]

    @property
    def input_dtypes(self) -> list[np.dtype]:
        return [s.dtype for s in self._in_specs]

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR (empty when the code came from the cache)."""
        return getattr(self._lib, "llvm_ir", "") or ""

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {s.describe()}" for n, s in zip(self.input_names, self._in_specs))
        outs = ", ".join(f"{n}: {s.describe()}" for n, s in zip(self.output_names, self._out_specs))
        return f"<CompiledModel @{self.abi.name} ({ins}) -> ({outs})>"
