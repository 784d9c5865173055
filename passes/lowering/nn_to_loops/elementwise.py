"""Lowering of the elementwise family: unary (the activation table's code), binary,
comparison and logical ops, not, select, is_nan, is_inf, cast."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import i1
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, COMPARE_EMIT, LOGICAL_EMIT, UNARY_EMIT
from ncc.passes.lowering.nn_to_loops.builder import broadcast_map, identity_map, map_nest


# ---------------------------------------------------------------------------
# Op lowerings: lower(b, op, out, ins) writes op's result into `out`.


def lower_unary(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    emit = UNARY_EMIT[op.name[3:]]
    map_nest(b, out.shape, out, identity_map, [(ins[0], identity_map)], lambda x: emit(b, x))


def lower_binary(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    name = op.name[3:]
    reads = [(x, broadcast_map(b, out.shape, x.shape)) for x in ins]
    map_nest(b, out.shape, out, identity_map, reads, lambda x, y: b.binary(name, x, y))


def _elementwise(b: Builder, out: Buf, ins: list[Buf], fn: Callable[..., SSAValue]) -> None:
    """out = fn(*ins) elementwise, the inputs broadcast to the output's shape."""
    reads = [(x, broadcast_map(b, out.shape, x.shape)) for x in ins]
    map_nest(b, out.shape, out, identity_map, reads, fn)


def lower_compare(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    fpred, ipred = COMPARE_EMIT[op.name[3:]]
    cmp = (lambda x, y: b.cmpf(fpred, x, y)) if ins[0].is_float else (lambda x, y: b.cmpi(ipred, x, y))
    _elementwise(b, out, ins, cmp)


def lower_logical(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    cls = LOGICAL_EMIT[op.name[3:]]
    _elementwise(b, out, ins, lambda x, y: b(cls, x, y))


def lower_not(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, lambda x: b(arith.XOrIOp, x, b.const(1, i1)))


def lower_select(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, b.select)


def lower_is_nan(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, lambda x: b.cmpf("uno", x, x))


def lower_is_inf(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    pos, neg = op.params.detect_positive, op.params.detect_negative

    def fn(x: SSAValue) -> SSAValue:
        if pos and neg:
            return b.cmpf("oeq", b(math.AbsFOp, x), b.like(pymath.inf, x))
        if pos or neg:
            return b.cmpf("oeq", x, b.like(pymath.inf if pos else -pymath.inf, x))
        return b.const(0, i1)

    _elementwise(b, out, ins, fn)


def lower_cast(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Float to float: fpext to a wider type, fptrunc (round to nearest even) to a
    narrower; integer to integer: extend (ui8 with zeros, others with the sign)
    or truncate (wrap), i8 <-> ui8 the same bits; integer to float: sitofp
    (uitofp from ui8); float to integer: fptosi (fptoui to ui8; toward zero,
    saturating, see loops_to_llvm)."""
    src, dst = ins[0].elt, out.elt
    wider, narrower = dst.bitwidth > src.bitwidth, dst.bitwidth < src.bitwidth
    unsigned = src == nn.ui8
    if ins[0].is_float and out.is_float:
        convert = ((lambda x: b(arith.ExtFOp, x, dst)) if wider else
                   (lambda x: b(arith.TruncFOp, x, dst)) if narrower else (lambda x: x))
    elif ins[0].is_float:
        convert = lambda x: b(arith.FPToUIOp if dst == nn.ui8 else arith.FPToSIOp, x, dst)  # noqa: E731
    elif out.is_float:
        convert = lambda x: b(arith.UIToFPOp if unsigned else arith.SIToFPOp, x, dst)  # noqa: E731
    else:
        convert = ((lambda x: b(arith.ExtUIOp if unsigned else arith.ExtSIOp, x, dst)) if wider else
                   (lambda x: b(arith.TruncIOp, x, dst)) if narrower else
                   (lambda x: x) if src == dst else (lambda x: b(arith.BitcastOp, x, dst)))
    map_nest(b, out.shape, out, identity_map, [(ins[0], identity_map)], convert)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    **{cls: lower_unary for cls in nn.UNARY_OPS.values()},
    **{cls: lower_binary for cls in nn.BINARY_OPS.values()},
    **{cls: lower_compare for cls in nn.COMPARE_OPS.values()},
    **{cls: lower_logical for cls in nn.LOGICAL_OPS.values()},
    nn.NotOp: lower_not, nn.SelectOp: lower_select, nn.IsNanOp: lower_is_nan, nn.IsInfOp: lower_is_inf,
    nn.CastOp: lower_cast,
}

