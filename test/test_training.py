"""Training a compiled model: model.vjp / grad / value_and_grad against
central finite differences (float64) and PyTorch autograd (skipped without
torch), whole ONNX models exported from PyTorch, freezing, memory, export of
trained params, ncc.train and a real run on scikit-learn's digits."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ncc

try:
    import torch
except ImportError:  # the torch checks skip; finite differences always run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
MLP = """
nn.weight @w1 : tensor<4x5x{t}> = dense<{w1}>
nn.weight @b1 : tensor<5x{t}> = dense<{b1}>
nn.weight @w2 : tensor<5x3x{t}> = dense<{w2}>
func.func @f(%x: tensor<?x4x{t}> {{ncc.name = "x"}}) -> (tensor<?x3x{t}> {{ncc.name = "y"}}) {{
  %w = nn.weight_ref @w1 : tensor<4x5x{t}>
  %b = nn.weight_ref @b1 : tensor<5x{t}>
  %v = nn.weight_ref @w2 : tensor<5x3x{t}>
  %c = nn.constant dense<0.5> : tensor<{t}>
  %0 = nn.matmul %x, %w : tensor<?x4x{t}>, tensor<4x5x{t}> -> tensor<?x5x{t}>
  %1 = nn.add %0, %b : tensor<?x5x{t}>, tensor<5x{t}> -> tensor<?x5x{t}>
  %2 = nn.tanh %1 : tensor<?x5x{t}>
  %3 = nn.mul %2, %c : tensor<?x5x{t}>, tensor<{t}> -> tensor<?x5x{t}>
  %4 = nn.matmul %3, %v : tensor<?x5x{t}>, tensor<5x3x{t}> -> tensor<?x3x{t}>
  func.return %4 : tensor<?x3x{t}>
}}
"""


def _lit(a):
    return np.array2string(np.asarray(a), separator=",", floatmode="unique",
                           threshold=10**6).replace("\n", "")


def mlp_text(t="f64", seed=0):
    rng = np.random.default_rng(seed)
    return MLP.format(t=t, w1=_lit(rng.uniform(-1, 1, (4, 5))), b1=_lit(rng.uniform(-1, 1, 5)),
                      w2=_lit(rng.uniform(-1, 1, (5, 3))))


def fd_vjp(model, x, dy, eps=1e-6):
    """Central finite differences of sum(dy * model(x)), in float64, through
    the forward kernel: the parameters perturbed in place, the input too."""
    f = lambda: float(np.sum(dy * model(x)))  # noqa: E731

    def central(a):
        g = np.zeros(a.shape)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            hi = f()
            a[i] = old - eps
            lo = f()
            a[i] = old
            g[i] = (hi - lo) / (2 * eps)
        return g

    out = {name: central(model.params[name]) for name in model.trainable}
    out["x"] = central(x)
    return out


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ---------------------------------------------------------------------------
# vjp


def test_vjp_matches_finite_differences():
    model = ncc.compile(mlp_text("f64"))
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 3))
    grads = model.vjp({"x": x}, {"y": dy})
    assert set(grads) == {"w1", "b1", "w2", "x"}  # the constant is not a parameter
    ref = fd_vjp(model, x.copy(), dy)
    for k in grads:
        assert grads[k].shape == ref[k].shape
        assert rel_err(grads[k], ref[k]) < 1e-8, k


def test_grad_losses_match_finite_differences():
    model = ncc.compile(mlp_text("f64"))
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((4, 4)), rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])

    def mse():
        return float(np.mean((model(x) - t) ** 2))

    def ce():
        y = model(x)
        z = y - y.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-np.mean(logp[np.arange(4), labels]))

    for loss, target, f in (("mse", t, mse), ("cross_entropy", labels, ce)):
        value, grads = model.value_and_grad(x, target, loss=loss)
        assert value == pytest.approx(f(), rel=1e-12)
        for name in model.trainable:
            p = model.params[name]
            fd = np.zeros(p.shape)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + 1e-6
                hi = f()
                p[i] = old - 1e-6
                lo = f()
                p[i] = old
                fd[i] = (hi - lo) / 2e-6
            assert rel_err(grads[name], fd) < 1e-7, (loss, name)
        assert grads["x"].shape == x.shape


@needs_torch
def test_grad_and_vjp_match_torch_autograd():
    model = ncc.compile(mlp_text("f32"))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 6)
    tp = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in model.params.items()
          if k in model.trainable}
    tx = torch.tensor(x, requires_grad=True)
    y = (torch.tanh(tx @ tp["w1"] + tp["b1"]) * 0.5) @ tp["w2"]
    tl = torch.nn.functional.cross_entropy(y, torch.from_numpy(labels))
    tl.backward()
    value, grads = model.value_and_grad({"x": x}, labels, loss="cross_entropy")
    assert value == pytest.approx(tl.item(), rel=1e-5)
    for k, p in tp.items():
        assert rel_err(grads[k], p.grad.numpy()) < 1e-5, k
    assert rel_err(grads["x"], tx.grad.numpy()) < 1e-5
    # a user-given cotangent is a vjp; value_and_grad then returns the outputs
    dy = rng.standard_normal((6, 3)).astype(np.float32)
    outs, g2 = model.value_and_grad(x, cotangents={"y": dy})
    np.testing.assert_allclose(outs["y"], model(x), rtol=1e-6)
    _, pull = torch.func.vjp(lambda w1: (torch.tanh(torch.from_numpy(x) @ w1 + tp["b1"]) * 0.5)
                             @ tp["w2"], tp["w1"].detach())
    assert rel_err(g2["w1"], pull(torch.from_numpy(dy))[0].detach().numpy()) < 1e-5


def test_vjp_of_a_model_named_only_in_its_ir():
    """Inputs and outputs named by the IR (%x, %y) and not by `ncc.name`: vjp and
    grad take and give them by those names, as calls do."""
    from ncc.ir import parse_module

    m = parse_module("""
    func.func @main(%x: tensor<?x3xf32>, %t: tensor<?x3xf32>) -> tensor<?x3xf32> {
      %y = nn.mul %x, %t : tensor<?x3xf32>
      func.return %y : tensor<?x3xf32>
    }""")
    model = ncc.compile(m, cache=False)
    x, t = np.ones((2, 3), np.float32), np.full((2, 3), 3.0, np.float32)
    assert model.input_names == ("x", "t") and model.output_names == ("y",)
    grads = model.vjp({"x": x, "t": t}, {"y": np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(grads["x"], t)
    np.testing.assert_array_equal(grads["t"], x)


def test_vjp_reads_the_model_weight_buffers():
    model = ncc.compile(mlp_text("f64"))
    x, dy = np.ones((2, 4)), np.ones((2, 3))
    g0 = model.vjp(x, dy)["w1"]
    model.params["w2"] = model.params["w2"] * 2  # the vjp kernel sees the change
    g1 = model.vjp(x, dy)["w1"]
    np.testing.assert_allclose(g1, 2 * g0, rtol=1e-12)
    k = model.training.vjp_kernel(frozenset())
    assert k.template[k.abi.roles.index(ncc.passes.lowering.abi.ArgRole("weight", "w1"))] is model.params["w1"]


def test_freezing_skips_the_gradients():
    model = ncc.compile(mlp_text("f64"))
    x, dy = np.ones((2, 4)), np.ones((2, 3))
    grads = model.vjp(x, dy, frozen=["w1", "b1"])
    assert set(grads) == {"w2", "x"}
    roles = [str(r) for r in model.training.vjp_kernel(frozenset({"w1", "b1"})).abi.roles]
    assert "output:grad:w2" in roles and "output:grad:w1" not in roles  # not computed at all
    np.testing.assert_allclose(grads["w2"], model.vjp(x, dy)["w2"])
    g = model.grad(x, np.zeros((2, 3)), frozen=["w2"], wrt="params")
    assert set(g) == {"w1", "b1"}


def test_bad_inputs_are_errors():
    model = ncc.compile(mlp_text("f32"))
    x, dy = np.ones((2, 4), np.float32), np.ones((2, 3), np.float32)
    cases = [
        (lambda: model.vjp({"x": x}, {"z": dy}), r"unknown cotangent 'z' \(the model's outputs: y\)"),
        (lambda: model.vjp({"x": x}, {}), "missing cotangent for output"),
        (lambda: model.vjp({}, {"y": dy}), "missing: x"),
        (lambda: model.vjp({"x": x, "q": x}, {"y": dy}), "unknown: q"),
        (lambda: model.vjp(x, np.ones((2, 4), np.float32)),
         r"cotangent 'y' has shape \[2, 4\], expected \[batch, 3\]"),
        (lambda: model.vjp(x, np.ones((3, 3), np.float32)), "disagree on the batch size"),
        (lambda: model.vjp(x, [[1.0]]), "cotangent 'y' must be a numpy array"),
        (lambda: model.vjp(x, dy, frozen=["nope"]), "frozen: no parameter 'nope'"),
        (lambda: model.grad(x, dy, loss="hinge"), "unknown loss 'hinge'"),
        (lambda: model.grad(x, loss="mse"), "the mse loss needs targets"),
        (lambda: model.grad(x, np.ones((2, 2), np.float32)),
         r"the targets of 'y' has shape \[2, 2\]|the targets of 'y' have shape"),
        (lambda: model.grad(x, np.array([0, 3]), loss="cross_entropy"), "label 3 .* out of range"),
        (lambda: model.grad(x, np.array([0.0, 1.0]), loss="cross_entropy"), "must be integers"),
        (lambda: model.grad(x, dy, output="z"), "no output named 'z'"),
        (lambda: model.grad(x, dy, wrt="weights"), "wrt must be"),
        (lambda: model.grad(x, dy, cotangents={"y": dy}), "not both"),
    ]
    for call, message in cases:
        with pytest.raises(ncc.NccError, match=message):
            call()


def test_not_trainable_weights():
    """ncc.constant weights and batch-norm statistics get no gradient."""
    text = """
    nn.weight @scale : tensor<2xf32> = dense<[1.5, 0.5]>
    nn.weight @shift : tensor<2xf32> = dense<[0.1, -0.1]>
    nn.weight @mean : tensor<2xf32> = dense<[0.2, 0.3]>
    nn.weight @var : tensor<2xf32> = dense<[1.2, 0.7]>
    nn.weight @k attributes {ncc.constant} : tensor<2xf32> = dense<[2.0, 3.0]>
    func.func @f(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
      %s = nn.weight_ref @scale : tensor<2xf32>
      %b = nn.weight_ref @shift : tensor<2xf32>
      %m = nn.weight_ref @mean : tensor<2xf32>
      %v = nn.weight_ref @var : tensor<2xf32>
      %k = nn.weight_ref @k : tensor<2xf32>
      %0 = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32> -> tensor<?x2xf32>
      %1 = nn.mul %0, %k : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
      func.return %1 : tensor<?x2xf32>
    }
    """
    model = ncc.compile(text)
    assert model.trainable == ["scale", "shift"]
    assert model.training.non_trainable == {"mean": "batch-norm statistics",
                                             "var": "batch-norm statistics", "k": "constant"}


# ---------------------------------------------------------------------------
# Whole models exported from PyTorch


def _export(net, x, **kw):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), f, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE, **kw)
    return onnx.load_from_string(f.getvalue())


def _compare_with_torch(net, x, tol=1e-4):
    """Gradients of sum(dy * net(x)) by ncc (imported from torch.onnx.export)
    and by torch autograd, on the same weights, in eval mode."""
    net.eval()
    model = ncc.compile(_export(net, x))
    rng = np.random.default_rng(7)
    y = net(torch.from_numpy(x))
    np.testing.assert_allclose(model(x), y.detach().numpy(), rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    net.zero_grad()
    net(tx).backward(torch.from_numpy(dy))
    grads = model.vjp(x, dy)
    named = dict(net.named_parameters())
    assert set(model.trainable) == set(named)  # running statistics are not parameters
    errors = {}
    for name, p in named.items():
        g, tg = grads[name], p.grad.numpy()
        if g.shape != tg.shape:  # the importer may keep a weight transposed or reshaped
            tg = tg.T if g.shape == tg.T.shape else tg.reshape(g.shape)
        errors[name] = rel_err(g, tg)
    errors["x"] = rel_err(grads["x"], tx.grad.numpy())
    assert max(errors.values()) < tol, errors
    return model, errors


@needs_torch
def test_mlp_from_torch_matches_autograd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                              torch.nn.Tanh(), torch.nn.Linear(8, 5))
    x = np.random.default_rng(0).standard_normal((7, 12)).astype(np.float32)
    _compare_with_torch(net, x)


def _cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 2 * 2, 5))


def _randomize_bn(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@needs_torch
def test_cnn_from_torch_matches_autograd():
    torch.manual_seed(1)
    net = _cnn()
    _randomize_bn(net)
    x = np.random.default_rng(1).standard_normal((3, 2, 8, 8)).astype(np.float32)
    _compare_with_torch(net, x)


class _Residual(torch.nn.Module if torch is not None else object):
    def __init__(self, c=4):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c)
        self.fc = torch.nn.Linear(c, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        r = torch.relu(self.bn1(self.conv1(h)))
        r = self.bn2(self.conv2(r))
        h = torch.relu(h + r)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


@needs_torch
def test_residual_block_from_torch_matches_autograd():
    torch.manual_seed(2)
    net = _Residual()
    _randomize_bn(net, 1)
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    _compare_with_torch(net, x)


def _cnn_onnx(seed=0):
    """A small CNN written with onnx.helper: conv, batchnorm, relu, maxpool, gemm."""
    rng = np.random.default_rng(seed)
    inits = {
        "conv_w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.5,
        "conv_b": np.zeros(4, np.float32),
        "bn_scale": np.ones(4, np.float32), "bn_bias": np.zeros(4, np.float32),
        "bn_mean": np.zeros(4, np.float32), "bn_var": np.ones(4, np.float32),
        "fc_w": rng.standard_normal((3, 4 * 4 * 4)).astype(np.float32) * 0.1,
        "fc_b": np.zeros(3, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = min(m.ir_version, 10)
    return m


def test_onnx_cnn_trains_and_its_loss_falls():
    model = ncc.compile(_cnn_onnx())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 1, 8, 8)).astype(np.float32)
    labels = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:, 4:].mean(axis=(1, 2)) > 0)
    history = ncc.train(model, (x, labels), loss="cross_entropy", epochs=8, batch_size=16,
                        optimizer=ncc.optim.Adam(model, lr=0.01))
    assert history.epochs[-1] < 0.7 * history.epochs[0]
    assert model.training.non_trainable["bn_mean"] == "batch-norm statistics"


# ---------------------------------------------------------------------------
# Training, memory, export


def test_train_step_sequence_matches_numpy_sgd():
    """ncc.train with plain SGD, no shuffling: every step equals a numpy
    gradient-descent step computed from finite-difference-checked gradients."""
    model = ncc.compile(mlp_text("f64"))
    ref = ncc.compile(mlp_text("f64"))
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    history = ncc.train(model, (x, t), loss="mse", epochs=2, batch_size=4, shuffle=False,
                        optimizer=ncc.optim.SGD(model, lr=0.1))
    assert len(history) == 4 and len(history.epochs) == 2
    losses = []
    for _ in range(2):
        for s in (slice(0, 4), slice(4, 8)):
            value, g = ref.value_and_grad(x[s], t[s])
            losses.append(value)
            for k in ref.trainable:
                ref.params[k] = ref.params[k] - 0.1 * g[k]
    np.testing.assert_allclose(history, losses, rtol=1e-12)
    for k in ref.trainable:
        np.testing.assert_allclose(model.params[k], ref.params[k], rtol=1e-12)


def test_memory_plan():
    model = ncc.compile(mlp_text("f32"))
    plan = model.memory()
    assert plan.weights.constant == (20 + 5 + 15 + 1) * 4  # the constant 0.5 is a weight too
    assert plan.trainable.constant == plan.gradients.constant == (20 + 5 + 15) * 4
    assert plan.forward_arena.per_row > 0 and plan.vjp_arena.per_row >= plan.forward_arena.per_row
    # the saved values are activations of the hidden layer (5 floats per row each)
    assert plan.saved.per_row > 0 and plan.saved.per_row % (5 * 4) == 0
    assert plan.saved.at(64) <= plan.vjp_arena.at(64)
    at = model.memory(64)
    assert at["saved"] == plan.saved.per_row * 64 + plan.saved.constant
    assert "vjp_arena" in str(plan)


def test_trained_params_export_to_onnx(tmp_path):
    model = ncc.compile(mlp_text("f32"))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    ncc.train(model, (x, rng.integers(0, 3, 16)), loss="cross_entropy", epochs=3, batch_size=8,
              optimizer=ncc.optim.SGD(model, lr=0.5, momentum=0.9))
    path = tmp_path / "trained.onnx"
    model.export_onnx(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model(x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, ncc.compile(mlp_text("f32"))(x))  # training changed it
    again = ort.InferenceSession(ncc.export_onnx(model).SerializeToString(),
                                 providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(again.run(None, {"x": x})[0], got)


def test_layered_neuron_net_gradients():
    """A neuron net lowered as layers: gradients by equation symbol, a shared
    symbol's being the sum over its copies (here @s twice, and @b02 as a bias
    and as a weight)."""
    text = """
    neuron.net @net -> (n04) {
      neuron.input n00
      neuron.input n01
      neuron.neuron n02 tanh(n00 * @s = 0.5, n01 * @s = 0.5) + @b02 = 0.1
      neuron.neuron n03 tanh(n00 * @u = 0.3, n01 * @b02 = 0.1)
      neuron.neuron n04 identity(n02 * @w0204 = 1.5, n03 * @w0304 = -0.5)
    }
    """
    model = ncc.compile(text, neuron_mode="layers")
    assert model.training.kind == "layers"
    x = np.array([[0.3, -0.7], [1.0, 0.2], [-0.4, 0.9]], np.float32)
    dy = np.array([[1.0], [-2.0], [0.5]], np.float32)
    grads = model.vjp(x, dy)
    s, b, u, w, v = (float(model.params[k]) for k in ("s", "b02", "u", "w0204", "w0304"))
    x0, x1, d = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64), dy[:, 0].astype(np.float64)
    h2, h3 = np.tanh(s * x0 + s * x1 + b), np.tanh(u * x0 + b * x1)
    dz2, dz3 = d * w * (1 - h2 ** 2), d * v * (1 - h3 ** 2)
    expected = {"s": np.sum(dz2 * (x0 + x1)), "b02": dz2.sum() + np.sum(dz3 * x1),
                "u": np.sum(dz3 * x0), "w0204": np.sum(d * h2), "w0304": np.sum(d * h3)}
    assert set(grads) == {*expected, "x"}
    for k, e in expected.items():
        assert float(grads[k]) == pytest.approx(e, rel=1e-5), k
    np.testing.assert_allclose(grads["x"][:, 0], dz2 * s + dz3 * u, rtol=1e-5)
    np.testing.assert_allclose(grads["x"][:, 1], dz2 * s + dz3 * b, rtol=1e-5)
    # losses and training through the layer weights keep the copies tied
    loss0 = model.value_and_grad(x, np.zeros((3, 1), np.float32))[0]
    history = ncc.train(model, (x, np.zeros((3, 1), np.float32)), epochs=20, batch_size=3,
                        optimizer=ncc.optim.SGD(model, lr=0.1))
    assert history[0] == pytest.approx(loss0) and history[-1] < loss0
    s, b, u, w, v = (float(model.params[k]) for k in ("s", "b02", "u", "w0204", "w0304"))
    y = w * np.tanh(s * x0 + s * x1 + b) + v * np.tanh(u * x0 + b * x1)
    np.testing.assert_allclose(model(x)[:, 0], y, rtol=1e-5)


def test_digits_mlp_reaches_95_percent():
    """scikit-learn's bundled digits (no download): an MLP trained only with
    ncc's native kernels (loss + backward kernel, Adam update kernel)."""
    datasets = pytest.importorskip("sklearn.datasets")
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    accuracy, history = example.train_digits(datasets.load_digits(), epochs=30, seed=0)
    assert history.epochs[-1] < history.epochs[0]
    assert accuracy >= 0.95


def test_straight_neuron_net_trains_with_its_backward_kernel():
    """A net lowered straight (neuron-to-loops): the neuron-level backward
    kernel, gradients by equation symbol (finite differences), a loss through
    numpy's dL/dy, freezing in the flat buffer, and export."""
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "ncp19.txt"
    model = ncc.compile(path, neuron_mode="neuron")
    assert model.training.kind == "neuron"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    dy = rng.standard_normal((7, 4)).astype(np.float32)
    grads = model.vjp(x, dy)
    assert set(grads) == {*model.params, "x"} and grads["x"].shape == x.shape
    for name in list(model.params)[::17]:
        p = model.params[name]
        old = float(p)
        p[...] = old + 1e-2
        hi = float(np.sum(dy * model(x).astype(np.float64)))
        p[...] = old - 1e-2
        lo = float(np.sum(dy * model(x).astype(np.float64)))
        p[...] = old
        assert float(grads[name]) == pytest.approx((hi - lo) / 2e-2, rel=2e-3, abs=2e-3), name
    labels = rng.integers(0, 4, 7)
    frozen = list(model.params)[:5]
    kept = {k: float(model.params[k]) for k in frozen}
    history = ncc.train(model, (x, labels), loss="cross_entropy", epochs=30, batch_size=7,
                        optimizer=ncc.optim.Adam(model, lr=0.05, frozen=frozen))
    assert history[-1] < 0.5 * history[0]
    assert {k: float(model.params[k]) for k in frozen} == kept
    sess = ort.InferenceSession(model.export_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], model(x), rtol=1e-5, atol=1e-6)


def test_integer_inputs_get_no_gradient():
    text = """
    nn.weight @w : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]>
    func.func @f(%x: tensor<?x3xf32> {ncc.name = "x"}, %k: tensor<?x1xi64> {ncc.name = "k"})
        -> (tensor<?x2xf32> {ncc.name = "y"}) {
      %w = nn.weight_ref @w : tensor<3x2xf32>
      %z = nn.constant dense<0> : tensor<i64>
      %zero = nn.constant dense<0.0> : tensor<f32>
      %0 = nn.matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
      %m = nn.equal %k, %z : tensor<?x1xi64>, tensor<i64> -> tensor<?x1xi1>
      %1 = nn.select %m, %0, %zero : tensor<?x1xi1>, tensor<?x2xf32>, tensor<f32> -> tensor<?x2xf32>
      func.return %1 : tensor<?x2xf32>
    }
    """
    model = ncc.compile(text)
    x = np.ones((2, 3), np.float32)
    k = np.array([[0], [1]])
    g = model.grad({"x": x, "k": k}, np.zeros((2, 2), np.float32))
    assert set(g) == {"w", "x"}
    np.testing.assert_allclose(g["x"][1], 0)  # the masked row
    assert set(model.vjp({"x": x, "k": k}, np.ones((2, 2), np.float32))) == {"w", "x"}


def test_layered_sparse_net_with_skip_synapses():
    """examples/ncp19.txt as layers: sparse matmuls and the gathers of skip
    synapses, gradients by equation symbol against finite differences."""
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "ncp19.txt"
    model = ncc.compile(path, neuron_mode="layers", fuse=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    dy = rng.standard_normal((7, 4)).astype(np.float32)
    grads = model.vjp(x, dy)
    assert set(grads) == {*model.params, "x"}
    for name in list(model.params)[::9]:
        p = model.params
        old = float(p[name])
        p[name] = old + 1e-2
        hi = float(np.sum(dy * model(x).astype(np.float64)))
        p[name] = old - 1e-2
        lo = float(np.sum(dy * model(x).astype(np.float64)))
        p[name] = old
        assert float(grads[name]) == pytest.approx((hi - lo) / 2e-2, rel=2e-3, abs=2e-3), name
