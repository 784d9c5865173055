"""VJP rules of the elementwise family: unary ops (the activation table's vjp for
activations), binary ops, cast, select; `activation_vjp` for fused ops."""

from __future__ import annotations

import math
from typing import Callable

from xdsl.ir import Operation, SSAValue

from ncc.dialects import activations, nn
from ncc.passes.autodiff.core import Backward, Rule, scaled_product


# ---------------------------------------------------------------------------
# VJP rules. Each returns one cotangent per operand (None: no gradient, or not wanted).


def _unary(d: Callable[[Backward, SSAValue, SSAValue, SSAValue], SSAValue | None]) -> Rule:
    """A rule from d(bw, x, y, g) -> dx; it calls bw.primal only on what it uses."""
    return lambda bw, op, g: [d(bw, op.operands[0], op.result, g)]


# dy/dx of each elementwise function, from the input x or (cheaper to save, and
# fusable forward code) the output y.
UNARY_VJP: dict[str, Callable] = {
    "neg": lambda bw, x, y, g: bw.un("neg", g),
    "exp": lambda bw, x, y, g: bw.bin("mul", g, bw.primal(y)),
    "log": lambda bw, x, y, g: bw.bin("div", g, bw.primal(x)),
    "sqrt": lambda bw, x, y, g: bw.bin("div", g, scaled_product(bw, bw.constant(1, y), bw.primal(y), 2)),
    "reciprocal": lambda bw, x, y, g: bw.un("neg", bw.bin("mul", g, bw.bin("mul", *[bw.primal(y)] * 2))),
    "cos": lambda bw, x, y, g: bw.un("neg", bw.bin("mul", g, bw.un("sin", bw.primal(x)))),
    "erf": lambda bw, x, y, g: (lambda xv: bw.bin("mul", g, scaled_product(
        bw, bw.constant(1, x), bw.un("exp", bw.un("neg", bw.bin("mul", xv, xv))),
        2 / math.sqrt(math.pi))))(bw.primal(x)),
    "sinh": lambda bw, x, y, g: bw.bin("mul", g, bw.un("cosh", bw.primal(x))),
    "cosh": lambda bw, x, y, g: bw.bin("mul", g, bw.un("sinh", bw.primal(x))),
    # d/dx of the inverse functions: g / h(x)
    **{name: (lambda h: lambda bw, x, y, g: bw.bin("div", g, h(bw, bw.primal(x))))(h) for name, h in {
        "asin": lambda bw, xv: bw.un("sqrt", bw.bin("sub", bw.constant(1, xv), bw.bin("mul", xv, xv))),
        "acos": lambda bw, xv: bw.un("neg", bw.un("sqrt", bw.bin("sub", bw.constant(1, xv),
                                                                  bw.bin("mul", xv, xv)))),
        "atan": lambda bw, xv: bw.bin("add", bw.constant(1, xv), bw.bin("mul", xv, xv)),
        "asinh": lambda bw, xv: bw.un("sqrt", bw.bin("add", bw.bin("mul", xv, xv), bw.constant(1, xv))),
        "acosh": lambda bw, xv: bw.un("sqrt", bw.bin("sub", bw.bin("mul", xv, xv), bw.constant(1, xv))),
        "atanh": lambda bw, xv: bw.bin("sub", bw.constant(1, xv), bw.bin("mul", xv, xv)),
    }.items()},
    # piecewise constant: zero almost everywhere (as PyTorch)
    **{name: (lambda bw, x, y, g: None) for name in ("floor", "ceil", "round", "sign")},
    # the activations: the table's vjp (dialects/activations.py), on nn ops
    **{a.name: (lambda a: lambda bw, x, y, g: a.vjp(
        _NNScalar(bw, g), bw.primal(x) if "z" in a.reads else None,
        bw.primal(y) if "n" in a.reads else None, g))(a) for a in activations.ACTIVATIONS},
}


class _NNScalar:
    """The activation table's Scalar on nn tensor ops (constants of `like`'s type)."""

    def __init__(self, bw: Backward, like: SSAValue):
        self.bw, self.like = bw, like

    def const(self, v: float) -> SSAValue:
        return self.bw.constant(v, self.like)

    def __getattr__(self, name: str):
        if name in ("add", "sub", "mul", "div", "max", "min"):
            return lambda a, b: self.bw.bin(name, a, b)
        if name in nn.UNARY_OPS:
            return lambda a: self.bw.un(name, a)
        raise AttributeError(name)

    def positive(self, a: SSAValue) -> SSAValue:
        return self.bw.cmp("greater", a, self.const(0.0))

    def negative(self, a: SSAValue) -> SSAValue:
        return self.bw.cmp("less", a, self.const(0.0))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.bw.select(cond, a, b)


def _binary(d: Callable) -> Rule:
    """A rule from d(bw, a, b, y, g) -> (da, db) before unbroadcasting."""

    def rule(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
        a, b = op.operands
        da, db = d(bw, a, b, op.result, g)
        return [bw.unbroadcast(da, a.type) if da is not None and bw.wants(op, 0) else None,
                bw.unbroadcast(db, b.type) if db is not None and bw.wants(op, 1) else None]
    return rule


def _max_share(bw: Backward, a: SSAValue, b: SSAValue, which: str) -> SSAValue:
    """1 where `a` wins (greater for max, less for min), 0.5 on ties (as PyTorch), else 0."""
    av, bv = bw.primal(a), bw.primal(b)
    t = bw.constant(1, a)
    return bw.select(bw.cmp(which, av, bv), t,
                     bw.select(bw.cmp("equal", av, bv), bw.constant(0.5, a), bw.constant(0, a)))


def _max_min(which: str):
    def d(bw, a, b, y, g):
        share = _max_share(bw, a, b, which)
        return bw.bin("mul", g, share), bw.bin("mul", g, bw.bin("sub", bw.constant(1, a), share))
    return d


def _quotient(bw: Backward, a: SSAValue, b: SSAValue, y: SSAValue) -> SSAValue:
    """(a - remainder) / b: floor(a / b) for mod, trunc(a / b) for fmod."""
    bv = bw.primal(b)
    return bw.bin("div", bw.bin("sub", bw.primal(a), bw.primal(y)), bv)


BINARY_VJP: dict[str, Callable] = {
    "add": lambda bw, a, b, y, g: (g, g),
    "sub": lambda bw, a, b, y, g: (g, bw.un("neg", g)),
    "mul": lambda bw, a, b, y, g: (bw.bin("mul", g, bw.primal(b)) if a in bw.active else None,
                                   bw.bin("mul", g, bw.primal(a)) if b in bw.active else None),
    # da = g / b; db = -g a / b^2 = -da * y
    "div": lambda bw, a, b, y, g: (lambda da: (da, bw.un("neg", bw.bin("mul", da, bw.primal(y)))
                                               if b in bw.active else None))(
        bw.bin("div", g, bw.primal(b))),
    "max": _max_min("greater"),
    "min": _max_min("less"),
    # da = g b a^(b-1); db = g y log(a)
    "pow": lambda bw, a, b, y, g: (
        bw.bin("mul", g, bw.bin("mul", bw.primal(b), bw.bin(
            "pow", bw.primal(a), bw.bin("sub", bw.primal(b), bw.constant(1, b))))) if a in bw.active else None,
        bw.bin("mul", g, bw.bin("mul", bw.primal(y), bw.un("log", bw.primal(a)))) if b in bw.active else None),
    "mod": lambda bw, a, b, y, g: (g, bw.un("neg", bw.bin("mul", g, _quotient(bw, a, b, y)))
                                   if b in bw.active else None),
    "fmod": lambda bw, a, b, y, g: (g, bw.un("neg", bw.bin("mul", g, _quotient(bw, a, b, y)))
                                    if b in bw.active else None),
}


def activation_vjp(bw: Backward, op: Operation, g: SSAValue, pre: Callable[[], SSAValue]) -> SSAValue:
    """The cotangent of a fused op's pre-activation sum z, given g = dL/dy.
    Rules that read y use the op's own result; the others recompute z (`pre`)."""
    act = op.params.activation
    if act == "identity":
        return g
    z = pre() if "z" in activations.BY_NAME[act].reads else None
    shim = _ActivationShim(bw, z)
    return UNARY_VJP[act](shim, z, op.result, g) or bw.zeros(g.type)


class _ActivationShim:
    """A Backward whose primal() returns the recomputed z for the fused op's x."""

    def __init__(self, bw: Backward, z: SSAValue | None):
        self._bw, self._z = bw, z

    def __getattr__(self, name):
        return getattr(self._bw, name)

    def primal(self, v: SSAValue) -> SSAValue:
        return self._z if v is self._z else self._bw.primal(v)


def _cast_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.emit(nn.CastOp(g, op.operands[0].type.element_type))]


def _select_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    cond = bw.primal(op.operands[0])
    zero = bw.constant(0, g)
    return [None] + [bw.unbroadcast(bw.select(cond, g, zero) if i == 1 else bw.select(cond, zero, g),
                                    op.operands[i].type) if bw.wants(op, i) else None for i in (1, 2)]


VJP: dict[type, Rule] = {
    **{cls: _unary(UNARY_VJP[name]) for name, cls in nn.UNARY_OPS.items()},
    **{cls: _binary(BINARY_VJP[name]) for name, cls in nn.BINARY_OPS.items()},
    nn.CastOp: _cast_vjp, nn.SelectOp: _select_vjp,
}

