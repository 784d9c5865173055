"""Reading, verifying and printing ncc's IR (MLIR text).

Parsed ops keep their `file:line:col` as their location, so that a verifier
error is reported where the op was written.
"""

from __future__ import annotations

import bisect
import io
import re

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.cf import Cf
from xdsl.dialects.func import Func
from xdsl.dialects.llvm import LLVM
from xdsl.dialects.math import Math
from xdsl.dialects.memref import MemRef
from xdsl.dialects.scf import Scf
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, ModuleOp, StringAttr, UnknownLoc
from xdsl.ir import Operation, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import SymbolTable
from xdsl.utils.exceptions import ParseError

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import Neuron


def make_context() -> Context:
    """A context with every dialect ncc reads: builtin, func, arith, neuron, nn, and the
    loop and llvm levels' memref, scf, cf, math, llvm."""
    ctx = Context()
    for dialect in (Builtin, Func, Arith, Neuron, nn.NN, MemRef, Scf, Cf, Math, LLVM):
        ctx.load_dialect(dialect)
    return ctx


class LocatingParser(Parser):
    """A parser that records each op's `file:line:col` as its location."""

    def __init__(self, ctx: Context, text: str, name: str, line_offset: int = 0):
        super().__init__(ctx, text, name)
        self._file = StringAttr(name)
        self._line_offset = line_offset
        # Offsets of line starts, for an O(log n) offset -> line lookup.
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._recent: list = []  # the last tokens consumed (an error while building an attribute names one)

    def _consume_token(self, expected_kind=None):
        token = super()._consume_token(expected_kind)
        self._recent = [*self._recent[-7:], token]
        return token

    def location(self, message: str = "") -> tuple[int, int]:
        """(line, col) of the token the parser is at, or of a token just consumed
        that `message` quotes (the integer a type refused, say)."""
        quoted = sorted((t for t in self._recent if t.text and t.text in message), key=lambda t: len(t.text))
        start = (quoted[-1] if quoted else self._current_token).span.start  # the longest: the value, not a type
        line = bisect.bisect_right(self._line_starts, start)
        return line + self._line_offset, start - self._line_starts[line - 1] + 1

    def parse_operation(self) -> Operation:
        start = self._current_token.span.start
        op = super().parse_operation()
        if isinstance(op.location, UnknownLoc):
            line = bisect.bisect_right(self._line_starts, start)
            col = start - self._line_starts[line - 1] + 1
            op.location = FileLineColLoc(self._file, IntAttr(line + self._line_offset), IntAttr(col))
        return op


def parse_error(e: ParseError, filename: str, line_offset: int = 0) -> NccError:
    loc = e.span.get_location()
    return NccError(_first_line(e.msg), filename, loc.line + line_offset, loc.col)


def _first_line(msg: str) -> str:
    lines = [ln for ln in str(msg).splitlines() if ln.strip()]
    return lines[0].strip() if lines else "invalid input"


# A comment, a whole string literal (each character or escape taken once: no
# backtracking), or a quote that starts none
_STRINGS = re.compile(r'//[^\n]*|"(?:[^"\\\n\v\f]|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"|"')


def check_string_literals(text: str, filename: str, line_offset: int = 0) -> None:
    """Every string literal closed on its line, with valid escapes (\\", \\n,
    \\t, \\\\, two hex digits), checked in one linear pass before xDSL's lexer
    sees the text: its string regex backtracks exponentially on an unclosed
    literal (26 characters after the quote take half a minute)."""
    for m in _STRINGS.finditer(text):
        if m.group() != '"':
            continue
        at, end = m.start(), m.start() + 1
        while end < len(text) and text[end] not in '"\n\v\f':
            if text[end] == "\\":
                if not re.match(r'["nt\\]|[0-9A-Fa-f]{2}', text[end + 1:end + 3]):
                    line, col = _line_col(text, end)
                    raise NccError("invalid escape in a string literal (valid: \\\", \\n, \\t, \\\\ "
                                   "and two hex digits)", filename, line + line_offset, col)
                end += 1
            end += 1
        line, col = _line_col(text, at)
        raise NccError("unterminated string literal (it must close on its line)", filename, line + line_offset, col)


MAX_INTEGER_WIDTH = (1 << 24) - 1  # MLIR's widest integer type, in bits
_INTEGER_TYPE = re.compile(r"(?<![%@^#!.\w$-])[su]?i(\d+)\b")


def check_integer_widths(text: str, filename: str, line_offset: int = 0) -> None:
    """No integer type wider than MLIR allows (xDSL would compute 2^width to
    bound its values: i99999999999 takes all the memory there is)."""
    for m in _INTEGER_TYPE.finditer(text):
        if int(m.group(1)) > MAX_INTEGER_WIDTH:
            line, col = _line_col(text, m.start())
            raise NccError(f"integer type {m.group()} is wider than {MAX_INTEGER_WIDTH} bits, MLIR's limit",
                           filename, line + line_offset, col)


def _line_col(text: str, at: int) -> tuple[int, int]:
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def parse_module(text: str, filename: str = "<stdin>", ctx: Context | None = None,
                 line_offset: int = 0, verify: bool = True) -> ModuleOp:
    """Parse MLIR text into a module; errors are NccError with file:line:col.
    Text with nothing but white space and comments is an empty module, as in
    mlir-opt."""
    ctx = ctx or make_context()
    if not any(line.strip() and not line.lstrip().startswith("//") for line in text.splitlines()):
        return ModuleOp([])
    check_string_literals(text, filename, line_offset)
    check_integer_widths(text, filename, line_offset)
    parser = None
    try:
        parser = LocatingParser(ctx, text, filename, line_offset)  # lexes the first token: may fail too
        module = parser.parse_module()
    except ParseError as e:
        raise parse_error(e, filename, line_offset) from None
    except RecursionError:  # Python's stack bounds the parser's recursion: report where it gave up
        raise NccError("nesting too deep to parse", filename, *(parser.location() if parser else (1, 1))) from None
    except NccError:
        raise
    except Exception as e:  # noqa: BLE001 -- xDSL's parser raises more than ParseError
        # what an attribute, type or op constructor refuses while the parser builds it
        # (an integer out of range for its type, a load without an index per
        # dimension): an error where the parser is
        raise NccError(_first_line(str(e)), filename, *(parser.location(str(e)) if parser else (1, 1))) from None
    if verify:
        verify_module(module, filename)
    return module


def _check_symbols_unique(module: Operation) -> None:
    # xDSL's module verifier names a redefined symbol but not where: report it
    # at the second definition, as MLIR does.
    for table in module.walk():
        if not table.has_trait(SymbolTable):
            continue
        seen: dict[str, Operation] = {}
        for region in table.regions:
            for op in region.ops:
                name = op.properties.get("sym_name") or op.attributes.get("sym_name")
                if isinstance(name, StringAttr):
                    if name.data in seen:
                        raise NccError.at_op(op, f'redefinition of symbol "{name.data}"')
                    seen[name.data] = op


def _check_defined_before_use(root: Operation) -> None:
    """Every operand defined before its use: in its block above it, or in an
    enclosing block above the op holding it (xDSL's verifier does not check
    dominance; lowering a use before its definition fails far from the text).
    A region of several blocks (branches) is checked as a whole, unordered."""
    defined: set[SSAValue] = set()

    def region(r) -> None:
        added: list[SSAValue] = []
        blocks = list(r.blocks)
        if len(blocks) > 1:
            added += [v for b in blocks for v in b.args] + [v for b in blocks for o in b.ops for v in o.results]
        else:
            added += list(blocks[0].args) if blocks else []
        defined.update(added)
        for b in blocks:
            for op in b.ops:
                for i, v in enumerate(op.operands):
                    if v not in defined:
                        name = f"%{v.name_hint}" if v.name_hint else f"operand #{i}"
                        raise NccError.at_op(op, f"{name} of {op.name} is used before it is defined")
                for inner in op.regions:
                    region(inner)
                if len(blocks) == 1:
                    defined.update(op.results)
                    added += op.results
        defined.difference_update(added)

    for r in root.regions:
        region(r)


def verify_module(module: Operation, filename: str | None = None) -> None:
    """Verify, reporting the first failing op at its location. Nested ops are
    verified before their parents, so a neuron's own error wins over the net's."""
    try:
        _check_symbols_unique(module)
        _check_defined_before_use(module)
    except NccError as err:
        err.file = err.file or filename
        raise
    for op in module.walk(region_first=True):
        try:
            op.verify(verify_nested_ops=False)
        except Exception as e:  # noqa: BLE001 -- a dialect's verifier may raise a plain Exception (memref.load)
            err = NccError.at_op(getattr(e, "op", op), _first_line(str(e)))
            if err.file is None:  # an op without a source line, e.g. the implicit module
                err.file = filename
            raise err from None


def print_module(module: Operation, elide_weights_if_larger: int | None = None) -> str:
    """MLIR text of `module`; weights with more elements than the limit are
    printed as `dense_resource<__elided__>` (MLIR's convention)."""
    out = io.StringIO()
    token = nn.WEIGHT_ELISION_LIMIT.set(elide_weights_if_larger)
    try:
        Printer(stream=out).print_op(module)
    finally:
        nn.WEIGHT_ELISION_LIMIT.reset(token)
    out.write("\n")
    return out.getvalue()


__all__ = ["make_context", "parse_module", "print_module", "verify_module"]
