"""The gather/scatter op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from xdsl.dialects.builtin import f32, i32, i64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.onnx import import_onnx
from ncc.passes.autodiff import differentiate
from ncc.passes.lowering.loop_interpreter import run_kernel

import test_autodiff_rules as autodiff_rule_tests
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_gather():
    x, idx, idx0, bad = dialect_tests.values(T((5, 4, 3)), T((2, 6), i64), T((), i32), T((2,), f32))
    assert dialect_tests.shape(nn.GatherOp(x, idx, axis=1)) == (5, 2, 6, 3)
    assert dialect_tests.shape(nn.GatherOp(x, idx0)) == (4, 3)
    with pytest.raises(VerifyException, match="indices must be i64 or i32, got tensor<2xf32>"):
        nn.GatherOp(x, bad)
    with pytest.raises(VerifyException, match="axis -4 is out of range for rank 3"):
        nn.GatherOp(x, idx, axis=-4)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def test_reference_gather():
    x = reference_tests.randn(4, 5, 3)
    idx = np.array([[0, -1], [3, 2], [1, 1]], np.int64)
    y = reference_tests.run1([x, idx], lambda emit, a, i: emit(nn.GatherOp(a, i, axis=1)))
    assert y.shape == (4, 3, 2, 3)
    for a, i, j, c in np.ndindex(*y.shape):
        assert y[a, i, j, c] == x[a, idx[i, j] % 5, c]
    bad = np.array([5], np.int64)
    with pytest.raises(NccError, match=r"nn.gather: index 5 is out of bounds"):
        reference_tests.run1([x, bad], lambda emit, a, i: emit(nn.GatherOp(a, i, axis=1)))



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


def test_gather_scatter_elements_shapes_and_errors():
    x, idx, idx_big, idx_rank, idx_f, upd = structural_tests.values(
        loop_tests.T(3, 4), loop_tests.T(5, 2, elt=i64), loop_tests.T(2, 5, elt=i64), loop_tests.T(2, elt=i64), loop_tests.T(2, 2), loop_tests.T(5, 2))
    assert nn.GatherElementsOp(x, idx, 0).result.type == loop_tests.T(5, 2)
    with pytest.raises(VerifyException, match=r"indices dimension 1 \(5\) exceeds the input's \(4\)"):
        nn.GatherElementsOp(x, idx_big, 0)
    with pytest.raises(VerifyException, match="indices must have the input's rank 2"):
        nn.GatherElementsOp(x, idx_rank, 0)
    with pytest.raises(VerifyException, match="indices must be i64 or i32"):
        nn.GatherElementsOp(x, idx_f, 1)
    assert nn.ScatterElementsOp(x, idx, upd, 0, "add").result.type == x.type
    with pytest.raises(VerifyException, match="unknown reduction 'sum'"):
        nn.ScatterElementsOp(x, idx, upd, 0, "sum")
    with pytest.raises(VerifyException, match=r"updates \(the indices' shape\) must have shape \[2, 5\]"):
        nn.ScatterElementsOp(x, idx_big, upd, 1)


def test_scatter_nd_shapes_and_errors():
    x, idx, upd, idx3, bad = structural_tests.values(loop_tests.T(4, 5, 6), loop_tests.T(2, 2, elt=i64), loop_tests.T(2, 6), loop_tests.T(2, 4, elt=i64), loop_tests.T(2, 5))
    assert nn.ScatterNDOp(x, idx, upd, "max").result.type == x.type
    with pytest.raises(VerifyException, match="indices' last dimension must be 1..3"):
        nn.ScatterNDOp(x, idx3, upd)
    with pytest.raises(VerifyException, match=r"updates .* must have shape \[2, 6\]"):
        nn.ScatterNDOp(x, idx, bad)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_lowered(axis):
    ishape = [2, 2, 3]
    ishape[axis] = 5
    dim = (4, 3, 4)[axis]
    idx = structural_tests.rng.integers(-dim, dim, ishape)
    m = loop_tests.build([loop_tests.T(4, 3, 4), loop_tests.T(*ishape, elt=i64)], lambda e, x, i: e(nn.GatherElementsOp(x, i, axis)))
    loop_tests.check(m, [structural_tests.randn(4, 3, 4), idx])


def test_gather_elements_on_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 3), loop_tests.T(DYN, 2, elt=i32)], lambda e, x, i: e(nn.GatherElementsOp(x, i, 1)))
    loop_tests.check(m, [structural_tests.randn(4, 3), structural_tests.rng.integers(-3, 3, (4, 2)).astype(np.int32)])


def test_gather_elements_clamps_out_of_range_indices():
    m = loop_tests.build([loop_tests.T(4), loop_tests.T(3, elt=i64)], lambda e, x, i: e(nn.GatherElementsOp(x, i)))
    x = structural_tests.randn(4)
    (got,) = run_kernel(loop_tests.lower(m), [x, np.array([9, -7, 1])])
    np.testing.assert_array_equal(got, x[[3, 0, 1]])


@pytest.mark.parametrize("reduction", nn.SCATTER_REDUCTIONS)
@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_elements_lowered(reduction, axis):
    idx = np.array([[1, -1, 0], [1, 2, 1]])  # repeated positions combine in order
    m = loop_tests.build([loop_tests.T(3, 3), loop_tests.T(2, 3, elt=i64), loop_tests.T(2, 3)],
              lambda e, x, i, u: e(nn.ScatterElementsOp(x, i, u, axis, reduction)))
    loop_tests.check(m, [structural_tests.randn(3, 3), idx, structural_tests.randn(2, 3)])


@pytest.mark.parametrize("reduction", nn.SCATTER_REDUCTIONS)
def test_scatter_nd_lowered(reduction):
    m = loop_tests.build([loop_tests.T(4, 3, 2), loop_tests.T(3, 1, elt=i64), loop_tests.T(3, 3, 2)],
              lambda e, x, i, u: e(nn.ScatterNDOp(x, i, u, reduction)))
    loop_tests.check(m, [structural_tests.randn(4, 3, 2), np.array([[2], [0], [-2]]), structural_tests.randn(3, 3, 2)])


def test_scatter_nd_element_tuples_on_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 3), loop_tests.T(2, 2, elt=i32), loop_tests.T(2)],
              lambda e, x, i, u: e(nn.ScatterNDOp(x, i, u, "add")))
    loop_tests.check(m, [structural_tests.randn(3, 3), np.array([[0, 1], [2, -1]], np.int32), structural_tests.randn(2)])


def test_import_gather_elements_and_scatters():
    nodes = [helper.make_node("GatherElements", ["x", "i"], ["g"], axis=1),
             helper.make_node("ScatterElements", ["x", "i", "u"], ["s"], axis=1, reduction="add"),
             helper.make_node("ScatterND", ["x", "j", "v"], ["n"], reduction="mul")]
    m = onnx_model(nodes, {"x": (structural_tests.F, [3, 4]), "i": (structural_tests.I64, [3, 2]), "u": (structural_tests.F, [3, 2]), "v": (structural_tests.F, [2, 4])},
                   {"g": structural_tests.F, "s": structural_tests.F, "n": structural_tests.F}, {"j": np.array([[2], [0]], np.int64)})
    structural_tests.check_import(m, {"x": structural_tests.randn(3, 4), "i": structural_tests.rng.integers(-4, 4, (3, 2)), "u": structural_tests.randn(3, 2),
                     "v": structural_tests.randn(2, 4)}, native=True)


def test_import_scatter_of_opset_10():
    m = onnx_model([helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=0)],
                   {"x": (structural_tests.F, [3, 3]), "i": (structural_tests.I64, [1, 3]), "u": (structural_tests.F, [1, 3])}, {"y": structural_tests.F}, opset=10)
    structural_tests.check_import(m, {"x": structural_tests.randn(3, 3), "i": np.array([[2, 0, 1]]), "u": structural_tests.randn(1, 3)})


@pytest.mark.parametrize("mode,write", [("linear", None), ("linear", [0, 3]), ("circular", [2, 4])])
def test_import_tensor_scatter(mode, write):
    """A KV cache update (opset 24): against onnx's reference evaluator, natively."""
    from onnx.reference import ReferenceEvaluator

    inputs = {"past": (structural_tests.F, [2, 3, 5, 4]), "update": (structural_tests.F, [2, 3, 2, 4])}
    if write is not None:
        inputs["w"] = (structural_tests.I64, [2])
    node = helper.make_node("TensorScatter", list(inputs), ["y"], mode=mode)
    m = onnx_model([node], inputs, {"y": structural_tests.F}, opset=24)
    feeds = {"past": structural_tests.randn(2, 3, 5, 4), "update": structural_tests.randn(2, 3, 2, 4)}
    if write is not None:
        feeds["w"] = np.array(write)
    want, = ReferenceEvaluator(m).run(None, feeds)
    module = import_onnx(m)
    np.testing.assert_array_equal(ncc.reference.run(module, feeds)[0], want)
    np.testing.assert_array_equal(ncc.compile(module, cache=False).run(feeds)[0], want)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("values", ["constant", "input"])
def test_import_one_hot(axis, values):
    inits = {"depth": np.array(4, np.int64)}
    inputs = {"i": (structural_tests.I64, [2, 3])}
    if values == "constant":
        inits["v"] = np.array([-1.0, 2.0], np.float32)
    else:
        inputs["v"] = (structural_tests.F, [2])
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=axis)], inputs,
                   {"y": structural_tests.F}, inits, opset=11)
    feeds = {"i": np.array([[0, 3, -1], [-4, 4, -5]])}  # negative, and out of range: all `off`
    if values == "input":
        feeds["v"] = np.array([0.5, 3.0], np.float32)
    structural_tests.check_import(m, feeds, native=True)


def test_import_one_hot_of_float_indices():
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=0)],
                   {"i": (structural_tests.F, [4]), "v": (structural_tests.F, [2])}, {"y": structural_tests.F}, {"depth": np.array(3.0, np.float32)},
                   opset=11)
    structural_tests.check_import(m, {"i": np.array([0.0, 2.7, -1.2, 5.0], np.float32),
                     "v": np.array([0.0, 1.0], np.float32)}, native=True)
    m = onnx_model([helper.make_node("OneHot", ["i", "depth", "v"], ["y"])],
                   {"i": (structural_tests.F, [4]), "v": (structural_tests.I64, [2])}, {"y": structural_tests.I64}, {"depth": np.array(3, np.int64)},
                   opset=11)
    with pytest.raises(NccError, match=r"float indices \(f32\) need values of their type"):
        import_onnx(m)


def test_export_cumsum_triangles_gathers_and_scatters():
    def make(e, x, i, u):
        c = e(nn.CumSumOp(x, 1, exclusive=True, reverse=True))
        t = e(nn.TrilOp(e(nn.TriuOp(c, -1)), 1))
        g = e(nn.GatherElementsOp(t, i, 0))
        s = e(nn.ScatterElementsOp(g, i, u, 1, "max"))
        return e(nn.ScatterNDOp(s, e(nn.ConstantOp(np.array([[1], [0]]))), u, "add"))

    m = loop_tests.build([loop_tests.T(3, 3), loop_tests.T(2, 3, elt=i64), loop_tests.T(2, 3)], make)
    model = export_tests.check(m, [structural_tests.randn(3, 3), structural_tests.rng.integers(-3, 3, (2, 3)), structural_tests.randn(2, 3)])
    assert {"CumSum", "Trilu", "GatherElements", "ScatterElements", "ScatterND"} <= {
        n.op_type for n in model.graph.node}
    with pytest.raises(NccError, match="reduction max needs ONNX opset 18 or newer"):
        ncc.export_onnx(m, opset=17)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


@pytest.mark.parametrize("axis,ishape", [(0, (4,)), (1, (2, 3)), (-1, ()), (2, (5,))])
@pytest.mark.parametrize("elt", [i64, i32])
def test_lowered_gather(axis, ishape, elt):
    idx = loop_tests.rng.integers(-3, 3, ishape).astype(nn.numpy_dtype(elt))
    m = loop_tests.build([loop_tests.T(3, 4, 3), loop_tests.T(*ishape, elt=elt)], lambda e, x, i: e(nn.GatherOp(x, i, axis)))
    loop_tests.check(m, [loop_tests.randn(3, 4, 3), idx])


def test_lowered_gather_from_a_constant_on_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 5)], lambda e, x: e(nn.GatherOp(x, e(nn.ConstantOp(np.array([4, 0, -1]))), 1)))
    lowered = loop_tests.check(m, [loop_tests.randn(3, 5)])
    weights = [op for op in lowered.ops if isinstance(op, nn.WeightOp)]
    assert len(weights) == 1 and "ncc.constant" in weights[0].attributes


def test_lowered_gather_clamps_out_of_range_indices():
    m = loop_tests.build([loop_tests.T(4), loop_tests.T(3, elt=i64)], lambda e, x, i: e(nn.GatherOp(x, i)))
    x = loop_tests.randn(4)
    (got,) = run_kernel(loop_tests.lower(m), [x, np.array([7, -9, 2])])
    np.testing.assert_array_equal(got, x[[3, 0, 2]])



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


def distinct_along(rng, dim, shape, axis):
    """Indices into a dimension of size `dim`, distinct along `axis` (shape[axis] <= dim)."""
    full = list(shape)
    full[axis] = dim
    perm = np.argsort(rng.random(full), axis=axis)
    return np.take(perm, range(shape[axis]), axis=axis)


@pytest.mark.parametrize("case", range(6))
def test_gather_vjp(case):
    """Any axis, indices of rank 0 to 2 with repeats and negative entries."""
    rng = np.random.default_rng(20 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    axis = int(rng.integers(0, rank))
    d = shape[axis]
    idx = autodiff_rule_tests.indices(rng, d, autodiff_rule_tests.rand_shape(rng, case % 3, 1, 3))

    def tf(x, i):
        picked = torch.index_select(x, axis, (i % d).reshape(-1))
        return picked.reshape(x.shape[:axis] + i.shape + x.shape[axis + 1:])

    check_rule(lambda x, i: nn.GatherOp(x, i, axis=axis - rank * (case % 2)), [autodiff_rule_tests.uniform(rng, shape), idx],
               int_args=(1,), torch_fn=torch and tf)


@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_gather_elements_vjp(case):
    rng = np.random.default_rng(30 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    axis = int(rng.integers(0, rank))
    ishape = tuple(int(rng.integers(1, s + 1)) if i != axis else int(rng.integers(1, 5))
                   for i, s in enumerate(shape))
    idx = autodiff_rule_tests.indices(rng, shape[axis], ishape)
    check_rule(lambda x, i: nn.GatherElementsOp(x, i, axis=axis), [autodiff_rule_tests.uniform(rng, shape), idx], int_args=(1,),
               torch_fn=torch and (lambda x, i: torch.gather(x, axis, i % shape[axis])))


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_scatter_elements_vjp(reduction, case):
    """Repeated positions (the last write wins for none) in even cases,
    distinct ones (compared with torch) in odd cases."""
    rng = np.random.default_rng(60 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    axis = int(rng.integers(-rank, rank))
    a = axis % rank
    ishape = tuple(int(rng.integers(1, s + 1)) for s in shape)
    distinct = case % 2 == 1
    idx = distinct_along(rng, shape[a], ishape, a) if distinct else autodiff_rule_tests.indices(rng, shape[a], ishape)
    args = [autodiff_rule_tests.uniform(rng, shape), idx, autodiff_rule_tests.uniform(rng, ishape)]
    tf = None
    if torch is not None and (distinct or reduction == "add"):
        tf = (lambda x, i, u: x.scatter(a, i % shape[a], u)) if reduction == "none" else \
            (lambda x, i, u: x.scatter_add(a, i % shape[a], u))
    grads = check_rule(lambda x, i, u: nn.ScatterElementsOp(x, i, u, axis=axis, reduction=reduction), args,
                       int_args=(1,), torch_fn=tf)
    if reduction == "none" and not distinct:  # every written position: exactly one update's cotangent
        assert np.count_nonzero(grads[1]) <= np.count_nonzero(grads[0] == 0)


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_scatter_nd_vjp(reduction, case):
    rng = np.random.default_rng(70 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    k = int(rng.integers(1, rank + 1))
    writers = autodiff_rule_tests.rand_shape(rng, 1 + case % 2, 1, 3)
    distinct = case % 2 == 1
    if distinct:  # distinct tuples: a sample of the flat positions of shape[:k]
        n = int(np.prod(writers))
        flat = rng.permutation(int(np.prod(shape[:k])))[:n]
        writers = (len(flat),)
        idx = np.stack(np.unravel_index(flat, shape[:k]), axis=-1)
        idx = idx - np.array(shape[:k]) * (rng.random(k) < 0.3)  # some components counted from the end
    else:
        idx = np.stack([autodiff_rule_tests.indices(rng, shape[t], writers) for t in range(k)], axis=-1)
    args = [autodiff_rule_tests.uniform(rng, shape), idx, autodiff_rule_tests.uniform(rng, (*writers, *shape[k:]))]
    def tf(x, i, u):
        where = tuple(i[..., t] % shape[t] for t in range(k))
        return x.index_put(where, u, accumulate=reduction == "add")

    check_rule(lambda x, i, u: nn.ScatterNDOp(x, i, u, reduction=reduction), args, int_args=(1,),
               torch_fn=tf if torch is not None and (distinct or reduction == "add") else None)


def test_scatter_with_constant_distinct_indices_reads_updates_directly():
    """Constant indices without repeats need no last-writer mask: no i64 scatter in the backward."""
    m = ncc.parse_module("""
func.func @f(%x: tensor<3x4xf64>, %u: tensor<2x4xf64>) -> tensor<3x4xf64> {
  %i = nn.constant dense<[[0, -1, 1, 0], [2, 0, 0, 1]]> : tensor<2x4xi64>
  %y = nn.scatter_elements %x, %i, %u : tensor<3x4xf64>, tensor<2x4xi64>, tensor<2x4xf64> -> tensor<3x4xf64>
  func.return %y : tensor<3x4xf64>
}""")
    (vjp,) = differentiate(m, "f")
    scatters = [op for op in vjp.body.block.ops if isinstance(op, nn.ScatterElementsOp)]
    assert len(scatters) == 2  # the forward's and dx's; no scatter of writer ids
    rng = np.random.default_rng(5)
    x, u, cot = autodiff_rule_tests.uniform(rng, (3, 4)), autodiff_rule_tests.uniform(rng, (2, 4)), autodiff_rule_tests.uniform(rng, (3, 4))
    _, gx, gu = ncc.reference.run(m, [x, u, cot], function="f_vjp")
    i = np.array([[0, -1, 1, 0], [2, 0, 0, 1]]) % 3
    mask = np.ones((3, 4))
    np.put_along_axis(mask, i, 0, axis=0)
    np.testing.assert_allclose(gx, cot * mask)
    np.testing.assert_allclose(gu, np.take_along_axis(cot, i, axis=0))


def test_embedding_gradient_in_f32_natively():
    """The lit test's function (embedding, strided slice, concat): the table's
    and the input's gradients against torch autograd, natively."""
    import pathlib

    text = (pathlib.Path(__file__).parent.parent / "lit" / "autodiff" / "gather_scatter-embedding.mlir").read_text()
    m = ncc.parse_module(text)
    differentiate(m, "embed", mode="combined")
    rng = np.random.default_rng(3)
    ids = autodiff_rule_tests.indices(rng, 5, (4, 3))
    x = rng.standard_normal((4, 4)).astype(np.float32)
    cot = rng.standard_normal((4, 6)).astype(np.float32)
    got = ncc.compile(m, function="embed_vjp", cache=False).run({"ids": ids, "x": x, "cotangent:0": cot})
    ref = ncc.reference.run(m, [ids, x, cot], function="embed_vjp")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if torch is None:
        return
    table = torch.tensor(np.arange(1.0, 11.0, dtype=np.float32).reshape(5, 2), requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    e = table[torch.tensor(ids % 5)].reshape(4, 6)
    h = tx[:, [3, 1]]
    y = torch.cat([e, h], 1)[:, 1:7]
    y.backward(torch.tensor(cot))
    np.testing.assert_allclose(got[1], table.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mul", "max", "min"])
def test_scatter_reductions_without_rule_are_errors(reduction):
    m = ncc.parse_module(f"""func.func @f(%x: tensor<4xf32>, %i: tensor<2xi64>, %u: tensor<2xf32>) -> tensor<4xf32> {{
  %y = nn.scatter_elements %x, %i, %u reduction {reduction} : tensor<4xf32>, tensor<2xi64>, tensor<2xf32> -> tensor<4xf32>
  func.return %y : tensor<4xf32>
}}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=rf"model.mlir:2:3: error: cannot differentiate 'nn.scatter_elements' "
                                           rf"with reduction {reduction}: it has no derivative rule"):
        differentiate(m, "f")
    differentiate(m, "f", inputs=False)  # nothing active flows through it: no error


def test_gather_on_a_later_axis_with_dynamic_indices_is_an_error():
    m = ncc.parse_module("""func.func @f(%x: tensor<3x4xf32>, %i: tensor<?xi64>) -> tensor<3x?xf32> {
  %y = nn.gather %x, %i axis 1 : tensor<3x4xf32>, tensor<?xi64> -> tensor<3x?xf32>
  func.return %y : tensor<3x?xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.gather' on axis 1 "
                                           r"with indices of a dynamic shape"):
        differentiate(m, "f")



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


def test_import_gather_with_negative_indices():
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    import_tests.check(import_tests.model([node], {"x": [2, 5]}, inits={"i": np.array([[0, -1], [3, 2]], np.int64)}),
          {"x": import_tests.x_of(2, 5)})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("axis,cond", [(0, [0, 1, 1]), (1, [1, 0]), (-1, [1]), (None, [0, 1, 0, 0, 1])])
def test_import_compress_on_a_constant_condition(axis, cond):
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("Compress", ["x", "c"], ["y"], **attrs)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [3, 2])}, inits={"c": np.array(cond, np.bool_)}, opset=11),
          {"x": decomposition_tests.randn(3, 2)})


@pytest.mark.parametrize("data_shape,idx,batch_dims", [
    ([2, 2], [[0, 0], [1, 1]], 0), ([2, 3, 4], [[1], [-2]], 0), ([2, 3, 4], [[[0, 2]], [[1, -1]]], 0),
    ([2, 3, 4], [[1], [0]], 1), ([2, 3, 4, 2], [[[2, 1], [0, -4]], [[-1, 3], [1, 0]]], 1)])
def test_import_gather_nd(data_shape, idx, batch_dims):
    idx = np.array(idx, np.int64)
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    m = decomposition_tests.model([node], {"x": (decomposition_tests.F, data_shape), "i": (decomposition_tests.I64, list(idx.shape))}, opset=13)
    decomposition_tests.check(m, {"x": decomposition_tests.randn(*data_shape), "i": idx})


