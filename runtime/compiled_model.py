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
`ncc.import_onnx`): the compiled model's inputs are the others. The compile
pipeline is runtime/build.py; this module is the model it returns: the kernel
bound to its weights (`BoundKernel`), `params`, and the call path.

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
from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import CONSTANT_MARK, numpy_dtype
from ncc.onnx import export_onnx
from ncc.passes.lowering.abi import KernelABI
from ncc.passes.prune import PruneReport, prune as prune_module
from ncc.passes.prune.nn import MASK_OF
from ncc.reference import run
from ncc.runtime import training
from ncc.runtime.calling import ArgSpec, BoundKernel, aligned_empty


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
                 dependents: dict[str, list[Any]] | None = None, masks: set[str] = frozenset()):
        self._buffers, self._unset, self._ties = buffers, unset, ties or {}
        self._dependents = dependents or {}  # name -> derived weights computed from it
        self._masks = masks  # prune's masks: they may lose entries, never gain one (a sparse kernel's pattern)

    @property
    def unset(self) -> set[str]:
        """Names of parameters without values yet (the model refuses to run until set)."""
        return self._unset

    def __getitem__(self, key: str) -> np.ndarray:
        return self._buffers[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._buffers:
            raise NccError(f"no parameter '{key}' (has: {_names(self._buffers)})")
        buf = self._buffers[key]
        if key in self._masks and np.any((np.asarray(value) != 0) & (buf == 0)):
            raise NccError(f"cannot set mask '{key}': it may lose entries, not gain them (the compiled "
                           "kernels' sparsity pattern is the mask's when compiled; prune and compile again)")
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
        self.abi, self.compile_info = abi, info
        buffers: dict[str, np.ndarray] = {}  # parameter name -> its buffer (or a view of it)
        unset: set[str] = set()
        self.weight_buffers: dict[str, np.ndarray] = {}  # weight symbol -> the buffer kernels read
        self.training: Any = None  # set by compile for models it can differentiate
        recipes = recipes if recipes is not None else ModuleOp([])
        for w in recipes.ops:  # the sources of derived weights, which the kernel need not read
            if w.name == "nn.weight":
                spec = ArgSpec(_dtype_of(w), tuple(w.type.get_shape()))
                self.weight_buffers[w.sym] = buffers[w.sym] = self._weight_buffer(w.sym, spec, weights, unset)
        derived_syms = {f.sym_name.data for f in recipes.ops if isinstance(f, func.FuncOp)}
        derived: dict[str, _Derived] = {}

        def bind(sym: str, spec: ArgSpec) -> np.ndarray:
            """The buffer the kernel reads for weight `sym`, made and registered."""
            if sym in derived_syms:
                d = derived[sym] = _Derived(sym, recipes, spec, self.weight_buffers)
                d.compute(unset)
                return d.buffer
            buf = self.weight_buffers.get(sym)
            if buf is None:
                buf = self._weight_buffer(sym, spec, weights, unset)
            self.weight_buffers[sym] = buf
            if abi.param_names:  # a neuron kernel's flat buffer: one 0-d view per name
                buffers.update((n, buf[k:k + 1].reshape(())) for k, n in enumerate(abi.param_names))
                if sym in unset:
                    unset.discard(sym)
                    unset.update(abi.param_names)
            elif not _is_internal(weights.get(sym)):
                buffers[sym] = buf
            return buf

        self.kernel = BoundKernel(abi, specs, lib, bind, info)
        self.input_names: tuple[str, ...] = tuple(self.kernel.inputs)
        self.output_names: tuple[str, ...] = tuple(self.kernel.outputs)
        self._in_specs = [spec for _, spec in self.kernel.inputs.values()]
        self._out_specs = [spec for _, spec in self.kernel.outputs.values()]
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
        masks = {w.sym for w in [*recipes.ops, *weights.values()]
                 if getattr(w, "name", None) == "nn.weight" and MASK_OF in w.attributes}
        self.params = Params(buffers, unset, ties, dependents, masks)
        self._input_set = frozenset(self.input_names)
        self._call = self.kernel.positional_call(self.params.unset)

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
        if isinstance(output_names, (str, bytes)) or not isinstance(output_names, (list, tuple)):
            raise NccError(f"run's output_names must be a list of output names ({', '.join(self.output_names)}), "
                           f"got {type(output_names).__name__}")
        index = {n: k for k, n in enumerate(self.output_names)}
        bad = [repr(n) for n in output_names if not isinstance(n, str) or n not in index]
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
        return training.training_of(self).trainable

    def memory(self, batch: int | None = None) -> Any:
        """The memory plan (runtime/training.py `MemoryPlan`), or its bytes at `batch`."""
        plan = training.training_of(self).memory()
        return plan if batch is None else plan.at(int(batch))

    def prune(self, **options: Any) -> PruneReport:
        """Prune the parameters in place (`ncc.prune`'s options), tightening the
        masks the model was compiled with: pruned entries become zeros, masked
        from then on in every kernel, fine-tuning included. A weight without a
        mask cannot get one after compiling: prune the module first
        (`ncc.prune(module, sparsity=0)` gives every weight a mask of ones).
        The model's sparse kernels stay valid: a mask only loses entries."""
        module = training.training_of(self).export_module()
        report = prune_module(module, **options)
        masks = [op for op in module.ops if isinstance(op, nn.WeightOp) and MASK_OF in op.attributes]
        missing = [op.attributes[MASK_OF].data for op in masks if op.sym not in self.params]
        if missing:
            raise NccError(f"prune: {', '.join(missing)} had no mask when the model was compiled: prune the "
                           "module before compiling (ncc.prune(module, sparsity=0) gives every weight a mask)")
        for mask in masks:
            self.params[mask.sym] = mask.data
            target = mask.attributes[MASK_OF].data
            self.params[target] = next(op.data for op in module.ops if isinstance(op, nn.WeightOp) and op.sym == target)
        return report

    def export_onnx(self, path: str | os.PathLike | None = None, *, opset: int | None = None) -> Any:
        """The model as ONNX (an onnx.ModelProto, written to `path` if given),
        its initializers holding the current `params` values."""
        t = training.training_of(self)
        return export_onnx(t.export_module(), path, function=t.function, opset=opset)

    # -- introspection ------------------------------------------------------

    @property
    def input_shapes(self) -> list[list[int | str]]:
        return [["batch" if d < 0 else d for d in s.shape] for s in self._in_specs]

    @property
    def input_dtypes(self) -> list[np.dtype]:
        return [s.dtype for s in self._in_specs]

    def kernel_weights(self) -> dict[str, np.ndarray]:
        """The buffers the forward kernel reads, by weight symbol: parameters,
        constants and derived weights (a transposed or packed one), as now set."""
        return {role.name: buf for role, buf in zip(self.abi.roles, self.kernel.template) if role.kind == "weight"}

    def example_input(self, index: int, batch: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
        """A generated value of input `index` with `batch` rows: a standard
        normal sample for a float input (from `rng`, default seed 0), zeros
        for an integer one (indices that are always in range)."""
        rng = np.random.default_rng(0) if rng is None else rng
        dims = [batch if d == "batch" else d for d in self.input_shapes[index]]
        dtype = self.input_dtypes[index]
        return rng.standard_normal(dims).astype(dtype) if dtype.kind == "f" else np.zeros(dims, dtype)

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR (empty when the code came from the cache)."""
        return getattr(self.kernel.lib, "llvm_ir", "") or ""

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {s.describe()}" for n, s in zip(self.input_names, self._in_specs))
        outs = ", ".join(f"{n}: {s.describe()}" for n, s in zip(self.output_names, self._out_specs))
        return f"<CompiledModel @{self.abi.name} ({ins}) -> ({outs})>"
