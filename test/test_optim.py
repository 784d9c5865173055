"""ncc.optim: native update kernels against a numpy reference of PyTorch's
update rules (always) and against torch.optim itself (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

import ncc

try:
    import torch
except ImportError:  # the torch checks skip; the numpy reference always runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

MLP = """
nn.weight @w1 : tensor<4x3x{t}> = dense<[[0.1,0.2,0.3],[0.4,-0.5,0.6],[0.7,0.8,-0.9],[1.0,1.1,1.2]]>
nn.weight @b1 : tensor<3x{t}> = dense<[0.1, -0.2, 0.3]>
nn.weight @w2 : tensor<3x2x{t}> = dense<[[0.5, -0.25], [0.75, 1.0], [-1.5, 0.125]]>
func.func @f(%x: tensor<?x4x{t}>) -> tensor<?x2x{t}> {{
  %w = nn.weight_ref @w1 : tensor<4x3x{t}>
  %b = nn.weight_ref @b1 : tensor<3x{t}>
  %v = nn.weight_ref @w2 : tensor<3x2x{t}>
  %0 = nn.matmul %x, %w : tensor<?x4x{t}>, tensor<4x3x{t}> -> tensor<?x3x{t}>
  %1 = nn.add %0, %b : tensor<?x3x{t}>, tensor<3x{t}> -> tensor<?x3x{t}>
  %2 = nn.tanh %1 : tensor<?x3x{t}>
  %3 = nn.matmul %2, %v : tensor<?x3x{t}>, tensor<3x2x{t}> -> tensor<?x2x{t}>
  func.return %3 : tensor<?x2x{t}>
}}
"""


def mlp(t: str = "f32"):
    return ncc.compile(MLP.format(t=t))


# -- numpy references of torch.optim's rules (single-tensor form)

def sgd_ref(p, g, state, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    d = g + weight_decay * p
    if momentum:
        state["buf"] = d.copy() if t == 1 else momentum * state["buf"] + (1 - dampening) * d
        d = d + momentum * state["buf"] if nesterov else state["buf"]
    return p - lr * d


def adam_ref(p, g, state, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = state.get("m", np.zeros_like(p))
    v = state.get("v", np.zeros_like(p))
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    state["m"], state["v"] = m, v
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
    return p - lr / (1 - b1 ** t) * m / denom


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.25, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, betas=(0.5, 0.9))),
]


def _ref_step(kind, kw, p, g, state, t):
    if kind == "SGD":
        return sgd_ref(p, g, state, t, **kw)
    if kind == "AdamW":
        return adam_ref(p, g, state, t, **{"weight_decay": 1e-2, **kw}, decoupled=True)
    return adam_ref(p, g, state, t, **kw)


@pytest.mark.parametrize("t", ["f32", "f64"])
@pytest.mark.parametrize("kind,kw", CASES)
def test_update_matches_numpy_reference(kind, kw, t):
    model = mlp(t)
    opt = getattr(ncc.optim, kind)(model, **kw)
    ref = {k: np.array(v, np.float64) for k, v in model.params.items()}
    states = {k: {} for k in ref}
    rng = np.random.default_rng(0)
    for step in range(1, 6):
        grads = {k: rng.standard_normal(v.shape).astype(model.params[k].dtype) for k, v in ref.items()}
        opt.step(grads)
        for k in ref:
            ref[k] = _ref_step(kind, kw, ref[k], grads[k].astype(np.float64), states[k], step)
    tol = 1e-5 if t == "f32" else 1e-12
    for k in ref:
        np.testing.assert_allclose(model.params[k], ref[k], rtol=tol, atol=tol)
    assert model.params["w1"].dtype == np.dtype(np.float32 if t == "f32" else np.float64)


@needs_torch
@pytest.mark.parametrize("kind,kw", CASES)
def test_update_matches_torch_optim(kind, kw):
    model = mlp()
    tparams = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in model.params.items()}
    opt = getattr(ncc.optim, kind)(model, **kw)
    topt = getattr(torch.optim, kind)(list(tparams.values()), **kw)
    rng = np.random.default_rng(1)
    for _ in range(6):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.params.items()}
        opt.step(grads)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k])
        topt.step()
    for k, p in tparams.items():
        np.testing.assert_allclose(model.params[k], p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_updates_the_buffers_the_forward_kernel_reads():
    model = mlp()
    x = np.ones((2, 4), np.float32)
    before = model(x)
    w1 = model.params["w1"]
    ncc.optim.SGD(model, lr=0.5).step({k: np.ones_like(v) for k, v in model.params.items()})
    assert model.params["w1"] is w1  # in place: the same buffer
    assert not np.allclose(model(x), before)
    np.testing.assert_allclose(model(x), ncc.compile(_with_values(model))(x), rtol=1e-6)


def _with_values(model):
    """A fresh module holding `model`'s current weights (an independent forward)."""
    return model.export_onnx()


def test_one_kernel_serves_every_step_and_lr_changes():
    model = mlp()
    opt = ncc.optim.SGD(model, lr=0.1)
    g = {k: np.ones_like(v) for k, v in model.params.items()}
    w0 = model.params["b1"].copy()
    opt.step(g)
    kernel = opt._kernel
    opt.lr = 0.01  # a schedule: the hyperparameters are a buffer, not constants in the code
    opt.step(g)
    assert opt._kernel is kernel
    np.testing.assert_allclose(model.params["b1"], w0 - 0.1 - 0.01, rtol=1e-6)
    assert opt.steps == 2


def test_frozen_parameters_do_not_move():
    model = mlp()
    w1 = model.params["w1"].copy()
    opt = ncc.optim.Adam(model, lr=0.1, weight_decay=0.5, frozen=["w1"])
    assert opt.param_names == ["b1", "w2"]
    opt.step({"b1": np.ones(3, np.float32), "w2": np.ones((3, 2), np.float32)})  # no w1 needed
    np.testing.assert_array_equal(model.params["w1"], w1)
    assert opt.state_bytes() == 2 * (3 + 6) * 4


def test_optimizer_errors():
    model = mlp()
    with pytest.raises(ncc.NccError, match="lr must be >= 0"):
        ncc.optim.SGD(model, lr=-1)
    with pytest.raises(ncc.NccError, match=r"betas\[0\] must be in \[0.0, 1.0\)"):
        ncc.optim.Adam(model, betas=(1.0, 0.9))
    with pytest.raises(ncc.NccError, match="nesterov momentum requires"):
        ncc.optim.SGD(model, lr=0.1, nesterov=True)
    with pytest.raises(ncc.NccError, match="frozen: no parameter 'nope'"):
        ncc.optim.SGD(model, lr=0.1, frozen=["nope"])
    opt = ncc.optim.SGD(model, lr=0.1)
    with pytest.raises(ncc.NccError, match="no gradient for parameter 'w1'"):
        opt.step({"b1": np.ones(3, np.float32)})
    with pytest.raises(ncc.NccError, match=r"the gradient of 'b1' has shape \[4\], expected \[3\]"):
        opt.step({k: np.ones(4 if k == "b1" else v.shape, np.float32) for k, v in model.params.items()})
    with pytest.raises(ncc.NccError, match="takes the gradients by parameter name"):
        opt.step([1, 2])
    assert opt.steps == 0  # failed steps change nothing


SHARED_NET = """
neuron.net @net -> (n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @s = 0.5, n01 * @s = 0.5) + @b02 = 0.1
  neuron.neuron n03 identity(n02 * @w0203 = 1.5, n00 * @w0003 = -0.5)
}
"""


def test_layered_neuron_net_keeps_shared_weights_tied():
    """A neuron net lowered as layers: a symbol shared by two edges has two
    copies in the layer weights; one update moves both by the same amount."""
    model = ncc.compile(SHARED_NET, neuron_mode="layers")
    assert model.compile_info["neuron_mode"] == "layers"
    names = list(model.params)
    opt = ncc.optim.SGD(model, lr=0.1)
    before = {k: float(v) for k, v in model.params.items()}
    g = {k: np.float32(i + 1) for i, k in enumerate(names)}
    opt.step(g)
    for i, k in enumerate(names):
        assert float(model.params[k]) == pytest.approx(before[k] - 0.1 * (i + 1), rel=1e-6)
    x = np.array([[0.3, -0.7]], np.float32)
    s, b, w, v = (float(model.params[k]) for k in ("s", "b02", "w0203", "w0003"))
    expected = w * np.tanh(s * 0.3 + s * -0.7 + b) + v * 0.3
    np.testing.assert_allclose(model(x)[0, 0], expected, rtol=1e-5)  # both copies of s moved
