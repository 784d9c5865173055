"""autodiff: every VJP rule against central finite differences (float64) and
torch.func.vjp, through the reference interpreter and natively; the split
forward/backward against the combined form; activity (frozen weights, unused
inputs) and errors."""

from __future__ import annotations

import numpy as np
import pytest

import ncc
from ncc.dialects import nn
from ncc.passes.autodiff import differentiate
from vjp_check import RNG, torch


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
