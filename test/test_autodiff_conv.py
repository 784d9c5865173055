"""autodiff of the convolution and pooling family: nn.conv_weight_grad (the
weight gradient) as an op: shape rule, reference against torch, lowered and
native code, ONNX export."""

from __future__ import annotations

import re

import numpy as np
import pytest
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from vjp_check import torch

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


def _values(*types):
    from xdsl.ir import Block

    return Block(arg_types=list(types)).args


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
    from ncc.passes.lowering import nn_to_loops

    monkeypatch.setattr(nn_to_loops, "WG_SCRATCH", 20)
    m, inputs = _weight_grad_module(*case)
    lowered = check_lowered(m, inputs, rtol=1e-4, atol=1e-4)
    allocas = [op for op in lowered.walk() if op.name == "memref.alloca"]
    assert len(allocas) == 1 and np.prod(allocas[0].memref.type.get_shape()) <= 20


def test_conv_weight_grad_inner_loop_is_unit_stride_and_vectorizes():
    text = """func.func @main(%x: tensor<?x8x16x16xf32>, %dy: tensor<?x8x16x16xf32>) -> tensor<8x8x3x3xf32> {
  %w = nn.conv_weight_grad %x, %dy kernel [3, 3] pads [1, 1, 1, 1] : tensor<?x8x16x16xf32>, tensor<?x8x16x16xf32> -> tensor<8x8x3x3xf32>
  func.return %w : tensor<8x8x3x3xf32>
}"""
    from ncc.runtime.engine import llvm_ir_text

    ir = llvm_ir_text(ncc.parse_module(text))  # at O3 for this host
    assert re.search(r"fmul[a-z ]* <\d+ x float>", ir)  # the products, a vector at a time


@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_exports_to_onnx(case):
    m, inputs = _weight_grad_module(*case)
    check_export(m, inputs, tol=1e-4)
