"""Plain-text output the reports share."""

from __future__ import annotations

from typing import Collection, Sequence


def text_table(rows: Sequence[Sequence[str]], right: Collection[int] = (), indent: str = "") -> str:
    """Rows of cells aligned in columns two spaces apart (the first row is
    usually the header); the columns in `right` right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                        for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)
