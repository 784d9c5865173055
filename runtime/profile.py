"""What a model costs when it runs: its memory plan from the compile pipeline's
own lowering (no native code), and a native profile, time per op.

`planned_memory` lowers copies of the model as `ncc.compile` does and reads
the arena the static memory plan gave each kernel: the forward's, and the
training kernel's (forward and backward planned together, autodiff's
combined mode), with the saved activations of the split mode.

`profile` times each op of the model alone: the nn passes `ncc.compile` runs
(fold-qdq, fold-batch-norm, fuse) first, then every op in a one-op module of
its own -- its weights as the model's, its other operands arguments fed with
the values the reference interpreter computes for them -- compiled like the
model and called until `min_seconds` have passed (the median of blocks of
calls). Ops that share a shape share a kernel (the compile cache keys on the
module). An op's `parallel` flag says whether ncc splits its work over a
team of threads: a loop nest parallelize-loops marks, or a GEMM large enough
to share (gemm.TEAM_MIN_WORK); the parallel fraction of Amdahl's law is
their share of the time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue

from ncc.diagnostics import NccError
from ncc.text import text_table
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp
from ncc.passes.autodiff import differentiate
from ncc.passes.autodiff.core import weight_kinds
from ncc.passes.lowering import gemm
from ncc.passes.lowering.parallelize_loops import MIN_TRIPS, PARALLEL
from ncc.passes.pack_weights import weight_only
from ncc.passes.stats import MACS, op_count
from ncc.pipeline import run_passes
from ncc.reference import run_values, select_function
from ncc.runtime.build import compile as compile_model, lower_to_loops
from ncc.runtime.training import Bytes, MemoryPlan, saved_bytes

ARENA = "ncc.arena_bytes"


# ---------------------------------------------------------------------------
# Memory


def _arena(module: ModuleOp, name: str) -> Bytes:
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)
    per_row, constant = fn.attributes[ARENA].get_values() if ARENA in fn.attributes else (0, 0)
    return Bytes(per_row, constant)


def _nn_function(module: ModuleOp, function: str | None) -> tuple[ModuleOp, func.FuncOp]:
    """A copy of the module with its function at the nn level (a neuron net layerized)."""
    m = module.clone()
    target = select_function(m, function)
    name = target.sym_name.data
    if isinstance(target, NetOp):
        run_passes(m, "layerize")
    return m, next(op for op in m.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)


def planned_memory(module: ModuleOp, function: str | None = None, *, fuse: bool = True,
                   training: bool = True) -> tuple[MemoryPlan, str | None]:
    """The memory plan (`MemoryPlan`, bytes per batch row + constant) of the
    model's function as ncc.compile lowers it, and why the training part is
    left at zero (None when it is planned): `training=False`, or a model
    autodiff cannot differentiate (an int8 one, say)."""
    m, fn = _nn_function(module, function)
    name = fn.sym_name.data
    weights = [op for op in m.ops if isinstance(op, nn.WeightOp)]
    kinds = weight_kinds(m)
    sizes = {w.sym: nn.tensor_bytes(nn.shape_of(w.type), nn.numpy_dtype(w.type.element_type).itemsize)
             for w in weights}
    total = Bytes(0, sum(sizes.values()))
    trainable = Bytes(0, sum(n for sym, n in sizes.items() if kinds[sym] == "trainable"))
    lowered = m.clone()
    lower_to_loops(lowered, fuse=fuse)
    forward = _arena(lowered, name)
    if not training:
        return MemoryPlan(total, trainable, Bytes(), forward, Bytes(), Bytes()), "not asked for"
    try:
        saved = saved_bytes(*_nn_function(m, name))
        (vjp,) = differentiate(m, fn, mode="combined", cotangents="args", inputs=True)
        run_passes(m, ("fold-batch-norm,fuse," if fuse else "") + "lower-to-loops")
        backward = _arena(m, vjp.sym_name.data)
    except NccError as e:
        return MemoryPlan(total, trainable, Bytes(), forward, Bytes(), Bytes()), e.message
    return MemoryPlan(total, trainable, trainable, forward, backward, saved), None


# ---------------------------------------------------------------------------
# Time per op


@dataclass(frozen=True)
class OpTime:
    """One op of the profile: `seconds` per call at the profiled batch."""

    index: int
    op: str
    shape: tuple[int, ...]
    weights: tuple[str, ...]
    seconds: float
    parallel: bool
    flops: int

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Profile:
    """Per-op times of a model (`ops`, in program order) at `batch` on `threads` threads."""

    ops: tuple[OpTime, ...]
    batch: int
    threads: int

    @property
    def seconds(self) -> float:
        return sum(o.seconds for o in self.ops)

    @property
    def parallel_fraction(self) -> float:
        """The share of the time in ops whose work ncc splits over threads (Amdahl's f)."""
        total = self.seconds
        return sum(o.seconds for o in self.ops if o.parallel) / total if total > 0 else 0.0

    def __str__(self) -> str:
        total = self.seconds or 1.0
        rows = [("#", "op", "shape", "weights", "time (us)", "%", "GFLOP/s", "parallel")]
        for o in self.ops:
            weights = ", ".join("@" + w for w in o.weights[:2]) + (" ..." if len(o.weights) > 2 else "")
            rows.append((str(o.index), o.op, "x".join(map(str, o.shape)), weights, f"{o.seconds * 1e6:.1f}",
                         f"{100 * o.seconds / total:.1f}", f"{o.gflops:.1f}", "yes" if o.parallel else "-"))
        lines = [text_table(rows, right={0, 4, 5, 6})]
        lines.append(f"total {self.seconds * 1e3:.3f} ms over {len(self.ops)} ops (each timed alone), batch "
                     f"{self.batch}, {self.threads} thread{'s' if self.threads > 1 else ''}; parallel fraction "
                     f"f = {self.parallel_fraction:.6g}")
        return "\n".join(lines)


def _one_op_module(module: ModuleOp, op: Operation) -> tuple[ModuleOp, list[SSAValue]]:
    """A module whose @main computes `op` alone: the values it reads that are
    known from the weights (weight_ref, constants and what they compute) as
    in the model, so that the compile packs and folds them as it does there;
    its other operands (each once) the arguments."""
    args = [v for v in dict.fromkeys(op.operands) if not weight_only(v)]
    block = Block(arg_types=[v.type for v in args])
    mapping: dict[SSAValue, SSAValue] = dict(zip(args, block.args))
    weights = {w.sym: w for w in module.ops if isinstance(w, nn.WeightOp)}
    copied: dict[str, nn.WeightOp] = {}

    def known(v: SSAValue) -> None:
        if v in mapping:
            return
        for u in v.owner.operands:
            known(u)
        source = v.owner.clone(value_mapper=mapping)
        block.add_op(source)
        mapping.update(zip(v.owner.results, source.results))
        if isinstance(source, nn.WeightRefOp):
            copied.setdefault(source.sym, weights[source.sym].clone())

    for v in op.operands:
        known(v)
    clone = op.clone(value_mapper=mapping)
    block.add_op(clone)
    block.add_op(func.ReturnOp(*clone.results))
    fn = func.FuncOp("main", ([v.type for v in args], [r.type for r in clone.results]), Region(block))
    fn.arg_attrs = ArrayAttr([DictionaryAttr({"ncc.name": StringAttr(f"x{i}")}) for i in range(len(args))])
    return ModuleOp([*copied.values(), fn]), args


def _splits(module: ModuleOp, op: Operation, batch: int) -> bool:
    """Whether ncc runs `op` on a team of threads (see the module docstring)."""
    if type(op) in MACS and MACS[type(op)](op, 1) >= gemm.TEAM_MIN_WORK:
        return True
    lowered = module.clone()
    lower_to_loops(lowered, fuse=False, threads=2)
    # a loop over the batch splits at run time when it has at least MIN_TRIPS iterations
    return any(PARALLEL in o.attributes and (MIN_TRIPS not in o.attributes or batch >= o.attributes[MIN_TRIPS].value.data)
               for o in lowered.walk())


def time_call(call: Callable[[], Any], min_seconds: float) -> float:
    """Seconds per call: the median of blocks of calls, about `min_seconds` in all."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    per_block = max(1, int(min_seconds / 5 / once))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_block):
            call()
        samples.append((time.perf_counter() - start) / per_block)
    return float(np.median(samples))


def profile(module: ModuleOp, inputs: Mapping[str, Any] | list, *, function: str | None = None,
            threads: int = 1, fuse: bool = True, min_seconds: float = 0.05,
            cache: Any = True) -> Profile:
    """Time every op of the model's function alone on `inputs` (see the module docstring)."""
    m, fn = _nn_function(module, function)
    run_passes(m, "fold-qdq" + (",fold-batch-norm,fuse" if fuse else ""))
    fn = next(op for op in m.ops if isinstance(op, func.FuncOp) and op.sym_name.data == fn.sym_name.data)
    if any(isinstance(op, func.CallOp) for op in fn.body.block.ops):
        raise NccError(f"@{fn.sym_name.data} calls other functions; the profile times the ops of one function")
    values = run_values(m, inputs, function=fn.sym_name.data)
    batch = next((a.shape[0] for a, t in zip((values[v] for v in fn.body.block.args), fn.function_type.inputs)
                  if nn.shape_of(t)[:1] == (nn.DYN,)), 1)
    times = []
    for index, op in enumerate(fn.body.block.ops):
        if isinstance(op, func.ReturnOp) or weight_only(op.results[0]):
            continue  # computed when a weight is set (fold-weights), not by the kernel
        one, args = _one_op_module(m, op)
        kernel = compile_model(one, fuse=False, threads=threads, cache=cache)
        feeds = [np.ascontiguousarray(values[v]) for v in args]
        seconds = time_call(lambda: kernel(*feeds), min_seconds)
        read = tuple(v.owner.sym for v in op.operands if isinstance(v.owner, nn.WeightRefOp))
        times.append(OpTime(index, op.name, tuple(values[op.results[0]].shape), read, seconds,
                            _splits(one, op, batch), op_count(op, batch)[1]))
    return Profile(tuple(times), batch, threads)
