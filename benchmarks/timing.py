"""What the benchmarks share: a time per call that shared, noisy machines cannot skew much."""

from __future__ import annotations

import statistics
import time


def per_call(f, min_block: float = 0.1, blocks: int = 7) -> float:
    """Median seconds per call of f() over `blocks` blocks of calls, each block
    at least `min_block` seconds long (after one warm-up call)."""
    f()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        if time.perf_counter() - t0 >= min_block:
            break
        n *= 2
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def best_of_rounds(fs, rounds: int = 3, min_block: float = 0.1, blocks: int = 5) -> list[float]:
    """per_call of each of `fs`, one after another, in `rounds` rounds; each
    one's fastest round. A neighbour that takes a core for a few seconds
    slows a round, not the figure; taking turns block by block instead would
    put each runtime's idle threads (spinning for a while after a call, as
    onnxruntime's and OpenMP's do) in the other's way."""
    best = [float("inf")] * len(fs)
    for _ in range(rounds):
        best = [min(b, per_call(f, min_block, blocks)) for b, f in zip(best, fs)]
    return best
