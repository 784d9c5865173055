"""autodiff: the VJP rules of the norms, gathers and scatters, slices and pads,
scans, triangles, sparse matmul and resize. Each family runs random shapes and
parameters through check_rule (central finite differences in float64,
torch.func.vjp, and the native vjp kernel against the reference interpreter);
the ops whose rules handle a batch also run natively with a dynamic batch;
the forms without a derivative are errors naming them."""

from __future__ import annotations

import numpy as np
import pytest

import ncc
from ncc.passes.autodiff import differentiate
from vjp_check import finite_differences

CASES = range(4)  # random cases per family


def uniform(rng, shape, low=-2.0, high=2.0):
    return np.asarray(rng.uniform(low, high, shape))


def indices(rng, high, shape, negative=True):
    """Random indices into a dimension of size `high` (repeats likely; some
    counted from the end)."""
    i = rng.integers(0, high, shape)
    return np.where(rng.random(shape) < 0.3, i - high, i) if negative else i


def rand_shape(rng, rank, low=1, high=4):
    return tuple(int(d) for d in rng.integers(low, high + 1, rank))


# ---------------------------------------------------------------------------
# Norms


# ---------------------------------------------------------------------------
# Gathers


# ---------------------------------------------------------------------------
# Slices and pads


# ---------------------------------------------------------------------------
# Scatters


# ---------------------------------------------------------------------------
# Scans, triangles, sparse matmul


# ---------------------------------------------------------------------------
# Resize (linear in x: one constant matrix per resized axis)


# ---------------------------------------------------------------------------
# A dynamic batch, natively


def _ids(rng, high, shape):
    return indices(rng, high, shape)


# name -> (function text, inputs for batch n: (rng, n) -> arrays in argument order)
DYNAMIC = {
    "batch_norm": ("""
func.func @f(%x: tensor<?x3x4xf64>, %s: tensor<3xf64>, %b: tensor<3xf64>, %m: tensor<3xf64>,
             %v: tensor<3xf64>) -> tensor<?x3x4xf64> {
  %y = nn.batch_norm %x, %s, %b, %m, %v epsilon 0.01 : tensor<?x3x4xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64> -> tensor<?x3x4xf64>
  func.return %y : tensor<?x3x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 4)), *(uniform(rng, 3) for _ in range(3)),
                      uniform(rng, 3, 0.5, 2)]),
    "layer_norm": ("""
func.func @f(%x: tensor<?x2x4xf64>, %s: tensor<4xf64>, %b: tensor<4xf64>) -> tensor<?x2x4xf64> {
  %y = nn.layer_norm %x, %s, %b : tensor<?x2x4xf64>, tensor<4xf64>, tensor<4xf64> -> tensor<?x2x4xf64>
  func.return %y : tensor<?x2x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 2, 4)), uniform(rng, 4), uniform(rng, 4)]),
    "gather_embedding": ("""
func.func @f(%t: tensor<6x3xf64>, %i: tensor<?x2xi64>) -> tensor<?x2x3xf64> {
  %y = nn.gather %t, %i : tensor<6x3xf64>, tensor<?x2xi64> -> tensor<?x2x3xf64>
  func.return %y : tensor<?x2x3xf64>
}""", lambda rng, n: [uniform(rng, (6, 3)), _ids(rng, 6, (n, 2))]),
    "gather_axis1": ("""
func.func @f(%x: tensor<?x5xf64>, %i: tensor<2x2xi64>) -> tensor<?x2x2xf64> {
  %y = nn.gather %x, %i axis 1 : tensor<?x5xf64>, tensor<2x2xi64> -> tensor<?x2x2xf64>
  func.return %y : tensor<?x2x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 5)), _ids(rng, 5, (2, 2))]),
    "gather_elements": ("""
func.func @f(%x: tensor<?x4xf64>, %i: tensor<?x3xi64>) -> tensor<?x3xf64> {
  %y = nn.gather_elements %x, %i axis 1 : tensor<?x4xf64>, tensor<?x3xi64> -> tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 4)), _ids(rng, 4, (n, 3))]),
    "slice": ("""
func.func @f(%x: tensor<?x6x3xf64>) -> tensor<?x3x2xf64> {
  %y = nn.slice %x starts [0, 5, 1] ends [9223372036854775807, -7, 3] axes [0, 1, 2] steps [1, -2, 1] : tensor<?x6x3xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 6, 3))]),
    "pad": ("""
func.func @f(%x: tensor<?x4x3xf64>) -> tensor<?x7x4xf64> {
  %y = nn.pad %x pads [0, 2, 0, 0, 1, 1] mode reflect : tensor<?x4x3xf64> -> tensor<?x7x4xf64>
  func.return %y : tensor<?x7x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 4, 3))]),
    "scatter_elements": ("""
func.func @f(%x: tensor<?x5xf64>, %i: tensor<?x3xi64>, %u: tensor<?x3xf64>) -> tensor<?x5xf64> {
  %y = nn.scatter_elements %x, %i, %u axis 1 : tensor<?x5xf64>, tensor<?x3xi64>, tensor<?x3xf64> -> tensor<?x5xf64>
  func.return %y : tensor<?x5xf64>
}""", lambda rng, n: [uniform(rng, (n, 5)), _ids(rng, 5, (n, 3)), uniform(rng, (n, 3))]),
    "scatter_nd_writers": ("""
func.func @f(%x: tensor<5x4xf64>, %i: tensor<?x1xi64>, %u: tensor<?x4xf64>) -> tensor<5x4xf64> {
  %y = nn.scatter_nd %x, %i, %u : tensor<5x4xf64>, tensor<?x1xi64>, tensor<?x4xf64> -> tensor<5x4xf64>
  func.return %y : tensor<5x4xf64>
}""", lambda rng, n: [uniform(rng, (5, 4)), _ids(rng, 5, (n, 1)), uniform(rng, (n, 4))]),
    "scatter_nd_add": ("""
func.func @f(%x: tensor<?x3x2xf64>, %i: tensor<?x2x2xi64>, %u: tensor<?x2x2xf64>) -> tensor<?x3x2xf64> {
  %y = nn.scatter_nd %x, %i, %u reduction add : tensor<?x3x2xf64>, tensor<?x2x2xi64>, tensor<?x2x2xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 2)), np.stack([_ids(rng, n, (n, 2)), _ids(rng, 3, (n, 2))], -1),
                      uniform(rng, (n, 2, 2))]),
    "cumsum_over_batch": ("""
func.func @f(%x: tensor<?x3xf64>) -> tensor<?x3xf64> {
  %y = nn.cumsum %x axis 0 exclusive reverse : tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 3))]),
    "tril": ("""
func.func @f(%x: tensor<?x3x4xf64>) -> tensor<?x3x4xf64> {
  %y = nn.tril %x k -1 : tensor<?x3x4xf64>
  func.return %y : tensor<?x3x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 4))]),
    "sparse_matmul": ("""
func.func @f(%x: tensor<?x4xf64>, %v: tensor<4xf64>) -> tensor<?x3xf64> {
  %y = nn.sparse_matmul %x, %v rows [0, 1, 3, 3] cols [2, 0, 0, 1] in_features 4 out_features 3 : tensor<?x4xf64>, tensor<4xf64> -> tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 4)), uniform(rng, 4)]),
    "resize": ("""
func.func @f(%x: tensor<?x2x4xf64>) -> tensor<?x2x7xf64> {
  %y = nn.resize %x mode linear scales [1.0, 1.0, 1.75] : tensor<?x2x4xf64> -> tensor<?x2x7xf64>
  func.return %y : tensor<?x2x7xf64>
}""", lambda rng, n: [uniform(rng, (n, 2, 4))]),
}


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_dynamic_batch_natively(name):
    """One compiled vjp kernel, run at several batch sizes: equal to the
    reference interpreter's vjp, which equals finite differences."""
    text, make = DYNAMIC[name]
    m = ncc.parse_module(text)
    fwd = m.clone()
    differentiate(m, "f", mode="combined")
    model = ncc.compile(m, function="f_vjp", cache=False)
    rng = np.random.default_rng(7)
    for n in (1, 3, 4):
        inputs = make(rng, n)
        y = ncc.reference.run(fwd, inputs)[0]
        cot = rng.standard_normal(y.shape)
        ref = ncc.reference.run(m, [*inputs, cot], function="f_vjp")
        got = model.run({**{f"arg{i}": x for i, x in enumerate(inputs)}, "cotangent:0": cot})
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        wrt = [k for k, x in enumerate(inputs) if x.dtype.kind == "f"]
        for k, g, d in zip(wrt, ref[1:], finite_differences(fwd, inputs, cot, wrt)):
            np.testing.assert_allclose(g, d, rtol=1e-5, atol=1e-6, err_msg=f"{name}: operand {k}, batch {n}")


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_split_forward_backward_equals_combined(name):
    """What the rules read through bw.primal is saved by the forward (in split
    mode) and gives the same gradients, also from the native backward kernel."""
    text, make = DYNAMIC[name]
    m = ncc.parse_module(text)
    _, bwd = differentiate(m, "f", mode="split")
    differentiate(m, "f", mode="combined")
    rng = np.random.default_rng(8)
    inputs = make(rng, 3)
    y, *saved = ncc.reference.run(m, inputs, function="f_forward")
    cot = rng.standard_normal(y.shape)
    split = ncc.reference.run(m, [*saved, cot], function="f_backward")
    combined = ncc.reference.run(m, [*inputs, cot], function="f_vjp")
    for a, b in zip(split, combined[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    names = [a.data["ncc.name"].data for a in bwd.arg_attrs.data]
    native = ncc.compile(m, function="f_backward", cache=False).run(dict(zip(names, [*saved, cot])))
    for a, b in zip(native, split, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# Forms without a derivative


def test_slicing_part_of_a_dynamic_batch_is_an_error():
    m = ncc.parse_module("""func.func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %y = nn.slice %x starts [1] ends [3] : tensor<?x4xf32> -> tensor<?x4xf32>
  func.return %y : tensor<?x4xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.slice' of a part "
                                           r"of the dynamic batch dimension"):
        differentiate(m, "f")


