"""The normalization op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.autodiff import differentiate

import test_autodiff_rules as autodiff_rule_tests
import test_lower_to_loops as loop_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
from vjp_check import check_rule, torch

# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def test_reference_batch_norm():
    x = reference_tests.randn(2, 3, 4, 5)
    scale, bias, mean, var = reference_tests.randn(3), reference_tests.randn(3), reference_tests.randn(3), np.abs(reference_tests.randn(3)) + 0.1
    y = reference_tests.run1([x, scale, bias, mean, var],
             lambda emit, *a: emit(nn.BatchNormOp(*a, epsilon=1e-3)))
    for c in range(3):
        np.testing.assert_allclose(y[:, c], (x[:, c] - mean[c]) / math.sqrt(var[c] + 1e-3) * scale[c] + bias[c],
                                   rtol=1e-12)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_reference_layer_norm(axis):
    x = reference_tests.randn(2, 3, 4)
    norm_shape = x.shape[axis % 3:]
    scale, bias = reference_tests.randn(*norm_shape), reference_tests.randn(*norm_shape)
    y = reference_tests.run1([x, scale, bias], lambda emit, *a: emit(nn.LayerNormOp(*a, axis=axis, epsilon=1e-5)))
    lead = x.shape[:axis % 3]
    for idx in np.ndindex(*lead):
        row = x[idx].reshape(-1)
        mu = math.fsum(row) / row.size
        var = math.fsum((v - mu) ** 2 for v in row) / row.size
        ref = (x[idx] - mu) / math.sqrt(var + 1e-5) * scale + bias
        np.testing.assert_allclose(y[idx], ref, rtol=1e-10)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reference_rms_norm(axis):
    x = reference_tests.randn(2, 3, 4)
    scale = reference_tests.randn(*x.shape[axis % 3:])
    y = reference_tests.run1([x, scale], lambda emit, *a: emit(nn.RMSNormOp(*a, axis=axis, epsilon=1e-3)))
    for idx in np.ndindex(*x.shape[:axis % 3]):
        rms = math.sqrt(math.fsum(v * v for v in x[idx].reshape(-1)) / x[idx].size + 1e-3)
        np.testing.assert_allclose(y[idx], x[idx] / rms * scale, rtol=1e-10)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


def test_lowered_batch_norm():
    m = loop_tests.build([loop_tests.T(DYN, 3, 4, 2), *[loop_tests.T(3)] * 4], lambda e, x, s, b, mu, v: e(nn.BatchNormOp(x, s, b, mu, v, 1e-3)))
    loop_tests.check(m, [loop_tests.randn(2, 3, 4, 2), loop_tests.randn(3), loop_tests.randn(3), loop_tests.randn(3), np.abs(loop_tests.randn(3)) + 0.5])


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_lowered_layer_norm(axis):
    shape = (2, 3, 5)
    norm = shape[axis % 3:]
    m = loop_tests.build([loop_tests.T(DYN, 3, 5), loop_tests.T(*norm), loop_tests.T(*norm)], lambda e, x, s, b: e(nn.LayerNormOp(x, s, b, axis)))
    loop_tests.check(m, [loop_tests.randn(*shape), loop_tests.randn(*norm), loop_tests.randn(*norm)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_lowered_rms_norm(axis):
    shape = (2, 3, 37)  # rows longer than a vector and not a multiple of its lanes
    norm = shape[axis % 3:]
    m = loop_tests.build([loop_tests.T(DYN, 3, 37), loop_tests.T(*norm)], lambda e, x, s: e(nn.RMSNormOp(x, s, axis, 1e-6)))
    loop_tests.check(m, [loop_tests.randn(*shape), loop_tests.randn(*norm)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", [nn.LayerNormOp, nn.RMSNormOp])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_lowered_norm_in_groups_of_rows(op, batch):
    """Rows normalized ROW_GROUP at a time: 7, 14 or 21 rows of 40 (groups and the rows left,
    the batch's rows run-time)."""
    from ncc.passes.lowering.nn_to_loops.normalization import ROW_GROUP

    assert (7 * batch) % ROW_GROUP
    params = [loop_tests.T(40)] * (2 if op is nn.LayerNormOp else 1)
    m = loop_tests.build([loop_tests.T(DYN, 7, 40), *params], lambda e, x, *p: e(op(x, *p, axis=-1, epsilon=1e-5)))
    loop_tests.check(m, [loop_tests.randn(batch, 7, 40, scale=3), *(loop_tests.randn(40) for _ in params)],
                     rtol=1e-4, atol=1e-5)


def test_lowered_rms_norm_over_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 3), loop_tests.T(DYN, 3)], lambda e, x, s: e(nn.RMSNormOp(x, s, 0)))
    loop_tests.check(m, [loop_tests.randn(4, 3), loop_tests.randn(4, 3)], rtol=1e-4, atol=1e-5)


def test_lowered_layer_norm_over_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 3), loop_tests.T(DYN, 3), loop_tests.T(DYN, 3)], lambda e, x, s, b: e(nn.LayerNormOp(x, s, b, 0)))
    loop_tests.check(m, [loop_tests.randn(4, 3), loop_tests.randn(4, 3), loop_tests.randn(4, 3)], rtol=1e-4, atol=1e-5)



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_batch_norm_vjp(case):
    rng = np.random.default_rng(case)
    rank = 2 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    c = shape[1]
    eps = float(rng.choice([1e-5, 1e-2]))
    args = [autodiff_rule_tests.uniform(rng, shape), autodiff_rule_tests.uniform(rng, c), autodiff_rule_tests.uniform(rng, c), autodiff_rule_tests.uniform(rng, c), autodiff_rule_tests.uniform(rng, c, 0.3, 2)]

    def tf(x, s, b, m, v):
        ch = (1, -1) + (1,) * (rank - 2)
        return (x - m.reshape(ch)) / torch.sqrt(v.reshape(ch) + eps) * s.reshape(ch) + b.reshape(ch)

    check_rule(lambda *a: nn.BatchNormOp(*a, epsilon=eps), args, torch_fn=torch and tf)


BN = """
nn.weight @s : tensor<3xf64> = dense<[1.0, -0.5, 2.0]>
nn.weight @b : tensor<3xf64> = dense<[0.1, 0.2, 0.3]>
nn.weight @m : tensor<3xf64> = dense<[0.5, 0.0, -1.0]>
nn.weight @v : tensor<3xf64> = dense<[1.0, 0.25, 4.0]>
func.func @f(%x: tensor<?x3x2xf64>) -> tensor<?x3x2xf64> {
  %s = nn.weight_ref @s : tensor<3xf64>
  %b = nn.weight_ref @b : tensor<3xf64>
  %m = nn.weight_ref @m : tensor<3xf64>
  %v = nn.weight_ref @v : tensor<3xf64>
  %y = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x3x2xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}"""


def test_batch_norm_with_frozen_statistics():
    """The running mean and variance frozen (as when fine-tuning a CNN): the
    same gradients for the rest; only the bias: no statistics read at all."""
    full, frozen, bias_only = (ncc.parse_module(BN) for _ in range(3))
    differentiate(full, "f")
    differentiate(frozen, "f", frozen=["m", "v"])
    (vjp,) = differentiate(bias_only, "f", frozen=["s", "m", "v"], inputs=False)
    ops = list(vjp.body.block.ops)
    assert sum(isinstance(op, nn.WeightRefOp) for op in ops) == 4  # the forward's: the backward reads none
    assert [op.name for op in ops[ops.index(next(o for o in ops if isinstance(o, nn.BatchNormOp))) + 1:]] == [
        "nn.reduce_sum", "func.return"]  # dbias: the sum over all axes but 1
    rng = np.random.default_rng(4)
    x, cot = autodiff_rule_tests.uniform(rng, (5, 3, 2)), autodiff_rule_tests.uniform(rng, (5, 3, 2))
    gs, gb, _, _, gx = ncc.reference.run(full, [x, cot], function="f_vjp")[1:]
    for a, b in zip(ncc.reference.run(frozen, [x, cot], function="f_vjp")[1:], [gs, gb, gx]):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(ncc.reference.run(bias_only, [x, cot], function="f_vjp")[1], gb)
    np.testing.assert_allclose(gb, cot.sum(axis=(0, 2)))


@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_layer_norm_vjp(case):
    rng = np.random.default_rng(10 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    axis = int(rng.integers(-rank, rank))
    norm = shape[axis % rank:]
    eps = float(rng.choice([1e-5, 1e-2]))
    args = [autodiff_rule_tests.uniform(rng, shape), autodiff_rule_tests.uniform(rng, norm), autodiff_rule_tests.uniform(rng, norm)]
    check_rule(lambda *a: nn.LayerNormOp(*a, axis=axis, epsilon=eps), args,
               torch_fn=torch and (lambda x, s, b: torch.nn.functional.layer_norm(x, norm, s, b, eps)))


@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_rms_norm_vjp(case):
    """nn.rms_norm is differentiated as its formula (nn.DECOMPOSITION)."""
    rng = np.random.default_rng(20 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2)
    axis = int(rng.integers(-rank, rank))
    norm = shape[axis % rank:]
    eps = float(rng.choice([1e-5, 1e-2]))
    args = [autodiff_rule_tests.uniform(rng, shape), autodiff_rule_tests.uniform(rng, norm)]
    check_rule(lambda *a: nn.RMSNormOp(*a, axis=axis, epsilon=eps), args,
               torch_fn=torch and (lambda x, s: torch.nn.functional.rms_norm(x, norm, s, eps)))



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


def test_import_batch_norm():
    inits = {"s": import_tests.x_of(3), "b": import_tests.x_of(3), "m": import_tests.x_of(3), "v": import_tests.x_of(3, positive=True)}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    import_tests.check(import_tests.model([node], {"x": [2, 3, 4, 4]}, inits=inits), {"x": import_tests.x_of(2, 3, 4, 4)})


def test_import_lrn():
    node = helper.make_node("LRN", ["x"], ["y"], size=3, alpha=1e-3, beta=0.75, bias=2.0)
    import_tests.check(import_tests.model([node], {"x": [1, 5, 3, 3]}), {"x": import_tests.x_of(1, 5, 3, 3)})


def test_import_layer_norm_expand_split():
    nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["l"], axis=-1, epsilon=1e-3),
             helper.make_node("Expand", ["l", "shape"], ["e"]),
             helper.make_node("Split", ["e", "sizes"], ["y1", "y2"], axis=3)]
    inits = {"s": import_tests.x_of(4), "b": import_tests.x_of(4), "shape": np.array([2, 1, 3, 4], np.int64),
             "sizes": np.array([1, 3], np.int64)}
    import_tests.check(import_tests.model(nodes, {"x": [3, 4]}, inits=inits, outputs=("y1", "y2"), opset=17),
          {"x": import_tests.x_of(3, 4)}, rtol=1e-4, atol=1e-5)



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_import_layer_norm_mean_and_inv_std_dev(axis):
    shape = [2, 3, 4]
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"],
                            axis=axis, epsilon=1e-3)
    inits = {"s": decomposition_tests.randn(*shape[axis:]), "b": decomposition_tests.randn(*shape[axis:])}
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, shape)}, ("y", "mean", "inv"), inits, opset=17), {"x": decomposition_tests.randn(*shape)})


def test_import_layer_norm_mean_only_with_a_dynamic_batch():
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], axis=1)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 3, 4])}, ("y", "mean"), {"s": decomposition_tests.randn(3, 4)}, opset=17),
          {"x": decomposition_tests.randn(5, 3, 4)})


def test_import_layer_norm_stats_of_another_stash_type():
    # a double input, its Mean and InvStdDev in float (stash_type 1, the default)
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv"])
    m = decomposition_tests.model([node], {"x": (decomposition_tests.D, [2, 3])}, {"y": decomposition_tests.D, "mean": decomposition_tests.F, "inv": decomposition_tests.F},
              {"s": decomposition_tests.randn(3, dtype=np.float64)}, opset=17)
    decomposition_tests.check(m, {"x": decomposition_tests.randn(2, 3, dtype=np.float64)})


@pytest.mark.parametrize("axis,scale,ops", [(-1, [4], 1), (1, [3, 4], 1), (-1, [1], 6), (1, [1, 4], 6)])
def test_import_rms_normalization(axis, scale, ops):
    """One nn.rms_norm when the scale has the normalized shape; its formula when
    the scale broadcasts to it."""
    shape = [2, 3, 4]
    node = helper.make_node("RMSNormalization", ["x", "s"], ["y"], axis=axis, epsilon=1e-3)
    model = decomposition_tests.model([node], {"x": (decomposition_tests.F, shape)}, inits={"s": decomposition_tests.randn(*scale)}, opset=23)
    decomposition_tests.check(model, {"x": decomposition_tests.randn(*shape)})
    fn = next(op for op in ncc.import_onnx(model).ops if op.name == "func.func")
    computed = [op.name for op in fn.body.block.ops if op.name not in ("nn.weight_ref", "nn.constant", "func.return")]
    assert len(computed) == ops and (ops > 1 or computed == ["nn.rms_norm"])


def test_import_instance_normalization():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 3, 4, 5])}, inits={"s": decomposition_tests.randn(3), "b": decomposition_tests.randn(3)}),
          {"x": decomposition_tests.randn(2, 3, 4, 5)})


@pytest.mark.parametrize("opset", [18, 21])  # scale and bias per group, then per channel
def test_import_group_normalization(opset):
    c = 2 if opset == 18 else 6
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-3)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 6, 2, 3])}, inits={"s": decomposition_tests.randn(c), "b": decomposition_tests.randn(c)}, opset=opset),
          {"x": decomposition_tests.randn(3, 6, 2, 3)})


def test_import_group_normalization_groups_must_divide_the_channels():
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=4, name="gn")
    m = decomposition_tests.model([node], {"x": (decomposition_tests.F, [1, 6, 2])}, inits={"s": decomposition_tests.randn(6), "b": decomposition_tests.randn(6)}, opset=21)
    assert decomposition_tests.diag(m) == "g: error: node 'gn' (GroupNormalization): num_groups 4 must divide the 6 channels"


@pytest.mark.parametrize("axes", [None, [1, 2]])
def test_import_mean_variance_normalization(axes):
    attrs = {} if axes is None else {"axes": axes}
    node = helper.make_node("MeanVarianceNormalization", ["x"], ["y"], **attrs)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [2, 3, 4, 5])}, opset=13), {"x": decomposition_tests.randn(2, 3, 4, 5)})


@pytest.mark.parametrize("p,axis", [(1, -1), (2, 0), (2, 1)])
def test_import_lp_normalization_with_a_zero_row(p, axis):
    x = decomposition_tests.randn(3, 4)
    x[1] = 0
    x[:, 2] = 0
    node = helper.make_node("LpNormalization", ["x"], ["y"], p=p, axis=axis)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [3, 4])}, opset=22), {"x": x})


def test_import_lp_normalization_needs_p_1_or_2():
    m = decomposition_tests.model([helper.make_node("LpNormalization", ["x"], ["y"], p=3, name="lp")], {"x": (decomposition_tests.F, [3])})
    assert decomposition_tests.diag(m) == "g: error: node 'lp' (LpNormalization): p must be 1 or 2, got 3"



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


def test_export_batch_norm_and_layer_norm():
    s, b, m = (nn.WeightOp(n, export_tests.randn(3)) for n in "sbm")
    v = nn.WeightOp("var", np.abs(export_tests.randn(3)) + 0.5)
    ls, lb = nn.WeightOp("ls", export_tests.randn(4, 5)), nn.WeightOp("lb", export_tests.randn(4, 5))

    def make(e, x):
        r = [e(nn.WeightRefOp(w)) for w in (s, b, m, v)]
        y = e(nn.BatchNormOp(x, *r, epsilon=1e-3))
        return e(nn.LayerNormOp(y, e(nn.WeightRefOp(ls)), e(nn.WeightRefOp(lb)), axis=-2))
    export_tests.check(loop_tests.build([loop_tests.T(None, 3, 4, 5)], make, [s, b, m, v, ls, lb]), [export_tests.randn(2, 3, 4, 5)], tol=1e-4)


def test_export_rms_norm_as_its_formula():
    rs = nn.WeightOp("rs", export_tests.randn(4, 5))
    model = export_tests.check(loop_tests.build(
        [loop_tests.T(None, 3, 4, 5)], lambda e, x: e(nn.RMSNormOp(x, e(nn.WeightRefOp(rs)), axis=-2, epsilon=1e-4)), [rs]),
        [export_tests.randn(2, 3, 4, 5)], tol=1e-5)
    assert export_tests.op_types(model) == ["Mul", "ReduceMean", "Add", "Sqrt", "Div", "Mul"]




# ---------------------------------------------------------------------------
# fold-batch-norm: an inference batch norm after a conv, folded into it


def _conv_bn(extra_use=False, fused_bias=False, seed=7):
    rng = np.random.default_rng(seed)
    w = nn.WeightOp("w", rng.standard_normal((6, 3, 3, 3)).astype(np.float32))
    cb = nn.WeightOp("cb", rng.standard_normal(6).astype(np.float32))
    stats = [nn.WeightOp(n, v.astype(np.float32)) for n, v in (
        ("scale", rng.standard_normal(6)), ("shift", rng.standard_normal(6)), ("mean", rng.standard_normal(6)),
        ("var", rng.uniform(0.5, 2.0, 6)))]

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        y = e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(cb)), pads=[1, 1, 1, 1])) if fused_bias else \
            e(nn.ConvOp(x, wv, pads=[1, 1, 1, 1]))
        z = e(nn.BatchNormOp(y, *(e(nn.WeightRefOp(s)) for s in stats), epsilon=1e-3))
        r = e(nn.UNARY_OPS["relu"](z))
        return [r, y] if extra_use else r
    return loop_tests.build([loop_tests.T(DYN, 3, 9, 9)], make, [w, cb, *stats])


@pytest.mark.parametrize("fused_bias", [False, True])
def test_fold_batch_norm_gives_the_same_function(fused_bias):
    from ncc.passes.fold_batch_norm import fold_batch_norm

    module = _conv_bn(fused_bias=fused_bias)
    x = np.random.default_rng(8).standard_normal((2, 3, 9, 9)).astype(np.float32)
    (want,) = ncc.reference.run(module, [x])
    folded = module.clone()
    assert fold_batch_norm(folded) == 1
    assert not any(isinstance(op, nn.BatchNormOp) for op in folded.walk())
    (got,) = ncc.reference.run(folded, [x])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    ncc.run_passes(folded, "fuse")  # conv + bias + relu: one fused_conv
    assert [op.name for op in folded.walk() if op.name in ("nn.fused_conv", "nn.conv", "nn.relu")] == ["nn.fused_conv"]
    model = ncc.compile(module, cache=False)  # ncc.compile folds it, natively
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    model.params["var"] = np.full(6, 4.0, np.float32)  # the folded weight follows the statistics
    (want,) = ncc.reference.run(module, [x], params={k: np.asarray(v) for k, v in model.params.items()})
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)


def test_fold_batch_norm_after_a_matmul():
    """BatchNorm1d after a Linear (the lit case, with random parameters): the
    folded module in the reference and natively, equal to the batch norm's."""
    from pathlib import Path

    from ncc.passes.fold_batch_norm import fold_batch_norm

    text = (Path(__file__).parents[1] / "lit" / "passes" / "fold-batch-norm" / "matmul-bn.mlir").read_text()
    module = ncc.parse_module(text)
    rng = np.random.default_rng(9)
    for op in module.ops:
        if isinstance(op, nn.WeightOp):
            data = rng.standard_normal(nn.shape_of(op.type)).astype(np.float32)
            op.data = np.abs(data) + 0.5 if op.sym == "var" else data
    x = rng.standard_normal((5, 16)).astype(np.float32)
    (want,) = ncc.reference.run(module, [x], function="linear_bn")
    folded = module.clone()
    assert fold_batch_norm(folded) == 1  # the 3-D sequence_bn is left alone
    (got,) = ncc.reference.run(folded, [x], function="linear_bn")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ncc.compile(module, cache=False, function="linear_bn")(x), want, rtol=1e-4, atol=1e-4)


def test_fold_batch_norm_leaves_a_conv_with_another_user():
    from ncc.passes.fold_batch_norm import fold_batch_norm

    assert fold_batch_norm(_conv_bn(extra_use=True)) == 0
