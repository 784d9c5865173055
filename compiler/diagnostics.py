"""Diagnostics: every failure a user can cause is one `file:line:col: error: message`."""

from __future__ import annotations

from xdsl.dialects.builtin import FileLineColLoc
from xdsl.ir import Operation


class NccError(Exception):
    """A user-facing error with a source location.

    `str(err)` is the one-line diagnostic the tools print:
    `file:line:col: error: message` (parts that are unknown are left out).
    `needs_constant`, when not empty, lists the graph inputs an ONNX model
    needs as constants for this error to go away (see ncc.backend).
    """

    needs_constant: list[str] = []  # set per instance; never mutated

    def __init__(self, message: str, file: str | None = None,
                 line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col

    @property
    def location(self) -> str:
        parts = [p for p in (self.file, self.line, self.col) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: error: {self.message}" if loc else f"error: {self.message}"

    @classmethod
    def at_op(cls, op: Operation, message: str) -> "NccError":
        """An error located at `op`'s source location (if it was parsed from text)."""
        loc = op.location
        if isinstance(loc, FileLineColLoc):
            return cls(message, loc.filename.data, loc.line.data, loc.column.data)
        return cls(f"'{op.name}' op {message}")
