"""The activation table's rows agree with themselves: each IR form (`emit`, `vjp`),
evaluated on numpy through the table's Scalar protocol, gives the row's numpy
function and derivative; `vjp` reads only what `reads` declares. The lowered
forms are checked natively against the reference in the lowering and autodiff
tests (test_neuron_codegen, test_lower_to_loops, test_autodiff_rules,
test_neuron_backward)."""

from __future__ import annotations

import numpy as np
import pytest

from ncc.dialects import activations


class NumpyScalar:
    """The Scalar protocol on float64 numpy arrays."""

    def const(self, v):
        return np.float64(v)

    add, sub, mul, div = np.add, np.subtract, np.multiply, np.divide
    max, min = np.maximum, np.minimum
    neg, abs, exp, expm1, log1p, tanh, sin, cos = (np.negative, np.abs, np.exp, np.expm1, np.log1p,
                                                   np.tanh, np.sin, np.cos)
    erf = staticmethod(activations.ERF)

    def positive(self, a):
        return a > 0

    def negative(self, a):
        return a < 0

    def select(self, cond, a, b):
        return np.where(cond, a, b)


Z = np.concatenate([np.linspace(-30, 30, 601), [0.0, -0.0, 1e-8, -1e-8, 88.0, -88.0]])


@pytest.mark.parametrize("act", activations.ACTIVATIONS, ids=lambda a: a.name)
def test_ir_forms_match_the_numpy_forms(act):
    s = NumpyScalar()
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(act.emit(s, Z), act.fn(Z), rtol=1e-12, atol=1e-300)
        n = act.fn(Z)
        g = np.linspace(-2, 2, Z.size)
        # vjp sees only what it declares it reads
        z_in = Z if "z" in act.reads else None
        n_in = n if "n" in act.reads else None
        got = act.vjp(s, z_in, n_in, g)
    want = g * act.derivative(Z)
    if got is None:
        np.testing.assert_array_equal(want, 0 * want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_every_row_is_complete():
    assert len({a.code for a in activations.ACTIVATIONS}) == len(activations.ACTIVATIONS)
    for a in activations.ACTIVATIONS:
        assert a.reads in ("z", "n", "zn"), a.name
        assert activations.lookup(f"{a.code:02x}") is a and activations.lookup(a.name) is a
