"""Calibration: the range of each calibrated tensor over the batches, and the
quantization parameters it gives (onnxruntime's conventions).

    minmax      the smallest and largest value seen
    percentile  a histogram of |x|; the range ends at its `percentile` (99.999
                by default): [0, p] for a tensor never negative, else [-p, p]
    entropy     the same histogram; the threshold (at least LEVELS of its
                BINS bins) whose 8-bit quantization loses the least
                information (the KL divergence of TensorRT's calibration),
                [0, t] or [-t, t]
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "percentile", "entropy")
BINS = 2048  # histogram bins of |x| (onnxruntime's and TensorRT's default)
LEVELS = 128  # quantized levels of |x| the entropy method compares with
SMOOTHING = 1e-4  # the probability Q is given where P has mass and Q none


class Range:
    """What calibration learns about one tensor over every batch."""

    def __init__(self, method: str, percentile: float = 99.999):
        self.method, self.percentile = method, percentile
        self.lo, self.hi = np.inf, -np.inf
        self.counts: np.ndarray | None = None  # histogram of |x| over [0, edge]
        self.edge = 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1)
        x = x[np.isfinite(x)]
        if not x.size:
            return
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        if self.method == "minmax":
            return
        a = np.abs(x)
        top = float(a.max())
        if self.counts is None or top > self.edge:  # widen: the old counts move into the new bins
            edge = max(top, 1e-30)
            counts = np.zeros(BINS)
            if self.counts is not None and self.counts.sum():
                centers = (np.arange(BINS) + 0.5) * (self.edge / BINS)
                np.add.at(counts, np.minimum((centers / edge * BINS).astype(int), BINS - 1), self.counts)
            self.counts, self.edge = counts, edge
        self.counts += np.histogram(a, bins=BINS, range=(0.0, self.edge))[0]

    def bounds(self) -> tuple[float, float]:
        """The calibrated range [lo, hi] (0.0, 0.0 if nothing was seen)."""
        if self.lo > self.hi:
            return 0.0, 0.0
        if self.method == "minmax":
            return self.lo, self.hi
        t = self._percentile() if self.method == "percentile" else self._entropy()
        return (0.0, t) if self.lo >= 0 else (-t, t)

    def _percentile(self) -> float:
        cdf = np.cumsum(self.counts) / self.counts.sum()
        i = int(np.searchsorted(cdf, self.percentile / 100.0))
        return (min(i, BINS - 1) + 1) * self.edge / BINS

    def _entropy(self) -> float:
        """The threshold (a bin edge) minimising KL(P || Q): P the histogram up
        to it with everything beyond added to its last bin, Q that histogram
        merged into LEVELS levels and spread back over its nonzero bins."""
        hist = self.counts
        best, best_i = np.inf, BINS
        for i in range(LEVELS, BINS + 1, 8):
            p = hist[:i].copy()
            p[-1] += hist[i:].sum()
            nonzero = p > 0
            group = np.arange(i) * LEVELS // i
            sums = np.bincount(group, weights=hist[:i], minlength=LEVELS)
            used = np.bincount(group, weights=nonzero, minlength=LEVELS)
            q = np.where(nonzero, (sums / np.maximum(used, 1))[group], 0.0)
            if not p.sum() or not q.sum():
                continue
            pn, qn = p / p.sum(), q / q.sum()
            qn = np.where(nonzero & (qn == 0), SMOOTHING, qn)  # onnxruntime smooths a bin P has and Q lacks
            kl = float(np.sum(pn[nonzero] * np.log(pn[nonzero] / qn[nonzero])))
            if kl < best:
                best, best_i = kl, i
        return best_i * self.edge / BINS


def activation_parameters(lo: float, hi: float, dtype: np.dtype) -> tuple[np.float32, np.ndarray]:
    """Asymmetric scale and zero point of a range (widened to hold 0), as
    onnxruntime computes them (in float64, the scale then stored as f32):
    scale = (hi - lo) / (qmax - qmin), zero point = round(qmin - lo / scale);
    a range of zero has scale 1 and zero point 0."""
    info = np.iinfo(dtype)
    lo, hi = min(np.float32(lo), np.float32(0.0)), max(np.float32(hi), np.float32(0.0))
    scale = np.float64(hi - lo) / np.float64(info.max - info.min)
    if scale < np.finfo(np.float32).tiny:
        return np.float32(1.0), np.zeros((), dtype)
    zero = np.clip(np.round(info.min - np.float64(lo) / scale), info.min, info.max)
    return np.float32(scale), np.asarray(zero, dtype)


def weight_parameters(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 scales (one per index of `axis`, or one): max |w| / 127;
    and w quantized (round half to even, in [-127, 127])."""
    w = np.asarray(w, np.float32)
    if axis is None:
        top = np.abs(w).max(initial=0.0)
    else:
        top = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1, initial=0.0)
    scale = np.asarray(np.where(top > 0, top / np.float32(127), np.float32(1.0)), np.float32)
    shaped = scale if axis is None else scale.reshape([-1 if d == axis % w.ndim else 1 for d in range(w.ndim)])
    q = np.clip(np.rint(w / shaped), -127, 127).astype(np.int8)
    return scale, q
