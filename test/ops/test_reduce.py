"""The reduce op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.dialects.builtin import i1, i32, i64
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.onnx import DEFAULT_OPSET

import test_autodiff_rules as autodiff_rule_tests
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, rand, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_reduce_and_matmul_refuse_bools():
    p, q, i = dialect_tests.values(T((2, 2), i1), T((2, 2), i1), T((2, 2), i64))
    with pytest.raises(VerifyException, match="numeric element type"):
        nn.ReduceSumOp(p)
    with pytest.raises(VerifyException, match="numeric element type"):
        nn.MatmulOp(p, q)
    for make in (lambda: nn.ArgmaxOp(p, 1), lambda: nn.ArgminOp(p), lambda: nn.CumSumOp(p, 0),
                 lambda: nn.ScatterElementsOp(p, i, q, reduction="add")):
        with pytest.raises(VerifyException, match="numeric element type"):
            make()
    # moving bools around is fine
    assert nn.ScatterElementsOp(p, i, q).result.type == T((2, 2), i1)
    assert nn.GatherElementsOp(p, i, 1).result.type == T((2, 2), i1)


@pytest.mark.parametrize("axes, keepdims, out", [
    (None, False, ()), (None, True, (1, 1, 1)), ([1], False, (2, 5)), ([-1, 0], True, (1, 4, 1)),
    ([], False, (2, 4, 5)),
])
def test_dialect_reduce_shapes(axes, keepdims, out):
    x, = dialect_tests.values(T((2, 4, 5)))
    for cls in nn.REDUCE_OPS.values():
        assert dialect_tests.shape(cls(x, axes, keepdims)) == out
        assert dialect_tests.shape(cls(x, axes, keepdims)) == np.sum(np.empty((2, 4, 5)), axis=None if axes is None else tuple(axes),
                                                    keepdims=keepdims).shape


def test_dialect_reduce_errors():
    x, = dialect_tests.values(T((2, 4)))
    with pytest.raises(VerifyException, match=r"axis 2 is out of range for rank 2 \(expected -2..1\)"):
        nn.ReduceSumOp(x, [2])
    with pytest.raises(VerifyException, match=r"axes \[1, -1\] name an axis twice"):
        nn.ReduceMaxOp(x, [1, -1])
    i, = dialect_tests.values(T((2,), i64))
    assert nn.ReduceSumOp(i).result.type == T((), i64)
    with pytest.raises(VerifyException, match="operand must have a float element type"):
        nn.ReduceMeanOp(i)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def naive_reduce(x, axes, keepdims, f):
    axes = tuple(a % x.ndim for a in axes)
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    out = np.zeros(out_shape)
    for idx in np.ndindex(*out_shape):
        cells = [x[full] for full in np.ndindex(*x.shape)
                 if all(full[i] == idx[i] for i in range(x.ndim) if i not in axes)]
        out[idx] = f(cells)
    return out if keepdims else out.reshape([d for i, d in enumerate(x.shape) if i not in axes])


REDUCTIONS = {"reduce_sum": math.fsum, "reduce_mean": lambda c: math.fsum(c) / len(c), "reduce_max": max,
              "reduce_min": min, "reduce_prod": math.prod}


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data(), st.booleans(),
       st.sampled_from(sorted(REDUCTIONS)))
@settings(max_examples=50, deadline=None)
def test_reference_reductions(shape, data, keepdims, name):
    x = reference_tests.randn(*shape)
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(-len(shape), len(shape) - 1),
                                                  unique_by=lambda a: a % len(shape))))
    y = reference_tests.run1([x], lambda emit, a: emit(nn.REDUCE_OPS[name](a, axes, keepdims)))
    axes = range(len(shape)) if axes is None else axes
    ref = naive_reduce(x, axes, keepdims, REDUCTIONS[name])
    # a float64 sum in another order is off by up to n eps sum|x|, not by eps of a sum that cancels
    scale = naive_reduce(np.abs(x), axes, keepdims, REDUCTIONS[name]) if name in ("reduce_sum", "reduce_mean") else 0
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=np.max(scale, initial=0) * 1e-13)



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


def test_arg_reduce_shapes_and_errors():
    x, = structural_tests.values(loop_tests.T(DYN, 3, 5))
    assert nn.ArgmaxOp(x, 1).result.type == loop_tests.T(DYN, 5, elt=i64)
    assert nn.ArgminOp(x, -1, keepdims=True).result.type == loop_tests.T(DYN, 3, 1, elt=i64)
    with pytest.raises(VerifyException, match="axis 3 is out of range for rank 3"):
        nn.ArgmaxOp(x, 3)
    e, = structural_tests.values(loop_tests.T(2, 0))
    with pytest.raises(VerifyException, match="axis 1 is empty"):
        nn.ArgmaxOp(e, 1)


def test_cumsum_and_triangle_shapes():
    x, = structural_tests.values(loop_tests.T(2, 3, elt=i32))
    assert nn.CumSumOp(x, -1, exclusive=True).result.type == loop_tests.T(2, 3, elt=i32)
    with pytest.raises(VerifyException, match="axis 2 is out of range"):
        nn.CumSumOp(x, 2)
    assert nn.TriuOp(x, -1).result.type == x.type
    v, = structural_tests.values(loop_tests.T(4))
    with pytest.raises(VerifyException, match="input must have rank >= 2"):
        nn.TrilOp(v)


@pytest.mark.parametrize("name", sorted(nn.ARG_REDUCE))
@pytest.mark.parametrize("axis,keepdims,last", [(1, False, False), (-1, True, True), (0, False, True)])
def test_arg_reduce_lowered(name, axis, keepdims, last):
    m = loop_tests.build([loop_tests.T(DYN, 3, 5)], lambda e, x: e(nn.ARG_REDUCE_OPS[name](x, axis, keepdims, last)))
    x = np.round(structural_tests.randn(4, 3, 5) * 2) / 2  # ties
    x[0, 1, 2] = np.nan  # NaN is the extreme, as in numpy
    x[2, 2, 1] = x[2, 2, 3] = np.nan
    loop_tests.check(m, [x])


@pytest.mark.parametrize("last", [False, True])
def test_arg_reduce_integers(last):
    m = loop_tests.build([loop_tests.T(3, 6, elt=i32)], lambda e, x: e(nn.ArgmaxOp(x, 1, select_last_index=last)))
    loop_tests.check(m, [structural_tests.rng.integers(-3, 3, (3, 6)).astype(np.int32)])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumsum_lowered(axis, exclusive, reverse):
    m = loop_tests.build([loop_tests.T(DYN, 3, 4)], lambda e, x: e(nn.CumSumOp(x, axis, exclusive, reverse)))
    loop_tests.check(m, [structural_tests.randn(2, 3, 4)])


def test_cumsum_integers():
    m = loop_tests.build([loop_tests.T(5, elt=i64)], lambda e, x: e(nn.CumSumOp(x, 0, exclusive=True)))
    loop_tests.check(m, [structural_tests.rng.integers(-9, 9, 5)])


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": -1, "keepdims": 0}, {"axis": 1, "select_last_index": 1}])
def test_import_arg_reduce(op, attrs):
    m = onnx_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (structural_tests.F, [3, 4, 5])}, {"y": structural_tests.I64})
    structural_tests.check_import(m, {"x": np.round(structural_tests.randn(3, 4, 5))})


@pytest.mark.parametrize("attrs", [{}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}])
def test_import_cumsum(attrs):
    m = onnx_model([helper.make_node("CumSum", ["x", "axis"], ["y"], **attrs)], {"x": (structural_tests.F, [3, 4])},
                   {"y": structural_tests.F}, {"axis": np.array(-1, np.int32)})
    structural_tests.check_import(m, {"x": structural_tests.randn(3, 4)})


@pytest.mark.parametrize("name", sorted(nn.ARG_REDUCE))
def test_export_arg_reduce(name):
    m = loop_tests.build([loop_tests.T(DYN, 4, 3)], lambda e, x: e(nn.ARG_REDUCE_OPS[name](x, 1, True, True)))
    export_tests.check(m, [np.round(structural_tests.randn(2, 4, 3))])



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


@pytest.mark.parametrize("name", sorted(nn.REDUCE))
@pytest.mark.parametrize("axes", [None, [0], [1], [-1], [0, 2]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_lowered_reductions(name, axes, keepdims):
    m = loop_tests.build([loop_tests.T(DYN, 3, 5)], lambda e, x: e(nn.REDUCE_OPS[name](x, axes, keepdims)))
    loop_tests.check(m, [loop_tests.randn(4, 3, 5)], rtol=1e-4)


@pytest.mark.parametrize("name", sorted(nn.REDUCE))
@pytest.mark.parametrize("shape, axes", [((DYN, 3, 37), [-1]), ((DYN, 3, 37), [1, 2]), ((DYN, 64), [1]),
                                         ((DYN, 2, 40), [0, 2])])
def test_lowered_reductions_of_long_rows(name, shape, axes):
    """Rows of at least 2 x LANES elements (and a remainder): float sums one chain LLVM
    vectorizes, products carried in LANES partial results; other axes as before."""
    m = loop_tests.build([loop_tests.T(*shape)], lambda e, x: e(nn.REDUCE_OPS[name](x, axes, False)))
    x = loop_tests.rng.uniform(0.9, 1.1, (3, *shape[1:])) * loop_tests.rng.choice([-1, 1], (3, *shape[1:]))
    loop_tests.check(m, [x], rtol=1e-5)


@pytest.mark.parametrize("cpu, lanes", [("znver4", 16), ("skylake-avx512", 8), ("haswell", 8), ("x86-64", 4)])
def test_float_row_sum_is_vectorized_at_the_targets_width(cpu, lanes):
    """A float sum (lanes_reduce) is one reassoc chain: LLVM sums it in vectors of the named CPU's
    preferred width (Skylake-X prefers 256-bit vectors), no narrower."""
    import re

    from ncc.pipeline import run_passes
    from ncc.runtime import engine

    m = loop_tests.build([loop_tests.T(32, 128)], lambda e, x: e(nn.REDUCE_OPS["reduce_sum"](x, [1], False)))
    run_passes(m, "lower-to-loops,lower-to-llvm")
    widths = {int(w) for w in re.findall(r"fadd reassoc <(\d+) x float>", engine.optimized_llvm_ir(m, cpu))}
    assert widths == {lanes}


def test_lowered_reduction_integers():
    for name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        m = loop_tests.build([loop_tests.T(3, 4, elt=i64)], lambda e, x: e(nn.REDUCE_OPS[name](x, [1])))
        loop_tests.check(m, [loop_tests.rng.integers(-5, 6, (3, 4))])



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences and PyTorch (test_autodiff.py)


@pytest.mark.parametrize("name", ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"])
@pytest.mark.parametrize("axes,keep", [([1], False), ([0, 2], True), (None, False)])
def test_reduce_vjp(name, axes, keep):
    fns = {"reduce_sum": torch and torch.sum, "reduce_mean": torch and torch.mean,
           "reduce_max": torch and torch.amax, "reduce_min": torch and torch.amin,
           "reduce_prod": None}
    ax = tuple(axes) if axes is not None else tuple(range(3))
    tf = fns[name] and (lambda x: fns[name](x, dim=ax, keepdim=keep))
    if name == "reduce_prod" and torch is not None:
        tf = lambda x: torch.prod(x.reshape(-1)) if axes is None else (
            torch.prod(torch.prod(x, dim=2, keepdim=True), dim=0, keepdim=True) if keep else torch.prod(x, dim=1))
    check_rule(lambda x: nn.REDUCE_OPS[name](x, axes=axes, keepdims=keep), [rand(2, 3, 4)], torch_fn=tf)



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", range(2))
def test_cumsum_vjp(exclusive, reverse, case):
    rng = np.random.default_rng(80 + case)
    rank = 1 + 2 * case
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2, 5)
    axis = int(rng.integers(-rank, rank))

    def tf(x):
        y = x.flip(axis) if reverse else x
        c = torch.cumsum(y, axis) - (y if exclusive else 0)
        return c.flip(axis) if reverse else c

    check_rule(lambda x: nn.CumSumOp(x, axis=axis, exclusive=exclusive, reverse=reverse),
               [autodiff_rule_tests.uniform(rng, shape)], torch_fn=torch and tf)



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("op", ["ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum"])
def test_import_composite_reductions(op):
    node = helper.make_node(op, ["x", "a"], ["y"], keepdims=0)
    import_tests.check(import_tests.model([node], {"x": [2, 3, 4]}, inits={"a": np.array([1], np.int64)}, opset=18),
          {"x": import_tests.x_of(2, 3, 4, positive=True)}, rtol=1e-5)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("opset", [11, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_import_reduce(op, opset, keepdims):
    axes_as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if axes_as_input:
        node = helper.make_node(op, ["x", "a"], ["y"], keepdims=keepdims)
        inits = {"a": np.array([0, -1], np.int64)}
    else:
        node = helper.make_node(op, ["x"], ["y"], axes=[0, -1], keepdims=keepdims)
        inits = {}
    import_tests.check(import_tests.model([node], {"x": [2, 3, 4]}, inits=inits, opset=opset), {"x": import_tests.x_of(2, 3, 4)})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("opset,keepdims", [(13, 0), (18, 1), (18, 0)])
def test_import_reduce_log_sum_exp_of_large_values(opset, keepdims):
    if opset < 18:
        node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[0, -1], keepdims=keepdims)
        inits = {}
    else:
        node = helper.make_node("ReduceLogSumExp", ["x", "a"], ["y"], keepdims=keepdims)
        inits = {"a": np.array([1, -1], np.int64)}
    x = decomposition_tests.randn(2, 3, 4) * 100  # exp alone would overflow float32
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [2, 3, 4])}, inits=inits, opset=opset), {"x": x})


def test_import_reduce_log_sum_exp_of_every_axis_with_a_dynamic_batch():
    node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], keepdims=0)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 3])}, opset=18), {"x": decomposition_tests.randn(4, 3) * 50})



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("name", sorted(nn.REDUCE))
@pytest.mark.parametrize("axes,keepdims", [(None, False), ((1,), True), ((0, 2), False), ((), False)])
@pytest.mark.parametrize("opset", [17, DEFAULT_OPSET])
def test_export_reductions(name, axes, keepdims, opset):
    op = lambda e, x: e(nn.REDUCE_OPS[name](x, axes=axes, keepdims=keepdims))  # noqa: E731
    export_tests.check(loop_tests.build([loop_tests.T(2, 3, 4)], op), [export_tests.randn(2, 3, 4)], opset=opset)


