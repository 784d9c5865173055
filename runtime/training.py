"""Training a compiled model with native backward kernels.

    model = ncc.compile("mlp.onnx")
    grads = model.vjp({"x": x}, {"y": dy})                   # the primitive: a dict by name
    grads = model.grad(x, labels, loss="cross_entropy")      # a loss: its gradients
    loss, grads = model.value_and_grad(x, t, loss="mse")
    opt = ncc.optim.Adam(model, lr=1e-3); opt.step(grads)    # native update, params in place
    history = ncc.train(model, (x, labels), loss="cross_entropy", epochs=10, batch_size=32)
    model.memory()                                           # bytes: weights, arenas, saved values
    model.export_onnx("trained.onnx")                        # the current params as initializers

**vjp** (`model.vjp(inputs, cotangents, frozen=())`): for the model's outputs y
and the given output cotangents dy (one per output, by output name, each of the
output's shape), the gradient of sum(dy * y) -- summed over the batch rows --
with respect to every trainable parameter (keys as in `model.params`) and every
float input (keys as in `model.input_names`). For an nn model the nn function
the model was compiled from (kept, unlowered) is differentiated by
`ncc.passes.autodiff.differentiate(mode="combined")`: one function computing
the forward and the backward, fused and lowered with one memory plan for both,
compiled to native code on the first call and cached per frozen set. The
kernel reads the model's own weight buffers (the arrays of `model.params`), so
an update is seen by both `model(x)` and the next gradient. A neuron net
lowered straight (neuron-to-loops) uses the neuron-level backward kernel (the
parameter gradients of its flat buffer); one lowered as layers differentiates
the layerized function, and a parameter shared by several edges gets the sum
of its copies' gradients.

**Losses** (`model.grad(inputs, targets, loss=...)`, `value_and_grad`): the
loss is built as nn ops appended to a copy of the forward function, which is
then differentiated with the loss seeded with 1, so the loss and every
gradient come from one native kernel:

* `"mse"`: mean over all elements of (y - target)^2 (torch's MSELoss), float
  targets of the output's shape;
* `"cross_entropy"`: softmax cross-entropy with integer class labels
  (`[batch]`, values in [0, classes)), averaged over the batch (torch's
  CrossEntropyLoss), for a `[batch, classes]` output of logits: log_softmax,
  then the log-probability at each label picked by a one-hot mask
  (`nn.equal` of the label against the class index, `nn.select`).

`output=NAME` picks the output of a model with several (default: the first).
A user-given output cotangent (`cotangents={...}`) is a vjp. For a neuron net
lowered straight, the loss and its derivative with respect to the outputs are
computed with numpy between the forward kernel and the backward kernel.

**Trainable parameters** (`model.trainable`): every float weight, except
`ncc.constant` weights (folded constants, which lower-to-loops makes from
`nn.constant`s) and the running mean and variance operands of
`nn.batch_norm` (statistics, not parameters: the gradient is that of the
inference-mode normalization, as in a PyTorch model in `eval()` mode).
`frozen=[names]` (on vjp, grad, value_and_grad and the optimizers) excludes
more: the engine does not compute their gradients (for a neuron-level kernel,
whose parameters are one buffer, they are computed and dropped).

**Memory** (`model.memory(batch=None)`): see `MemoryPlan`.
"""


from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, i64
from xdsl.ir import BlockArgument
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp
from ncc.passes.autodiff import differentiate
from ncc.passes.autodiff.core import weight_kinds
from ncc.text import human_bytes
from ncc.passes.layerize import param_places
from ncc.passes.lowering.straight_line import params_symbol
from ncc.passes.prune.nn import MASK_OF
from ncc.pipeline import run_passes
from ncc.reference import arg_names, result_names
from ncc.runtime.calling import BoundKernel
from ncc.runtime.native import COMPILE_LOCK, compile_kernel

LOSSES = ("mse", "cross_entropy")
_KERNELS_KEPT = 8


# ---------------------------------------------------------------------------
# Gradients: a dict by name, plus the flat buffers they were read from


class Gradients(dict):
    """Gradients by parameter or input name. For a neuron-level model the
    parameter gradients are also kept as one flat array (`flat`, by buffer
    symbol), which the optimizers read directly."""

    flat: dict[str, np.ndarray]

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.flat = {}


# ---------------------------------------------------------------------------
# Memory


@dataclass(frozen=True)
class Bytes:
    """A size of `per_row * batch + constant` bytes."""

    per_row: int = 0
    constant: int = 0

    def at(self, batch: int) -> int:
        return self.per_row * batch + self.constant

    def __add__(self, other: "Bytes") -> "Bytes":
        return Bytes(self.per_row + other.per_row, self.constant + other.constant)

    def __str__(self) -> str:
        if not self.per_row:
            return human_bytes(self.constant)
        return f"{human_bytes(self.per_row)}/row + {human_bytes(self.constant)}"




@dataclass(frozen=True)
class MemoryPlan:
    """What a model needs, in bytes (`Bytes`: per batch row + constant).

    * `weights`: every weight buffer the forward kernel reads (`trainable` of
      them are parameters; the rest are constants and batch-norm statistics);
    * `gradients`: the parameter gradients one vjp/grad call returns (the
      trainable weights' size);
    * `forward_arena`: the forward kernel's arena (intermediates, reused by
      liveness: lower-to-loops' static plan);
    * `vjp_arena`: the gradient kernel's arena, forward and backward planned
      together in one function, so a forward value's bytes are reused once
      the backward has read it for the last time;
    * `saved`: the saved activations -- values computed by the forward part
      that the backward part reads (the `saved:<k>` results of
      `differentiate(mode="split")`; inputs and weights the backward re-reads
      are the caller's and the model's buffers, not counted). They live in
      the vjp arena: `saved <= vjp_arena`.

    For a neuron net lowered straight, the backward kernel recomputes each
    row's values in registers (no saved buffers): `saved` is zero.
    `at(batch)` gives every figure for one batch size; `str()` a table."""

    weights: Bytes
    trainable: Bytes
    gradients: Bytes
    forward_arena: Bytes
    vjp_arena: Bytes
    saved: Bytes

    FIELDS = ("weights", "trainable", "gradients", "forward_arena", "vjp_arena", "saved")

    def at(self, batch: int) -> dict[str, int]:
        return {k: getattr(self, k).at(batch) for k in self.FIELDS}

    def training_bytes(self, batch: int) -> int:
        """Weights + gradients + the vjp arena at `batch` (optimizer state not included)."""
        return self.weights.at(batch) + self.gradients.at(batch) + self.vjp_arena.at(batch)

    def __str__(self) -> str:
        width = max(map(len, self.FIELDS))
        return "\n".join(f"{k.ljust(width)}  {getattr(self, k)}" for k in self.FIELDS)


def saved_bytes(m: ModuleOp, fn: func.FuncOp, frozen: Iterable[str] = ()) -> Bytes:
    """The bytes of the activations the backward of `fn` reads (the saved:<k>
    results of differentiate(mode="split"); `m` is changed)."""
    fwd, _ = _differentiate(m, fn, mode="split", cotangents="args", frozen=frozen, inputs=True)
    ret = fwd.body.block.last_op
    total = Bytes()
    for v, name in zip(ret.arguments, result_names(fwd, "")):
        if name.startswith("saved:") and not isinstance(v, BlockArgument):
            total = total + _value_bytes(v.type)
    return total


def _value_bytes(t: Any) -> Bytes:
    shape = nn.shape_of(t)
    width = nn.numpy_dtype(t.element_type).itemsize
    if shape and shape[0] == nn.DYN:
        return Bytes(int(np.prod(shape[1:], dtype=np.int64)) * width, 0)
    return Bytes(0, int(np.prod(shape, dtype=np.int64)) * width)


# ---------------------------------------------------------------------------
# Parameter groups: what an optimizer updates


@dataclass
class ParamGroup:
    """One flat buffer an optimizer updates in place: `values()` is a
    contiguous 1-d view of the model's memory (or a gathered copy that
    `commit()` writes back), `gradient(grads)` the matching flat gradient."""

    names: list[str]
    size: int
    dtype: np.dtype
    values: Callable[[], np.ndarray]
    gradient: Callable[[Mapping[str, Any]], np.ndarray]
    commit: Callable[[], None] = lambda: None


def _as_flat(name: str, g: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        a = np.asarray(g)
    except Exception:  # noqa: BLE001
        raise NccError(f"the gradient of '{name}' is not an array") from None
    if a.shape != shape:
        raise NccError(f"the gradient of '{name}' has shape {list(a.shape)}, expected {list(shape)}")
    if a.dtype.kind not in "biuf":
        raise NccError(f"the gradient of '{name}' has dtype {a.dtype}, expected {dtype}")
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


# ---------------------------------------------------------------------------
# The model's training state: one class per kind of source


class Training:
    """What a CompiledModel keeps to differentiate itself: the unlowered
    source, which weights train, and the gradient kernels built so far (per
    purpose and frozen set). A subclass per kind of source says where the
    parameters live and how their gradients are read and updated:
    `NNTraining` (an nn module or ONNX model), `LayersTraining` (a neuron net
    lowered as layers), `NeuronTraining` (a neuron net lowered straight)."""

    kind: str  # "nn", "layers" or "neuron"

    def __init__(self, model: Any, source: ModuleOp, function: str,
                 places: Mapping[str, list[tuple[str, int]]] | None, cache: Any, threads: int = 1):
        self.model, self.source, self.function = model, source, function
        self.threads = threads  # the GEMMs' team size, as the model's
        self.places = dict(places or {})
        self.cache = cache
        self._kernels: dict[tuple, Any] = {}
        self._lock = threading.RLock()
        self.non_trainable: dict[str, str] = {}  # name -> why

    # -- which params train

    @property
    def trainable(self) -> list[str]:
        return [n for n in self.model.params if n not in self.non_trainable]

    def check_frozen(self, frozen: Iterable[str]) -> frozenset[str]:
        if isinstance(frozen, str):
            frozen = [frozen]
        frozen = list(frozen)
        params = self.model.params
        bad = [str(n) for n in frozen if n not in params]
        if bad:
            raise NccError(f"frozen: no parameter {', '.join(repr(b) for b in bad)} "
                           f"(parameters: {_names(self.trainable)})")
        return frozenset(frozen)

    def engine_frozen(self, frozen: frozenset[str]) -> list[str]:
        """The nn weight symbols autodiff may skip for the frozen param names."""
        return []

    # -- the nn function differentiated

    def source_function(self) -> Any:
        return next(op for op in self.source.ops if getattr(op, "sym_name", None) is not None
                    and op.sym_name.data == self.function)

    def nn_copy(self) -> tuple[ModuleOp, func.FuncOp]:
        """A fresh nn module holding the model's function; for a neuron net its
        layerized function with I/O named x, y."""
        m = self.source.clone()
        run_passes(m, "layerize")
        fn = _function(m, self.function)
        fn.arg_attrs = ArrayAttr([DictionaryAttr({"ncc.name": StringAttr("x")})])
        fn.res_attrs = ArrayAttr([DictionaryAttr({"ncc.name": StringAttr("y")})])
        return m, fn

    def forward_function(self) -> func.FuncOp:
        return self.nn_copy()[1]

    def buffer_of(self, sym: str) -> np.ndarray | None:
        return self.model.weight_buffers.get(sym)

    # -- kernels, cached per (purpose, frozen set, ...)

    def kernel(self, key: tuple, build: Callable[[], BoundKernel]) -> BoundKernel:
        with self._lock:
            k = self._kernels.get(key)
            if k is None:
                with COMPILE_LOCK:
                    k = build()
                if len(self._kernels) >= _KERNELS_KEPT:
                    self._kernels.pop(next(iter(self._kernels)))
                self._kernels[key] = k
            return k

    def forward_loops(self) -> tuple[ModuleOp, str]:
        """The forward at loop level as training sees it (the parameters read
        as they are, not packed or folded) and its kernel's name: what
        ncc.emit_c(training=True) prints beside the vjp."""
        m, fn = self.nn_copy()
        return _only(m, fn.sym_name.data, f"fuse,lower-to-loops{{threads={self.threads}}}")

    def vjp_loops(self, frozen: frozenset[str], inputs: bool = True) -> tuple[ModuleOp, str]:
        """The vjp kernel at loop level and its name: (outputs, gradients) from
        (inputs, output cotangents)."""
        m, fn = self.nn_copy()
        (vjp,) = _differentiate(m, fn, mode="combined", cotangents="args",
                                frozen=self.engine_frozen(frozen), inputs=inputs)
        return _only(m, vjp.sym_name.data, f"fuse,lower-to-loops{{threads={self.threads}}}")

    def vjp_kernel(self, frozen: frozenset[str], inputs: bool = True) -> BoundKernel:
        """The kernel of (outputs, gradients) from (inputs, output cotangents)."""
        def build() -> BoundKernel:
            m, name = self.vjp_loops(frozen, inputs)
            return compile_kernel(m, name, self.cache, self.buffer_of, pipeline=None)

        return self.kernel(("vjp", frozen, inputs), build)

    def loss_kernel(self, loss: str, output: str, frozen: frozenset[str], inputs: bool) -> BoundKernel:
        """The kernel of (loss, gradients) from (inputs, targets)."""
        def build() -> BoundKernel:
            m, fn = self.nn_copy()
            loss_fn = build_loss_function(m, fn, loss, output)
            names = [n for n, ty in zip(arg_names(fn), fn.function_type.inputs.data)
                     if _is_float(ty)] if inputs else False
            (vjp,) = _differentiate(m, loss_fn, mode="combined", cotangents="ones",
                                    frozen=self.engine_frozen(frozen), inputs=names)
            return compile_kernel(m, vjp.sym_name.data, self.cache, self.buffer_of,
                                  f"fuse,lower-to-loops{{threads={self.threads}}}")

        return self.kernel(("loss", loss, output, frozen, inputs), build)

    def loss_and_grads(self, feeds: dict, targets: np.ndarray, loss: str, output: str,
                       frozen: frozenset[str], wrt: str) -> tuple[float, Gradients]:
        k = self.loss_kernel(loss, output, frozen, wrt == "all")
        what = {n: f"input '{n}'" for n in feeds} | {f"target:{output}": f"the targets of '{output}'"}
        outs = k({**feeds, f"target:{output}": targets}, what)
        grads = self.param_grads(outs, frozen)
        if wrt == "all":
            for n in self.model.input_names:
                if f"grad:{n}" in outs:
                    grads[n] = outs[f"grad:{n}"]
        return float(outs["loss"]), grads

    # -- parameter gradients by name, and what optimizers update

    def param_grads(self, outs: Mapping[str, np.ndarray], frozen: frozenset[str]) -> Gradients:
        """The kernel's `grad:<...>` outputs as gradients by parameter name."""
        raise NotImplementedError

    def param_groups(self, frozen: Iterable[str]) -> list[ParamGroup]:
        raise NotImplementedError

    # -- memory

    def memory(self) -> MemoryPlan:
        model = self.model
        weights = Bytes(0, sum(b.nbytes for b in model.weight_buffers.values()))
        train = self.trainable_bytes()
        forward = Bytes(model.abi.arena_per_batch, model.abi.arena_constant)
        k = self.vjp_kernel(frozenset())
        vjp = Bytes(k.abi.arena_per_batch, k.abi.arena_constant)
        return MemoryPlan(weights, train, train, forward, vjp, self.saved_bytes())

    def trainable_bytes(self) -> Bytes:
        return Bytes(0, 4 * len(self.model.params))  # float32 scalars by equation name

    def saved_bytes(self) -> Bytes:
        m, fn = self.nn_copy()
        return saved_bytes(m, fn, self.engine_frozen(frozenset()))

    # -- export

    def export_module(self) -> ModuleOp:
        """The source as an nn module holding the current parameter values."""
        m, _ = self.nn_copy()
        for op in m.ops:
            if isinstance(op, nn.WeightOp) and op.sym in self.model.weight_buffers:
                op.data = np.array(self.model.weight_buffers[op.sym]).reshape(nn.shape_of(op.type))
        return m


class NNTraining(Training):
    """An nn module (or ONNX model): each float weight is a parameter, by its
    symbol; the kernels differentiate the nn function itself."""

    kind = "nn"

    def __init__(self, *args: Any):
        super().__init__(*args)
        kinds = weight_kinds(self.source)
        for name, buf in self.model.weight_buffers.items():
            kind = kinds.get(name, "constant")  # a weight the compile folded from others
            if kind != "trainable":
                self.non_trainable[name] = f"{buf.dtype} (not a float)" if buf.dtype.kind != "f" else kind

    def nn_copy(self) -> tuple[ModuleOp, func.FuncOp]:
        """A fresh copy of the module and its function, whose arguments and
        results carry the model's names as `ncc.name` (autodiff names the
        derivative's by that attribute, the model also by the IR's `%x`)."""
        m = self.source.clone()
        fn = _function(m, self.function)
        fn.arg_attrs = _named_entries(fn.arg_attrs, arg_names(fn))
        fn.res_attrs = _named_entries(fn.res_attrs, result_names(fn, ""))
        return m, fn

    def forward_function(self) -> func.FuncOp:
        return self.source_function()

    def engine_frozen(self, frozen: frozenset[str]) -> list[str]:
        weights = {op.sym for op in self.source.ops if isinstance(op, nn.WeightOp)}
        return sorted((frozen | set(self.non_trainable)) & weights)

    def param_grads(self, outs: Mapping[str, np.ndarray], frozen: frozenset[str]) -> Gradients:
        return Gradients({name: outs[f"grad:{name}"] for name in self.trainable if name not in frozen})

    def param_groups(self, frozen: Iterable[str]) -> list[ParamGroup]:
        frozen = self.check_frozen(frozen)
        model = self.model
        # a pruned weight's mask (prune): each update ends with weight *= mask, so that
        # pruned entries stay zero whatever an optimizer's momentum or decay would do
        masks = {op.attributes[MASK_OF].data: model.weight_buffers[op.sym] for op in self.source.ops
                 if isinstance(op, nn.WeightOp) and MASK_OF in op.attributes and op.sym in model.weight_buffers}
        groups = []
        for name in self.trainable:
            if name in frozen:
                continue
            buf = model.weight_buffers[name]

            def commit(name=name, buf=buf, mask=masks.get(name)) -> None:
                if mask is not None:
                    np.multiply(buf, mask, out=buf)
                model.params.sync([name])  # its derived copies
            groups.append(ParamGroup(
                [name], buf.size, buf.dtype, (lambda buf=buf: buf.reshape(-1)),
                (lambda grads, name=name, buf=buf: _as_flat(name, _need(grads, name), buf.shape,
                                                            buf.dtype)), commit))
        return groups

    def trainable_bytes(self) -> Bytes:
        return Bytes(0, sum(self.model.weight_buffers[n].nbytes for n in self.trainable))


class LayersTraining(Training):
    """A neuron net lowered as layers: its parameters are named by its
    equations (`w0004`), each at one or more places of the layer weights; the
    kernels differentiate the layerized function, and a parameter shared by
    several edges gets the sum of its copies' gradients."""

    kind = FLAT = "layers"  # FLAT: the key of the flat gradient in Gradients.flat

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.gather = _LayerGather(self.places)

    def engine_frozen(self, frozen: frozenset[str]) -> list[str]:
        by_sym: dict[str, set[str]] = {}
        for name, where in self.places.items():
            for sym, _ in where:
                by_sym.setdefault(sym, set()).add(name)
        return sorted(sym for sym, names in by_sym.items() if names <= frozen)

    def param_grads(self, outs: Mapping[str, np.ndarray], frozen: frozenset[str]) -> Gradients:
        flat = np.zeros(len(self.gather.names), np.float32)
        for sym, (dst, src) in self.gather.by_sym.items():
            g = outs.get(f"grad:{sym}")
            if g is not None:
                np.add.at(flat, src, g.reshape(-1)[dst])
        return _by_name(flat, self.gather.names, frozen, self.FLAT)

    def param_groups(self, frozen: Iterable[str]) -> list[ParamGroup]:
        master = np.zeros(len(self.gather.names), np.float32)

        def values() -> np.ndarray:
            self.gather.read(self.model.weight_buffers, master)
            return master
        return [_flat_group(self.gather.names, self.check_frozen(frozen), self.FLAT, values,
                            lambda: self.gather.write(self.model.weight_buffers, master))]


class NeuronTraining(Training):
    """A neuron net lowered straight: its parameters are one flat buffer (a
    0-d view per equation name) and its gradients come from the neuron-level
    backward kernel, which recomputes each row's values (no saved values).
    Frozen parameters' gradients are computed and dropped; a loss is computed
    with numpy between the forward kernel and the backward kernel."""

    kind = "neuron"

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.flat_symbol = params_symbol(self.function)

    def forward_loops(self) -> tuple[ModuleOp, str]:
        m = self.source.clone()
        return _only(m, self.function, "neuron-to-loops{mode=neuron}")

    def vjp_loops(self, frozen: frozenset[str], inputs: bool = True) -> tuple[ModuleOp, str]:
        m = self.source.clone()
        try:
            return _only(m, f"{self.function}_vjp", "neuron-to-loops{mode=neuron vjp=true}")
        except NccError as e:
            if "vjp" in str(e):
                raise NccError("this ncc has no neuron-level backward kernel: compile the net with "
                               "neuron_mode='layers' to train it") from None
            raise

    def vjp_kernel(self, frozen: frozenset[str], inputs: bool = True) -> BoundKernel:
        return self.kernel(("neuron-vjp",), lambda: compile_kernel(*self.vjp_loops(frozen), self.cache,
                                                                   self.buffer_of, pipeline=None))

    def loss_and_grads(self, feeds: dict, targets: np.ndarray, loss: str, output: str,
                       frozen: frozenset[str], wrt: str) -> tuple[float, Gradients]:
        y = self.model.run(feeds)[0].astype(np.float64)
        if loss == "mse":
            tgt = np.asarray(targets, np.float64)
            if tgt.shape != y.shape:
                raise NccError(f"the targets of 'y' have shape {list(tgt.shape)}, expected {list(y.shape)}")
            value = float(np.mean((y - tgt) ** 2))
            dy = 2.0 * (y - tgt) / max(y.size, 1)
        else:
            z = y - y.max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            rows = np.arange(y.shape[0])
            lab = targets[:, 0]
            value = float(-np.mean(np.log(p[rows, lab])))
            p[rows, lab] -= 1.0
            dy = p / max(y.shape[0], 1)
        grads = vjp(self.model, feeds, {"y": dy.astype(np.float32)}, frozen)
        if wrt != "all":
            for n in self.model.input_names:
                grads.pop(n, None)
        return value, grads

    def param_grads(self, outs: Mapping[str, np.ndarray], frozen: frozenset[str]) -> Gradients:
        flat = outs[f"grad:{self.flat_symbol}"].reshape(-1)
        return _by_name(flat, self.model.abi.param_names, frozen, self.flat_symbol)

    def param_groups(self, frozen: Iterable[str]) -> list[ParamGroup]:
        buf = self.model.weight_buffers[self.flat_symbol].reshape(-1)
        return [_flat_group(list(self.model.abi.param_names), self.check_frozen(frozen),
                            self.flat_symbol, lambda: buf, lambda: None)]

    def saved_bytes(self) -> Bytes:
        return Bytes()

    def export_module(self) -> ModuleOp:
        """The layerized net, its weights holding the current params."""
        m, _ = self.nn_copy()
        net = next(op for op in self.source.ops if isinstance(op, NetOp)
                   and op.sym_name.data == self.function)
        gather = _LayerGather(param_places(net))
        values = np.array([self.model.params[n] for n in gather.names], np.float32)
        buffers = {op.sym: np.array(op.data, np.float32) for op in m.ops
                   if isinstance(op, nn.WeightOp) and op.data is not None}
        gather.write(buffers, values)
        for op in m.ops:
            if isinstance(op, nn.WeightOp) and op.sym in buffers:
                op.data = buffers[op.sym]
        return m


TRAINING_KINDS: dict[str, type[Training]] = {"nn": NNTraining, "layers": LayersTraining,
                                             "neuron": NeuronTraining}


def _by_name(flat: np.ndarray, names: Sequence[str], frozen: frozenset[str], key: str) -> Gradients:
    """Gradients by equation name, as 0-d views of `flat` (kept as `flat[key]`)."""
    grads = Gradients((n, flat[k:k + 1].reshape(())) for k, n in enumerate(names) if n not in frozen)
    grads.flat[key] = flat
    return grads


def _flat_group(names: list[str], frozen: frozenset[str], key: str,
                read: Callable[[], np.ndarray], write_back: Callable[[], None]) -> ParamGroup:
    """One ParamGroup over a flat float32 vector of `names` (`read()` gives
    it, `write_back()` stores it); frozen entries are restored after each update."""
    keep = np.array([n not in frozen for n in names], bool)
    frozen_idx = np.flatnonzero(~keep)
    saved: list[np.ndarray] = []
    current: list[np.ndarray] = []

    def values() -> np.ndarray:
        v = read()
        current[:] = [v]
        if frozen_idx.size:
            saved[:] = [v[frozen_idx].copy()]
        return v

    def gradient(grads: Mapping[str, Any]) -> np.ndarray:
        flat = getattr(grads, "flat", {}).get(key)
        if flat is not None and flat.shape == (len(names),):
            g = np.array(flat, np.float32)
        else:
            g = np.array([np.asarray(_need(grads, n), np.float32) if k else 0.0
                          for n, k in zip(names, keep)], np.float32)
        g[frozen_idx] = 0.0
        return g

    def commit() -> None:
        if frozen_idx.size:
            current[0][frozen_idx] = saved[0]
        write_back()

    return ParamGroup([n for n, k in zip(names, keep) if k], len(names), np.dtype(np.float32),
                      values, gradient, commit)


class _LayerGather:
    """Equation-named parameters <-> their places in layer weights (vectorized)."""

    def __init__(self, places: Mapping[str, list[tuple[str, int]]]):
        self.names = list(places)
        by_sym: dict[str, tuple[list[int], list[int]]] = {}
        for k, (name, where) in enumerate(places.items()):
            for sym, i in where:
                d, s = by_sym.setdefault(sym, ([], []))
                d.append(i)
                s.append(k)
        self.by_sym = {sym: (np.array(d, np.int64), np.array(s, np.int64)) for sym, (d, s) in by_sym.items()}
        self.first = {}
        for sym, (d, s) in self.by_sym.items():
            _, first = np.unique(s, return_index=True)
            self.first[sym] = (d[first], s[first])

    def read(self, buffers: Mapping[str, np.ndarray], out: np.ndarray) -> None:
        for sym, (d, s) in self.first.items():
            out[s] = buffers[sym].reshape(-1)[d]

    def write(self, buffers: Mapping[str, np.ndarray], values: np.ndarray) -> None:
        for sym, (d, s) in self.by_sym.items():
            buffers[sym].reshape(-1)[d] = values[s]



def _only(m: ModuleOp, name: str, pipeline: str) -> tuple[ModuleOp, str]:
    """`m` lowered by `pipeline` with function `name` kept alone (and `name`):
    the other functions with bodies are dropped before the pipeline, and
    after it (it may make `name` from a neuron net beside the net's forward);
    the declarations it adds (the GEMM's) stay."""
    def drop_others() -> None:
        for op in list(m.ops):
            if isinstance(op, func.FuncOp) and op.sym_name.data != name and op.body.blocks:
                op.detach()
                op.erase()

    drop_others()
    run_passes(m, pipeline)
    drop_others()
    return m, name


def _function(m: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in m.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)


def _need(grads: Mapping[str, Any], name: str) -> Any:
    try:
        return grads[name]
    except KeyError:
        raise NccError(f"no gradient for parameter '{name}' (give the optimizer the same frozen "
                       "list as model.grad)") from None


def _names(names: Sequence[str]) -> str:
    names = list(names)
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "") \
        if names else "none"


def _differentiate(m: ModuleOp, fn: func.FuncOp, **kw: Any) -> list:
    try:
        return differentiate(m, fn, **kw)
    except NccError as e:
        raise NccError(f"cannot differentiate the model: {e.message}", e.file, e.line, e.col) from None


def _is_float(ty: Any) -> bool:
    return isinstance(ty, TensorType) and isinstance(ty.element_type, nn.FLOAT_TYPES)


# ---------------------------------------------------------------------------
# Losses as nn ops


def build_loss_function(module: ModuleOp, fn: func.FuncOp, loss: str, output: str) -> func.FuncOp:
    """A copy of `fn` taking one more argument (`target:<output>`: float
    targets for "mse", int64 labels `[batch, 1]` for "cross_entropy") and
    returning the scalar loss of that output (named "loss"); inserted after `fn`."""
    out_names = result_names(fn, "")
    out_names = [n if n else str(i) for i, n in enumerate(out_names)]
    k = out_names.index(output)
    y_type = fn.function_type.outputs.data[k]
    shape = nn.shape_of(y_type)
    if loss == "mse":
        target_type = y_type
    else:
        if len(shape) != 2:
            raise NccError(f"cross_entropy takes an output of logits [batch, classes]; output "
                           f"'{output}' has shape {nn.fmt_shape(shape)}")
        target_type = TensorType(i64, [shape[0], 1])
    in_types = list(fn.function_type.inputs.data)
    loss_type = TensorType(y_type.element_type, [])
    new = func.FuncOp(f"{fn.sym_name.data}_{loss}", (in_types + [target_type], [loss_type]))
    block = new.body.block
    mapping = dict(zip(fn.body.block.args, block.args))
    y = None
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            y = mapping.get(op.arguments[k], op.arguments[k])
            break
        block.add_op(op.clone(value_mapper=mapping))
    target = block.args[-1]

    def emit(op):
        block.add_op(op)
        return op.results[0]

    dt = nn.numpy_dtype(y_type.element_type)
    if loss == "mse":
        d = emit(nn.BINARY_OPS["sub"](y, target))
        value = emit(nn.REDUCE_OPS["reduce_mean"](emit(nn.BINARY_OPS["mul"](d, d))))
    else:
        logp = emit(nn.LogSoftmaxOp(y, axis=1))
        classes = emit(nn.ConstantOp(np.arange(shape[1], dtype=np.int64).reshape(1, -1)))
        onehot = emit(nn.COMPARE_OPS["equal"](target, classes))
        picked = emit(nn.SelectOp(onehot, logp, emit(nn.ConstantOp(np.array(0, dt)))))
        per_row = emit(nn.REDUCE_OPS["reduce_sum"](picked, axes=[1]))
        value = emit(nn.UNARY_OPS["neg"](emit(nn.REDUCE_OPS["reduce_mean"](per_row))))
    block.add_op(func.ReturnOp(value))
    arg_attrs = list(fn.arg_attrs.data) if fn.arg_attrs else [DictionaryAttr({})] * len(in_types)
    names = arg_names(fn)
    arg_attrs = [DictionaryAttr({**(a.data if isinstance(a, DictionaryAttr) else {}),
                                 "ncc.name": StringAttr(n)}) for a, n in zip(arg_attrs, names)]
    new.arg_attrs = ArrayAttr([*arg_attrs, DictionaryAttr({"ncc.name": StringAttr(f"target:{output}")})])
    new.res_attrs = ArrayAttr([DictionaryAttr({"ncc.name": StringAttr("loss")})])
    Rewriter.insert_op(new, InsertPoint.after(fn))
    return new


def training_of(model: Any) -> Training:
    t = getattr(model, "training", None)
    if t is None:
        raise NccError("this model cannot be trained: it was compiled from loop-level code "
                       "(compile the nn module, ONNX model or neuron net instead)")
    return t


# ---------------------------------------------------------------------------
# The API behind CompiledModel.vjp / grad / value_and_grad and ncc.train


def _named_entries(attrs: ArrayAttr | None, names: list[str]) -> ArrayAttr:
    """arg_attrs/res_attrs with each entry's `ncc.name` set to `names`' (other keys kept)."""
    entries = list(attrs.data) if attrs else [DictionaryAttr({}) for _ in names]
    return ArrayAttr([DictionaryAttr({**e.data, "ncc.name": StringAttr(n)}) for e, n in zip(entries, names)])


def feeds_of(model: Any, inputs: Any, what: str = "inputs") -> dict[str, Any]:
    """The model's inputs by name from a mapping, one array (a one-input
    model) or a sequence in input order."""
    names = model.input_names
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        unknown = [str(k) for k in inputs if k not in names]
        if missing or unknown:
            raise NccError(f"the model takes inputs {', '.join(names)}"
                           + (f"; missing: {', '.join(missing)}" if missing else "")
                           + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        return {n: inputs[n] for n in names}
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise NccError(f"the model takes {len(names)} input(s) ({', '.join(names)}), "
                           f"got {len(inputs)}")
        return dict(zip(names, inputs))
    if len(names) == 1:
        return {names[0]: inputs}
    raise NccError(f"{what}: the model takes inputs {', '.join(names)}: give a dict by name")


def _by_output(model: Any, values: Any, what: str) -> dict[str, Any]:
    names = model.output_names
    if isinstance(values, Mapping):
        unknown = [str(k) for k in values if k not in names]
        if unknown:
            raise NccError(f"unknown {what} {', '.join(repr(u) for u in unknown)} "
                           f"(the model's outputs: {', '.join(names)})")
        missing = [n for n in names if n not in values]
        if missing:
            raise NccError(f"missing {what} for output(s) {', '.join(missing)} (one per output)")
        return dict(values)
    if len(names) == 1:
        return {names[0]: values}
    raise NccError(f"{what}: the model has outputs {', '.join(names)}: give a dict by output name")


def _check_unset(model: Any) -> None:
    unset = model.params.unset
    if unset:
        raise NccError("parameters without values must be set before a call: " + ", ".join(sorted(unset)))


def vjp(model: Any, inputs: Any, cotangents: Any, frozen: Iterable[str] = ()) -> Gradients:
    return _vjp(model, inputs, cotangents, frozen)[1]


def _vjp(model: Any, inputs: Any, cotangents: Any, frozen: Iterable[str] = ()
         ) -> tuple[dict[str, np.ndarray], Gradients]:
    """(the outputs by name, the gradients)."""
    t = training_of(model)
    frozen = t.check_frozen(frozen)
    feeds = feeds_of(model, inputs)
    cots = _by_output(model, cotangents, "cotangent")
    _check_unset(model)
    k = t.vjp_kernel(frozen)
    run = {**feeds, **{f"cotangent:{n}": v for n, v in cots.items()}}
    what = {n: f"input '{n}'" for n in feeds} | {f"cotangent:{n}": f"cotangent '{n}'" for n in cots}
    outs = k(run, what)
    grads = t.param_grads(outs, frozen)
    for n in model.input_names:
        if f"grad:{n}" in outs:
            grads[n] = outs[f"grad:{n}"]
    return {n: outs[n] for n in model.output_names if n in outs}, grads


def _labels(y_shape: tuple[int, ...], labels: Any, output: str) -> np.ndarray:
    """Integer class labels as the loss kernel's `[batch, 1]` int64 input."""
    if not isinstance(labels, np.ndarray):
        raise NccError(f"cross_entropy: the labels of output '{output}' must be a numpy array "
                       f"of integer class indices, got {type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        raise NccError(f"cross_entropy: the labels of output '{output}' must be integers "
                       f"(class indices), got dtype {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise NccError(f"cross_entropy: the labels of output '{output}' must have shape [batch], "
                       f"got {list(labels.shape)}")
    classes = y_shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise NccError(f"cross_entropy: label {bad} of output '{output}' is out of range "
                       f"(classes 0..{classes - 1})")
    return np.ascontiguousarray(labels, np.int64).reshape(-1, 1)


def _output_type(t: Training, output: str):
    types = getattr(t, "_output_types", None)
    if types is None:
        fn = t.forward_function()
        names = [n if n else str(i) for i, n in enumerate(result_names(fn, ""))]
        types = t._output_types = dict(zip(names, fn.function_type.outputs.data))
    return types[output]


def value_and_grad(model: Any, inputs: Any, targets: Any = None, *, loss: str = "mse",
                   cotangents: Any = None, output: str | None = None, frozen: Iterable[str] = (),
                   wrt: str = "all") -> tuple[Any, Gradients]:
    """(loss value, gradients); with `cotangents`: (the model's outputs by name, vjp)."""
    t = training_of(model)
    if wrt not in ("all", "params"):
        raise NccError(f"wrt must be 'all' (parameters and inputs) or 'params', got {wrt!r}")
    if cotangents is not None:
        if targets is not None:
            raise NccError("give targets (with a loss) or cotangents, not both")
        outs, grads = _vjp(model, inputs, cotangents, frozen)
        if wrt != "all":
            for n in model.input_names:
                grads.pop(n, None)
        return outs, grads
    if loss not in LOSSES:
        raise NccError(f"unknown loss {loss!r} (losses: {', '.join(LOSSES)}; or give cotangents=)")
    if targets is None:
        raise NccError(f"the {loss} loss needs targets")
    if output is None:
        output = model.output_names[0]
    elif output not in model.output_names:
        raise NccError(f"no output named {output!r} (outputs: {', '.join(model.output_names)})")
    if isinstance(targets, Mapping):
        targets = _by_output(model, targets, "targets") if len(model.output_names) == 1 \
            else targets
        if output not in targets:
            raise NccError(f"targets: no entry for output '{output}'")
        targets = targets[output]
    frozen = t.check_frozen(frozen)
    feeds = feeds_of(model, inputs)
    _check_unset(model)
    y_type = _output_type(t, output)
    if loss == "cross_entropy":
        if len(nn.shape_of(y_type)) != 2:
            raise NccError(f"cross_entropy takes an output of logits [batch, classes]; output "
                           f"'{output}' has shape {list(nn.shape_of(y_type))}")
        targets = _labels(nn.shape_of(y_type), targets, output)
    return t.loss_and_grads(feeds, targets, loss, output, frozen, wrt)


def grad(model: Any, inputs: Any, targets: Any = None, **kw: Any) -> Gradients:
    return value_and_grad(model, inputs, targets, **kw)[1]
