"""The elementwise family in ONNX, both directions: unary ops (activations and
math), binary, comparison and logical ops, select, casts; and the activations
ONNX spells as ops of their own that nn composes (HardSigmoid, Gelu, Selu, ...).

One name map per kind (`UNARY`, `BINARY`, `COMPARE`, `LOGICAL`: nn name ->
ONNX op type) serves the import and the export. An nn activation ONNX has no
op for (silu, gaussian, step) is exported from its IR form in the activation
table (`ncc.dialects.activations`), written out as ONNX nodes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.activations import BY_NAME as ACTIVATIONS
from ncc.dialects.nn import shape_of
from ncc.onnx.exporter import Graph, element_type_code, to_onnx
from ncc.onnx.importer import Importer, element_dtype, from_onnx, str_attr

# nn name -> ONNX op type
UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
         "leaky_relu": "LeakyRelu", "elu": "Elu", "exp": "Exp", "log": "Log", "neg": "Neg",
         "sqrt": "Sqrt", "abs": "Abs", "reciprocal": "Reciprocal", "erf": "Erf", "floor": "Floor",
         "ceil": "Ceil", "sin": "Sin", "cos": "Cos", "acos": "Acos", "asin": "Asin", "atan": "Atan",
         "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
         "round": "Round", "sign": "Sign"}
ALPHA = {"leaky_relu": 0.01, "elu": 1.0}  # nn's fixed alpha of the ONNX ops that take one
BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
          "pow": "Pow"}
COMPARE = {"equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
           "greater_equal": "GreaterOrEqual"}
LOGICAL = {"and": "And", "or": "Or", "xor": "Xor"}


# ---------------------------------------------------------------------------
# ONNX -> nn

for _nn, _onnx in UNARY.items():
    if _nn not in ALPHA:
        from_onnx(_onnx)(lambda b, a, name=_nn: b.unary(name, b.v(0)))


def legacy_broadcast(b: Importer, a: dict, x: SSAValue, y: SSAValue) -> SSAValue:
    """Before opset 7, binary ops broadcast only when asked (`broadcast=1`), and
    then B lines up with A from `axis` (default: B's dims are A's last ones)."""
    if b.opset >= 7:
        return y
    xs, ys = shape_of(x.type), shape_of(y.type)
    if not a.get("broadcast", 0):
        if xs != ys:
            raise b.error(f"shapes {list(xs)} and {list(ys)} differ and broadcast is not set (opset {b.opset})")
        return y
    axis = a.get("axis", len(xs) - len(ys))
    if axis < 0:
        axis += len(xs)
    if not 0 <= axis <= len(xs) - len(ys):
        raise b.error(f"broadcast axis {a.get('axis')} does not fit B {list(ys)} into A {list(xs)}")
    trailing = len(xs) - axis - len(ys)
    return b.build(nn.ReshapeOp, y, list(ys) + [1] * trailing) if trailing else y


for _nn in ("add", "sub", "mul", "div"):
    from_onnx(BINARY[_nn])(lambda b, a, name=_nn: b.binary(name, b.v(0), legacy_broadcast(b, a, b.v(0), b.v(1))))
for _nn, _onnx in COMPARE.items():
    from_onnx(_onnx)(lambda b, a, name=_nn: b.compare(name, b.v(0), b.v(1)))
for _nn, _onnx in LOGICAL.items():
    from_onnx(_onnx)(lambda b, a, name=_nn: b.build(nn.LOGICAL_OPS[name], b.v(0), b.v(1)))
from_onnx("Not")(lambda b, a: b.build(nn.NotOp, b.v(0)))
from_onnx("Where")(lambda b, a: b.select(b.v(0), b.v(1), b.v(2)))
from_onnx("IsNaN")(lambda b, a: b.build(nn.IsNanOp, b.v(0)))
from_onnx("IsInf")(lambda b, a: b.build(nn.IsInfOp, b.v(0), a.get("detect_positive", 1),
                                        a.get("detect_negative", 1)))
# fmod=0: the divisor's sign (ONNX requires fmod=1 on floats; its reference
# implementation, like nn.mod, takes numpy's floor modulo there too)
from_onnx("Mod")(lambda b, a: b.binary("fmod" if a.get("fmod", 0) else "mod", b.v(0), b.v(1)))


@from_onnx("Pow")
def _pow(b, a):
    x = b.v(0)
    if b.node.input[1] in b.consts:  # an exponent of another element type (opset 12+)
        e = b.static(1).astype(nn.numpy_dtype(x.type.element_type))
        y = b.emit(nn.ConstantOp(e)) if e.size == 1 else b.v(1)
        return b.binary("pow", x, y)
    return b.binary("pow", x, b.v(1))


def _variadic(name: str, mean: bool = False) -> Callable[[Importer, dict], SSAValue]:
    def rule(b, a):
        acc = b.v(0)
        for i in range(1, len(b.node.input)):
            acc = b.binary(name, acc, b.v(i))
        if mean and len(b.node.input) > 1:
            acc = b.binary("div", acc, b.scalar(len(b.node.input), acc))
        return acc
    return rule


for _onnx, _rule in {"Max": _variadic("max"), "Min": _variadic("min"), "Sum": _variadic("add"),
                     "Mean": _variadic("add", mean=True)}.items():
    from_onnx(_onnx)(_rule)


@from_onnx("PRelu")
def _prelu(b, a):
    x = b.v(0)
    neg = b.binary("min", x, b.scalar(0, x))
    slope, xs = b.v(1), shape_of(x.type)
    if b.opset < 7 and len(xs) > 2 and shape_of(slope.type) == (xs[1],):  # opset 6: per channel
        slope = b.build(nn.ReshapeOp, slope, [xs[1]] + [1] * (len(xs) - 2))
    return b.binary("add", b.unary("relu", x), b.binary("mul", neg, slope))


@from_onnx("Clip")
def _clip(b, a):
    x = b.v(0)
    if b.opset < 11:
        lo, hi = a.get("min"), a.get("max")
        lo = None if lo is None else b.scalar(lo, x)
        hi = None if hi is None else b.scalar(hi, x)
    else:
        lo = b.v(1) if b.has(1) else None
        hi = b.v(2) if b.has(2) else None
    if lo is not None:
        x = b.binary("max", x, lo)
    if hi is not None:
        x = b.binary("min", x, hi)
    return x


@from_onnx("Cast", "CastLike")
def _cast(b, a):
    x = b.v(0)
    if b.node.op_type == "Cast":
        to = np.dtype(element_dtype(a["to"], "the target type", b.where))
    else:
        to = nn.numpy_dtype(b.v(1).type.element_type)
    src = nn.numpy_dtype(x.type.element_type)
    if src == to:
        return x
    if to == np.bool_:  # nonzero (NaN included) is true
        return b.build(nn.NotOp, b.compare("equal", x, b.scalar(0, x)))
    if src == np.bool_:
        one, zero = (b.emit(nn.ConstantOp(np.asarray(v, to))) for v in (1, 0))
        return b.select(x, one, zero)
    return b.build(nn.CastOp, x, to)  # between numeric types


# Activations ONNX has as ops and nn composes: f(b, x, alpha...). Shared with
# the recurrent family, whose gates take them by name.

def leaky_relu(b: Importer, x: SSAValue, alpha: float) -> SSAValue:  # relu(x) + alpha * min(x, 0)
    if np.float32(alpha) == np.float32(ALPHA["leaky_relu"]):
        return b.unary("leaky_relu", x)
    return b.binary("add", b.unary("relu", x), b.binary("mul", b.binary("min", x, b.scalar(0, x)),
                                                          b.scalar(alpha, x)))


def elu(b: Importer, x: SSAValue, alpha: float) -> SSAValue:  # relu(x) + alpha * (exp(min(x, 0)) - 1)
    if alpha == ALPHA["elu"]:
        return b.unary("elu", x)
    em1 = b.binary("sub", b.unary("exp", b.binary("min", x, b.scalar(0, x))), b.scalar(1, x))
    return b.binary("add", b.unary("relu", x), b.binary("mul", em1, b.scalar(alpha, x)))


def hard_sigmoid(b: Importer, x: SSAValue, alpha: float, beta: float) -> SSAValue:
    lin = b.binary("add", b.binary("mul", x, b.scalar(alpha, x)), b.scalar(beta, x))
    return b.binary("min", b.binary("max", lin, b.scalar(0, x)), b.scalar(1, x))


def softsign(b: Importer, x: SSAValue) -> SSAValue:
    return b.binary("div", x, b.binary("add", b.unary("abs", x), b.scalar(1, x)))


def swish(b: Importer, x: SSAValue, alpha: float) -> SSAValue:
    """x * sigmoid(alpha * x): nn.silu when alpha is 1."""
    if np.float32(alpha) == np.float32(1.0):
        return b.unary("silu", x)
    return b.binary("mul", x, b.unary("sigmoid", b.binary("mul", x, b.scalar(alpha, x))))


def _gelu(b, x, a):
    approximate = str_attr(a, "approximate", "none")
    if approximate not in ("none", "tanh"):
        raise b.error(f"Gelu: approximate must be 'none' or 'tanh', got '{approximate}'")
    return b.unary("gelu_tanh" if approximate == "tanh" else "gelu", x)


def _shrink(b, x, a):  # x + bias where x < -lambd, x - bias where x > lambd, else 0
    lambd, bias = a.get("lambd", 0.5), a.get("bias", 0.0)
    upper = b.select(b.compare("greater", x, b.scalar(lambd, x)), b.binary("sub", x, b.scalar(bias, x)),
                     b.scalar(0, x))
    return b.select(b.compare("less", x, b.scalar(-lambd, x)), b.binary("add", x, b.scalar(bias, x)), upper)


def _celu(b, x, alpha):  # max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    e = b.binary("sub", b.unary("exp", b.binary("div", x, b.scalar(alpha, x))), b.scalar(1, x))
    neg = b.binary("min", b.binary("mul", e, b.scalar(alpha, x)), b.scalar(0, x))
    return b.binary("add", b.unary("relu", x), neg)


# ONNX op -> f(importer, x, attributes): one input, composed of nn ops
COMPOSITE: dict[str, Callable[[Importer, SSAValue, dict], SSAValue]] = {
    "LeakyRelu": lambda b, x, a: leaky_relu(b, x, a.get("alpha", 0.01)),
    "Elu": lambda b, x, a: elu(b, x, a.get("alpha", 1.0)),
    "ThresholdedRelu": lambda b, x, a: b.select(b.compare("greater", x, b.scalar(a.get("alpha", 1.0), x)),
                                                x, b.scalar(0, x)),
    "Shrink": _shrink,
    "Swish": lambda b, x, a: swish(b, x, a.get("alpha", 1.0)),
    "HardSigmoid": lambda b, x, a: hard_sigmoid(b, x, a.get("alpha", 0.2), a.get("beta", 0.5)),
    "HardSwish": lambda b, x, a: b.binary("mul", x, hard_sigmoid(b, x, 1 / 6, 0.5)),
    "Selu": lambda b, x, a: b.binary("mul", elu(b, x, a.get("alpha", 1.67326319217681884765625)),
                                     b.scalar(a.get("gamma", 1.05070102214813232421875), x)),
    "Celu": lambda b, x, a: _celu(b, x, a.get("alpha", 1.0)),
    "Softsign": lambda b, x, a: softsign(b, x),
    "Mish": lambda b, x, a: b.binary("mul", x, b.unary("tanh", b.unary("softplus", x))),
    "Gelu": _gelu,
    "Tan": lambda b, x, a: b.binary("div", b.unary("sin", x), b.unary("cos", x)),
}
for _onnx, _f in COMPOSITE.items():
    from_onnx(_onnx)(lambda b, a, f=_f: f(b, b.v(0), a))


@from_onnx("SwiGLU")
def _swiglu(b, a):
    # swish(A) * B, A and B of one shape
    x, y = b.v(0), b.v(1)
    if shape_of(x.type) != shape_of(y.type):
        raise b.error(f"A and B must have one shape, got {x.type} and {y.type}")
    return b.binary("mul", swish(b, x, a.get("alpha", 1.0)), y)


# ---------------------------------------------------------------------------
# nn -> ONNX

class _OnnxScalar:
    """The activation table's `Scalar` protocol over ONNX nodes, for the
    activations ONNX has no op for: their IR form, written out as nodes."""

    def __init__(self, g: Graph, like: SSAValue):
        self.g, self.like = g, like

    def _node(self, op_type: str, *xs: str) -> str:
        return self.g.node(op_type, list(xs))

    def const(self, value: float) -> str: return self.g.scalar(value, self.like)
    def add(self, a: str, b: str) -> str: return self._node("Add", a, b)
    def sub(self, a: str, b: str) -> str: return self._node("Sub", a, b)
    def mul(self, a: str, b: str) -> str: return self._node("Mul", a, b)
    def div(self, a: str, b: str) -> str: return self._node("Div", a, b)
    def max(self, a: str, b: str) -> str: return self._node("Max", a, b)
    def min(self, a: str, b: str) -> str: return self._node("Min", a, b)
    def neg(self, a: str) -> str: return self._node("Neg", a)
    def abs(self, a: str) -> str: return self._node("Abs", a)
    def exp(self, a: str) -> str: return self._node("Exp", a)
    def expm1(self, a: str) -> str: return self.sub(self.exp(a), self.const(1.0))
    def log1p(self, a: str) -> str: return self._node("Log", self.add(self.const(1.0), a))
    def tanh(self, a: str) -> str: return self._node("Tanh", a)
    def erf(self, a: str) -> str: return self._node("Erf", a)
    def sin(self, a: str) -> str: return self._node("Sin", a)
    def cos(self, a: str) -> str: return self._node("Cos", a)
    def positive(self, a: str) -> str: return self._node("Greater", a, self.const(0.0))
    def negative(self, a: str) -> str: return self._node("Less", a, self.const(0.0))
    def select(self, c: str, a: str, b: str) -> str: return self._node("Where", c, a, b)


def activation_to_onnx(g: Graph, name: str, x: str, like: SSAValue) -> str:
    """x through nn's unary op `name` (also the activation of a fused op);
    `like` is a value of the element type."""
    if name == "identity":
        return x
    if name in UNARY:
        return g.node(UNARY[name], [x], **({"alpha": ALPHA[name]} if name in ALPHA else {}))
    return ACTIVATIONS[name].emit(_OnnxScalar(g, like), x)


for _nn, _cls in nn.UNARY_OPS.items():
    to_onnx(_cls)(lambda g, op, ins, name=_nn: activation_to_onnx(g, name, ins[0], op.result))
for _nn, _onnx in BINARY.items():
    to_onnx(nn.BINARY_OPS[_nn])(lambda g, op, ins, t=_onnx: g.node(t, ins))
for _nn, _onnx in COMPARE.items():
    to_onnx(nn.COMPARE_OPS[_nn])(lambda g, op, ins, t=_onnx: g.node(t, ins))
for _nn, _onnx in LOGICAL.items():
    to_onnx(nn.LOGICAL_OPS[_nn])(lambda g, op, ins, t=_onnx: g.node(t, ins))
to_onnx(nn.BINARY_OPS["fmod"])(lambda g, op, ins: g.node("Mod", ins, fmod=1))
to_onnx(nn.NotOp)(lambda g, op, ins: g.node("Not", ins))
to_onnx(nn.IsNanOp)(lambda g, op, ins: g.node("IsNaN", ins))
to_onnx(nn.IsInfOp)(lambda g, op, ins: g.node("IsInf", ins, detect_positive=op.params.detect_positive,
                                              detect_negative=op.params.detect_negative))
to_onnx(nn.CastOp)(lambda g, op, ins: g.node("Cast", ins, to=element_type_code(op.result.type)))


@to_onnx(nn.BINARY_OPS["mod"])
def _export_mod(g: Graph, op: Operation, ins: list[str]) -> str:
    """nn.mod: ONNX Mod on integers; on floats (where ONNX requires fmod=1)
    the C remainder plus the divisor where the signs differ."""
    if not isinstance(op.result.type.element_type, nn.FLOAT_TYPES):
        return g.node("Mod", ins)
    r = g.node("Mod", ins, fmod=1)
    zero = g.scalar(0, op.result)
    signs = g.node("Xor", [g.node("Less", [r, zero]), g.node("Less", [ins[1], zero])])
    adjust = g.node("And", [g.node("Not", [g.node("Equal", [r, zero])]), signs])
    return g.node("Where", [adjust, g.node("Add", [r, ins[1]]), r])


@to_onnx(nn.SelectOp)
def _export_select(g: Graph, op: Operation, ins: list[str]) -> str:
    """Where; between bools (which onnxruntime's Where does not take) c & x | !c & y."""
    c, x, y = ins
    if op.result.type.element_type != nn.i1:
        return g.node("Where", ins)
    return g.node("Or", [g.node("And", [c, x]), g.node("And", [g.node("Not", [c]), y])])

