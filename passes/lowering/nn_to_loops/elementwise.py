"""Lowering of the elementwise family: unary (the activation table's code), binary,
comparison and logical ops, not, select, is_nan, is_inf, cast. Each op's function of one
element (`scalar_fn`) is also what a fused chain (fusion.py) composes."""

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
# Each op's function of one element of every operand (`scalar_fn`); the op's
# lowering maps it over the output, its operands broadcast (`lower_elementwise`).


def _unary(b: Builder, op) -> Callable[..., SSAValue]:
    emit = UNARY_EMIT[op.name[3:]]
    return lambda x: emit(b, x)


def _binary(b: Builder, op) -> Callable[..., SSAValue]:
    name = op.name[3:]
    return lambda x, y: b.binary(name, x, y)


def _compare(b: Builder, op) -> Callable[..., SSAValue]:
    fpred, ipred = COMPARE_EMIT[op.name[3:]]
    if isinstance(op.lhs.type.element_type, nn.FLOAT_TYPES):
        return lambda x, y: b.cmpf(fpred, x, y)
    return lambda x, y: b.cmpi(ipred, x, y)


def _logical(b: Builder, op) -> Callable[..., SSAValue]:
    cls = LOGICAL_EMIT[op.name[3:]]
    return lambda x, y: b(cls, x, y)


def _is_inf(b: Builder, op) -> Callable[..., SSAValue]:
    pos, neg = op.params.detect_positive, op.params.detect_negative

    def fn(x: SSAValue) -> SSAValue:
        if pos and neg:
            return b.cmpf("oeq", b(math.AbsFOp, x), b.like(pymath.inf, x))
        if pos or neg:
            return b.cmpf("oeq", x, b.like(pymath.inf if pos else -pymath.inf, x))
        return b.const(0, i1)

    return fn


def _cast(b: Builder, op) -> Callable[..., SSAValue]:
    """Float to float: fpext to a wider type, fptrunc (round to nearest even) to a
    narrower; integer to integer: extend (ui8 with zeros, others with the sign)
    or truncate (wrap), i8 <-> ui8 the same bits; integer to float: sitofp
    (uitofp from ui8); float to integer: fptosi (fptoui to ui8; toward zero,
    saturating, see loops_to_llvm)."""
    src, dst = op.input.type.element_type, op.result.type.element_type
    src_float, dst_float = isinstance(src, nn.FLOAT_TYPES), isinstance(dst, nn.FLOAT_TYPES)
    wider, narrower = dst.bitwidth > src.bitwidth, dst.bitwidth < src.bitwidth
    unsigned = src == nn.ui8
    if src_float and dst_float:
        return ((lambda x: b(arith.ExtFOp, x, dst)) if wider else
                (lambda x: b(arith.TruncFOp, x, dst)) if narrower else (lambda x: x))
    if src_float:
        return lambda x: b(arith.FPToUIOp if dst == nn.ui8 else arith.FPToSIOp, x, dst)
    if dst_float:
        return lambda x: b(arith.UIToFPOp if unsigned else arith.SIToFPOp, x, dst)
    return ((lambda x: b(arith.ExtUIOp if unsigned else arith.ExtSIOp, x, dst)) if wider else
            (lambda x: b(arith.TruncIOp, x, dst)) if narrower else
            (lambda x: x) if src == dst else (lambda x: b(arith.BitcastOp, x, dst)))


SCALAR: dict[type, Callable[[Builder, Operation], Callable[..., SSAValue]]] = {
    **{cls: _unary for cls in nn.UNARY_OPS.values()},
    **{cls: _binary for cls in nn.BINARY_OPS.values()},
    **{cls: _compare for cls in nn.COMPARE_OPS.values()},
    **{cls: _logical for cls in nn.LOGICAL_OPS.values()},
    nn.NotOp: lambda b, op: lambda x: b(arith.XOrIOp, x, b.const(1, i1)),
    nn.SelectOp: lambda b, op: b.select,
    nn.IsNanOp: lambda b, op: lambda x: b.cmpf("uno", x, x),
    nn.IsInfOp: _is_inf,
    nn.CastOp: _cast,
}


def scalar_fn(b: Builder, op: Operation) -> Callable[..., SSAValue]:
    """The loop IR of `op` (an elementwise op) on one element of each operand."""
    return SCALAR[type(op)](b, op)


def map_elementwise(b: Builder, out: Buf, ins: list[Buf], fn: Callable[..., SSAValue]) -> None:
    """out = fn(*ins) elementwise, the inputs broadcast to the output's shape."""
    reads = [(x, broadcast_map(b, out.shape, x.shape)) for x in ins]
    map_nest(b, out.shape, out, identity_map, reads, fn)


def lower_elementwise(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    map_elementwise(b, out, ins, scalar_fn(b, op))


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    cls: lower_elementwise for cls in SCALAR}
