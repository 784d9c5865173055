"""The adjacency frontend: a net written neuron by neuron, in one of three spellings.

    import_adjacency(path)            -> ModuleOp   a file (str or os.PathLike)
    import_adjacency_text(text)       -> ModuleOp   the text itself
    parse_adjacency(text, filename)   -> NeuronGraph

The module holds one `neuron.net`, built through the Python API. Indices are
hexadecimal (any case, any number of digits). Everything from a `%` or a `#`
to the end of its line is a comment (a whole-line comment or a trailing one);
blank lines are ignored. Fields are separated by spaces or tabs.

List (`format="list"`) -- the in-indices of every neuron:

    N 05                       the neuron count, hex: the first line
    00                         an input neuron: its index alone
    01
    02 03 00,01                j fj Ij: index, activation, in-indices
    03 tanh 00,01              the activation is a hex code or a name
    04 03 02,03

  Lines may come in any order, but every index 0..N-1 has exactly one line.
  Activation codes and names are the table of `ncc.dialects.activations`
  (`00` identity, `01` relu, `02` sigmoid, `03` tanh, ...); an unknown one is
  an error. In-indices may be written in any order; the net keeps them sorted.

Value extension (ncc's) -- a trained net's weights and biases on list lines:

    02 03 00,01 w=0.5,-1.25 b=0.1

  After the in-indices, `w=` gives one value per in-index (comma-separated,
  in the order the in-indices are written), and `b=` gives the neuron a bias
  (symbol `b<j>`): nj = fj(sum_i ni*wij + bj). Either field may be left out,
  and they may come in either order. Values are finite decimal numbers
  (`-1`, `0.5`, `.5`, `2.5e-3`). A neuron without `w=` gets the seeded
  initial values of `neuron.initial_value`; one without `b=` has no bias.

Matrix (`format="matrix"`) -- entry (i, j) is 1 when neuron i feeds neuron j:

       j: 00000
       j: 01234                column headers: one digit of each column's
          -----                label per line, top line first (optional)
    n00| 00110                 row label `n<digits>|`, `<hex>|` or `<name>|`
    n01| 00110
    n02| 00001
    n03| 00001
    n04| 00000

  One row per neuron, written as one field with one 0/1 per column, rows
  and columns in index order; the matrix is square. The decorations of the
  original ncc's examples are optional, alone or mixed:

    nnnnnnnnnnnnnnnnnnnnnnnnnn     a header row: one name letter per column
    i:00000000111111112222222233   the high digit of each column's label
    j:01234567012345670123456701   the low digit (`i:` and `j:` alike)
    ------------------------------ a rule: `-`, `+` and `|` (at least one `-`)
    n00|00000000111111110000000000 a row label and `|`

    abcdefghijklmn                 columns named by single letters
    a00001111000000                a row label of letters glued to its row

  Labels name the neurons; the row order gives the index, so labels need not
  be contiguous (`n00..n07, n10..n17`). A column's name is its letter (`n`
  when there is no letter row) followed by its digits; without digit lines,
  distinct letters are the names and a repeated letter (`nnnn`) is followed
  by the index. Row labels and column names, when both are given, must agree;
  names are unique; every row is labelled or none is. Names that are the
  indices themselves (`n00`, `n01`, ...) are no names at all. Named neurons
  keep their names in the equations (see ncc.equations): `n10 = f10( +n04*w0410
  ...)`, `e = fe( +a*ae +b*be)`, and their weight symbols (`w0410`, `ae`).

Edge list (`format="edges"`) -- one edge per line:

    N 05                       optional count; else the largest index + 1
    00 02                      i j: neuron i feeds neuron j
    00 03 -0.5                 i j w: with a weight value

  Either every edge line has a value or none does; an edge is listed once.
  Neurons no edge mentions (below the count) are inputs that feed nothing.

The matrix and the edge list carry no activations: every neuron with
in-edges gets `activation` (default `activations.DEFAULT_ACTIVATION`, tanh).
For a list, `activation`, when given, replaces the codes of every neuron.
In all spellings the inputs are the neurons without in-edges and the outputs
those without out-edges. The graph must be acyclic, free of self-loops and
have at least one edge.

Auto-detection (`format=None`) looks at the first line. `N <count>` starts a
list, unless every line after it has two or three fields (then an edge list:
a list always has one-field lines, its input neurons). Otherwise the input is
a matrix if that line is one field of 0s and 1s, a header (digits or name
letters), a rule or a labelled row; an edge list if it has two or three fields and no comma; else
a list (which then reports its missing `N` line). `format=` forces a
spelling.

Every malformed input is an `NccError` located at the file, line and column
of the offending token, saying what was expected: a malformed line (bad hex,
missing field, junk), an unknown activation, an index out of range or
defined twice, a count that disagrees with the lines, a ragged or non-square
matrix or an entry other than 0/1, a row label that disagrees with its
column's header, a name given twice, a
self-loop, a cycle (its neurons named, located where one of its edges is
written), value counts that disagree with the in-indices, an empty net, a
count or index beyond MAX_NEURONS (2^20: checked before anything per neuron
is allocated). No graph is returned unless the whole input is valid.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Callable

from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.dialects import activations
from ncc.dialects.neuron import NeuronGraph, bias_name, find_cycle, name_width

FORMATS = ("list", "matrix", "edges")

_hex = re.compile(r"[0-9a-fA-F]+").fullmatch
_num = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?").fullmatch
_label = re.compile(r"\s*(\w+)\s*\|").match  # a row label before `|`: n00, 00, a
_letters = re.compile(r"[A-Za-z]+").fullmatch  # a header row of name letters
_glued = re.compile(r"([A-Za-z]+)([01]+)").fullmatch  # a row label of letters glued to its row
_rule = re.compile(r"[-+|\s]*-[-+|\s]*").fullmatch
_CODES = f"{min(activations.BY_CODE):02x}..{max(activations.BY_CODE):02x}"
# The most neurons a net may have (a count, or an index + 1): checked before
# anything per neuron is allocated (a neuron-level net is small; a layer of a
# million neurons is an nn model's job)
MAX_NEURONS = 1 << 20
_KNOWN = f"expected a hex code {_CODES} or a name: {', '.join(activations.BY_NAME)}"

Line = tuple[int, str, list[str]]  # line number, text without comment, fields


def _col(text: str, k: int) -> int:
    """The 1-based column of field k of a line (its end if there are fewer)."""
    spans = [m.start() + 1 for m in re.finditer(r"\S+", text)]
    return spans[k] if k < len(spans) else len(text.rstrip()) + 1


class _Source:
    """The input's non-blank lines with comments removed, and error helpers."""

    def __init__(self, text: str, filename: str):
        self.file = filename
        self.lines: list[Line] = []
        for num, text_ in enumerate(text.split("\n"), 1):
            cut = min((text_.index(c) for c in "%#" if c in text_), default=None)
            if cut is not None:  # `%` and `#` start comments
                text_ = text_[:cut]
            fields = text_.split()
            if fields:
                self.lines.append((num, text_, fields))
        self.width, self.declared = 2, ""  # name width and `N` count, once known

    def fail(self, line: Line, message: str, k: int = 0, offset: int = 0, col: int | None = None):
        """Raise an error at field k (plus offset characters) of a line, or at col."""
        raise NccError(message, self.file, line[0], col or _col(line[1], k) + offset)

    @staticmethod
    def items(tok: str, parse: Callable[[str, int], object]) -> list:
        """A comma-separated field: parse(item, offset of the item in the field)."""
        out, offset = [], 0
        for item in tok.split(","):
            out.append(parse(item, offset))
            offset += len(item) + 1
        return out

    def name(self, i: int) -> str:
        return f"n{i:0{self.width}x}"

    def index(self, tok: str, n: int | None, line: Line, k: int, offset: int = 0,
              what: str = "neuron index") -> int:
        if not _hex(tok):
            self.fail(line, f"expected a hex {what}, got " + (f"'{tok}'" if tok else "nothing"), k, offset)
        i = int(tok, 16)
        if i >= MAX_NEURONS:
            self.fail(line, f"{what} {tok} is beyond ncc's limit of {MAX_NEURONS:#x} neurons", k, offset)
        if n is not None and i >= n:
            self.fail(line, f"{what} {tok} is out of range: `N {self.declared}` declares {n} neurons, "
                            f"{self.name(0)}..{self.name(n - 1)}", k, offset)
        return i

    def number(self, tok: str, line: Line, k: int, offset: int = 0) -> float:
        if not _num(tok) or not math.isfinite(float(tok)):
            self.fail(line, "expected a finite decimal number, got " + (f"'{tok}'" if tok else "nothing"),
                      k, offset)
        return float(tok)

    def count(self, line: Line) -> int:
        """The `N <count>` line."""
        f = line[2]
        if f[0] != "N":
            self.fail(line, f"expected `N <count>` (the number of neurons, hex), got '{f[0]}'")
        if len(f) < 2:
            self.fail(line, "expected the number of neurons (hex) after `N`", 1)
        if not _hex(f[1]):
            self.fail(line, f"expected the number of neurons (hex), got '{f[1]}'", 1)
        if len(f) > 2:
            self.fail(line, f"unexpected '{f[2]}' after the neuron count", 2)
        n = int(f[1], 16)
        if n == 0:
            self.fail(line, "empty net: `N 0` declares no neurons", 1)
        if n > MAX_NEURONS:
            self.fail(line, f"`N {f[1]}` declares {n} neurons, more than ncc's limit of {MAX_NEURONS:#x}", 1)
        self.width, self.declared = name_width(n), f[1]
        return n


@functools.lru_cache(maxsize=None)
def _activation(tok: str) -> str | None:
    a = activations.BY_NAME.get(tok) or (activations.BY_CODE.get(int(tok, 16)) if _hex(tok) else None)
    return a.name if a else None


# ---------------------------------------------------------------------------
# The three spellings. Each fills in a _Net and says where an edge is written.


class _Net:
    def __init__(self, n: int):
        self.ins: list[list[int]] = [[] for _ in range(n)]
        self.values: list[list[float] | None] = [None] * n
        self.bias: list[float | None] = [None] * n
        self.names: list[str] | None = None


def _parse_list(src: _Source, act: str | None) -> tuple[_Net, list[str | None], Callable]:
    head, *rest = src.lines
    n = src.count(head)
    net, acts, line_of = _Net(n), [None] * n, [None] * n
    for line in rest:
        f = line[2]
        j = src.index(f[0], n, line, 0)
        if line_of[j] is not None:
            src.fail(line, f"neuron {src.name(j)} is defined twice (first on line {line_of[j][0]})")
        line_of[j] = line
        if len(f) == 1:
            continue
        if len(f) == 2:
            src.fail(line, "expected the in-indices (comma-separated hex) after the activation", 2)
        a = _activation(f[1])
        if a is None:
            src.fail(line, f"unknown activation '{f[1]}' ({_KNOWN})", 1)
        acts[j] = act or a
        ins = src.items(f[2], lambda p, off: src.index(p, n, line, 2, off, "in-index"))
        if j in ins or len(set(ins)) != len(ins):
            k = ins.index(j) if j in ins else next(k for k, i in enumerate(ins) if i in ins[:k])
            off = sum(len(p) + 1 for p in f[2].split(",")[:k])
            if ins[k] == j:
                src.fail(line, f"neuron {src.name(j)} feeds itself (a self-loop)", 2, off)
            src.fail(line, f"in-index {src.name(ins[k])} is listed twice", 2, off)
        values = bias = None
        for k in range(3, len(f)):
            key, val = f[k][:2], f[k][2:]
            if key not in ("w=", "b="):
                src.fail(line, f"unexpected '{f[k]}': expected `w=<weights>`, `b=<bias>` or the end "
                               "of the line", k)
            if (values if key == "w=" else bias) is not None:
                src.fail(line, f"`{key}` is given twice", k)
            if key == "b=":
                bias = src.number(val, line, k, 2)
                continue
            values = src.items(val, lambda v, off: src.number(v, line, k, 2 + off))
            if len(values) != len(ins):
                src.fail(line, f"neuron {src.name(j)} has {len(ins)} in-indices but {len(values)} "
                               "weight values", k)
        if values is not None and ins != sorted(ins):
            ins, values = map(list, zip(*sorted(zip(ins, values))))
        net.ins[j], net.values[j], net.bias[j] = sorted(ins), values, bias
    missing = [j for j in range(n) if line_of[j] is None]
    if missing:
        shown = ", ".join(src.name(j) for j in missing[:8]) + (", ..." if len(missing) > 8 else "")
        src.fail(head, f"`N {head[2][1]}` declares {n} neurons but {n - len(missing)} are defined: "
                       f"no line for {shown}", 1)

    def locate(i: int, j: int) -> tuple[Line, int]:
        line = line_of[j]
        parts = line[2][2].split(",")
        k = next(k for k, p in enumerate(parts) if int(p, 16) == i)
        return line, _col(line[1], 2) + sum(len(q) + 1 for q in parts[:k])

    return net, acts, locate


def _parse_edges(src: _Source, act: str | None) -> tuple[_Net, list[str | None], Callable]:
    lines = src.lines
    n = None
    if lines[0][2][0] == "N":
        n = src.count(lines[0])
        lines = lines[1:]
    edges = []
    valued = None  # the first edge line: does it have a value?
    for line in lines:
        f = line[2]
        if len(f) < 2:
            src.fail(line, "expected `i j` or `i j w`: source and target index (hex), optional weight", 1)
        if len(f) > 3:
            src.fail(line, f"unexpected '{f[3]}': an edge line is `i j` or `i j w`", 3)
        i, j = src.index(f[0], n, line, 0), src.index(f[1], n, line, 1)
        if i == j:
            src.fail(line, f"neuron {src.name(j)} feeds itself (a self-loop)", 1)
        if valued is None:
            valued = line
        elif (len(f) == 3) != (len(valued[2]) == 3):
            has = "has one" if len(valued[2]) == 3 else "has none"
            src.fail(line, f"{'expected a' if len(f) == 2 else 'unexpected'} weight value: every edge "
                           f"has a value or none does (line {valued[0]} {has})", 2)
        edges.append((j, i, line, src.number(f[2], line, 2) if len(f) == 3 else None))
    if n is None:
        n = 1 + max((max(e[0], e[1]) for e in edges), default=-1)
        src.width = name_width(n)
    net = _Net(n)
    edges.sort(key=lambda e: (e[0], e[1], e[2][0]))
    prev = None
    for j, i, line, v in edges:
        if prev and prev[:2] == (j, i):
            src.fail(line, f"edge {src.name(i)} -> {src.name(j)} is listed twice "
                           f"(first on line {prev[2][0]})")
        prev = (j, i, line)
        net.ins[j].append(i)
        if v is not None:
            if net.values[j] is None:
                net.values[j] = []
            net.values[j].append(v)
    acts = [act if ins else None for ins in net.ins]

    def locate(i: int, j: int) -> tuple[Line, int]:
        line = next(e[2] for e in edges if e[:2] == (j, i))
        return line, _col(line[1], 0)

    return net, acts, locate


def _matrix_line(text: str) -> tuple[str, str, int, tuple[str, int] | None]:
    """What a matrix line is: ("head", digits, col, None) for an `i:`/`j:` header,
    ("letters", letters, col, None) for a header row of name letters, or
    ("row", cells, col, label) for a row; its label is None or (name, column):
    `n00` or `00` before `|` (named `n00`), or letters glued to the row (`a`)."""
    fields = text.split()
    if fields[0][:2] in ("i:", "j:"):
        start = text.index(fields[0]) + 2
        rest = text[start:].split()
        return "head", (rest[0] if rest else ""), (text.index(rest[0], start) + 1 if rest else 0), None
    m = _label(text)
    if m:
        rest = text[m.end():].split()
        name = "n" + m.group(1) if _hex(m.group(1)) else m.group(1)
        return ("row", (rest[0] if rest else ""), (text.index(rest[0], m.end()) + 1 if rest else 0),
                (name, m.start(1) + 1))
    if len(fields) == 1 and _letters(fields[0]):
        return "letters", fields[0], text.index(fields[0]) + 1, None
    g = _glued(fields[0]) if len(fields) == 1 else None
    if g:
        at = text.index(fields[0])
        return "row", g.group(2), at + len(g.group(1)) + 1, (g.group(1), at + 1)
    return "row", fields[0], text.index(fields[0]) + 1, None


def _parse_matrix(src: _Source, act: str | None) -> tuple[_Net, list[str | None], Callable]:
    rows: list[tuple[Line, str, int, tuple[str, int] | None]] = []  # line, 0/1 cells, their column, label
    headers: list[tuple[Line, str, int]] = []  # `i:`/`j:` lines: line, its digits, column of the first
    letters: tuple[Line, str, int] | None = None  # the header row of name letters
    for line in src.lines:
        text = line[1]
        if _rule(text):
            continue
        kind, cells, col, label = _matrix_line(text)
        what = "column header digits" if kind == "head" else "a matrix row of 0s and 1s"
        if not cells:
            src.fail(line, f"expected {what}", col=len(text.rstrip()) + 1)
        extra = text[col - 1 + len(cells):].split()
        if extra:
            src.fail(line, f"unexpected '{extra[0]}': expected {what} as one field",
                     col=text.index(extra[0], col - 1 + len(cells)) + 1)
        if kind == "head":
            headers.append((line, cells, col))
            continue
        if kind == "letters":
            if letters is not None:
                src.fail(line, f"a second header row of name letters (the first is on line {letters[0][0]})")
            letters = (line, cells, col)
            continue
        if cells.strip("01"):
            bad = next(c for c, ch in enumerate(cells) if ch not in "01")
            src.fail(line, f"expected a matrix entry 0 or 1, got '{cells[bad]}'", col=col + bad)
        if rows and len(cells) != len(rows[0][1]):
            src.fail(line, f"ragged matrix: row {src.name(len(rows))} has {len(cells)} columns but row "
                           f"{src.name(0)} has {len(rows[0][1])}", col=col)
        if rows and (label is None) != (rows[0][3] is None):
            src.fail(line, f"row {src.name(len(rows))} " + ("has no label, but the first row has one"
                                                             if label is None else
                                                             "has a label, but the first row has none"))
        rows.append((line, cells, col, label))
    if not rows:
        src.fail(src.lines[-1], "expected the matrix rows (0s and 1s) after the header")
    n = len(rows[0][1])
    src.width = name_width(n)
    if len(rows) != n:
        src.fail(rows[min(n, len(rows) - 1)][0], f"the matrix is not square: {len(rows)} rows of {n} columns")
    names = _matrix_names(src, rows, headers, letters, n)
    net = _Net(n)
    for i, (line, cells, col, _) in enumerate(rows):
        if cells[i] == "1":
            src.fail(line, f"neuron {names[i] if names else src.name(i)} feeds itself (a self-loop)",
                     col=col + i)
        j = cells.find("1")
        while j >= 0:
            net.ins[j].append(i)
            j = cells.find("1", j + 1)
    net.names = names
    acts = [act if ins else None for ins in net.ins]

    def locate(i: int, j: int) -> tuple[Line, int]:
        return rows[i][0], rows[i][2] + j

    return net, acts, locate


def _matrix_names(src: _Source, rows: list, headers: list, letters: tuple | None, n: int) -> list[str] | None:
    """The neurons' names from the column headers and row labels (None: neither
    is given). The letter row and the `i:`/`j:` digit lines, top first, spell
    column t's name (`n` when there is no letter row; without digit lines,
    distinct letters are the names and a repeated letter is followed by the
    index); a row's label names it. Both given, column t and row t must
    agree; names are unique."""
    for (line, cells, col), what in [*((h, "digits") for h in headers), *([(letters, "letters")] if letters else [])]:
        if len(cells) != n:
            src.fail(line, f"column header has {len(cells)} {what} but the matrix has {n} columns", col=col)
    columns = None
    if headers:
        columns = [(letters[1][t] if letters else "n") + "".join(h[1][t] for h in headers) for t in range(n)]
    elif letters:  # distinct letters are the names; a repeated one (nnnn) prefixes the index
        distinct = len(set(letters[1])) == n
        columns = [c if distinct else f"{c}{t:0{src.width}x}" for t, c in enumerate(letters[1])]
    labels = [r[3][0] for r in rows] if rows[0][3] is not None else None
    if columns and labels:
        for t, (column, label) in enumerate(zip(columns, labels)):
            if column != label:
                src.fail(rows[t][0], f"row label '{label}' does not match the name the column headers "
                                     f"give column {t}, '{column}'", col=rows[t][3][1])
    names = labels or columns
    if names is not None:
        seen: dict[str, int] = {}
        for t, name in enumerate(names):
            if name in seen:
                src.fail(rows[t][0], f"neuron name '{name}' is given to rows {seen[name]} and {t}",
                         col=rows[t][3][1] if labels else None)
            seen[name] = t
    return names


_PARSERS = {"list": _parse_list, "matrix": _parse_matrix, "edges": _parse_edges}


def _detect(src: _Source) -> str:
    first = src.lines[0]
    if first[2][0] == "N":
        rest = src.lines[1:]
        return "edges" if rest and all(2 <= len(f) <= 3 for _, _, f in rest) else "list"
    f = first[2]
    if (f[0][:2] in ("i:", "j:") or _rule(first[1]) or _label(first[1])
            or (len(f) == 1 and (not f[0].strip("01") or _letters(f[0]) or _glued(f[0])))):
        return "matrix"
    return "edges" if len(f) in (2, 3) and "," not in first[1] else "list"


# ---------------------------------------------------------------------------
# Public API


def parse_adjacency(text: str, filename: str = "<input>", *, format: str | None = None,
                    activation: str | None = None) -> NeuronGraph:
    """Parse a net in any of the three spellings (see the module docstring)."""
    if format is not None and format not in _PARSERS:
        raise NccError(f"unknown adjacency format '{format}' (expected one of: {', '.join(FORMATS)})")
    act = None
    if activation is not None:
        act = _activation(activation)
        if act is None:
            raise NccError(f"option activation={activation}: unknown activation ({_KNOWN})")
    src = _Source(text, filename)
    if not src.lines:
        raise NccError("empty net: the input has no neurons", filename, 1, 1)
    spelling = format or _detect(src)
    net, acts, locate = _PARSERS[spelling](src, act if spelling == "list" else
                                           act or activations.DEFAULT_ACTIVATION)
    if not any(net.ins):
        src.fail(src.lines[0], "the net has no edges: expected at least one neuron with in-edges")
    cycle = find_cycle(dict(enumerate(net.ins)))
    if cycle is not None:
        line, col = locate(cycle[-2], cycle[-1])
        src.fail(line, "the net has a cycle: " + " -> ".join(src.name(i) for i in cycle), col=col)
    w = name_width(len(acts))
    return NeuronGraph(activation=acts, inputs=net.ins, values=net.values,
                       bias=[None if b is None else bias_name(j, w) for j, b in enumerate(net.bias)],
                       bias_value=net.bias, spelling=spelling, names=net.names)


def import_adjacency_text(text: str, filename: str = "<input>", *, name: str = "net",
                          format: str | None = None, activation: str | None = None) -> ModuleOp:
    """A module holding the net `@name` that `text` spells."""
    graph = parse_adjacency(text, filename, format=format, activation=activation)
    return ModuleOp([graph.to_net(name)])


def import_adjacency(path: str | os.PathLike, *, name: str = "net", format: str | None = None,
                     activation: str | None = None) -> ModuleOp:
    """A module holding the net `@name` read from the file at `path`."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise NccError(f"cannot read the file: {e.strerror or e}", filename) from None
    except UnicodeDecodeError as e:
        raise NccError(f"not a text file: invalid UTF-8 at byte {e.start}", filename) from None
    return import_adjacency_text(text, filename, name=name, format=format, activation=activation)


__all__ = ["FORMATS", "parse_adjacency", "import_adjacency", "import_adjacency_text"]
