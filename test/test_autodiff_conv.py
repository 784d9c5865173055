"""autodiff of the convolution and pooling family: the VJP rules of nn.conv,
nn.fused_conv, nn.conv_transpose, nn.max_pool and nn.avg_pool against central
finite differences (float64) and torch.func.vjp, through the reference
interpreter and natively, over random shapes and params (strides, pads,
dilations, groups, 1-D to 3-D); nn.conv_weight_grad (the weight gradient) as
an op: shape rule, reference against torch, lowered and native code, ONNX
export; whole functions with a run-time batch against torch autograd."""

from __future__ import annotations

import re

import numpy as np
import pytest
from xdsl.dialects import func

import ncc
from ncc.dialects import nn
from ncc.passes.autodiff import differentiate
from vjp_check import torch


if torch is not None:
    import torch.nn.functional as F

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


# ---------------------------------------------------------------------------
# The same ops in torch (explicit padding: nn's pads may be asymmetric)


def _tpad(x, pads, value=0.0):
    k = x.dim() - 2
    return F.pad(x, [v for i in reversed(range(k)) for v in (pads[i], pads[i + k])], value=value)


def _conv_fn(k):
    return [None, F.conv1d, F.conv2d, F.conv3d][k]


def torch_conv(strides, pads, dilations, group, activation=None):
    def fn(x, w, b=None):
        y = _conv_fn(x.dim() - 2)(_tpad(x, pads), w, b, stride=strides, dilation=dilations, groups=group)
        return y if activation is None else activation(y)
    return fn


def torch_conv_transpose(strides, pads, dilations, group, output_padding):
    """The uncropped transposed conv, output_padding zeros at the end, then the pads cropped."""
    def fn(x, w):
        k = x.dim() - 2
        f = [None, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d][k]
        y = f(x, w, stride=strides, dilation=dilations, groups=group)
        y = F.pad(y, [v for i in reversed(range(k)) for v in (0, output_padding[i])])
        crop = (slice(pads[i], y.shape[2 + i] - pads[i + k]) for i in range(k))
        return y[(slice(None), slice(None), *crop)]
    return fn


def torch_max_pool(kernel, strides, pads, dilations):
    def fn(x):
        pool = [None, F.max_pool1d, F.max_pool2d, F.max_pool3d][x.dim() - 2]
        return pool(_tpad(x, pads, -float("inf")), kernel, strides, 0, dilations)
    return fn


def torch_avg_pool(kernel, strides, pads, dilations, count_include_pad):
    """Window sums (a depthwise conv with ones) over the counts (the same conv of ones)."""
    def fn(x):
        conv, c = _conv_fn(x.dim() - 2), x.shape[1]
        ones = torch.ones(c, 1, *kernel, dtype=x.dtype)
        s = conv(_tpad(x, pads), ones, stride=strides, dilation=dilations, groups=c)
        if count_include_pad:
            return s / float(np.prod(kernel))
        return s / conv(_tpad(torch.ones_like(x), pads), ones, stride=strides, dilation=dilations, groups=c)
    return fn


# ---------------------------------------------------------------------------
# Random cases: rank 1-3, strides, pads, dilations, groups (depthwise too)


def _spatial(rng, spans, pads, k, budget):
    """Sizes that leave at least one window, small enough for finite differences."""
    return [int(max(s - pads[i] - pads[i + k], 1) + rng.integers(0, budget)) for i, s in enumerate(spans)]


def conv_case(seed: int) -> dict:
    """Rank and kind cycle with the seed (every 6 seeds: each rank with two kinds);
    the sizes and the other params are random."""
    rng = np.random.default_rng(seed)
    k = 1 + seed % 3
    kind = ("plain", "depthwise", "grouped")[(seed + seed // 3) % 3]
    group = 1 if kind == "plain" else int(rng.integers(2, 4))
    cg = 1 if kind == "depthwise" else int(rng.integers(1, 3))
    mg = int(rng.integers(1, 3))
    kernel = [int(v) for v in rng.integers(1, 4 if k < 3 else 3, k)]
    dilations = [int(v) for v in rng.integers(1, 3, k)]
    strides = [int(v) for v in rng.integers(1, 3, k)]
    pads = [int(v) for v in rng.integers(0, 3, 2 * k)]
    spans = [(kk - 1) * d + 1 for kk, d in zip(kernel, dilations)]
    spatial = _spatial(rng, spans, pads, k, 4 if k < 3 else 2)
    return {"x": (2, cg * group, *spatial), "w": (mg * group, cg, *kernel),
            "params": {"strides": strides, "pads": pads, "dilations": dilations, "group": group}}


def pool_case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    k = 1 + seed % 3
    kernel = [int(v) for v in rng.integers(1, 4 if k < 3 else 3, k)]
    dilations = [int(v) for v in rng.integers(1, 3, k)]
    strides = [int(v) for v in rng.integers(1, 3, k)]
    spans = [(kk - 1) * d + 1 for kk, d in zip(kernel, dilations)]
    while True:  # pads smaller than the dilated kernel; no window all padding (its max is -inf)
        pads = [int(rng.integers(0, s)) for s in spans * 2]
        spatial = _spatial(rng, spans, pads, k, 4 if k < 3 else 2)
        if all(_window_cells(*a, pads[i], pads[i + k]).min() > 0 for i, a in enumerate(
                zip(spatial, kernel, strides, dilations))):
            break
    return {"x": (2, int(rng.integers(1, 4)), *spatial),
            "params": {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}}


def _window_cells(size, kernel, stride, dilation, pad_begin, pad_end):
    """How many cells of each window along one axis are inside the image."""
    n = (size + pad_begin + pad_end - (kernel - 1) * dilation - 1) // stride + 1
    pos = np.arange(n)[:, None] * stride + np.arange(kernel)[None, :] * dilation - pad_begin
    return ((pos >= 0) & (pos < size)).sum(1)


def rand(rng, shape):
    return rng.uniform(-2, 2, shape)


FAST, SLOW = range(6), range(6, 46)


def test_the_fast_cases_cover_every_kind():
    cs = [conv_case(s) for s in FAST]
    assert {len(c["x"]) - 2 for c in cs} == {1, 2, 3}
    assert any(c["params"]["group"] > 1 and c["w"][1] == 1 for c in cs)  # depthwise
    assert any(c["params"]["group"] > 1 and c["w"][1] > 1 for c in cs)  # grouped
    for key in ("strides", "dilations"):
        assert any(max(c["params"][key]) > 1 for c in cs)
    ps = [pool_case(s) for s in FAST]
    assert {len(c["x"]) - 2 for c in ps} == {1, 2, 3}
    assert any(max(c["params"]["pads"]) > 0 for c in ps[:3])  # the avg_pool cases count the pads
    assert any(max(c["params"]["strides"]) < max(c["params"]["kernel"]) for c in ps)  # windows overlap


# ---------------------------------------------------------------------------
# max_pool: the first maximum of each window, as PyTorch


# ---------------------------------------------------------------------------
# nn.conv_weight_grad: the op


VECTORIZED = {  # the gradient kernels of a conv by loops (groups, small): their inner loops vectorize
    "conv_weight_grad": """func.func @main(%x: tensor<?x8x16x16xf32>, %g: tensor<?x8x16x16xf32>) -> tensor<8x4x3x3xf32> {
  %w = nn.conv_weight_grad %x, %g kernel [3, 3] pads [1, 1, 1, 1] group 2 : tensor<?x8x16x16xf32>, tensor<?x8x16x16xf32> -> tensor<8x4x3x3xf32>
  func.return %w : tensor<8x4x3x3xf32>
}""",
    "conv_transpose": """func.func @main(%g: tensor<?x8x16x16xf32>, %w: tensor<8x8x3x3xf32>) -> tensor<?x8x16x16xf32> {
  %x = nn.conv_transpose %g, %w pads [1, 1, 1, 1] : tensor<?x8x16x16xf32>, tensor<8x8x3x3xf32> -> tensor<?x8x16x16xf32>
  func.return %x : tensor<?x8x16x16xf32>
}""",
}


@pytest.mark.parametrize("name", sorted(VECTORIZED))
def test_gradient_kernels_vectorize(name):
    from ncc.runtime.engine import llvm_ir_text

    ir = llvm_ir_text(ncc.parse_module(VECTORIZED[name]))  # at O3 for this host
    assert re.search(r"fmul[a-z ]* <\d+ x float>|@llvm\.fmuladd\.v\d+f32", ir)  # the products, a vector at a time


# ---------------------------------------------------------------------------
# Whole functions: a run-time batch, native code against torch autograd


CNN = """
nn.weight @c1_w : tensor<4x2x3x3xf32> = dense<0.0>
nn.weight @c1_b : tensor<4xf32> = dense<0.0>
nn.weight @dw_w : tensor<4x1x3x3xf32> = dense<0.0>
nn.weight @up_w : tensor<4x2x2x2xf32> = dense<0.0>
func.func @main(%x: tensor<?x2x9x9xf32> {ncc.name = "image"}) -> tensor<?x2x4x4xf32> {
  %w1 = nn.weight_ref @c1_w : tensor<4x2x3x3xf32>
  %b1 = nn.weight_ref @c1_b : tensor<4xf32>
  %c1 = nn.fused_conv %x, %w1, %b1 activation relu pads [1, 1, 1, 1] : tensor<?x2x9x9xf32>, tensor<4x2x3x3xf32>, tensor<4xf32> -> tensor<?x4x9x9xf32>
  %p1 = nn.max_pool %c1 kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<?x4x9x9xf32> -> tensor<?x4x5x5xf32>
  %wd = nn.weight_ref @dw_w : tensor<4x1x3x3xf32>
  %c2 = nn.conv %p1, %wd strides [2, 2] pads [1, 1, 1, 1] group 4 : tensor<?x4x5x5xf32>, tensor<4x1x3x3xf32> -> tensor<?x4x3x3xf32>
  %t = nn.tanh %c2 : tensor<?x4x3x3xf32>
  %wu = nn.weight_ref @up_w : tensor<4x2x2x2xf32>
  %u = nn.conv_transpose %t, %wu strides [2, 2] pads [1, 1, 2, 2] output_padding [1, 1] : tensor<?x4x3x3xf32>, tensor<4x2x2x2xf32> -> tensor<?x2x4x4xf32>
  %a = nn.avg_pool %u kernel [2, 2] pads [1, 1, 0, 0] : tensor<?x2x4x4xf32> -> tensor<?x2x4x4xf32>
  func.return %a : tensor<?x2x4x4xf32>
}
"""


def _cnn(seed=0):
    m = ncc.parse_module(CNN)
    rng = np.random.default_rng(seed)
    params = {op.sym: (rng.standard_normal(op.type.get_shape()) * 0.5).astype(np.float32)
              for op in m.ops if isinstance(op, nn.WeightOp)}
    return m, params


@needs_torch
@pytest.mark.parametrize("batch", [1, 5])
def test_cnn_gradients_natively_match_torch(batch):
    m, params = _cnn()
    differentiate(m, "main", mode="combined")
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 2, 9, 9)).astype(np.float32)
    cot = rng.standard_normal((batch, 2, 4, 4)).astype(np.float32)
    model = ncc.compile(m, function="main_vjp", cache=False)
    for k, v in params.items():
        model.params[k] = v
    got = model.run({"image": x, "cotangent:0": cot})
    ref = ncc.reference.run(m, [x, cot], function="main_vjp", params=params)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    w = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    c1 = torch.relu(torch_conv([1, 1], [1, 1, 1, 1], [1, 1], 1)(tx, w["c1_w"], w["c1_b"]))
    p1 = torch_max_pool([3, 3], [2, 2], [1, 1, 1, 1], [1, 1])(c1)
    t = torch.tanh(torch_conv([2, 2], [1, 1, 1, 1], [1, 1], 4)(p1, w["dw_w"]))
    u = torch_conv_transpose([2, 2], [1, 1, 2, 2], [1, 1], 1, [1, 1])(t, w["up_w"])
    a = torch_avg_pool([2, 2], [1, 1], [1, 1, 0, 0], [1, 1], False)(u)
    a.backward(torch.tensor(cot))
    np.testing.assert_allclose(got[0], a.detach().numpy(), rtol=1e-4, atol=1e-5)
    for g, t_ in zip(got[1:], [w["c1_w"], w["c1_b"], w["dw_w"], w["up_w"], tx]):
        np.testing.assert_allclose(g, t_.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_cnn_split_forward_and_backward_natively():
    m, params = _cnn(1)
    fwd, bwd = differentiate(m, "main", mode="split")
    differentiate(m, "main", mode="combined")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    cot = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    combined = ncc.reference.run(m, [x, cot], function="main_vjp", params=params)
    models = {}
    for name in ("main_forward", "main_backward"):
        alone = m.clone()  # the function alone: compiling the others would only cost time
        for f in [f for f in alone.ops if isinstance(f, func.FuncOp) and f.sym_name.data != name]:
            f.detach()
        models[name] = ncc.compile(alone, cache=False)
        for k, v in params.items():
            if k in models[name].params:
                models[name].params[k] = v
    y, *saved = models["main_forward"].run({"image": x})
    names = [a.data["ncc.name"].data for a in fwd.res_attrs.data][1:]
    grads = models["main_backward"].run({**dict(zip(names, saved)), "cotangent:0": cot})
    for a, b in zip([y, *grads], combined):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_frozen_conv_weights_and_inputs_get_no_gradient_code():
    m, _ = _cnn()
    _, bwd = differentiate(m, "main", mode="split", frozen=["c1_w", "c1_b", "dw_w"], inputs=False)
    ops = [op.name for op in bwd.body.block.ops]
    # only up_w's gradient: through the avg_pool (a transposed conv of ones) to one
    # weight gradient, nothing below the transposed conv
    assert ops.count("nn.conv_weight_grad") == 1 and ops.count("nn.conv_transpose") == 1
    assert "nn.conv" not in ops and "nn.max_pool_indices" not in ops
    _, bwd = differentiate(m, "main", mode="split", frozen=["c1_w", "c1_b", "dw_w", "up_w"], inputs=["image"])
    ops = [op.name for op in bwd.body.block.ops]
    assert "nn.conv_weight_grad" not in ops and "nn.reduce_sum" not in ops


def test_dynamic_spatial_size_is_a_located_error():
    m = ncc.parse_module("""func.func @f(%x: tensor<1x2x?x5xf32>, %w: tensor<3x2x3x3xf32>) -> tensor<1x3x?x3xf32> {
  %y = nn.conv %x, %w : tensor<1x2x?x5xf32>, tensor<3x2x3x3xf32> -> tensor<1x3x?x3xf32>
  func.return %y : tensor<1x3x?x3xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.conv' with a "
                                           r"dynamic size other than the batch"):
        differentiate(m, "f")
