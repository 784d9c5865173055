"""autodiff: every VJP rule against central finite differences (float64) and
torch.func.vjp, through the reference interpreter and natively; the split
forward/backward against the combined form; activity (frozen weights, unused
inputs) and errors."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f64
from xdsl.ir import Block, Region

import ncc
from ncc.dialects import nn
from ncc.passes.autodiff import differentiate
from vjp_check import RNG, check_rule, rand, torch, vjp_reference


# name -> (torch function, input domain)
UNARY_CASES = {
    "identity": (lambda x: x, None), "neg": (torch and torch.neg, None), "exp": (torch and torch.exp, None),
    "log": (torch and torch.log, (0.2, 3)), "sqrt": (torch and torch.sqrt, (0.2, 3)),
    "reciprocal": (torch and torch.reciprocal, (0.3, 3)), "relu": (torch and torch.relu, None),
    "sigmoid": (torch and torch.sigmoid, None), "tanh": (torch and torch.tanh, None),
    "leaky_relu": (torch and (lambda x: torch.nn.functional.leaky_relu(x, 0.01)), None),
    "elu": (torch and torch.nn.functional.elu, None), "softplus": (torch and torch.nn.functional.softplus, None),
    "silu": (torch and torch.nn.functional.silu, None), "sin": (torch and torch.sin, None),
    "cos": (torch and torch.cos, None), "gaussian": (torch and (lambda x: torch.exp(-x * x)), None),
    "abs": (torch and torch.abs, None), "erf": (torch and torch.erf, None),
    "sinh": (torch and torch.sinh, None), "cosh": (torch and torch.cosh, None),
    "asin": (torch and torch.asin, (-0.8, 0.8)), "acos": (torch and torch.acos, (-0.8, 0.8)),
    "atan": (torch and torch.atan, None), "asinh": (torch and torch.asinh, None),
    "acosh": (torch and torch.acosh, (1.2, 3)), "atanh": (torch and torch.atanh, (-0.8, 0.8)),
    "floor": (torch and torch.floor, None), "ceil": (torch and torch.ceil, None),
    "round": (torch and torch.round, None), "sign": (torch and torch.sign, None),
    "step": (torch and (lambda x: (x > 0).to(x.dtype)), None),
}


def test_every_unary_op_has_a_case():
    assert set(UNARY_CASES) == set(nn.UNARY_OPS)


@pytest.mark.parametrize("name", sorted(UNARY_CASES))
def test_unary_vjp(name):
    fn, domain = UNARY_CASES[name]
    x = rand(3, 4, *(() if domain is None else ()), low=(domain or (-2, 2))[0], high=(domain or (-2, 2))[1])
    x[np.abs(x - np.round(x)) < 0.05] += 0.1  # away from floor/round/step kinks
    x[np.abs(x) < 0.05] += 0.1
    check_rule(lambda a: nn.UNARY_OPS[name](a), [x], torch_fn=fn)


BINARY_TORCH = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "max": lambda a, b: torch.maximum(a, b),
    "min": lambda a, b: torch.minimum(a, b), "pow": lambda a, b: torch.pow(a, b),
    "mod": lambda a, b: torch.remainder(a, b), "fmod": lambda a, b: torch.fmod(a, b),
}


@pytest.mark.parametrize("name", sorted(BINARY_TORCH))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((4,), ())])
def test_binary_vjp_with_broadcasting(name, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if name in ("div", "mod", "fmod"):
        b = np.asarray(np.sign(b) * (np.abs(b) + 0.5))
    if name == "pow":
        a = np.asarray(np.abs(a) + 0.5)
    if name in ("mod", "fmod"):  # away from the jumps of the remainder
        r = np.fmod(a, np.broadcast_to(b, np.broadcast(a, b).shape)) / np.abs(
            np.broadcast_to(b, np.broadcast(a, b).shape))
        a = a + 0.3 * (np.abs(r) < 0.05) * np.abs(np.broadcast_to(b, np.broadcast(a, b).shape)).min()
    check_rule(lambda x, y: nn.BINARY_OPS[name](x, y), [a, b],
               torch_fn=BINARY_TORCH[name] if torch else None)


def test_max_min_share_ties_like_torch():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 0.0, 4.0]])
    check_rule(lambda x, y: nn.BINARY_OPS["max"](x, y), [a, b],
               torch_fn=torch and (lambda x, y: torch.maximum(x, y)))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                   ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul_vjp(sa, sb):
    check_rule(lambda a, b: nn.MatmulOp(a, b), [rand(*sa), rand(*sb)],
               torch_fn=torch and torch.matmul)


def test_matmul_transpose_a_vjp():
    check_rule(lambda a, b: nn.MatmulTransposeAOp(a, b), [rand(5, 3), rand(5, 4)],
               torch_fn=torch and (lambda a, b: a.T @ b))


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "sigmoid", "silu", "gaussian"])
def test_fused_matmul_vjp(act):
    check_rule(lambda x, w, b: nn.FusedMatmulOp(x, w, b, activation=act), [rand(3, 4), rand(4, 5), rand(5)])


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


@pytest.mark.parametrize("cls,tf", [(nn.SoftmaxOp, "softmax"), (nn.LogSoftmaxOp, "log_softmax")])
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_vjp(cls, tf, axis):
    check_rule(lambda x: cls(x, axis=axis), [rand(2, 3, 4)],
               torch_fn=torch and (lambda x: getattr(torch.nn.functional, tf)(x, dim=axis)))


def test_shape_op_vjps():
    x = rand(2, 3, 4)
    check_rule(lambda a: nn.ReshapeOp(a, [6, 4]), [x], torch_fn=torch and (lambda a: a.reshape(6, 4)))
    check_rule(lambda a: nn.TransposeOp(a, [2, 0, 1]), [x], torch_fn=torch and (lambda a: a.permute(2, 0, 1)))
    check_rule(lambda a: nn.BroadcastOp(a, TensorType(f64, [5, 2, 3, 4])), [x],
               torch_fn=torch and (lambda a: a.expand(5, 2, 3, 4)))
    check_rule(lambda a, b: nn.ConcatOp([a, b], axis=1), [x, rand(2, 2, 4)],
               torch_fn=torch and (lambda a, b: torch.cat([a, b], dim=1)))


def test_select_vjp():
    from xdsl.dialects.builtin import i1

    types = [TensorType(i1, [3, 4]), TensorType(f64, [3, 4]), TensorType(f64, [4])]
    block = Block(arg_types=types)
    op = nn.SelectOp(*block.args)
    block.add_ops([op, func.ReturnOp(op.result)])
    m = ModuleOp([func.FuncOp("f", (types, [op.result.type]), Region([block]))])
    c = RNG.random((3, 4)) > 0.5
    a, b = rand(3, 4), rand(4)
    cot = rand(3, 4)
    ga, gb = vjp_reference(m, [c, a, b], cot)
    np.testing.assert_allclose(ga, np.where(c, cot, 0))
    np.testing.assert_allclose(gb, np.where(c, 0, cot).sum(0))


MLP = """
nn.weight @fc1_w : tensor<4x3xf32> = dense<[[0.25, -0.5, 1.0], [0.125, 0.0, -1.0], [2.0, 0.5, 0.75], [-0.25, 1.5, 0.0]]>
nn.weight @fc1_b : tensor<3xf32> = dense<[0.1, 0.2, 0.3]>
nn.weight @fc2_w : tensor<3x2xf32> = dense<[[0.5, 1.0], [-1.0, 0.25], [0.75, -0.5]]>
func.func @main(%x: tensor<?x4xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
  %w1 = nn.weight_ref @fc1_w : tensor<4x3xf32>
  %b1 = nn.weight_ref @fc1_b : tensor<3xf32>
  %h = nn.matmul %x, %w1 : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %hb = nn.add %h, %b1 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %a = nn.relu %hb : tensor<?x3xf32>
  %w2 = nn.weight_ref @fc2_w : tensor<3x2xf32>
  %o = nn.matmul %a, %w2 : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %p = nn.softmax %o : tensor<?x2xf32>
  func.return %p : tensor<?x2xf32>
}
"""


def test_split_equals_combined_and_saves_only_what_backward_reads():
    m = ncc.parse_module(MLP)
    fwd, bwd = differentiate(m, "main", mode="split")
    (vjp,) = differentiate(m, "main", mode="combined")
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    cot = RNG.standard_normal((5, 2)).astype(np.float32)
    y, *saved = ncc.reference.run(m, [x], function="main_forward")
    grads = ncc.reference.run(m, [*saved, cot], function="main_backward")
    combined = ncc.reference.run(m, [x, cot], function="main_vjp")
    np.testing.assert_allclose(combined[0], y)
    for a, b in zip(grads, combined[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # softmax output, relu output, the input: what the rules read (the hidden
    # pre-activation and the logits are not saved)
    assert [s.shape[1] for s in saved] == [2, 3, 4]
    names = [a.data["ncc.name"].data for a in bwd.res_attrs.data]
    assert names == ["grad:fc1_w", "grad:fc1_b", "grad:fc2_w", "grad:input"]


def test_mlp_gradients_natively_match_reference_and_torch():
    m = ncc.parse_module(MLP)
    differentiate(m, "main", mode="combined")
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    cot = RNG.standard_normal((6, 2)).astype(np.float32)
    ref = ncc.reference.run(m, [x, cot], function="main_vjp")
    got = ncc.compile(m, function="main_vjp", cache=False).run({"input": x, "cotangent:0": cot})
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if torch is None:
        return
    w = {op.sym: torch.tensor(np.array(op.data), requires_grad=True) for op in m.ops if isinstance(op, nn.WeightOp)}
    tx = torch.tensor(x, requires_grad=True)
    p = torch.softmax(torch.relu(tx @ w["fc1_w"] + w["fc1_b"]) @ w["fc2_w"], -1)
    p.backward(torch.tensor(cot))
    for a, t in zip(got[1:], [w["fc1_w"], w["fc1_b"], w["fc2_w"], tx]):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_frozen_weights_get_no_gradient_and_their_branch_is_not_differentiated():
    m = ncc.parse_module(MLP)
    fwd, bwd = differentiate(m, "main", mode="split", frozen=["fc1_w", "fc1_b"], inputs=False)
    names = [a.data["ncc.name"].data for a in bwd.res_attrs.data]
    assert names == ["grad:fc2_w"]
    ops = {op.name for op in bwd.body.block.ops}
    assert "nn.matmul" not in ops and "nn.select" not in ops  # nothing below fc2 is differentiated
    assert len(fwd.function_type.outputs.data) == 3  # y, the softmax output, the relu output


def test_unused_input_gets_zero_gradient():
    text = """
func.func @f(%x: tensor<3xf32>, %u: tensor<2xf32>) -> tensor<3xf32> {
  %y = nn.exp %x : tensor<3xf32>
  func.return %y : tensor<3xf32>
}"""
    m = ncc.parse_module(text)
    differentiate(m, "f")
    gx, gu = ncc.reference.run(m, [np.zeros(3, np.float32), np.ones(2, np.float32), np.ones(3, np.float32)],
                               function="f_vjp")[1:]
    np.testing.assert_allclose(gx, 1.0)
    np.testing.assert_array_equal(gu, 0.0)


def test_weight_the_function_does_not_use_gets_zero_gradient():
    m = ncc.parse_module("""
nn.weight @a : tensor<3xf32> = dense<[1.0, 2.0, 3.0]>
nn.weight @b : tensor<2xf32> = dense<[0.5, -0.5]>
func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
  %w = nn.weight_ref @a : tensor<3xf32>
  %y = nn.mul %x, %w : tensor<3xf32>
  func.return %y : tensor<3xf32>
}""")
    fwd, bwd = differentiate(m, "f", mode="split")
    names = [a.data["ncc.name"].data for a in bwd.res_attrs.data]
    assert names == ["grad:a", "grad:b", "grad:arg0"]
    x, cot = np.array([1.0, -2.0, 4.0], np.float32), np.array([0.5, 1.0, -1.0], np.float32)
    _, *saved = ncc.reference.run(m, [x], function="f_forward")
    ga, gb, gx = ncc.reference.run(m, [*saved, cot], function="f_backward")
    np.testing.assert_allclose(ga, cot * x)
    np.testing.assert_array_equal(gb, 0.0)
    np.testing.assert_allclose(gx, cot * np.array([1.0, 2.0, 3.0]))


def test_op_without_rule_is_an_error_naming_it():
    # a scatter that keeps the maximum has no derivative rule (see test_autodiff_rules.py)
    m = ncc.parse_module("""func.func @f(%x: tensor<4xf32>, %i: tensor<2xi64>, %u: tensor<2xf32>) -> tensor<4xf32> {
  %y = nn.exp %x : tensor<4xf32>
  %z = nn.scatter_elements %y, %i, %u reduction max : tensor<4xf32>, tensor<2xi64>, tensor<2xf32> -> tensor<4xf32>
  func.return %z : tensor<4xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:3:\d+: error: cannot differentiate 'nn.scatter_elements'"):
        differentiate(m, "f")


def test_op_type_missing_from_the_rule_table_is_an_error_naming_it(monkeypatch):
    from ncc.passes import autodiff

    monkeypatch.delitem(autodiff.VJP, nn.UNARY_OPS["exp"])
    m = ncc.parse_module("""func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  %y = nn.exp %x : tensor<4xf32>
  func.return %y : tensor<4xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.exp': it has no "
                                           r"derivative rule"):
        differentiate(m, "f")


def test_bad_options_are_errors():
    m = ncc.parse_module(MLP)
    with pytest.raises(ncc.NccError, match="frozen names no weight of the module: nope"):
        differentiate(m, "main", frozen=["nope"])
    with pytest.raises(ncc.NccError, match="no input named y"):
        differentiate(m, "main", inputs=["y"])
    with pytest.raises(ncc.NccError, match="no function 'other'"):
        differentiate(m, "other")
