"""Plain-text output the reports share."""

from __future__ import annotations

from typing import Collection, Sequence


def text_table(rows: Sequence[Sequence[str]], right: Collection[int] = (), indent: str = "") -> str:
    """Rows of cells aligned in columns two spaces apart (the first row is
    usually the header); the columns in `right` right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                        for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def human_bytes(n: int) -> str:
    """A byte count as people read it: 512 B, 2.50 KiB, 16.92 MiB."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
