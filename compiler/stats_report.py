"""The Neural Architect report of `ncc.stats` and ncc-stats: the counts of
passes/stats.py, the memory plan and profile of runtime/profile.py, and the
laws of ncc.laws, as an aligned text table (`str`) or plain numbers
(`to_dict`, the --json form)."""

from __future__ import annotations

import os
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ncc.diagnostics import NccError
from ncc.text import human_bytes, text_table
from ncc.laws import ScalingLaw, amdahl, processor_counts
from ncc.dialects.neuron import NetOp
from ncc.passes.lowering.neuron_to_loops import choose_neuron_lowering
from ncc.passes.stats import ModelCount, count
from ncc.runtime.build import compile as compile_model, load_source
from ncc.runtime.profile import Profile, planned_memory, profile as profile_ops, time_call
from ncc.runtime.training import MemoryPlan


def _n(x: int) -> str:
    return f"{x:,}"


def _si(x: float, unit: str) -> str:
    """x with an SI prefix: 4.089 GMAC (a unit symbol), 288.7k parameters (a word)."""
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1)):
        if abs(x) >= size or not prefix:
            v = f"{x / size:.4g}"
            return f"{v} {prefix}{unit}" if unit.isupper() else f"{v}{prefix} {unit}"
    raise AssertionError


@dataclass
class StatsReport:
    """What ncc-stats prints. `parallel_fraction` is given or measured by
    `profile`; `step_seconds` is a training step (forward and backward) at
    `count.batch` on one processor, measured or given."""

    model: str
    count: ModelCount
    memory: MemoryPlan | None = None
    memory_note: str | None = None
    profile: Profile | None = None
    parallel_fraction: float | None = None
    fraction_source: str = ""
    processors: int = 64
    step_seconds: float | None = None
    law: ScalingLaw | None = None
    law_params: tuple[float, ...] | None = None  # the law's N, one or a family (default: the trainable parameters)
    tokens: tuple[float, ...] | None = None  # D, one or several
    budget: float | None = None
    per_op: bool = False
    notes: list[str] = field(default_factory=list)

    # -- derived figures

    def speedups(self) -> list[tuple[int, float, float | None]]:
        """(n, Amdahl speed-up, samples/s or None) for n = 1, 2, 4, ... processors."""
        if self.parallel_fraction is None:
            return []
        rate = self.count.batch / self.step_seconds if self.step_seconds else None
        return [(n, s, rate * s if rate else None) for n in processor_counts(self.processors)
                for s in [amdahl(self.parallel_fraction, n)]]

    def scaling(self) -> dict[str, Any] | None:
        """The law at each (N, D) of the family (`law_params` x `tokens`; N
        defaults to the model's trainable parameters), and the compute-optimal
        N and D for the budget (default: the first point's compute)."""
        if self.law is None:
            return None
        ns = self.law_params or (float(self.count.trainable or self.count.params),)
        out: dict[str, Any] = {"parameters": ns[0]}
        out["grid"] = [{"parameters": n, "tokens": d, "compute_flops": self.law.compute(n, d),
                        "loss": self.law.loss(n, d)} for n in ns for d in self.tokens or ()]
        if len(out["grid"]) == 1:
            out |= out["grid"][0]
        budget = self.budget or (out["grid"][0]["compute_flops"] if out["grid"] else None)
        if budget:
            n_opt, d_opt = self.law.optimal(budget)
            out |= {"budget_flops": budget, "optimal_parameters": n_opt, "optimal_tokens": d_opt,
                    "optimal_loss": self.law.loss(n_opt, d_opt)}
        return out

    def by_op(self) -> list[tuple[str, int, int, int, int]]:
        """(op, count, params, MACs, FLOPs) per op name, most FLOPs first."""
        groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for r in self.count.rows:
            g = groups[r.op]
            g[0] += 1
            g[1] += r.params
            g[2] += r.macs
            g[3] += r.flops
        return sorted(((op, *g) for op, g in groups.items()), key=lambda t: (-t[4], t[0]))

    # -- output

    def to_dict(self) -> dict[str, Any]:
        c = self.count
        out: dict[str, Any] = {
            "model": self.model, "batch": c.batch,
            "parameters": {"total": c.params, "trainable": c.trainable, "non_trainable": dict(c.non_trainable)},
            "constant_elements": c.constants, "weight_bytes": c.weight_bytes,
            "macs": c.macs, "flops": c.flops, "bytes_moved": c.bytes, "arithmetic_intensity": c.intensity,
            "ops": [{"op": r.op, "shape": list(r.shape), "weights": r.weights, "params": r.params,
                     "macs": r.macs, "flops": r.flops, "bytes": r.bytes} for r in c.rows],
        }
        if c.synapses is not None:
            out["synapses"] = c.synapses
        if self.memory is not None:
            out["memory"] = {k: self.memory.at(c.batch)[k] for k in MemoryPlan.FIELDS}
            out["memory"]["training_bytes"] = self.memory.training_bytes(c.batch)
            if self.memory_note:
                out["memory"]["training_not_planned"] = self.memory_note
        if self.profile is not None:
            out["profile"] = {"seconds": self.profile.seconds, "threads": self.profile.threads,
                              "ops": [{"index": o.index, "op": o.op, "seconds": o.seconds, "parallel": o.parallel}
                                      for o in self.profile.ops]}
        if self.parallel_fraction is not None:
            out["amdahl"] = {"parallel_fraction": self.parallel_fraction, "source": self.fraction_source,
                             "step_seconds": self.step_seconds,
                             "speedup": [{"processors": n, "speedup": s, "samples_per_second": r}
                                         for n, s, r in self.speedups()]}
        scaling = self.scaling()
        if scaling is not None:
            out["scaling_law"] = {**vars(self.law), **scaling}
        return out

    def __str__(self) -> str:
        c = self.count
        lines = [f"model: {self.model} (batch {c.batch})", ""]
        kinds = ", ".join(f"{_n(v)} {k}" for k, v in c.non_trainable.items())
        totals = [("parameters", _n(c.params), f"trainable {_n(c.trainable)}" + (f"; not: {kinds}" if kinds else ""))]
        if c.synapses is not None:
            totals.append(("synapses", _n(c.synapses), "one multiply-add each"))
        if c.constants:
            totals.append(("constant elements", _n(c.constants), "nn.constant tensors (not parameters)"))
        totals += [("weight bytes", _n(c.weight_bytes), human_bytes(c.weight_bytes)),
                   ("MACs", _n(c.macs), _si(c.macs, "MAC") + " (multiply-accumulates of the contractions)"),
                   ("FLOPs", _n(c.flops), _si(c.flops, "FLOP") + " (a MAC is 2; see the README's table)"),
                   ("bytes moved", _n(c.bytes), "operands read + results written, per op"),
                   ("arithmetic intensity", f"{c.intensity:.2f}", "FLOPs per byte moved")]
        lines.append(text_table([("total", "value", "")] + totals, {1}))
        if self.memory is not None:
            m = self.memory.at(c.batch)
            planned = ("weights", "trainable", "forward_arena") if self.memory_note else MemoryPlan.FIELDS
            rows = [("memory", "bytes", "")] + [(k.replace("_", " "), _n(m[k]), human_bytes(m[k])) for k in planned]
            if not self.memory_note:
                rows.append(("training total", _n(self.memory.training_bytes(c.batch)),
                             "weights + gradients + vjp arena (optimizer state not included)"))
            lines += ["", text_table(rows, {1})]
            if self.memory_note:
                lines.append(f"training memory not planned: {self.memory_note}")
        lines += ["", self._ops_table()]
        if self.profile is not None:
            lines += ["", str(self.profile)]
        if self.parallel_fraction is not None:
            rows = [("processors", "speed-up") + (("samples/s",) if self.step_seconds else ())]
            for n, s, r in self.speedups():
                rows.append((str(n), f"{s:.2f}") + ((f"{r:.4g}",) if r is not None else ()))
            step = f"; one step (forward + backward, batch {c.batch}) {self.step_seconds * 1e3:.3f} ms on one " \
                   "processor" if self.step_seconds else ""
            lines += ["", f"Amdahl: f = {self.parallel_fraction:.6g} ({self.fraction_source}){step}",
                      text_table(rows, {0, 1, 2})]
        scaling = self.scaling()
        if scaling is not None:
            law = self.law
            lines += ["", f"scaling law: L(N, D) = {law.E} + {law.A} / N^{law.alpha} + {law.B} / D^{law.beta}, "
                          "C = 6 N D", f"  N = {_si(scaling['parameters'], 'parameters')}"]
            if len(scaling["grid"]) == 1:
                lines.append(f"  D = {_si(scaling['tokens'], 'tokens')}: L = {scaling['loss']:.4f}, "
                             f"C = {scaling['compute_flops']:.4g} FLOPs")
            elif scaling["grid"]:
                rows = [("N", "D", "C (FLOPs)", "L(N, D)")] + [
                    (_si(g["parameters"], "params"), _si(g["tokens"], "tokens"), f"{g['compute_flops']:.4g}",
                     f"{g['loss']:.4f}") for g in scaling["grid"]]
                lines[-1] = "  the family:"
                lines.append(text_table(rows, {0, 1, 2, 3}, indent="  "))
            if "budget_flops" in scaling:
                lines.append(f"  compute-optimal for C = {scaling['budget_flops']:.4g} FLOPs: "
                             f"N = {_si(scaling['optimal_parameters'], 'parameters')}, "
                             f"D = {_si(scaling['optimal_tokens'], 'tokens')}, L = {scaling['optimal_loss']:.4f}")
            if not scaling["grid"] and "budget_flops" not in scaling:
                lines.append("  (give --tokens D or --budget C for the loss and the compute-optimal size)")
        lines += self.notes
        return "\n".join(lines) + "\n"

    def _ops_table(self) -> str:
        c = self.count
        if self.per_op:
            rows = [("#", "op", "shape", "weights", "params", "MACs", "FLOPs", "FLOP/B")]
            for i, r in enumerate(c.rows):
                w = ", ".join("@" + s for s in r.weights[:2]) + (" ..." if len(r.weights) > 2 else "")
                rows.append((str(i), r.op, "x".join(map(str, r.shape)), w, _n(r.params), _n(r.macs), _n(r.flops),
                             f"{r.intensity:.2f}"))
            return text_table(rows, {0, 4, 5, 6, 7})
        total = c.flops or 1
        rows = [("op", "count", "params", "MACs", "FLOPs", "% FLOPs")]
        rows += [(op, str(k), _n(p), _n(m), _n(f), f"{100 * f / total:.2f}") for op, k, p, m, f in self.by_op()]
        return text_table(rows, {1, 2, 3, 4, 5})


def _values(given: Sequence[float] | float | None, what: str) -> tuple[float, ...] | None:
    if given is None:
        return None
    values = tuple(float(v) for v in (given if isinstance(given, (list, tuple)) else (given,)))
    if not values or not all(v > 0 for v in values):
        raise NccError(f"the scaling law's {what} must be positive numbers, got {list(values)}")
    return values


def stats(source: Any, *, batch: int = 1, function: str | None = None, fuse: bool = True, per_op: bool = False,
          memory: bool = True, training_memory: bool = True, profile: bool = False, inputs: Any = None,
          threads: int = 1, parallel_fraction: float | None = None, processors: int = 64,
          step_seconds: float | None = None, law: ScalingLaw | None = None,
          law_params: Sequence[float] | float | None = None, tokens: Sequence[float] | float | None = None,
          budget: float | None = None, name: str = "net", cache: Any = True, seed: int = 0) -> StatsReport:
    """The report of `source` (a path, text or module, as ncc.compile takes):
    counts at `batch`; the memory plan (`memory`, its training part with
    `training_memory`); with `profile`, a native profile on one thread (time
    per op, on `inputs` or ones generated from `seed`) giving the parallel
    fraction (with `threads` > 1: from the whole model's speed-up on that
    many threads) and a training step's time; Amdahl's speed-ups up to
    `processors` when a parallel fraction is given or measured; the scaling
    law when `law`, `law_params` (its N, one or a family; default the
    trainable parameters), `tokens` (D, one or several) or `budget` is given."""
    if parallel_fraction is not None and not 0.0 <= parallel_fraction <= 1.0:
        raise NccError(f"the parallel fraction must be in [0, 1], got {parallel_fraction}")
    processor_counts(processors)  # checks it
    module = load_source(source, name=name)
    with _at_file(source):  # what the model holds is an error of its file
        report = StatsReport(source if isinstance(source, str) and "\n" not in source else "<module>",
                             count(module, function, batch), processors=processors, per_op=per_op,
                             parallel_fraction=parallel_fraction, fraction_source="given" if parallel_fraction
                             is not None else "", step_seconds=step_seconds)
        if memory:
            try:
                report.memory, why = planned_memory(module, function, fuse=fuse, training=training_memory)
                report.memory_note = why
                if why is None and any(isinstance(op, NetOp) and choose_neuron_lowering(op, "auto") == "neuron"
                                       for op in module.ops):
                    report.notes.append("training memory: the net's layers form; lowered straight (as here), its "
                                        "backward kernel recomputes values in registers and saves none")
            except NccError as e:
                report.notes.append(f"memory not planned: {e.message}")
        if profile:
            model = compile_model(module, fuse=fuse, function=function, threads=1, cache=cache)
            rng = np.random.default_rng(seed)
            feeds = inputs if inputs is not None else [model.example_input(i, batch, rng) for i in
                                                       range(len(model.input_names))]
            report.profile = profile_ops(module, feeds, function=function, threads=1, fuse=fuse, cache=cache)
            whole = time_call(lambda: model(*feeds), 0.2)
            report.notes.append(f"the whole model, one call on one thread: {whole * 1e3:.3f} ms (the ops timed "
                                f"alone: {report.profile.seconds * 1e3:.3f} ms)")
            measured = report.profile.parallel_fraction, "measured: the share of the profile's time in ops ncc " \
                "splits over threads, an upper bound: a split op's own serial parts count as parallel"
            if threads > 1:  # Karp and Flatt's inversion of Amdahl's law from the speed-up measured on the host
                team = compile_model(module, fuse=fuse, function=function, threads=threads, cache=cache)
                on_team = time_call(lambda: team(*feeds), 0.2)
                speedup = whole / on_team
                f = min(1.0, max(0.0, (1 - 1 / speedup) / (1 - 1 / threads)))
                report.notes.append(f"on {threads} threads: {on_team * 1e3:.3f} ms, a speed-up of {speedup:.2f}; "
                                    f"the ops ncc splits take {report.profile.parallel_fraction:.6g} of the time")
                measured = f, f"measured: the whole model's speed-up on {threads} threads, {speedup:.2f}, solved " \
                    "for f (Karp-Flatt)"
            if parallel_fraction is None:
                report.parallel_fraction, report.fraction_source = measured
            if step_seconds is None:
                try:
                    outs = model(*feeds)
                    outs = outs if isinstance(outs, tuple) else (outs,)
                    ones = {n: np.ones_like(o) for n, o in zip(model.output_names, outs)}
                    named = dict(zip(model.input_names, feeds))
                    report.step_seconds = time_call(lambda: model.vjp(named, ones), 0.2)
                except NccError as e:
                    report.notes.append(f"no training step measured: {e.message}")
        if law is not None or tokens is not None or budget is not None or law_params is not None:
            report.law, report.budget = law or ScalingLaw(), budget
            report.law_params, report.tokens = _values(law_params, "parameters"), _values(tokens, "tokens")
            if budget is not None and not budget > 0:
                raise NccError(f"the compute budget must be positive, got {budget}")
        return report


@contextmanager
def _at_file(source: Any):
    """An error of what the model holds, not located, is located at its file."""
    try:
        yield
    except NccError as e:
        if e.file is None and isinstance(source, (str, os.PathLike)) and "\n" not in str(source):
            raise NccError(e.message, os.fspath(source)) from None
        raise
