"""The activation table: everything ncc knows about an activation, written once.

Used by the neuron and nn dialects, the adjacency frontend, the equations
emitter, the reference interpreter, both loop lowerings (nn-to-loops and
neuron-to-loops), autodiff and the neuron backward kernel. Each activation has

  code, name    the `fj` field of the adjacency list (hex) and the name accepted
                in its place; the format never defined codes: this is ncc's table
  fn            its numpy function of z, the pre-activation sum
  derivative    f'(z) in numpy
  emit          f(z) in IR, built through a `Scalar` (below)
  vjp           g * f'(z) in IR, from z and/or n = f(z) as `reads` says (the
                output where it suffices: cheaper, and the forward stays fusable);
                None for a zero gradient
  reads         which of z, n the vjp reads: "z", "n" or "zn"

`emit` and `vjp` are written against a small protocol, `Scalar`, that each
level implements over its own ops: arith/math on scalars in the loop
lowerings (passes/lowering/scalar.py), nn tensor ops in autodiff. So an
activation's meaning and its derivative have one spelling for every level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

Array = np.ndarray


def _sigmoid(z: Array) -> Array:
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _softplus(z: Array) -> Array:
    return np.logaddexp(0.0, z).astype(z.dtype, copy=False)


def _elu(z: Array) -> Array:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


class Scalar(Protocol):
    """What `emit` and `vjp` build with: elementwise operations on values of one
    float type (scalars in loop code, tensors in autodiff). `positive` and
    `negative` compare with 0 (NaN: false, as numpy), `select` picks by them."""

    def const(self, value: float) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def div(self, a: Any, b: Any) -> Any: ...
    def max(self, a: Any, b: Any) -> Any: ...
    def min(self, a: Any, b: Any) -> Any: ...
    def neg(self, a: Any) -> Any: ...
    def abs(self, a: Any) -> Any: ...
    def exp(self, a: Any) -> Any: ...
    def expm1(self, a: Any) -> Any: ...
    def log1p(self, a: Any) -> Any: ...
    def tanh(self, a: Any) -> Any: ...
    def erf(self, a: Any) -> Any: ...
    def sin(self, a: Any) -> Any: ...
    def cos(self, a: Any) -> Any: ...
    def positive(self, a: Any) -> Any: ...
    def negative(self, a: Any) -> Any: ...
    def select(self, cond: Any, a: Any, b: Any) -> Any: ...


@dataclass(frozen=True)
class Activation:
    code: int
    name: str
    formula: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]  # f'(z), as a function of z
    emit: Callable[[Scalar, Any], Any]  # (s, z) -> f(z)
    vjp: Callable[[Scalar, Any, Any, Any], Any]  # (s, z, n, g) -> g * f'(z), or None (zero)
    reads: str  # what vjp reads: "z", "n" or "zn"


# Gelu: x Phi(x), Phi the normal CDF, exactly (erf) or by the tanh approximation
# (PyTorch's approximate="tanh", GPT-2's gelu_new)
ERF = np.vectorize(math.erf, otypes=[np.float64])
SQRT1_2 = 1 / math.sqrt(2)
TANH_GELU_SCALE, TANH_GELU_CUBE = math.sqrt(2 / math.pi), 0.044715


def _gelu(z: Array) -> Array:
    return (0.5 * z * (1 + ERF(z * SQRT1_2))).astype(z.dtype, copy=False)


def _gelu_derivative(z: Array) -> Array:  # Phi(z) + z phi(z)
    return (0.5 * (1 + ERF(z * SQRT1_2)) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)).astype(z.dtype)


def _gelu_tanh(z: Array) -> Array:  # 0.5 z (1 + tanh u) as z / (1 + exp(-2u)), the form emitted
    with np.errstate(over="ignore"):  # exp(-2u) = inf for z < -10 or so: z / inf = -0
        c = z.dtype.type
        minus_2u = z * (c(-2 * TANH_GELU_SCALE) + c(-2 * TANH_GELU_SCALE * TANH_GELU_CUBE) * (z * z))
        return (z / (1 + np.exp(minus_2u))).astype(z.dtype, copy=False)


def _gelu_tanh_derivative(z: Array) -> Array:
    t = np.tanh(TANH_GELU_SCALE * (z + TANH_GELU_CUBE * z ** 3))
    return (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * TANH_GELU_SCALE * (1 + 3 * TANH_GELU_CUBE * z * z)).astype(z.dtype)


def _emit_gelu(s: Scalar, z: Any) -> Any:  # 0.5 z (1 + erf(z / sqrt 2)), as PyTorch and onnxruntime
    return s.mul(s.mul(s.const(0.5), z), s.add(s.const(1.0), s.erf(s.mul(z, s.const(SQRT1_2)))))


def _vjp_gelu(s: Scalar, z: Any, n: Any, g: Any) -> Any:  # g (Phi(z) + z exp(-z^2 / 2) / sqrt(2 pi))
    cdf = s.mul(s.const(0.5), s.add(s.const(1.0), s.erf(s.mul(z, s.const(SQRT1_2)))))
    pdf = s.mul(s.const(1 / math.sqrt(2 * math.pi)), s.exp(s.mul(s.const(-0.5), s.mul(z, z))))
    return s.mul(g, s.add(cdf, s.mul(z, pdf)))


def _tanh_gelu_u(s: Scalar, z: Any) -> Any:  # sqrt(2 / pi) (z + 0.044715 z^3)
    cube = s.mul(s.mul(z, z), z)
    return s.mul(s.const(TANH_GELU_SCALE), s.add(z, s.mul(s.const(TANH_GELU_CUBE), cube)))


def _tanh_gelu_t(s: Scalar, z: Any) -> Any:  # tanh(u)
    return s.tanh(_tanh_gelu_u(s, z))


def _emit_gelu_tanh(s: Scalar, z: Any) -> Any:
    # 0.5 z (1 + tanh u) = z / (1 + exp(-2u)): one exp and a division, not tanh's
    # two branches (a polynomial near 0, exp further out) and their select; -2u as
    # z (a + b z^2), three operations
    minus_2u = s.mul(z, s.add(s.const(-2 * TANH_GELU_SCALE),
                              s.mul(s.const(-2 * TANH_GELU_SCALE * TANH_GELU_CUBE), s.mul(z, z))))
    return s.div(z, _one_plus_exp(s, minus_2u))


def _vjp_gelu_tanh(s: Scalar, z: Any, n: Any, g: Any) -> Any:
    t = _tanh_gelu_t(s, z)
    slope = s.mul(s.const(TANH_GELU_SCALE), s.add(s.const(1.0), s.mul(s.const(3 * TANH_GELU_CUBE), s.mul(z, z))))
    inner = s.mul(s.mul(s.const(0.5), z), s.mul(s.sub(s.const(1.0), s.mul(t, t)), slope))
    return s.mul(g, s.add(s.mul(s.const(0.5), s.add(s.const(1.0), t)), inner))


# IR forms shared by several rows
def _one_plus_exp(s: Scalar, a: Any) -> Any:
    """1 + exp(a): the Scalar's own `one_plus_exp` if it has one (loop code's exp may give any
    value under 2^-125 there: the sum is the same), else the sum."""
    own = getattr(s, "one_plus_exp", None)
    return own(a) if own is not None else s.add(s.const(1.0), s.exp(a))


def _emit_sigmoid(s: Scalar, z: Any) -> Any:  # 1 / (1 + exp(-z)): exp overflowing to inf gives 0
    return s.div(s.const(1.0), _one_plus_exp(s, s.neg(z)))


def emit_sign(s: Scalar, z: Any) -> Any:  # 1, -1, or z itself for zeros and NaN (numpy's sign)
    return s.select(s.positive(z), s.const(1.0), s.select(s.negative(z), s.const(-1.0), z))


def _where_positive(s: Scalar, x: Any, yes: Any, no: Any) -> Any:
    return s.select(s.positive(x), yes, no)


ACTIVATIONS: tuple[Activation, ...] = (
    Activation(0x00, "identity", "z", lambda z: z, np.ones_like,
               lambda s, z: z, lambda s, z, n, g: g, "n"),
    Activation(0x01, "relu", "max(z, 0)", lambda z: np.maximum(z, 0).astype(z.dtype, copy=False),
               lambda z: (z > 0).astype(z.dtype),
               lambda s, z: s.max(z, s.const(0.0)),
               lambda s, z, n, g: _where_positive(s, n, g, s.const(0.0)), "n"),
    Activation(0x02, "sigmoid", "1 / (1 + exp(-z))", _sigmoid,
               lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
               _emit_sigmoid, lambda s, z, n, g: s.mul(g, s.mul(n, s.sub(s.const(1.0), n))), "n"),
    Activation(0x03, "tanh", "tanh(z)", np.tanh, lambda z: 1 - np.tanh(z) ** 2,
               lambda s, z: s.tanh(z), lambda s, z, n, g: s.mul(g, s.sub(s.const(1.0), s.mul(n, n))), "n"),
    Activation(0x04, "leaky_relu", "z if z > 0 else 0.01 z",
               lambda z: np.where(z > 0, z, 0.01 * z).astype(z.dtype, copy=False),
               lambda z: np.where(z > 0, 1.0, 0.01).astype(z.dtype),
               lambda s, z: _where_positive(s, z, z, s.mul(s.const(0.01), z)),
               lambda s, z, n, g: _where_positive(s, n, g, s.mul(s.const(0.01), g)), "n"),
    Activation(0x05, "elu", "z if z > 0 else exp(z) - 1", _elu,
               lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))).astype(z.dtype),
               lambda s, z: _where_positive(s, z, z, s.expm1(s.min(z, s.const(0.0)))),
               lambda s, z, n, g: _where_positive(s, n, g, s.mul(g, s.add(n, s.const(1.0)))), "n"),
    # max(z, 0) + log1p(exp(-|z|)): never overflows
    Activation(0x06, "softplus", "log(1 + exp(z))", _softplus, _sigmoid,
               lambda s, z: s.add(s.max(z, s.const(0.0)), s.log1p(s.exp(s.neg(s.abs(z))))),
               lambda s, z, n, g: s.mul(g, _emit_sigmoid(s, z)), "z"),
    Activation(0x07, "silu", "z * sigmoid(z)", lambda z: z * _sigmoid(z),
               lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
               lambda s, z: s.mul(z, _emit_sigmoid(s, z)),
               lambda s, z, n, g: (lambda sg: s.mul(g, s.mul(sg, s.add(s.const(1.0), s.mul(
                   z, s.sub(s.const(1.0), sg))))))(_emit_sigmoid(s, z)), "z"),
    Activation(0x08, "sin", "sin(z)", np.sin, np.cos,
               lambda s, z: s.sin(z), lambda s, z, n, g: s.mul(g, s.cos(z)), "z"),
    Activation(0x09, "gaussian", "exp(-z^2)", lambda z: np.exp(-z * z),
               lambda z: -2 * z * np.exp(-z * z),
               lambda s, z: s.exp(s.neg(s.mul(z, z))),
               lambda s, z, n, g: s.mul(g, s.mul(s.mul(z, s.const(-2.0)), n)), "zn"),
    Activation(0x0A, "abs", "abs(z)", np.abs, np.sign,
               lambda s, z: s.abs(z), lambda s, z, n, g: s.mul(g, emit_sign(s, z)), "z"),
    Activation(0x0B, "step", "1 if z > 0 else 0 (derivative 0)",
               lambda z: (z > 0).astype(z.dtype), np.zeros_like,
               lambda s, z: _where_positive(s, z, s.const(1.0), s.const(0.0)),
               lambda s, z, n, g: None, "n"),
    Activation(0x0C, "relu6", "min(max(z, 0), 6)", lambda z: np.clip(z, 0, 6).astype(z.dtype, copy=False),
               lambda z: ((z > 0) & (z < 6)).astype(z.dtype),
               lambda s, z: s.min(s.max(z, s.const(0.0)), s.const(6.0)),
               lambda s, z, n, g: _where_positive(s, n, s.select(s.negative(s.sub(n, s.const(6.0))), g,
                                                                 s.const(0.0)), s.const(0.0)), "n"),
    Activation(0x0D, "gelu", "z Phi(z) = 0.5 z (1 + erf(z / sqrt(2)))", _gelu, _gelu_derivative,
               _emit_gelu, _vjp_gelu, "z"),
    Activation(0x0E, "gelu_tanh", "0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))", _gelu_tanh,
               _gelu_tanh_derivative, _emit_gelu_tanh, _vjp_gelu_tanh, "z"),
)

BY_NAME: dict[str, Activation] = {a.name: a for a in ACTIVATIONS}
BY_CODE: dict[int, Activation] = {a.code: a for a in ACTIVATIONS}

# The adjacency matrix and edge list carry no activation codes: this one applies
# unless overridden (`--activation=NAME`). tanh is code 03, the code the seed's
# own example uses for every neuron.
DEFAULT_ACTIVATION = "tanh"


def lookup(token: str) -> Activation | None:
    """Resolve an activation code (hex, e.g. `03`) or name (e.g. `tanh`)."""
    if token in BY_NAME:
        return BY_NAME[token]
    try:
        return BY_CODE.get(int(token, 16))
    except ValueError:
        return None


def table_markdown() -> str:
    """The activation table as Markdown (the README embeds this text)."""
    rows = ["| code | name | f(z) |", "|---|---|---|"]
    rows += [f"| `{a.code:02x}` | `{a.name}` | {a.formula} |" for a in ACTIVATIONS]
    return "\n".join(rows)
