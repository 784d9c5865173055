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
