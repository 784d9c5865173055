"""What ncc's command-line tools share: reading input, writing output, arrays
from .npy files, and turning every user-caused failure into one diagnostic
line and exit code 1."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ncc.diagnostics import NccError

SPLIT_MARKER = re.compile(r"^// -----", re.MULTILINE)


def read_input(path: str | None) -> tuple[str, str]:
    """(text, display name) of a file, or of stdin for None or '-'."""
    if path in (None, "-"):
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise NccError(f"cannot read input file: {e.strerror}", path) from None
    try:
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"), path  # universal newlines
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise NccError(f"input is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})",
                       path, line, col) from None


def write_output(text: str, path: str | None) -> None:
    """Write all of `text` or nothing: output is only produced after success."""
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise NccError(f"cannot write output file: {e.strerror}", path) from None


@dataclass
class Chunk:
    text: str
    line_offset: int  # lines before this chunk in the file


def split_input(text: str, split: bool) -> Iterator[Chunk]:
    """The `// -----` separated chunks of `text` (mlir-opt's --split-input-file)."""
    if not split:
        yield Chunk(text, 0)
        return
    pos = line = 0
    for m in SPLIT_MARKER.finditer(text):
        yield Chunk(text[pos:m.start()], line)
        line += text.count("\n", pos, m.start())
        pos = m.start()
    yield Chunk(text[pos:], line)


def load_array(path: str) -> Any:
    """A .npy array or an .npz archive, without pickles."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise NccError(f"cannot load array file: {e.strerror}", path) from None
    # numpy would try anything else as a pickle (refused): name the real problem.
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise NccError("not a .npy or .npz file", path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise NccError(f"cannot load array file: {e}", path) from None


def named_arrays(items: list[str], flag: str) -> dict[str, np.ndarray]:
    """NAME=FILE.npy items of a repeatable option, loaded."""
    arrays: dict[str, np.ndarray] = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise NccError(f"{flag} takes NAME=FILE.npy, got '{item}'")
        arr = load_array(path)
        if not isinstance(arr, np.ndarray):
            raise NccError(f"{flag} takes a .npy file", path)
        arrays[name] = arr
    return arrays


CONSTANT_FLAG = "--constant"


def add_constant_option(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument(CONSTANT_FLAG, action="append", default=[], metavar="NAME=FILE.npy",
                   help="an ONNX model's graph input fixed at import time, from a .npy file (repeatable): "
                   "an input ncc needs as a constant (a shape, an axis); the error names them")


def constants_of(args: argparse.Namespace) -> dict[str, np.ndarray] | None:
    return named_arrays(args.constant, CONSTANT_FLAG) or None


def report(err: NccError) -> None:
    text = str(err)
    if err.needs_constant:  # the importer says how in Python; say how here
        text += f" (on the command line: {CONSTANT_FLAG} {err.needs_constant[0]}=FILE.npy)"
    print(text, file=sys.stderr)


def run_tool(body: Callable[[], int]) -> int:
    """Run a tool's body: NccError -> one line on stderr and exit code 1."""
    try:
        return body()
    except NccError as e:
        report(e)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
