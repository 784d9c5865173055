"""ncc.reference against independent formulations: naive loops, math-module formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp
from xdsl.ir import Block, Region

from ncc import reference
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import initial_value
from ncc.dialects.nn import element_type_of, tensor_type as T
from ncc.ir import parse_module, verify_module

rng = np.random.default_rng(0)


def run1(arrays, make, weights=(), **kw):
    """Build @main(arrays...) { make(emit, args...) } with the Python API, run it."""
    types = [T(a.shape, element_type_of(a.dtype)) for a in arrays]
    block = Block(arg_types=types)
    ops = []

    def emit(op):
        ops.append(op)
        return op.results[0]

    out = make(emit, *block.args)
    block.add_ops([*ops, func.ReturnOp(out)])
    m = ModuleOp([*weights, func.FuncOp("main", FunctionType.from_lists(types, [out.type]), Region(block))])
    verify_module(m)
    (y,) = reference.run(m, list(arrays), **kw)
    assert y.dtype == nn.numpy_dtype(out.type.element_type)
    return y


def randn(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# Elementwise


def _per_element(f):
    return lambda z: np.array([f(float(v)) for v in z.reshape(-1)]).reshape(z.shape)


INDEPENDENT_UNARY = {
    "identity": lambda z: z,
    "relu": _per_element(lambda v: v if v > 0 else 0.0),
    "sigmoid": _per_element(lambda v: 1 / (1 + math.exp(-v))),
    "tanh": _per_element(lambda v: (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1)),
    "leaky_relu": _per_element(lambda v: v if v > 0 else 0.01 * v),
    "elu": _per_element(lambda v: v if v > 0 else math.exp(v) - 1),
    "softplus": _per_element(lambda v: math.log(1 + math.exp(v))),
    "silu": _per_element(lambda v: v / (1 + math.exp(-v))),
    "sin": _per_element(math.sin),
    "gaussian": _per_element(lambda v: math.exp(-v * v)),
    "abs": _per_element(lambda v: -v if v < 0 else v),
    "step": _per_element(lambda v: 1.0 if v > 0 else 0.0),
    "relu6": _per_element(lambda v: 0.0 if v < 0 else 6.0 if v > 6 else v),
    "gelu": _per_element(lambda v: v * (1 + math.erf(v / math.sqrt(2))) / 2),
    "gelu_tanh": _per_element(lambda v: v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) / 2),
    "exp": _per_element(math.exp),
    "log": _per_element(lambda v: math.log(abs(v))),
    "neg": _per_element(lambda v: -v),
    "sqrt": _per_element(lambda v: math.sqrt(abs(v))),
    "reciprocal": _per_element(lambda v: 1 / v),
    "erf": _per_element(math.erf),
    "floor": _per_element(math.floor),
    "ceil": _per_element(math.ceil),
    "cos": _per_element(math.cos),
    "acos": _per_element(math.acos), "asin": _per_element(math.asin),
    "atan": _per_element(math.atan), "sinh": _per_element(math.sinh),
    "cosh": _per_element(math.cosh), "asinh": _per_element(math.asinh),
    "acosh": _per_element(math.acosh), "atanh": _per_element(math.atanh),
    "round": _per_element(round),  # Python rounds half to even, as ONNX Round
    "sign": _per_element(lambda v: 0.0 if v == 0 else math.copysign(1.0, v)),
}


# ---------------------------------------------------------------------------
# Contractions


# ---------------------------------------------------------------------------
# Pools


# ---------------------------------------------------------------------------
# Reductions, softmax, norms


# ---------------------------------------------------------------------------
# Data movement


# ---------------------------------------------------------------------------
# Weights, params, inputs, function choice

WEIGHTED = """
nn.weight @w : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]>
nn.weight @b : tensor<2xf32>
nn.weight @e : tensor<2xf32> = dense_resource<__elided__>
func.func @main(%x: tensor<?x3xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %b = nn.weight_ref @b : tensor<2xf32>
  %y = nn.fused_matmul %x, %w, %b activation relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return %y : tensor<?x2xf32>
}
func.func @uses_elided(%x: tensor<2xf32>) -> tensor<2xf32> {
  %e = nn.weight_ref @e : tensor<2xf32>
  %y = nn.add %x, %e : tensor<2xf32>
  func.return %y : tensor<2xf32>
}
func.func @caller(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %y = func.call @main(%x) : (tensor<?x3xf32>) -> tensor<?x2xf32>
  %z = nn.neg %y : tensor<?x2xf32>
  func.return %z : tensor<?x2xf32>
}
"""


def test_weights_params_and_named_inputs():
    m = parse_module(WEIGHTED)
    x = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
    w = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([0.5, -30.0], np.float32)
    (y,) = reference.run(m, {"input": x}, params={"b": b})
    np.testing.assert_allclose(y, np.maximum(x @ w + b, 0))
    (y2,) = reference.run(m, [x], params={"b": b, "w": np.ones((3, 2))})   # params override data
    np.testing.assert_allclose(y2, np.maximum(x @ np.ones((3, 2)) + b, 0), rtol=1e-6)
    (y3,) = reference.run(m, [x[:1]], function="caller", params={"b": b})
    np.testing.assert_allclose(y3, -y[:1])


def test_weight_and_input_errors():
    m = parse_module(WEIGHTED)
    x = np.zeros((2, 3), np.float32)
    cases = [
        (dict(inputs=[x]), r"weight @b is a parameter without data: pass params=\{'b': array\}"),
        (dict(inputs=[np.zeros(2)], function="uses_elided"),
         r"weight @e has no data: it was elided when printed \(dense_resource<__elided__>\); pass it in params"),
        (dict(inputs=[x], params={"c": 1}), r"params name no weight of the module: c \(weights: b, e, w\)"),
        (dict(inputs=[x], params={"b": np.zeros(3)}), r"params\['b'\] has shape \[3\], expected \[2\]"),
        (dict(inputs=[x, x]), r"@main takes 1 inputs \(input\), got 2"),
        (dict(inputs={"x": x}), "@main takes inputs input; missing: input; unknown: x"),
        (dict(inputs=[np.zeros((2, 4))]), r"input 'input' has shape \[2, 4\], expected \[\?, 3\] \(tensor<\?x3xf32>\)"),
        (dict(inputs=[np.zeros(3)]), r"input 'input' has shape \[3\], expected \[\?, 3\]"),
        (dict(inputs=[x], function="nope"), "no function 'nope' in the module \\(has: main, uses_elided, caller\\)"),
    ]
    for kw, msg in cases:
        inputs = kw.pop("inputs")
        with pytest.raises(NccError, match=msg):
            reference.run(m, inputs, **kw)


def test_dtype_and_function_choice():
    m = parse_module("""
      func.func @f(%i: tensor<2xi64>) -> tensor<2xi64> {
        func.return %i : tensor<2xi64>
      }
      func.func @g(%x: tensor<2xf64>) -> tensor<2xf64> {
        %y = nn.neg %x : tensor<2xf64>
        func.return %y : tensor<2xf64>
      }""")
    with pytest.raises(NccError, match=r"the module has 2 functions \(f, g\): pass function=NAME"):
        reference.run(m, [np.zeros(2)])
    with pytest.raises(NccError, match=r"input 'i' has dtype float64, expected i64"):
        reference.run(m, [np.zeros(2)], function="f")
    (y,) = reference.run(m, np.array([1, 2], np.int32), function="g")  # ints widen to floats
    assert y.dtype == np.float64 and y.tolist() == [-1.0, -2.0]
    f = next(iter(m.ops))
    assert reference.run(f, {"i": [3, 4]})[0].tolist() == [3, 4]  # a func.func runs directly


def test_result_shape_is_checked_against_the_type():
    m = parse_module("""
      func.func @main(%x: tensor<2xf32>) -> tensor<3xf32> {
        %y = nn.exp %x : tensor<2xf32> -> tensor<3xf32>
        func.return %y : tensor<3xf32>
      }""", verify=False)
    with pytest.raises(NccError, match=r"3:9: error: nn.exp computed shape \[2\], but its result type is tensor<3xf32>"):
        reference.run(m, [np.zeros(2, np.float32)])


# ---------------------------------------------------------------------------
# Neuron nets

NET = """
neuron.net @net -> (n03, n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @w0002 = 0.5, n01 * @w0102 = -1.0) + @b02 = 0.1
  neuron.neuron n03 relu(n00 * @w0003 = 1.0, n02 * @w0203 = 2.0)
}
"""


def test_neuron_net_by_hand():
    m = parse_module(NET)
    x = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0]])
    (y,) = reference.run(m, [x])
    for row, (a, b) in zip(y, x):
        n2 = math.tanh(0.5 * a - 1.0 * b + 0.1)
        n3 = max(0.0, 1.0 * a + 2.0 * n2)
        assert row.tolist() == pytest.approx([n3, n2], rel=1e-15)
    # params override a weight and the bias by symbol name
    (y2,) = reference.run(m, x, params={"w0002": 0.0, "b02": -2.0})
    n2 = np.tanh(-1.0 * x[:, 1] - 2.0)
    np.testing.assert_allclose(y2[:, 1], n2)
    np.testing.assert_allclose(y2[:, 0], np.maximum(x[:, 0] + 2 * n2, 0))


def test_neuron_net_seeded_weights():
    m = parse_module("""
      neuron.net @n -> (n02) {
        neuron.input n00
        neuron.input n01
        neuron.neuron n02 sigmoid(n00 * @w0002, n01 * @w0102) + @b02
      }""")
    net = next(iter(m.ops))
    x = rng.standard_normal((4, 2))
    for seed in (0, 3):
        (y,) = reference.run(net, [x], seed=seed)
        z = initial_value("w0002", seed) * x[:, 0] + initial_value("w0102", seed) * x[:, 1]
        np.testing.assert_allclose(y[:, 0], 1 / (1 + np.exp(-z)), rtol=1e-14)


def test_neuron_net_errors():
    m = parse_module(NET)
    with pytest.raises(NccError, match=r"neuron net @net takes an input of shape \[batch, 2\], got \[3\]"):
        reference.run(m, [np.zeros(3)])
    with pytest.raises(NccError, match=r"takes one input array \[batch, n_inputs\], got 2"):
        reference.run(m, [np.zeros((1, 2))] * 2)
    with pytest.raises(NccError, match="params name no weight or bias of net @net: w9999"):
        reference.run(m, [np.zeros((1, 2))], params={"w9999": 1.0})
    with pytest.raises(NccError, match=r"params\['b02'\] must be a scalar"):
        reference.run(m, [np.zeros((1, 2))], params={"b02": [1.0, 2.0]})


def test_mlp_with_dynamic_batch_and_a_parameter_weight():
    m = parse_module(open(__file__.replace("test_reference.py", "lit/nn/mlp-dynamic-batch.mlir")).read())
    w1 = np.array([[0.25, -0.5, 1.0], [0.125, 0.0, -1.0], [2.0, 0.5, 0.75], [-0.25, 1.5, 0.0]], np.float32)
    b1 = np.array([0.1, 0.2, 0.3], np.float32)
    w2 = randn(3, 2, dtype=np.float32)
    for batch in (1, 7):
        x = randn(batch, 2, 2, dtype=np.float32)
        (p,) = reference.run(m, {"input": x}, function="main", params={"fc2_w": w2})
        o = np.tanh(np.maximum(x.reshape(batch, 4) @ w1 + b1, 0) @ w2)
        ref = np.exp(o) / np.exp(o).sum(-1, keepdims=True)
        np.testing.assert_allclose(p, ref, rtol=1e-5)
        assert p.shape == (batch, 2) and p.dtype == np.float32
