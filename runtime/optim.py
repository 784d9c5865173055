"""Optimizers whose update step is one native kernel: `ncc.optim.SGD`, `Adam`, `AdamW`.

    opt = ncc.optim.Adam(model, lr=1e-3)            # PyTorch's defaults and semantics
    loss, grads = model.value_and_grad(x, labels, loss="cross_entropy")
    opt.step(grads)                                  # model.params updated in place
    history = ncc.train(model, (x, labels), loss="cross_entropy", optimizer=opt, epochs=10)

`step(grads)` takes the gradients by parameter name (what `model.grad` and
`model.vjp` return) and updates the model's own weight buffers -- the memory its
kernels read -- in place, so the next `model(x)` sees the new values. The
arithmetic runs in one loop-level kernel built here with the Builder of
lower-to-loops (one unit-stride loop per parameter buffer, which LLVM
vectorizes), lowered to LLVM and compiled like every ncc kernel (and cached
on disk). The hyperparameters of a step -- learning rate, bias corrections,
... -- are read from a small float64 buffer, so one compiled kernel serves
every step, and changing `opt.lr` between steps (a schedule) costs nothing.

Semantics are PyTorch's (torch.optim, default options), in the parameter's
own precision:

* SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
  d = g + wd * p; with momentum: buf = d on the first step, else
  buf = momentum * buf + (1 - dampening) * d, and d = d + momentum * buf
  (nesterov) or buf; p -= lr * d.
* Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
  g += wd * p; m += (1 - b1) (g - m); v = b2 v + (1 - b2) g^2;
  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
* AdamW: the same with decoupled weight decay (default 0.01): p *= 1 - lr * wd
  first, no wd term in g.

Freezing: `frozen=[names]` leaves those parameters untouched (give the same
list to `model.grad`, which then skips their gradients). Not trainable by
default, so never updated: `ncc.constant` weights (folded constants) and the
running mean and variance of batch norms (see `model.trainable`).
"""

from __future__ import annotations

import math as pymath
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ncc.diagnostics import NccError
from ncc.dialects.nn import element_type_of
from ncc.passes.lowering.abi import ArgRole, KernelABI
from ncc.passes.lowering.nn_to_loops import Buf, Builder
from ncc.runtime.calling import ArgSpec, BoundKernel
from ncc.runtime.native import Clock, native_library
from ncc.runtime.training import feeds_of, training_of, value_and_grad


@dataclass
class _Slot:
    """One buffer the kernel updates: `group` gives its values (a flat,
    contiguous view of the model's memory, or a gathered copy written back by
    `group.commit`) and its gradient."""

    group: Any
    states: list[np.ndarray]


class Optimizer:
    """Base class: parameter groups of the model, optimizer state, the update kernel."""

    N_STATES = 0
    HYPER = ()  # names of the hyperparameter buffer's entries

    def __init__(self, model: Any, frozen: Iterable[str] = ()):

        self.model = model
        self.frozen = tuple(frozen) if not isinstance(frozen, str) else (frozen,)
        self._groups = training_of(model).param_groups(self.frozen)
        if not self._groups:
            raise NccError("the model has no trainable parameters"
                           + (" that are not frozen" if self.frozen else ""))
        self._slots = [_Slot(g, [np.zeros(g.size, g.dtype) for _ in range(self.N_STATES)])
                       for g in self._groups]
        self._hyper = np.zeros(len(self.HYPER), np.float64)
        self._kernel: Any = None
        self.steps = 0

    @property
    def param_names(self) -> list[str]:
        """The parameters this optimizer updates, by name."""
        return [n for g in self._groups for n in g.names]

    def state_bytes(self) -> int:
        """Bytes of optimizer state (momentum, moments)."""
        return sum(s.nbytes for slot in self._slots for s in slot.states)

    def step(self, grads: Mapping[str, Any]) -> None:
        """One update of every (non-frozen) trainable parameter from `grads`."""
        if not isinstance(grads, Mapping):
            raise NccError(f"step takes the gradients by parameter name (a dict, as model.grad "
                           f"returns), got {type(grads).__name__}")
        gs = [slot.group.gradient(grads) for slot in self._slots]
        values = [slot.group.values() for slot in self._slots]
        self.steps += 1
        self._hyper[:] = self.hyperparameters(self.steps)
        if self._kernel is None:
            self._kernel = _update_kernel(self, [(v.dtype, v.size) for v in values])
        args: list[np.ndarray] = []
        for slot, v, g in zip(self._slots, values, gs):
            args += [v, g, *slot.states]
        self._kernel.invoke(*args, self._hyper)
        for slot in self._slots:
            slot.group.commit()

    # -- what a subclass defines
    def hyperparameters(self, t: int) -> list[float]:
        raise NotImplementedError

    def emit_update(self, b: Any, p: Any, g: Any, states: list[Any], h: list[Any]
                    ) -> tuple[Any, list[Any]]:
        """Scalar code for one element: the new parameter and new states."""
        raise NotImplementedError

    def structure(self) -> tuple:
        """What changes the kernel's code (not its hyperparameters)."""
        return ()

    @staticmethod
    def _check(name: str, value: float, low: float = 0.0, high: float | None = None,
               open_low: bool = False) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise NccError(f"{name} must be a number, got {value!r}") from None
        if not pymath.isfinite(v) or v < low or (open_low and v == low) or (high is not None and v >= high):
            bound = f"in [{low}, {high})" if high is not None else (f"> {low}" if open_low else f">= {low}")
            raise NccError(f"{name} must be {bound}, got {value!r}")
        return v

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._repr_keys())
        return f"{type(self).__name__}({hp}; {len(self.param_names)} parameters)"

    def _repr_keys(self) -> Sequence[str]:
        return ()


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD)."""

    HYPER = ("lr", "weight_decay", "buf_decay", "buf_scale", "nesterov_momentum")

    def __init__(self, model: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, frozen: Iterable[str] = ()):
        self.lr = self._check("lr", lr)
        self.momentum = self._check("momentum", momentum)
        self.dampening = self._check("dampening", dampening)
        self.weight_decay = self._check("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise NccError("nesterov momentum requires a momentum and zero dampening")
        self.N_STATES = 1 if self.momentum else 0
        super().__init__(model, frozen)

    def structure(self) -> tuple:
        return ("sgd", self.N_STATES, self.nesterov)

    def hyperparameters(self, t: int) -> list[float]:
        first = t == 1  # the momentum buffer starts as the first step's d
        return [self.lr, self.weight_decay, 0.0 if first else self.momentum,
                1.0 if first else 1.0 - self.dampening, self.momentum]

    def emit_update(self, b, p, g, states, h):
        from xdsl.dialects import arith

        lr, wd, decay, scale, mom = h
        d = b(arith.AddfOp, g, b(arith.MulfOp, wd, p))
        new_states = []
        if self.N_STATES:
            buf = b(arith.AddfOp, b(arith.MulfOp, decay, states[0]), b(arith.MulfOp, scale, d))
            new_states.append(buf)
            d = b(arith.AddfOp, d, b(arith.MulfOp, mom, buf)) if self.nesterov else buf
        return b(arith.SubfOp, p, b(arith.MulfOp, lr, d)), new_states

    def _repr_keys(self):
        return ("lr", "momentum", "dampening", "weight_decay", "nesterov")


class Adam(Optimizer):
    """Adam (torch.optim.Adam: L2 weight decay added to the gradient)."""

    N_STATES = 2
    HYPER = ("step_size", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2_sqrt",
             "eps", "weight_decay", "decay_factor")
    DECOUPLED = False

    def __init__(self, model: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, frozen: Iterable[str] = ()):
        self.lr = self._check("lr", lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise NccError(f"betas must be a pair of numbers, got {betas!r}") from None
        self.betas = (self._check("betas[0]", b1, 0.0, 1.0), self._check("betas[1]", b2, 0.0, 1.0))
        self.eps = self._check("eps", eps)
        self.weight_decay = self._check("weight_decay", weight_decay)
        super().__init__(model, frozen)

    def structure(self) -> tuple:
        return (type(self).__name__,)

    def hyperparameters(self, t: int) -> list[float]:
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1 ** t)
        bc2_sqrt = pymath.sqrt(1.0 - b2 ** t)
        wd_grad, decay = (0.0, 1.0 - self.lr * self.weight_decay) if self.DECOUPLED \
            else (self.weight_decay, 1.0)
        return [step_size, 1.0 - b1, b2, 1.0 - b2, bc2_sqrt, self.eps, wd_grad, decay]

    def emit_update(self, b, p, g, states, h):
        from xdsl.dialects import arith, math

        step_size, omb1, b2, omb2, bc2, eps, wd, decay = h
        p = b(arith.MulfOp, decay, p)  # AdamW's decoupled decay (1 for Adam)
        g = b(arith.AddfOp, g, b(arith.MulfOp, wd, p))  # Adam's L2 term (0 for AdamW)
        m, v = states
        m = b(arith.AddfOp, m, b(arith.MulfOp, omb1, b(arith.SubfOp, g, m)))  # torch's lerp
        v = b(arith.AddfOp, b(arith.MulfOp, b2, v), b(arith.MulfOp, omb2, b(arith.MulfOp, g, g)))
        denom = b(arith.AddfOp, b(arith.DivfOp, b(math.SqrtOp, v), bc2), eps)
        return b(arith.SubfOp, p, b(arith.DivfOp, b(arith.MulfOp, step_size, m), denom)), [m, v]

    def _repr_keys(self):
        return ("lr", "betas", "eps", "weight_decay")


class AdamW(Adam):
    """AdamW (torch.optim.AdamW: decoupled weight decay, default 0.01)."""

    DECOUPLED = True

    def __init__(self, model: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, *, frozen: Iterable[str] = ()):
        super().__init__(model, lr, betas, eps, weight_decay, frozen=frozen)


# ---------------------------------------------------------------------------
# The update kernel


def update_kernel_module(opt: Optimizer, buffers: Sequence[tuple[np.dtype, int]]):
    """The loop-level kernel of `opt`'s update for buffers of these dtypes and
    sizes: arguments (param, grad, states...) per buffer, then the
    hyperparameters (`memref<K x f64>`). Returns (module, ABI)."""
    from xdsl.dialects import arith, func
    from xdsl.dialects.builtin import MemRefType, ModuleOp, f64


    name = f"{type(opt).__name__.lower()}_update"
    types, roles = [], []
    for k, (dtype, size) in enumerate(buffers):
        t = MemRefType(element_type_of(dtype), [size])
        types += [t] * (2 + opt.N_STATES)
        roles += [ArgRole("weight", f"param{k}"), ArgRole("input", f"grad{k}")]
        roles += [ArgRole("weight", f"state{k}_{s}") for s in range(opt.N_STATES)]
    types.append(MemRefType(f64, [len(opt.HYPER)]))
    roles.append(ArgRole("input", "hyperparameters"))
    fn = func.FuncOp(name, (types, []))
    args = list(fn.body.block.args)
    b = Builder(fn.body.block)
    hyper = Buf(args[-1], (len(opt.HYPER),), f64)
    raw = [b.load(hyper, [b.idx(i)]) for i in range(len(opt.HYPER))]
    per_type: dict[Any, list[Any]] = {f64: raw}
    for k, (dtype, size) in enumerate(buffers):
        elt = element_type_of(dtype)
        if elt not in per_type:  # the hyperparameters in this buffer's precision, once
            per_type[elt] = [b(arith.TruncFOp, h, elt) for h in raw]
        h = per_type[elt]
        p, g, *st = (Buf(a, (size,), elt) for a in args[k * (2 + opt.N_STATES):(k + 1) * (2 + opt.N_STATES)])

        def body(ivs, _, p=p, g=g, st=st, h=h):
            new_p, new_states = opt.emit_update(b, b.load(p, ivs), b.load(g, ivs),
                                                [b.load(s, ivs) for s in st], h)
            for s, v in zip(st, new_states):
                b.store(v, s, ivs)
            b.store(new_p, p, ivs)

        b.nest([size], body)
    b.emit(func.ReturnOp())
    abi = KernelABI(name, tuple(roles))
    abi.attach(fn)
    return ModuleOp([fn]), abi


def _update_kernel(opt: Optimizer, buffers: list[tuple[np.dtype, int]]) -> BoundKernel:
    """The native update kernel, called with every buffer given (`invoke`)."""
    for dtype, _ in buffers:
        if dtype.kind != "f" or dtype.itemsize not in (4, 8):
            raise NccError(f"optimizers update float32 and float64 parameters, got {dtype}")
    module, abi = update_kernel_module(opt, buffers)
    specs = [ArgSpec.of(t) for t in module.ops.first.function_type.inputs.data]
    info: dict[str, Any] = {"seconds": {}}
    lib = native_library(module, abi, training_of(opt.model).cache, info, Clock(info["seconds"]))
    return BoundKernel(abi, specs, lib, info=info)


# ---------------------------------------------------------------------------
# The training loop


class History(list):
    """The loss of every step (a list of floats); `epochs` holds each epoch's mean."""

    epochs: list[float]

    def __init__(self):
        super().__init__()
        self.epochs = []


def train(model: Any, data: Any, *, loss: str = "mse", optimizer: Any = None, epochs: int = 1,
          batch_size: int = 32, shuffle: bool = True, seed: int = 0, frozen: Iterable[str] = (),
          output: str | None = None, callback: Callable[[int, float], Any] | None = None) -> History:
    """Train `model` on `data` = (inputs, targets) -- inputs an array (a
    one-input model) or a dict by input name, targets an array -- for `epochs`
    passes in mini-batches (shuffled with `seed`; the last batch may be
    smaller). Every step is one native loss-and-gradient kernel and one native
    update kernel. `optimizer` defaults to `ncc.optim.Adam(model, lr=1e-3)`.
    `callback(epoch, mean_loss)` runs after each epoch. Returns the History."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise NccError("train takes data=(inputs, targets)")
    inputs, targets = data
    feeds = feeds_of(model, inputs)
    arrays = {n: np.asarray(a) for n, a in feeds.items()}
    targets = np.asarray(targets)
    n = len(targets)
    for name, a in arrays.items():
        if a.ndim == 0 or len(a) != n:
            raise NccError(f"train: input '{name}' has {0 if a.ndim == 0 else len(a)} rows, the "
                           f"targets {n}")
    if int(batch_size) < 1 or int(epochs) < 0:
        raise NccError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    if optimizer is None:
        optimizer = Adam(model, lr=1e-3, frozen=frozen)
    elif not isinstance(optimizer, Optimizer):
        raise NccError(f"optimizer must be an ncc.optim optimizer, got {type(optimizer).__name__}")
    frozen = tuple(frozen) or optimizer.frozen
    rng = np.random.default_rng(seed)
    history = History()
    for epoch in range(int(epochs)):
        order = rng.permutation(n) if shuffle else np.arange(n)
        losses = []
        for start in range(0, n, int(batch_size)):
            idx = order[start:start + int(batch_size)]
            batch = {k: np.ascontiguousarray(a[idx]) for k, a in arrays.items()}
            value, grads = value_and_grad(model, batch, targets[idx], loss=loss, output=output,
                                          frozen=frozen, wrt="params")
            optimizer.step(grads)
            losses.append(value)
        history.extend(losses)
        history.epochs.append(float(np.mean(losses)) if losses else float("nan"))
        if callback is not None:
            callback(epoch, history.epochs[-1])
    return history


def pruning_schedule(model: Any, sparsity: float, epochs: int, first_epoch: int = 0,
                     **options: Any) -> Callable[[int, float], None]:
    """An `ncc.train` callback that prunes `model` gradually, as Zhu and Gupta
    (2017) do: after epoch first_epoch + i (i < epochs) the sparsity reaches
    sparsity * (1 - (1 - (i + 1) / epochs) ** 3) -- fast at first, gently at
    the end -- and the epochs between fine-tune what is left. `options` go to
    `model.prune` (scope, weights, frozen); the model must have been compiled
    from a pruned module (`ncc.prune(module, sparsity=0)` gives every weight a
    mask)."""
    if not 0 <= sparsity < 1 or int(epochs) < 1:
        raise NccError(f"pruning_schedule: sparsity must be in [0, 1) and epochs >= 1, got {sparsity} and {epochs}")

    def step(epoch: int, loss: float) -> None:
        done = epoch - first_epoch + 1
        if 1 <= done <= epochs:
            model.prune(sparsity=sparsity * (1 - (1 - done / epochs) ** 3), **options)
    return step
