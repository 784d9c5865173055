"""Scalar arith/math code for the activation table (dialects/activations.py).

`ArithScalar(emit, const)` implements the table's `Scalar` protocol on float
scalars: `emit` appends an op and returns its result, `const(value)` makes a
float constant of the type being computed. nn-to-loops, neuron-to-loops and
the neuron backward kernel all build activations and their derivatives
through it, so an activation means the same at every level.
"""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Operation, SSAValue

Emit = Callable[[Operation], SSAValue]
Const = Callable[[float], SSAValue]


class ArithScalar:
    def __init__(self, emit: Emit, const: Const):
        self.emit, self.const = emit, const

    def _un(self, cls: type, a: SSAValue) -> SSAValue:
        return self.emit(cls(a))

    def _bin(self, cls: type, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(cls(a, b))

    def add(self, a, b): return self._bin(arith.AddfOp, a, b)  # noqa: E704
    def sub(self, a, b): return self._bin(arith.SubfOp, a, b)  # noqa: E704
    def mul(self, a, b): return self._bin(arith.MulfOp, a, b)  # noqa: E704
    def div(self, a, b): return self._bin(arith.DivfOp, a, b)  # noqa: E704
    def max(self, a, b): return self._bin(arith.MaximumfOp, a, b)  # noqa: E704
    def min(self, a, b): return self._bin(arith.MinimumfOp, a, b)  # noqa: E704
    def neg(self, a): return self._un(arith.NegfOp, a)  # noqa: E704
    def abs(self, a): return self._un(math.AbsFOp, a)  # noqa: E704
    def exp(self, a): return self._un(math.ExpOp, a)  # noqa: E704

    def one_plus_exp(self, a: SSAValue) -> SSAValue:
        """1 + exp(a) with exp's `afn` form (expand_math.exp_approximate): the sum is the same."""
        return self.add(self.const(1.0), self.emit(math.ExpOp(a, arith.FastMathFlagsAttr(["afn"]))))

    def expm1(self, a): return self._un(math.ExpM1Op, a)  # noqa: E704
    def log1p(self, a): return self._un(math.Log1pOp, a)  # noqa: E704
    def tanh(self, a): return self._un(math.TanhOp, a)  # noqa: E704
    def erf(self, a): return self._un(math.ErfOp, a)  # noqa: E704
    def sin(self, a): return self._un(math.SinOp, a)  # noqa: E704
    def cos(self, a): return self._un(math.CosOp, a)  # noqa: E704

    def positive(self, a: SSAValue) -> SSAValue:  # ordered: NaN > 0 is false
        return self.emit(arith.CmpfOp(a, self.const(0.0), "ogt"))

    def negative(self, a: SSAValue) -> SSAValue:
        return self.emit(arith.CmpfOp(a, self.const(0.0), "olt"))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(arith.SelectOp(cond, a, b))
