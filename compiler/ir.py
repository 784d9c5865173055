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
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import SymbolTable
from xdsl.utils.exceptions import DiagnosticException, ParseError

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


def parse_module(text: str, filename: str = "<stdin>", ctx: Context | None = None,
                 line_offset: int = 0, verify: bool = True) -> ModuleOp:
    """Parse MLIR text into a module; errors are NccError with file:line:col.
    Text with nothing but white space and comments is an empty module, as in
    mlir-opt."""
    ctx = ctx or make_context()
    if not any(line.strip() and not line.lstrip().startswith("//") for line in text.splitlines()):
        return ModuleOp([])
    try:
        module = LocatingParser(ctx, text, filename, line_offset).parse_module()
    except ParseError as e:
        raise parse_error(e, filename, line_offset) from None
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


def verify_module(module: Operation, filename: str | None = None) -> None:
    """Verify, reporting the first failing op at its location. Nested ops are
    verified before their parents, so a neuron's own error wins over the net's."""
    try:
        _check_symbols_unique(module)
    except NccError as err:
        err.file = err.file or filename
        raise
    for op in module.walk(region_first=True):
        try:
            op.verify(verify_nested_ops=False)
        except DiagnosticException as e:
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
