"""A model's parameters are the file's: `params`, `trainable`, the keys of vjp
and the exported initializers have the ONNX initializers' names, shapes and
layouts, whatever layout the kernels read (a derived weight, recomputed when a
parameter is set). Gradients flow through ops on weights to each parameter."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.diagnostics import NccError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws the same numbers however the tests are selected."""
    global RNG
    RNG = np.random.default_rng(0)


def initializer_shapes(m: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in m.graph.initializer}


# ---------------------------------------------------------------------------
# Gemm, checked against numpy's closed form (no torch needed)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_parameters_keep_their_layout_and_get_their_gradients(trans_a, trans_b):
    a = RNG.standard_normal((5, 3) if trans_a else (3, 5)).astype(np.float32)
    b = RNG.standard_normal((4, 5) if trans_b else (5, 4)).astype(np.float32)
    c = RNG.standard_normal(4).astype(np.float32)
    alpha, beta = 0.5, 2.0
    node = helper.make_node("Gemm", ["x", "b", "c"], ["y"], transA=trans_a, transB=trans_b,
                            alpha=alpha, beta=beta)
    x_shape = [5, 3] if trans_a else [3, 5]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
                              [numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = ncc.compile(m, cache=False)
    assert {k: v.shape for k, v in model.params.items()} == initializer_shapes(m)
    x = a
    xa, bb = (x.T if trans_a else x), (b.T if trans_b else b)
    np.testing.assert_allclose(model(x), alpha * xa @ bb + beta * c, rtol=1e-5, atol=1e-5)
    dy = RNG.standard_normal((3, 4)).astype(np.float32)
    g = model.vjp({"x": x}, {"y": dy})
    dbb, dxa = alpha * xa.T @ dy, alpha * dy @ bb.T
    np.testing.assert_allclose(g["b"], dbb.T if trans_b else dbb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["x"], dxa.T if trans_a else dxa, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["c"], beta * dy.sum(0), rtol=1e-5, atol=1e-5)
    # a new value for the transposed parameter is seen by the next call
    b2 = RNG.standard_normal(b.shape).astype(np.float32)
    model.params["b"] = b2
    bb2 = b2.T if trans_b else b2
    np.testing.assert_allclose(model(x), alpha * xa @ bb2 + beta * c, rtol=1e-5, atol=1e-5)
    exported = model.export_onnx()
    assert initializer_shapes(exported) == initializer_shapes(m)
    np.testing.assert_array_equal(numpy_helper.to_array(
        next(t for t in exported.graph.initializer if t.name == "b")), b2)


def linear_trans_b():
    """(w, the compiled model of y = x w^T + 0.5): a Gemm with transB and a bias, as
    torch exports a Linear (the fused product reads w's transpose, a derived weight)."""
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(4, 0.5, np.float32), "b")])
    return w, ncc.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), cache=False)


def test_a_derived_parameter_is_set_by_assignment_only():
    """A parameter the kernel reads through a derived copy reads as a read-only
    view: an in-place write, which the copy would not see, is refused; a wrong
    shape is an error naming the parameter."""
    w, model = linear_trans_b()
    assert model.params["w"].shape == (4, 3)
    np.testing.assert_array_equal(model.params["w"], w)
    with pytest.raises(ValueError, match="read-only"):
        model.params["w"][0, 0] = 1.0
    with pytest.raises(NccError, match=r"cannot set parameter 'w' \(shape \[4, 3\].*got shape \[3, 4\]"):
        model.params["w"] = w.T
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    model.params["w"] = 2 * w
    np.testing.assert_allclose(model(x), x @ (2 * w).T + 0.5, rtol=1e-5)


def test_fold_weights_leaves_unset_parameters_unset():
    """A parameter without data (nn.weight without a value) folded into a derived
    weight: the model refuses to run until it is set, then computes the copy."""
    text = """
    nn.weight @w : tensor<4x3xf32>
    func.func @main(%x: tensor<?x3xf32>) -> tensor<?x4xf32> {
      %w = nn.weight_ref @w : tensor<4x3xf32>
      %t = nn.transpose %w perm [1, 0] : tensor<4x3xf32> -> tensor<3x4xf32>
      %y = nn.matmul %x, %t : tensor<?x3xf32>, tensor<3x4xf32> -> tensor<?x4xf32>
      func.return %y : tensor<?x4xf32>
    }
    """
    model = ncc.compile(text, cache=False)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    with pytest.raises(NccError, match="must be set before a call: w"):
        model(x)
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    model.params["w"] = w
    np.testing.assert_allclose(model(x), x @ w.T, rtol=1e-5)


def test_folds_sharing_a_value_are_computed_from_the_sources():
    """A weight-only value used by the kernel and also inside another fold (one
    value after CSE, as in light_inception_v2): each derived weight is computed
    from the model's parameters, never from another derived weight, and both
    follow a parameter set later."""
    from ncc.passes.fold_weights import DERIVED_FROM, fold_weights

    text = """
    nn.weight @w : tensor<4x4xf32> = dense<1.0>
    func.func @main(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
      %w = nn.weight_ref @w : tensor<4x4xf32>
      %two = nn.constant dense<2.0> : tensor<f32>
      %d = nn.mul %w, %two : tensor<4x4xf32>, tensor<f32> -> tensor<4x4xf32>
      %t = nn.transpose %d perm [1, 0] : tensor<4x4xf32> -> tensor<4x4xf32>
      %a = nn.matmul %x, %d : tensor<?x4xf32>, tensor<4x4xf32> -> tensor<?x4xf32>
      %y = nn.matmul %a, %t : tensor<?x4xf32>, tensor<4x4xf32> -> tensor<?x4xf32>
      func.return %y : tensor<?x4xf32>
    }
    """
    module = ncc.parse_module(text)
    fold_weights(module)
    derived = {op.sym: [s.root_reference.data for s in op.attributes[DERIVED_FROM].data]
               for op in module.ops if op.name == "nn.weight" and DERIVED_FROM in op.attributes}
    assert len(derived) == 2 and all(sources == ["w"] for sources in derived.values())
    model = ncc.compile(text, cache=False)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    w = RNG.standard_normal((4, 4)).astype(np.float32)
    model.params["w"] = w
    np.testing.assert_allclose(model(x), x @ (2 * w) @ (2 * w).T, rtol=1e-5)


def test_a_large_fold_of_literals_is_computed_once():
    """Ops on literals alone larger than LITERAL_LIMIT (a splat weight, transposed
    and scaled) become a derived weight of no sources: no op of theirs is left
    in the kernel, the data is computed when the model is made, and it is no
    parameter."""
    from ncc.passes.fold_weights import DERIVED_FROM, LITERAL_LIMIT, fold_weights

    n = 300
    assert n * n > LITERAL_LIMIT
    text = f"""
    func.func @main(%x: tensor<?x{n}xf32>) -> tensor<?x{n}xf32> {{
      %w = nn.constant dense<0.5> : tensor<{n}x{n}xf32>
      %s = nn.constant dense<3.0> : tensor<{n}xf32>
      %t = nn.transpose %w perm [1, 0] : tensor<{n}x{n}xf32> -> tensor<{n}x{n}xf32>
      %m = nn.mul %t, %s : tensor<{n}x{n}xf32>, tensor<{n}xf32> -> tensor<{n}x{n}xf32>
      %y = nn.matmul %x, %m : tensor<?x{n}xf32>, tensor<{n}x{n}xf32> -> tensor<?x{n}xf32>
      func.return %y : tensor<?x{n}xf32>
    }}
    """
    module = ncc.parse_module(text)
    fold_weights(module)
    (folded,) = [op for op in module.ops if op.name == "nn.weight"]
    assert folded.sym == "literal.mul" and folded.attributes[DERIVED_FROM].data == ()
    assert np.all(folded.data == 1.5)
    assert [op.name for op in module.walk() if op.name.startswith("nn.")] == \
        ["nn.weight", "nn.weight_ref", "nn.matmul"]
    model = ncc.compile(text, cache=False)
    x = RNG.standard_normal((2, n)).astype(np.float32)
    np.testing.assert_allclose(model(x), x @ np.full((n, n), 1.5, np.float32), rtol=1e-5)
    assert dict(model.params) == {}


def test_an_optimizer_step_recomputes_derived_weights():
    w, model = linear_trans_b()
    x = RNG.standard_normal((8, 3)).astype(np.float32)
    grads = model.grad(x, np.zeros((8, 4), np.float32), loss="mse")
    ncc.optim.SGD(model, lr=0.1).step(grads)
    stepped = w - 0.1 * grads["w"]
    np.testing.assert_allclose(model.params["w"], stepped, rtol=1e-6)
    stepped_b = 0.5 - 0.1 * grads["b"]
    np.testing.assert_allclose(model(x), x @ stepped.T + stepped_b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# PyTorch modules exported for training (do_constant_folding=False)

torch = pytest.importorskip("torch")


def export(module, *args, dynamic=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = io.BytesIO()
        torch.onnx.export(module, args, f, dynamo=False, do_constant_folding=False, opset_version=17,
                          input_names=[f"x{i}" for i in range(len(args))],
                          output_names=["y"],
                          dynamic_axes={f"x{i}": {0: "batch"} for i in range(len(args))} if dynamic else None)
    return onnx.load_from_string(f.getvalue())


class Quaternion(torch.nn.Module):
    """A quaternion linear layer: one 4n x 4n weight built from four n x n blocks
    (Concat and Neg of parameters), then a gain stored flat and reshaped."""

    def __init__(self, n: int = 4):
        super().__init__()
        self.qr, self.qi, self.qj, self.qk = (torch.nn.Parameter(torch.randn(n, n) * 0.3) for _ in range(4))
        self.gain = torch.nn.Parameter(torch.randn(4 * n))

    def forward(self, x):
        r, i, j, k = self.qr, self.qi, self.qj, self.qk
        w = torch.cat([torch.cat([r, -i, -j, -k], 1), torch.cat([i, r, -k, j], 1),
                       torch.cat([j, k, r, -i], 1), torch.cat([k, -j, i, r], 1)], 0)
        return (x @ w) * self.gain.reshape(1, -1)


class LowRank(torch.nn.Module):
    """A rank-8 factorised weight u @ v, then a Linear whose weight is used twice,
    once transposed by hand."""

    def __init__(self):
        super().__init__()
        self.u = torch.nn.Parameter(torch.randn(32, 8) * 0.2)
        self.v = torch.nn.Parameter(torch.randn(8, 24) * 0.2)
        self.fc = torch.nn.Linear(24, 24)

    def forward(self, x):
        h = x @ (self.u @ self.v)
        return self.fc(h) + h @ self.fc.weight.t()


def encoder():
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    with torch.no_grad():  # distinct values: the exporter shares initializers of equal values
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)


CASES = {
    "linear": (lambda: torch.nn.Linear(64, 12), (3, 64), True),
    "conv1d": (lambda: torch.nn.Conv1d(3, 5, 3), (2, 3, 10), True),
    "conv2d": (lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(),
                                           torch.nn.Conv2d(4, 3, 1)), (2, 2, 6, 6), True),
    "quaternion": (Quaternion, (3, 16), True),
    "rank8": (LowRank, (3, 32), True),
    "transformer-encoder": (encoder, (2, 5, 16), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_torch_parameters_by_name_with_autograd_gradients(case):
    make, shape, dynamic = CASES[case]
    torch.manual_seed(1)
    module = make().eval()
    x = torch.randn(*shape, requires_grad=True)
    m = export(module, x.detach(), dynamic=dynamic)
    model = ncc.compile(m, cache=False)
    torch_params = dict(module.named_parameters())
    assert {k: v.shape for k, v in model.params.items()} == initializer_shapes(m)
    assert {k: tuple(p.shape) for k, p in torch_params.items()} == initializer_shapes(m)
    assert sorted(model.trainable) == sorted(torch_params)

    y = module(x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    np.testing.assert_allclose(model(x.detach().numpy()), y.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = model.vjp({"x0": x.detach().numpy()}, {"y": dy.numpy()})
    for name, p in [*torch_params.items(), ("x0", x)]:
        ref = p.grad.numpy()
        assert g[name].shape == ref.shape, name
        err = np.abs(g[name] - ref).max() / max(np.abs(ref).max(), 1e-12)
        assert err < 1e-4, (name, err)

    # a state dict of the module assigns by name; the next call uses it
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(-0.5)
    for name, value in module.state_dict().items():  # torch tensors, as a state dict holds them
        model.params[name] = value
    np.testing.assert_allclose(model(x.detach().numpy()), module(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert initializer_shapes(model.export_onnx()) == initializer_shapes(m)
