"""The activation table, shared by the neuron and nn dialects, the adjacency
frontend, the equations emitter and the reference interpreter.

Each activation has a code (the `fj` field of the adjacency list, hex), a name
(accepted in place of the code), its numpy function and its derivative
expressed through z (the pre-activation sum). The adjacency-list format never
defined the codes; this table is ncc's definition, and the README prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class Activation:
    code: int
    name: str
    formula: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]  # f'(z), as a function of z


ACTIVATIONS: tuple[Activation, ...] = (
    Activation(0x00, "identity", "z", lambda z: z, np.ones_like),
    Activation(0x01, "relu", "max(z, 0)", lambda z: np.maximum(z, 0).astype(z.dtype, copy=False),
               lambda z: (z > 0).astype(z.dtype)),
    Activation(0x02, "sigmoid", "1 / (1 + exp(-z))", _sigmoid,
               lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    Activation(0x03, "tanh", "tanh(z)", np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    Activation(0x04, "leaky_relu", "z if z > 0 else 0.01 z",
               lambda z: np.where(z > 0, z, 0.01 * z).astype(z.dtype, copy=False),
               lambda z: np.where(z > 0, 1.0, 0.01).astype(z.dtype)),
    Activation(0x05, "elu", "z if z > 0 else exp(z) - 1", _elu,
               lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))).astype(z.dtype)),
    Activation(0x06, "softplus", "log(1 + exp(z))", _softplus, _sigmoid),
    Activation(0x07, "silu", "z * sigmoid(z)", lambda z: z * _sigmoid(z),
               lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    Activation(0x08, "sin", "sin(z)", np.sin, np.cos),
    Activation(0x09, "gaussian", "exp(-z^2)", lambda z: np.exp(-z * z),
               lambda z: -2 * z * np.exp(-z * z)),
    Activation(0x0A, "abs", "abs(z)", np.abs, np.sign),
    Activation(0x0B, "step", "1 if z > 0 else 0 (derivative 0)",
               lambda z: (z > 0).astype(z.dtype), np.zeros_like),
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
