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
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.autodiff import differentiate
from vjp_check import check_rule, torch, vjp_reference

from test_lower_to_loops import T, build  # noqa: E402  (pytest puts test/ on sys.path)
from test_lower_to_loops import check as check_lowered  # noqa: E402
from test_onnx_export import check as check_export  # noqa: E402

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


def conv_transpose_case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    c = conv_case(seed)
    p = dict(c["params"])
    # output_padding below the stride or the dilation, as ONNX allows
    p["output_padding"] = [int(rng.integers(0, max(s, d))) for s, d in zip(p["strides"], p["dilations"])]
    cin, cg = c["w"][0], c["x"][1] // p["group"]
    # (C, M/group, kernel): the transposed conv of the conv's output shape
    y = nn.shape_of(nn.ConvOp(*_values(T(*c["x"]), T(*c["w"])), **c["params"]).result.type)[2:]
    k, pads = len(y), list(p["pads"])
    for i in range(k):  # pads that leave an output
        full = ((y[i] - 1) * p["strides"][i] + (c["w"][2 + i] - 1) * p["dilations"][i] + 1
                + p["output_padding"][i])
        while pads[i] + pads[i + k] >= full:
            pads[i if pads[i] else i + k] -= 1
    p["pads"] = pads
    return {"x": (2, cin, *y), "w": (cin, cg, *c["w"][2:]), "params": p}


def _values(*types):
    from xdsl.ir import Block

    return Block(arg_types=list(types)).args


def _rand(rng, shape):
    return rng.uniform(-2, 2, shape)


def _distinct(rng, shape):
    """Values at least 0.05 apart: every window has one maximum (finite differences
    of 1e-6 never change which)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.05 - n * 0.025 + rng.uniform(0, 0.01, n)).reshape(shape)


FAST, SLOW = range(6), range(6, 46)


def _conv(seed):
    c = conv_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x, w: nn.ConvOp(x, w, **c["params"]), [_rand(rng, c["x"]), _rand(rng, c["w"])],
               torch_fn=torch and torch_conv(**c["params"]))


def _fused_conv(seed, act):
    c = conv_case(seed)
    rng = np.random.default_rng(seed)
    m = c["w"][0]
    acts = {"relu": torch and torch.relu, "tanh": torch and torch.tanh, "silu": torch and F.silu,
            "identity": None}
    check_rule(lambda x, w, b: nn.FusedConvOp(x, w, b, act, **c["params"]),
               [_rand(rng, c["x"]), _rand(rng, c["w"]), _rand(rng, (m,))],
               torch_fn=torch and torch_conv(**c["params"], activation=acts[act]))


def _max_pool(seed):
    c = pool_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x: nn.MaxPoolOp(x, **c["params"]), [_distinct(rng, c["x"])],
               torch_fn=torch and torch_max_pool(**c["params"]))


def _avg_pool(seed, include):
    c = pool_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x: nn.AvgPoolOp(x, **c["params"], count_include_pad=include), [_rand(rng, c["x"])],
               torch_fn=torch and torch_avg_pool(**c["params"], count_include_pad=include))


def _conv_transpose(seed):
    c = conv_transpose_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x, w: nn.ConvTransposeOp(x, w, **c["params"]), [_rand(rng, c["x"]), _rand(rng, c["w"])],
               torch_fn=torch and torch_conv_transpose(**c["params"]))


@pytest.mark.parametrize("seed", FAST)
def test_conv_vjp(seed):
    _conv(seed)


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "silu"])
def test_fused_conv_vjp(act):
    _fused_conv(100 + len(act), act)


@pytest.mark.parametrize("seed", FAST)
def test_max_pool_vjp(seed):
    _max_pool(seed)


@pytest.mark.parametrize("seed", FAST[:3])
@pytest.mark.parametrize("include", [False, True])
def test_avg_pool_vjp(seed, include):
    _avg_pool(seed, include)


@pytest.mark.parametrize("seed", FAST)
def test_conv_transpose_vjp(seed):
    _conv_transpose(seed)


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


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW)
def test_sweep_conv_family(seed):
    _conv(seed)
    _fused_conv(seed, ["relu", "tanh", "silu", "identity"][seed % 4])
    _conv_transpose(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW)
def test_sweep_pools(seed):
    _max_pool(seed)
    _avg_pool(seed, bool(seed % 2))


def test_conv_transpose_vjp_with_output_padding_past_the_stride():
    """nn allows output_padding >= stride (ONNX does not): dx drops the extra
    windows, dw pads x to meet them."""
    rng = np.random.default_rng(7)
    p = {"strides": [2], "pads": [1, 0], "output_padding": [3]}
    check_rule(lambda x, w: nn.ConvTransposeOp(x, w, **p), [_rand(rng, (2, 2, 4)), _rand(rng, (2, 3, 3))],
               torch_fn=torch and torch_conv_transpose([2], [1, 0], [1], 1, [3]))


# ---------------------------------------------------------------------------
# max_pool: the first maximum of each window, as PyTorch


@needs_torch
@pytest.mark.parametrize("params", [
    {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},          # overlapping windows
    {"kernel": [2, 3], "strides": [2, 1], "dilations": [2, 1], "pads": [0, 2, 1, 0]},
    {"kernel": [2, 2], "strides": [2, 2]}])
def test_max_pool_ties_go_to_the_first_maximum_like_torch(params):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 3, 6, 7)).astype(np.float64)  # many ties
    m = build([T(*x.shape, elt=nn.f64)], lambda e, a: e(nn.MaxPoolOp(a, **params)), name="f")
    y = ncc.reference.run(m, [x])[0]
    cot = rng.standard_normal(y.shape)
    (got,) = vjp_reference(m, [x], cot)
    tx = torch.tensor(x, requires_grad=True)
    full = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], **params}
    torch_max_pool(**full)(tx).backward(torch.tensor(cot))
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-12)
    differentiate(m, "f", mode="combined")
    native = ncc.compile(m, function="f_vjp", cache=False).run({"arg0": x, "cotangent:0": cot})
    np.testing.assert_allclose(native[1], got, rtol=1e-12)


def test_max_pool_padding_never_wins():
    """All-negative input, padded: the gradient never leaves the image."""
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    m = build([T(1, 1, 3, 3, elt=nn.f64)], lambda e, a: e(nn.MaxPoolOp(a, [2, 2], pads=[1, 1, 1, 1])),
              name="f")
    (g,) = vjp_reference(m, [x], np.ones((1, 1, 4, 4)))
    # each of the 16 windows gives 1 to its maximum, its top-left cell in the image
    np.testing.assert_array_equal(g[0, 0], [[4, 2, 2], [2, 1, 1], [2, 1, 1]])
    assert g.sum() == 16


# ---------------------------------------------------------------------------
# nn.conv_weight_grad: the op


def test_conv_weight_grad_shape_rule_and_errors():
    x, dy, dyb, dyn = _values(T(DYN, 4, 7, 6), T(DYN, 6, 4, 6), T(DYN, 6, 3, 6), T(DYN, DYN, 4, 6))
    op = nn.ConvWeightGradOp(x, dy, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1], group=2)
    assert op.result.type == T(6, 2, 3, 2)
    with pytest.raises(VerifyException, match=r"output gradient has spatial size \[3, 6\], but the conv's "
                                              r"output is \[4, 6\]"):
        nn.ConvWeightGradOp(x, dyb, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    with pytest.raises(VerifyException, match="6 output channels are not divisible by group 4"):
        nn.ConvWeightGradOp(x, dy, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1], group=4)
    with pytest.raises(VerifyException, match="channel counts .* must be static"):
        nn.ConvWeightGradOp(x, dyn, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    with pytest.raises(VerifyException, match="kernel must have 2 entries"):
        nn.ConvWeightGradOp(x, dy, [3])
    text = """func.func @f(%x: tensor<2x3x5x5xf32>, %g: tensor<2x4x4x5xf32>) -> tensor<4x3x2x1xf32> {
  %w = nn.conv_weight_grad %x, %g kernel [2, 1] : tensor<2x3x5x5xf32>, tensor<2x4x4x5xf32> -> tensor<4x3x2x1xf32>
  func.return %w : tensor<4x3x2x1xf32>
}"""
    assert "nn.conv_weight_grad %x, %g kernel [2, 1] :" in ncc.print_module(ncc.parse_module(text))


WEIGHT_GRADS = [  # x shape, w shape, conv params
    ((2, 3, 7, 6), (4, 3, 3, 2), {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ((DYN, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "dilations": [2, 1]}),
    ((3, 2, 11), (3, 2, 3), {"strides": [2], "pads": [2, 1]}),
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 2, 1], "dilations": [1, 2, 1]}),
    ((DYN, 3, 5, 5), (2, 3, 2, 2), {"pads": [4, 4, 4, 4]}),       # padding wider than the kernel
    ((2, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}),  # depthwise
]


def _case_id(case):
    xs, ws, params = case
    return "-".join([f"{nn.fmt_shape(xs)}*{nn.fmt_shape(ws)}", *(f"{k}{v}" for k, v in params.items())])


def _weight_grad_module(xs, ws, params):
    ys = nn.shape_of(nn.ConvOp(*_values(T(*xs), T(*ws)), **params).result.type)
    m = build([T(*xs), T(*ys)], lambda e, x, dy: e(nn.ConvWeightGradOp(x, dy, ws[2:], **params)))
    rng = np.random.default_rng(5)
    return m, [rng.standard_normal([3 if d == DYN else d for d in s]).astype(np.float32) for s in (xs, ys)]


@needs_torch
@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_reference_is_torchs_weight_gradient(case):
    xs, ws, params = case
    m, (x, dy) = _weight_grad_module(xs, ws, params)
    full = {"strides": [1] * (len(ws) - 2), "pads": [0] * (2 * len(ws) - 4), "dilations": [1] * (len(ws) - 2),
            "group": 1, **params}
    tw = torch.zeros(ws, dtype=torch.float64, requires_grad=True)
    y = torch_conv(**full)(torch.tensor(x, dtype=torch.float64), tw)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(ncc.reference.run(m, [x, dy])[0], tw.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_lowered_and_native(case):
    m, inputs = _weight_grad_module(*case)
    check_lowered(m, inputs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", WEIGHT_GRADS[:4], ids=_case_id)
def test_conv_weight_grad_rows_in_chunks(case, monkeypatch):
    """A scratch smaller than the rows of every offset: the last output dimension in chunks."""
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    monkeypatch.setattr(conv_lowering, "WG_SCRATCH", 20)
    m, inputs = _weight_grad_module(*case)
    lowered = check_lowered(m, inputs, rtol=1e-4, atol=1e-4)
    allocas = [op for op in lowered.walk() if op.name == "memref.alloca"]
    assert len(allocas) == 1 and np.prod(allocas[0].memref.type.get_shape()) <= 20


VECTORIZED = {  # the gradient kernels of a conv: their inner loops vectorize
    "conv_weight_grad": """func.func @main(%x: tensor<?x8x16x16xf32>, %g: tensor<?x8x16x16xf32>) -> tensor<8x8x3x3xf32> {
  %w = nn.conv_weight_grad %x, %g kernel [3, 3] pads [1, 1, 1, 1] : tensor<?x8x16x16xf32>, tensor<?x8x16x16xf32> -> tensor<8x8x3x3xf32>
  func.return %w : tensor<8x8x3x3xf32>
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
    assert re.search(r"fmul[a-z ]* <\d+ x float>", ir)  # the products, a vector at a time


@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_exports_to_onnx(case):
    m, inputs = _weight_grad_module(*case)
    check_export(m, inputs, tol=1e-4)


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
