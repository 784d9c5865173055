"""What the prune pass's levels share: the options, the magnitude ranking, the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ncc.diagnostics import NccError
from ncc.text import text_table

FROZEN_MARK = "ncc.frozen"  # on an nn.weight: never pruned


@dataclass(frozen=True)
class PruneOptions:
    sparsity: float | None = None
    threshold: float | None = None
    scope: str = "layer"
    structure: str = "unstructured"
    weights: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    norm: str = "l1"

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> NccError:
            return NccError(f"prune: option {option}: {why}")
        if self.sparsity is not None and self.threshold is not None:
            raise bad("threshold", "give sparsity or threshold, not both")
        if self.sparsity is not None and not (isinstance(self.sparsity, (int, float))
                                              and 0 <= self.sparsity < 1):
            raise bad("sparsity", f"must be in [0, 1), got {self.sparsity}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float))
                                               and 0 <= self.threshold < math.inf):
            raise bad("threshold", f"must be a finite number >= 0, got {self.threshold}")
        if self.scope not in ("layer", "global"):
            raise bad("scope", f"must be layer or global, got '{self.scope}'")
        if self.structure not in ("unstructured", "channel") and self.n_of_m is None:
            raise bad("structure", f"must be unstructured, channel or N:M with 0 < N < M (e.g. \"2:4\"), "
                      f"got '{self.structure}'")
        if self.norm not in ("l1", "l2"):
            raise bad("norm", f"must be l1 or l2, got '{self.norm}'")
        if self.structure == "channel" and self.scope != "layer":
            raise bad("scope", "structure channel prunes each layer's channels on its own: scope must be layer")
        if self.n_of_m is not None:
            if self.sparsity is not None or self.threshold is not None:
                raise bad("structure", f"{self.structure} sets the sparsity itself "
                          f"({1 - self.n_of_m[0] / self.n_of_m[1]:g}): give no sparsity or threshold")
            if self.scope != "layer":
                raise bad("scope", f"structure {self.structure} prunes each group on its own: scope must be layer")
        elif self.sparsity is None and self.threshold is None:
            raise bad("sparsity", "prune needs sparsity=<fraction in [0, 1)>, threshold=<|w| below which "
                      "weights go> or structure=\"N:M\"")

    @property
    def n_of_m(self) -> tuple[int, int] | None:
        n, colon, m = self.structure.partition(":")
        if not colon or not (n.isdigit() and m.isdigit()) or not 0 < int(n) < int(m):
            return None
        return int(n), int(m)


def magnitude_keep(values: list[np.ndarray], opts: PruneOptions) -> list[np.ndarray]:
    """Which entries stay (bool arrays) by unstructured magnitude: |w| >=
    threshold, or all but the round(sparsity x size) smallest |w| of each
    array (scope layer) or of all of them together (scope global); ties go
    by position, so the choice is deterministic."""
    if opts.threshold is not None:
        return [np.abs(v) >= opts.threshold for v in values]
    groups = [[v] for v in values] if opts.scope == "layer" else [values]
    keep: list[np.ndarray] = []
    for group in groups:
        flat = np.concatenate([np.abs(v).ravel() for v in group]) if group else np.zeros(0)
        cut = round(opts.sparsity * flat.size)
        mask = np.ones(flat.size, bool)
        mask[np.argsort(flat, kind="stable")[:cut]] = False
        start = 0
        for v in group:
            keep.append(mask[start:start + v.size].reshape(v.shape))
            start += v.size
    return keep


@dataclass
class LayerReport:
    """One pruned weight (nn) or net (neuron): its entries and the
    multiply-adds per sample that read them, before and after."""

    name: str
    where: str  # the ops reading it
    shape: tuple[int, ...]
    nonzero_before: int
    nonzero_after: int
    macs_before: int
    macs_after: int
    note: str = ""  # why it was left alone, or what else changed

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class PruneReport:
    """What `prune` did, per weight: print it for the table (FLOPs are 2 x
    multiply-adds, per sample: a dynamic batch counts as 1)."""

    layers: list[LayerReport] = field(default_factory=list)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def totals(self) -> tuple[int, int, int, int, int]:
        """(entries, nonzeros before, after, multiply-adds before, after)."""
        return (sum(r.size for r in self.layers), sum(r.nonzero_before for r in self.layers),
                sum(r.nonzero_after for r in self.layers), sum(r.macs_before for r in self.layers),
                sum(r.macs_after for r in self.layers))

    def __str__(self) -> str:
        def pct(part: int, whole: int) -> str:
            return f"{100 * (1 - part / whole):5.1f} %" if whole else "    - "
        rows = [("weight", "read by", "shape", "nonzero before", "after", "sparsity", "FLOPs before",
                 "after")]
        for r in self.layers:
            rows.append((r.name, r.where, "x".join(map(str, r.shape)) or "scalar", f"{r.nonzero_before:,}",
                         f"{r.nonzero_after:,}", pct(r.nonzero_after, r.size), f"{2 * r.macs_before:,}",
                         f"{2 * r.macs_after:,}" + (f"  ({r.note})" if r.note else "")))
        size, nz0, nz1, m0, m1 = self.totals()
        rows.append(("total", "", f"{size:,}", f"{nz0:,}", f"{nz1:,}", pct(nz1, size), f"{2 * m0:,}",
                     f"{2 * m1:,}"))
        return text_table(rows, right=range(3, len(rows[0]) - 1))
