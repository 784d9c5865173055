"""The static memory plan: intermediate buffers share one arena by liveness.

A buffer is live from the op that defines it to its last use (both inclusive,
so an op never writes over an operand it is still reading). Its size is
`per_batch * batch + constant` bytes; with one run-time batch size every
buffer is either wholly per-batch (dimension 0 is the batch) or wholly
constant. The arena is laid out as

    [ constant region: C bytes ][ per-batch region: A * batch bytes ]

and each region is packed on its own, greedily by size (largest first, each at
the lowest 64-byte aligned offset that does not overlap a buffer live at the
same time: the "greedy by size" planner of TFLite). A buffer's offset is then
`0 * batch + b` (constant) or `a * batch + C` (per-batch): 64-byte aligned for
every batch because every `a`, `b` and `C` is a multiple of 64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

ALIGN = 64


def align(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Buffer:
    key: Hashable
    per_batch: int  # bytes per batch row (0 for a buffer of static size)
    constant: int  # bytes (0 for a per-batch buffer)
    start: int  # index of the defining op
    end: int  # index of the last op using it (inclusive)

    def __post_init__(self) -> None:
        if self.per_batch and self.constant:
            raise ValueError(f"buffer {self.key!r} mixes per-batch and constant sizes")
        if self.end < self.start:
            raise ValueError(f"buffer {self.key!r} ends before it starts")

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Plan:
    offsets: dict[Hashable, tuple[int, int]]  # key -> (a, b): byte offset a * batch + b
    per_batch: int  # arena bytes = per_batch * batch + constant
    constant: int

    def offset(self, key: Hashable, batch: int) -> int:
        a, b = self.offsets[key]
        return a * batch + b


def _pack(buffers: Sequence[Buffer], size_of) -> tuple[dict[Hashable, int], int]:
    """Greedy by size: the largest buffer first, each at the lowest aligned
    offset free for its whole lifetime. Returns offsets and the region size."""
    placed: list[tuple[Buffer, int, int]] = []  # buffer, offset, aligned size
    offsets: dict[Hashable, int] = {}
    for buf in sorted(buffers, key=lambda b: (-size_of(b), b.start, str(b.key))):
        size = align(size_of(buf))
        busy = sorted((off, off + sz) for other, off, sz in placed if other.overlaps_in_time(buf))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((buf, offset, size))
        offsets[buf.key] = offset
    return offsets, max((off + sz for _, off, sz in placed), default=0)


def plan(buffers: Sequence[Buffer]) -> Plan:
    """Offsets for every buffer: the constant region first, then the per-batch one."""
    static = [b for b in buffers if not b.per_batch]
    batched = [b for b in buffers if b.per_batch]
    const_off, const_total = _pack(static, lambda b: b.constant)
    batch_off, batch_total = _pack(batched, lambda b: b.per_batch)
    offsets = {k: (0, off) for k, off in const_off.items()}
    offsets.update({k: (off, const_total) for k, off in batch_off.items()})
    return Plan(offsets, batch_total, const_total)
