"""The conv op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.dialects.builtin import f64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import conv as nn_conv
from ncc.dialects.nn import tensor_type as T

import test_autodiff_conv as autodiff_conv_tests
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


@pytest.mark.parametrize("x, w, kw, out", [
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1]), (1, 4, 4, 4)),
    ((2, 6, 7, 5), (4, 3, 3, 1), dict(group=2), (2, 4, 5, 5)),
    ((1, 1, 11, 11), (1, 1, 3, 3), dict(dilations=[2, 3]), (1, 1, 7, 5)),
    ((1, 2, 13), (3, 2, 4), dict(strides=[3], pads=[0, 2]), (1, 3, 4)),          # 1-D
    ((1, 2, 5, 5, 5), (3, 2, 2, 2, 2), {}, (1, 3, 4, 4, 4)),                     # 3-D
    ((None, 3, None, 32), (8, 3, 3, 3), dict(pads=[1, 1, 1, 1]), (None, 8, None, 32)),
])
def test_dialect_conv_shapes(x, w, kw, out):
    a, b = dialect_tests.values(T(x), T(w))
    assert dialect_tests.shape(nn.ConvOp(a, b, **kw)) == out
    assert dialect_tests.shape(nn.FusedConvOp(a, b, None, "relu", **kw)) == out


@pytest.mark.parametrize("x, w, kw, msg", [
    ((1, 3, 8), (4, 3), {}, r"weight \(M, C/group, kernel...\) must have rank 3"),
    ((3, 8), (4, 3), {}, r"input \(N, C, spatial...\) must have rank >= 3"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[1]), "strides must have 2 entries, got 1"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(pads=[1, 1]), r"pads \(begin..., end...\) must have 4 entries, got 2"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(dilations=[1, 1, 1]), "dilations must have 2 entries, got 3"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(strides=[0, 1]), "strides and dilations must be >= 1 and pads >= 0"),
    ((1, 4, 8, 8), (6, 2, 3, 3), dict(group=4), "6 output channels are not divisible by group 4"),
    ((1, 4, 8, 8), (4, 3, 3, 3), {}, r"input has 4 channels but the weight expects 3 x group 1 = 3"),
    ((1, 3, 2, 2), (4, 3, 3, 3), {}, r"the output would be empty: spatial size \[0, 0\]"),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(group=0), "group must be >= 1, got 0"),
])
def test_dialect_conv_errors(x, w, kw, msg):
    a, b = dialect_tests.values(T(x), T(w))
    with pytest.raises(VerifyException, match=msg):
        nn.ConvOp(a, b, **kw)


def test_dialect_conv_params_defaults_are_not_stored():
    a, b = dialect_tests.values(T((1, 3, 8, 8)), T((4, 3, 3, 3)))
    op = nn.ConvOp(a, b, strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    assert not op.properties
    assert op.params.strides == (1, 1) and op.params.pads == (0, 0, 0, 0) and op.params.group == 1
    op2 = nn.ConvOp(a, b, strides=[2, 1])
    assert set(op2.properties) == {"strides"} and op2.params.dilations == (1, 1)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def naive_conv2d(x, w, strides, pads, dilations, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, m, oh, ow))
    mg = m // group
    for b, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // mg
        acc = 0.0
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            r = i * strides[0] - pads[0] + u * dilations[0]
            s = j * strides[1] - pads[1] + v * dilations[1]
            if 0 <= r < h and 0 <= s < wd:
                acc += x[b, g * cg + ci, r, s] * w[o, ci, u, v]
        out[b, o, i, j] = acc
    return out


conv_params = st.fixed_dictionaries({
    "n": st.integers(1, 2), "group": st.integers(1, 2), "cg": st.integers(1, 2), "mg": st.integers(1, 2),
    "h": st.integers(3, 7), "w": st.integers(3, 6), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "strides": st.tuples(st.integers(1, 2), st.integers(1, 3)),
    "pads": st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)),
    "dilations": st.tuples(st.integers(1, 2), st.integers(1, 2)),
})


def _conv_inputs(p):
    x = reference_tests.randn(p["n"], p["group"] * p["cg"], p["h"], p["w"])
    w = reference_tests.randn(p["group"] * p["mg"], p["cg"], p["kh"], p["kw"])
    assume((p["h"] + p["pads"][0] + p["pads"][2] - p["dilations"][0] * (p["kh"] - 1) - 1) >= 0)
    assume((p["w"] + p["pads"][1] + p["pads"][3] - p["dilations"][1] * (p["kw"] - 1) - 1) >= 0)
    return x, w


@given(conv_params)
@settings(max_examples=40, deadline=None)
def test_reference_conv_vs_naive_loops(p):
    x, w = _conv_inputs(p)
    kw = dict(strides=p["strides"], pads=p["pads"], dilations=p["dilations"], group=p["group"])
    y = reference_tests.run1([x, w], lambda emit, a, b: emit(nn.ConvOp(a, b, **kw)))
    np.testing.assert_allclose(y, naive_conv2d(x, w, **kw), rtol=1e-10, atol=1e-12)


@given(conv_params, st.sampled_from(["relu", "tanh", "identity", "sigmoid"]))
@settings(max_examples=20, deadline=None)
def test_reference_fused_conv(p, act):
    x, w = _conv_inputs(p)
    bias = reference_tests.randn(w.shape[0])
    kw = dict(strides=p["strides"], pads=p["pads"], dilations=p["dilations"], group=p["group"])
    y = reference_tests.run1([x, w, bias], lambda emit, a, b, c: emit(nn.FusedConvOp(a, b, c, act, **kw)))
    z = naive_conv2d(x, w, **kw) + bias[None, :, None, None]
    np.testing.assert_allclose(y, reference_tests.INDEPENDENT_UNARY[act](z), rtol=1e-10, atol=1e-12)


def test_reference_conv_1d_and_3d_and_f32():
    x, w = reference_tests.randn(2, 3, 9), reference_tests.randn(4, 3, 3)
    y = reference_tests.run1([x, w], lambda emit, a, b: emit(nn.ConvOp(a, b, strides=[2], pads=[1, 0])))
    # 1-D as 2-D with a unit height
    ref = naive_conv2d(x[:, :, None, :], w[:, :, None, :], (1, 2), (0, 1, 0, 0), (1, 1), 1)[:, :, 0, :]
    np.testing.assert_allclose(y, ref, rtol=1e-10)
    x3, w3 = reference_tests.randn(1, 2, 4, 4, 4, dtype=np.float32), reference_tests.randn(3, 2, 2, 2, 2, dtype=np.float32)
    y3 = reference_tests.run1([x3, w3], lambda emit, a, b: emit(nn.ConvOp(a, b)))
    ref3 = np.zeros((1, 3, 3, 3, 3))
    for o, i, j, k in itertools.product(range(3), range(3), range(3), range(3)):
        ref3[0, o, i, j, k] = (x3[0, :, i:i + 2, j:j + 2, k:k + 2].astype(np.float64) * w3[o]).sum()
    np.testing.assert_allclose(y3, ref3, rtol=1e-5, atol=1e-5)
    assert y3.dtype == np.float32



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


@pytest.mark.parametrize("x,w,kw,out", [
    ((1, 1, 3, 3), (1, 2, 3, 3), {}, (1, 2, 5, 5)),
    ((2, 4, 5), (4, 3, 2), {"strides": [2], "group": 2, "pads": [1, 0]}, (2, 6, 9)),
    ((DYN, 2, 3, 4), (2, 1, 2, 2), {"strides": [3, 2], "output_padding": [1, 1],
                                    "dilations": [2, 1]}, (DYN, 1, 10, 9)),
])
def test_conv_transpose_shapes(x, w, kw, out):
    xv, wv = structural_tests.values(loop_tests.T(*x), loop_tests.T(*w))
    assert nn.shape_of(nn.ConvTransposeOp(xv, wv, **kw).result.type) == out


def test_conv_transpose_errors():
    x, w, w3 = structural_tests.values(loop_tests.T(1, 2, 3, 3), loop_tests.T(3, 1, 3, 3), loop_tests.T(2, 1, 3, 3))
    with pytest.raises(VerifyException, match="input has 2 channels but the weight has 3"):
        nn.ConvTransposeOp(x, w)
    with pytest.raises(VerifyException, match="3 input channels are not divisible by group 2"):
        nn.ConvTransposeOp(structural_tests.values(loop_tests.T(1, 3, 3, 3))[0], w, group=2)
    with pytest.raises(VerifyException, match="the output would be empty"):
        nn.ConvTransposeOp(x, w3, pads=[3, 0, 3, 0])
    with pytest.raises(VerifyException, match="pads and output_padding >= 0"):
        nn.ConvTransposeOp(x, w3, output_padding=[-1, 0])


def naive_conv_transpose(x, w, strides, pads, dilations, group, output_padding):
    """Scatter form, one input point and kernel offset at a time."""
    n, c, *spatial = x.shape
    _, mg, *kernel = w.shape
    k = len(kernel)
    full = [(s - 1) * st + (kk - 1) * d + 1 + op
            for s, st, kk, d, op in zip(spatial, strides, kernel, dilations, output_padding)]
    y = np.zeros((n, mg * group, *full))
    cg = c // group
    for b, ci, *pos in itertools.product(range(n), range(c), *map(range, spatial)):
        g = ci // cg
        for m, *off in itertools.product(range(mg), *map(range, kernel)):
            at = [p * st + o * d for p, st, o, d in zip(pos, strides, off, dilations)]
            y[(b, g * mg + m, *at)] += x[(b, ci, *pos)] * w[(ci, m, *off)]
    return y[(slice(None), slice(None), *(slice(pads[i], full[i] - pads[i + k]) for i in range(k)))]


CONV_TRANSPOSES = [  # x shape, w shape, params
    ((1, 1, 3, 3), (1, 2, 3, 3), {}),
    ((2, 2, 3, 4), (2, 3, 3, 2), {"strides": [3, 2], "pads": [1, 0, 2, 1]}),
    ((1, 4, 3, 3), (4, 2, 2, 3), {"group": 2, "dilations": [2, 1], "output_padding": [1, 0],
                                  "strides": [2, 2]}),
    ((2, 3, 5), (3, 2, 4), {"strides": [2], "pads": [1, 2], "output_padding": [1]}),
    ((1, 2, 2, 3, 2), (2, 1, 2, 2, 2), {"strides": [1, 2, 1], "group": 2}),
    ((1, 2, 3, 3), (2, 2, 2, 3), {"strides": [3, 2], "pads": [0, 1, 1, 0]}),  # stride > kernel
]


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_conv_transpose_reference_is_the_scatter_form(case):
    xs, ws, kw = case
    x, w = structural_tests.randn(*xs, dtype=np.float64), structural_tests.randn(*ws, dtype=np.float64)
    op = nn.ConvTransposeOp(*structural_tests.values(loop_tests.T(*xs, elt=f64), loop_tests.T(*ws, elt=f64)), **kw)
    p = op.params
    got = nn_conv.conv_transpose_reference(x, w, p.strides, p.pads, p.dilations, p.group,
                                       p.output_padding)
    want = naive_conv_transpose(x, w, p.strides, p.pads, p.dilations, p.group, p.output_padding)
    assert got.shape == nn.shape_of(op.result.type)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_conv_transpose_lowered(case):
    xs, ws, kw = case
    w = nn.WeightOp("w", structural_tests.randn(*ws))
    xs = (DYN, *xs[1:])
    m = loop_tests.build([loop_tests.T(*xs)], lambda e, x: e(nn.ConvTransposeOp(x, e(nn.WeightRefOp(w)), **kw)), [w])
    loop_tests.check(m, [structural_tests.randn(2, *xs[1:])], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    {}, {"strides": [3, 2], "output_padding": [1, 1]}, {"strides": [3, 2], "output_shape": [10, 8]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, {"strides": [2, 3], "auto_pad": "SAME_LOWER"},
    {"pads": [1, 2, 0, 1], "dilations": [2, 1]}, {"group": 2, "strides": [2, 1]},
])
def test_import_conv_transpose(attrs):
    group = attrs.get("group", 1)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    m = onnx_model([node], {"x": (structural_tests.F, [2, 2, 3, 3])}, {"y": structural_tests.F},
                   {"w": structural_tests.randn(2, 3 if group == 1 else 2, 3, 3), "b": structural_tests.randn(3 if group == 1 else 4)})
    structural_tests.check_import(m, {"x": structural_tests.randn(2, 2, 3, 3)}, rtol=1e-5, atol=1e-5, native=bool(attrs.get("group")))


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=str)
def test_export_conv_transpose(case):
    xs, ws, kw = case
    w = nn.WeightOp("w", structural_tests.randn(*ws))
    m = loop_tests.build([loop_tests.T(DYN, *xs[1:])], lambda e, x: e(nn.ConvTransposeOp(x, e(nn.WeightRefOp(w)), **kw)), [w])
    export_tests.check(m, [structural_tests.randn(*xs)], tol=1e-4)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


CONVS = [  # x shape, w shape, params
    ((1, 1, 5, 5), (1, 1, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ((1, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "dilations": [2, 1]}),
    ((3, 2, 11), (3, 2, 3), {"strides": [2], "pads": [2, 1]}),
    ((DYN, 2, 5, 5), (3, 2, 2, 2), {"pads": [0, 1, 1, 0]}),
    ((1, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ((2, 9, 6, 5), (3, 9, 3, 3), {"pads": [2, 1, 0, 3], "strides": [3, 2]}),  # channel remainder
    ((1, 10, 4, 4), (4, 5, 1, 1), {"group": 2}),                               # 1x1, 2 groups of 5
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 2, 1], "dilations": [1, 2, 1]}),
    ((1, 3, 5, 5), (2, 3, 2, 2), {"pads": [4, 4, 4, 4]}),                      # padding wider than the kernel
    ((2, 6, 5, 4), (12, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),         # blocks of 4 output channels
    ((1, 4, 5, 5), (6, 4, 3, 1), {"strides": [1, 2]}),                        # blocks of 2
]


@pytest.mark.parametrize("case", CONVS, ids=str)
@pytest.mark.parametrize("fused", [False, True])
def test_lowered_conv(case, fused):
    xs, ws, params = case
    w = nn.WeightOp("w", loop_tests.randn(*ws))
    bias = nn.WeightOp("b", loop_tests.randn(ws[0]))

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        if fused:
            return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(bias)), "relu", **params))
        return e(nn.ConvOp(x, wv, **params))

    m = loop_tests.build([loop_tests.T(*xs)], make, [w, bias])
    loop_tests.check(m, [loop_tests.randn(*(2 if d == DYN else d for d in xs))], rtol=1e-4, atol=1e-5)



# ---------------------------------------------------------------------------
# Autodiff of convolutions and pools, against PyTorch (test_autodiff_conv.py)


def conv_transpose_case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    c = autodiff_conv_tests.conv_case(seed)
    p = dict(c["params"])
    # output_padding below the stride or the dilation, as ONNX allows
    p["output_padding"] = [int(rng.integers(0, max(s, d))) for s, d in zip(p["strides"], p["dilations"])]
    cin, cg = c["w"][0], c["x"][1] // p["group"]
    # (C, M/group, kernel): the transposed conv of the conv's output shape
    y = nn.shape_of(nn.ConvOp(*_values(loop_tests.T(*c["x"]), loop_tests.T(*c["w"])), **c["params"]).result.type)[2:]
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


def _conv(seed):
    c = autodiff_conv_tests.conv_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x, w: nn.ConvOp(x, w, **c["params"]), [autodiff_conv_tests.rand(rng, c["x"]), autodiff_conv_tests.rand(rng, c["w"])],
               torch_fn=torch and autodiff_conv_tests.torch_conv(**c["params"]))


def _fused_conv(seed, act):
    c = autodiff_conv_tests.conv_case(seed)
    rng = np.random.default_rng(seed)
    m = c["w"][0]
    acts = {"relu": torch and torch.relu, "tanh": torch and torch.tanh, "silu": torch and autodiff_conv_tests.F.silu,
            "identity": None}
    check_rule(lambda x, w, b: nn.FusedConvOp(x, w, b, act, **c["params"]),
               [autodiff_conv_tests.rand(rng, c["x"]), autodiff_conv_tests.rand(rng, c["w"]), autodiff_conv_tests.rand(rng, (m,))],
               torch_fn=torch and autodiff_conv_tests.torch_conv(**c["params"], activation=acts[act]))


def _conv_transpose(seed):
    c = conv_transpose_case(seed)
    rng = np.random.default_rng(seed)
    check_rule(lambda x, w: nn.ConvTransposeOp(x, w, **c["params"]), [autodiff_conv_tests.rand(rng, c["x"]), autodiff_conv_tests.rand(rng, c["w"])],
               torch_fn=torch and autodiff_conv_tests.torch_conv_transpose(**c["params"]))


@pytest.mark.parametrize("seed", autodiff_conv_tests.FAST)
def test_conv_vjp(seed):
    _conv(seed)


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "silu"])
def test_fused_conv_vjp(act):
    _fused_conv(100 + len(act), act)


@pytest.mark.parametrize("act", ["identity", "relu"])
def test_fused_conv_with_a_residual_vjp(act):
    rng = np.random.default_rng(3)
    x, w, b = autodiff_conv_tests.rand(rng, (2, 3, 6, 5)), autodiff_conv_tests.rand(rng, (4, 3, 3, 3)), \
        autodiff_conv_tests.rand(rng, (4,))
    r = autodiff_conv_tests.rand(rng, (2, 4, 6, 5))
    check_rule(lambda x, w, b, r: nn.FusedConvOp(x, w, b, act, pads=[1, 1, 1, 1], residual=r), [x, w, b, r],
               torch_fn=torch and (lambda x, w, b, r: (lambda y: torch.relu(y) if act == "relu" else y)(
                   torch.nn.functional.conv2d(x, w, b, padding=1) + r)))


@pytest.mark.parametrize("seed", autodiff_conv_tests.FAST)
def test_conv_transpose_vjp(seed):
    _conv_transpose(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", autodiff_conv_tests.SLOW)
def test_sweep_conv_family(seed):
    _conv(seed)
    _fused_conv(seed, ["relu", "tanh", "silu", "identity"][seed % 4])
    _conv_transpose(seed)


def test_conv_transpose_vjp_with_output_padding_past_the_stride():
    """nn allows output_padding >= stride (ONNX does not): dx drops the extra
    windows, dw pads x to meet them."""
    rng = np.random.default_rng(7)
    p = {"strides": [2], "pads": [1, 0], "output_padding": [3]}
    check_rule(lambda x, w: nn.ConvTransposeOp(x, w, **p), [autodiff_conv_tests.rand(rng, (2, 2, 4)), autodiff_conv_tests.rand(rng, (2, 3, 3))],
               torch_fn=torch and autodiff_conv_tests.torch_conv_transpose([2], [1, 0], [1], 1, [3]))


def test_conv_weight_grad_shape_rule_and_errors():
    x, dy, dyb, dyn = _values(loop_tests.T(DYN, 4, 7, 6), loop_tests.T(DYN, 6, 4, 6), loop_tests.T(DYN, 6, 3, 6), loop_tests.T(DYN, DYN, 4, 6))
    op = nn.ConvWeightGradOp(x, dy, [3, 2], strides=[2, 1], pads=[1, 0, 1, 1], group=2)
    assert op.result.type == loop_tests.T(6, 2, 3, 2)
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
    ys = nn.shape_of(nn.ConvOp(*_values(loop_tests.T(*xs), loop_tests.T(*ws)), **params).result.type)
    m = loop_tests.build([loop_tests.T(*xs), loop_tests.T(*ys)], lambda e, x, dy: e(nn.ConvWeightGradOp(x, dy, ws[2:], **params)))
    rng = np.random.default_rng(5)
    return m, [rng.standard_normal([3 if d == DYN else d for d in s]).astype(np.float32) for s in (xs, ys)]


@autodiff_conv_tests.needs_torch
@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_reference_is_torchs_weight_gradient(case):
    xs, ws, params = case
    m, (x, dy) = _weight_grad_module(xs, ws, params)
    full = {"strides": [1] * (len(ws) - 2), "pads": [0] * (2 * len(ws) - 4), "dilations": [1] * (len(ws) - 2),
            "group": 1, **params}
    tw = torch.zeros(ws, dtype=torch.float64, requires_grad=True)
    y = autodiff_conv_tests.torch_conv(**full)(torch.tensor(x, dtype=torch.float64), tw)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(ncc.reference.run(m, [x, dy])[0], tw.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_lowered_and_native(case):
    m, inputs = _weight_grad_module(*case)
    loop_tests.check(m, inputs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", WEIGHT_GRADS[:4], ids=_case_id)
def test_conv_weight_grad_rows_in_chunks(case, monkeypatch):
    """A scratch smaller than the rows of every offset: the last output dimension in chunks."""
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    monkeypatch.setattr(conv_lowering, "WG_SCRATCH", 20)
    m, inputs = _weight_grad_module(*case)
    lowered = loop_tests.check(m, inputs, rtol=1e-4, atol=1e-4)
    allocas = [op for op in lowered.walk() if op.name == "memref.alloca"]
    assert len(allocas) == 1 and np.prod(allocas[0].memref.type.get_shape()) <= 20


@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=_case_id)
def test_conv_weight_grad_exports_to_onnx(case):
    m, inputs = _weight_grad_module(*case)
    export_tests.check(m, inputs, tol=1e-4)



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("attrs", [
    {}, {"pads": [1, 1, 1, 1]}, {"strides": [2, 2], "pads": [1, 0, 1, 0]},
    {"dilations": [2, 2]}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER"}, {"auto_pad": "VALID"}, {"group": 2},
])
def test_import_conv(attrs):
    cin = 4
    w = import_tests.x_of(6, cin // attrs.get("group", 1), 3, 3)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    import_tests.check(import_tests.model([node], {"x": [1, cin, 7, 8]}, inits={"w": w, "b": import_tests.x_of(6)}),
          {"x": import_tests.x_of(1, cin, 7, 8)}, rtol=1e-4, atol=1e-5)



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("k,bias,past,activation", [(4, True, False, "none"), (3, False, True, "silu"),
                                                     (1, True, True, "swish")])
def test_import_causal_conv_with_state(k, bias, past, activation):
    n, c, length = 2, 3, 5
    names = ["x", "w", "b" if bias else "", "s" if past else ""]
    inputs = {"x": (decomposition_tests.F, ["N", c, length])}
    feeds = {"x": decomposition_tests.randn(n, c, length)}
    if past:
        inputs["s"] = (decomposition_tests.F, ["N", c, k - 1])
        feeds["s"] = decomposition_tests.randn(n, c, k - 1)
    while not names[-1]:
        names.pop()
    node = helper.make_node("CausalConvWithState", names, ["y", "state"], activation=activation)
    m = decomposition_tests.model([node], inputs, ("y", "state"), inits={"w": decomposition_tests.randn(c, 1, k), "b": decomposition_tests.randn(c)}, opset=27)
    decomposition_tests.check_against_onnx_reference(m, feeds)



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("kw", export_tests.CONVS)
@pytest.mark.parametrize("fused", [False, True])
def test_export_conv(kw, fused):
    w, b = nn.WeightOp("w", export_tests.randn(4, 4 // kw.get("group", 1), 3, 3)), nn.WeightOp("b", export_tests.randn(4))

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        if fused:
            return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(b)), "relu", **kw))
        return e(nn.ConvOp(x, wv, **kw))
    export_tests.check(loop_tests.build([loop_tests.T(None, 4, 7, 6)], make, [w, b]), [export_tests.randn(2, 4, 7, 6)], tol=1e-4)


def test_export_conv_1d():
    w = nn.WeightOp("w", export_tests.randn(3, 2, 2))
    export_tests.check(loop_tests.build([loop_tests.T(1, 2, 9)], lambda e, x: e(nn.ConvOp(x, e(nn.WeightRefOp(w)), strides=[2])), [w]),
          [export_tests.randn(1, 2, 9)], tol=1e-4)




# ---------------------------------------------------------------------------
# Large convolutions of one group: im2col (or the image itself, 1x1) and the
# packed GEMM per image, natively and interpreted, against the reference.

GEMM_CONVS = [  # x shape (batch dynamic), w shape, params
    ((3, 16, 16), (16, 3, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((8, 17, 15), (12, 8, 3, 3), dict(strides=[2, 2], pads=[1, 0, 2, 1])),
    ((6, 14, 14), (8, 6, 3, 3), dict(dilations=[2, 2], pads=[2, 2, 2, 2])),
    ((32, 12, 12), (24, 32, 1, 1), {}),  # 1x1, stride 1: the image is the GEMM's B
    ((32, 24, 24), (24, 32, 1, 1), dict(strides=[2, 2])),  # 1x1, stride 2: im2col
    ((4, 300), (8, 4, 5), dict(pads=[2, 2])),  # 1-D
    ((8, 20, 19), (12, 8, 3, 3), dict(strides=[3, 2], dilations=[2, 1], pads=[2, 1, 0, 2])),  # by phase
    ((16, 400), (8, 16, 5), dict(strides=[3], pads=[2, 1])),  # 1-D by phase
]


@pytest.mark.parametrize("case", GEMM_CONVS, ids=str)
@pytest.mark.parametrize("fused", [None, "relu", "relu6", "residual"])  # relu, relu6, a residual: in the GEMM's tile
@pytest.mark.parametrize("batch", [1, 3])
def test_lowered_large_conv_is_a_gemm_per_image(case, fused, batch):
    from ncc.passes.lowering import gemm
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    xs, ws, kw = case
    rng = np.random.default_rng(len(xs) + batch)
    w = nn.WeightOp("w", rng.standard_normal(ws).astype(np.float32) * 0.2)
    bias = nn.WeightOp("b", rng.standard_normal(ws[0]).astype(np.float32))

    out = nn.shape_of(nn.ConvOp(*dialect_tests.values(T((1, *xs)), T(ws)), **kw).result.type)[1:]

    def make(e, x, *r):
        wv = e(nn.WeightRefOp(w))
        if fused:
            act = "relu" if fused == "residual" else fused
            return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(bias)), act, **kw, residual=r[0] if r else None))
        return e(nn.ConvOp(x, wv, **kw))
    module = loop_tests.build([loop_tests.T(DYN, *xs)] + ([loop_tests.T(DYN, *out)] if fused == "residual" else []),
                              make, [w, bias] if fused else [w])
    conv_op = next(op for op in module.walk() if isinstance(op, (nn.ConvOp, nn.FusedConvOp)))
    assert conv_lowering.gemm_shape(conv_op) is not None
    inputs = [rng.standard_normal((batch, *xs)).astype(np.float32)]
    if fused == "residual":
        inputs.append(rng.standard_normal((batch, *out)).astype(np.float32))
    lowered = loop_tests.check(module, inputs, rtol=1e-4, atol=1e-4)
    assert any(op.name == "func.call" and op.callee.string_value() == gemm.SYMBOL for op in lowered.walk())


# ---------------------------------------------------------------------------
# A conv's backward on the GEMM: conv_weight_grad as dy @ im2col^T summed over
# the images, conv_transpose as w^T @ x then col2im, natively and interpreted.

GEMM_WEIGHT_GRADS = [  # x shape (batch dynamic), w shape, params; the variant each covers
    ((8, 20, 20), (12, 8, 3, 3), dict(pads=[1, 1, 1, 1])),  # kernel-major, one image per product
    ((16, 13, 13), (20, 16, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 1])),  # kernel-major, many images
    ((32, 7, 7), (64, 32, 3, 3), dict(pads=[1, 1, 1, 1])),  # channel-major: fewer positions than channels
    ((32, 13, 13), (64, 32, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1])),  # ... strided: by phase
    ((8, 12, 12), (160, 8, 3, 3), dict(pads=[1, 1, 1, 1])),  # channel-major, one image: col'^T read transposed
    ((8, 24, 23), (160, 8, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1])),  # ... strided
    ((32, 12, 12), (24, 32, 1, 1), {}),  # 1x1, stride 1: the channels-last image is col'
    ((32, 24, 24), (24, 32, 1, 1), dict(strides=[2, 2])),  # 1x1 kernel, stride 2
    ((6, 14, 14), (8, 6, 3, 3), dict(dilations=[2, 2], pads=[2, 2, 2, 2])),
    ((4, 300), (8, 4, 5), dict(pads=[2, 2], strides=[1])),  # 1-D
    ((4, 6, 6, 6), (8, 4, 3, 3, 3), dict(pads=[1, 1, 1, 1, 1, 1])),  # 3-D
    ((3, 80, 80), (8, 3, 7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3])),  # a stem: col' by chunks of rows
    ((3, 48, 48), (64, 3, 7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3])),  # ... 64 channels: dw'^T
    ((2, 35, 33), (5, 2, 3, 3), dict(pads=[1, 0, 2, 1])),  # chunks with uneven padding, a partial last chunk
]


def _weight_grad_params():
    """Every case at batch 1 and 7; the stem's 7 images (30 s in the loop interpreter) only with -m slow."""
    for batch in (1, 7):
        for case in GEMM_WEIGHT_GRADS:
            stem = case[1][2:] == (7, 7)  # the stems' 7 images
            yield pytest.param(case, batch, id=f"{batch}-{case}", marks=[pytest.mark.slow] if stem and batch > 1 else [])


@pytest.mark.parametrize("case,batch", list(_weight_grad_params()))
def test_conv_weight_grad_on_the_gemm(case, batch):
    from ncc.passes.lowering import gemm
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    xs, ws, kw = case
    m, _ = _weight_grad_module((DYN, *xs), ws, kw)
    op = next(o for o in m.walk() if isinstance(o, nn.ConvWeightGradOp))
    assert conv_lowering.weight_grad_gemm_shape(op) is not None
    ys = nn.shape_of(op.operands[1].type)[1:]
    rng = np.random.default_rng(batch)
    inputs = [rng.standard_normal((batch, *s)).astype(np.float32) for s in (xs, ys)]
    lowered = loop_tests.check(m, inputs, rtol=1e-4, atol=1e-4)
    assert any(o.name == "func.call" and o.callee.string_value() == gemm.SYMBOL for o in lowered.walk())


def test_the_weight_grad_cases_cover_every_variant():
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    seen = set()
    for xs, ws, kw in GEMM_WEIGHT_GRADS:
        op = next(o for o in _weight_grad_module((DYN, *xs), ws, kw)[0].walk()
                  if isinstance(o, nn.ConvWeightGradOp))
        staging, _, stage, acc = conv_lowering._weight_grad_parts(op)
        seen |= {("channel-major" if conv_lowering._channel_major(op) else "kernel-major"),
                 "images per product" if stage else "one image", "dw'" if acc else "dw",
                 "image is col'" if not staging else "staged",
                 "chunks" if conv_lowering.weight_grad_chunk_rows(op) else "whole",
                 "dw'^T" if conv_lowering._weight_grad_swapped(op) else "dw' or dw"}
        if conv_lowering._channel_major(op):
            seen.add("col'^T" if conv_lowering.images_per_product(op) == 1 else "col'")
    assert seen == {"channel-major", "kernel-major", "images per product", "one image", "dw'", "dw",
                    "image is col'", "staged", "chunks", "whole", "dw'^T", "dw' or dw", "col'^T", "col'"}


GEMM_CONV_TRANSPOSES = [  # x shape (batch dynamic), w shape, params
    ((32, 12, 12), (32, 8, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    ((160, 6, 6), (160, 8, 3, 3), dict(pads=[1, 1, 1, 1])),  # more rows than points: col^T of 7 images
    ((32, 12, 12), (32, 24, 1, 1), {}),  # 1x1 moving no point: the product is the output
    ((160, 6, 6), (160, 70, 1, 1), {}),  # ... transposed into the output
    ((40, 10, 13), (40, 140, 1, 1), {}),  # col^T of one image at a time
    ((32, 12, 12), (32, 24, 1, 1), dict(strides=[2, 2])),  # 1x1, stride 2: col2im
    ((16, 300), (16, 4, 5), dict(strides=[2], pads=[2, 1], dilations=[2])),  # 1-D
]


def test_the_conv_transpose_cases_cover_every_variant():
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    seen = set()
    for xs, ws, kw in GEMM_CONV_TRANSPOSES:
        op = nn.ConvTransposeOp(*_values(loop_tests.T(DYN, *xs), loop_tests.T(*ws)), **kw)
        col, colt, stage = conv_lowering._transpose_parts(op)
        seen |= {"col^T" if colt else "col", "col2im" if col else "product is the output",
                 "images side by side" if stage else "one image"}
    assert seen == {"col^T", "col", "col2im", "product is the output", "images side by side", "one image"}


@pytest.mark.parametrize("case", GEMM_CONV_TRANSPOSES, ids=str)
@pytest.mark.parametrize("batch", [1, 8])
def test_conv_transpose_on_the_gemm(case, batch):
    from ncc.passes.lowering import gemm
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    xs, ws, kw = case
    rng = np.random.default_rng(batch)
    w = nn.WeightOp("w", rng.standard_normal(ws).astype(np.float32) * 0.2)
    m = loop_tests.build([loop_tests.T(DYN, *xs)], lambda e, x: e(nn.ConvTransposeOp(x, e(nn.WeightRefOp(w)), **kw)),
                         [w])
    op = next(o for o in m.walk() if isinstance(o, nn.ConvTransposeOp))
    assert conv_lowering.transpose_gemm_shape(op) is not None
    lowered = loop_tests.check(m, [rng.standard_normal((batch, *xs)).astype(np.float32)], rtol=1e-4, atol=1e-4)
    assert any(o.name == "func.call" and o.callee.string_value() == gemm.SYMBOL for o in lowered.walk())


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_conv_backward_on_the_gemm_random_shapes(seed):
    """Random 2-D shapes (primes, 1s, strides, dilations, uneven pads) large
    enough for the GEMM paths, natively against the reference at batches that
    fill and do not fill a group of images."""
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    rng = np.random.default_rng(seed)
    on_gemm = 0
    for _ in range(12):
        c, m, h, w = (int(v) for v in (rng.integers(8, 70), rng.integers(4, 90), rng.integers(4, 24),
                                       rng.integers(4, 30)))
        kernel, strides, dilations = ([int(v) for v in rng.integers(1, hi, 2)] for hi in (4, 4, 3))
        pads = [int(v) for v in rng.integers(0, 3, 4)]
        kw = dict(strides=strides, pads=pads, dilations=dilations)
        xs, ws = (DYN, c, h, w), (m, c, *kernel)
        try:
            module, _ = _weight_grad_module(xs, ws, kw)
        except VerifyException:  # the kernel does not fit the padded image
            continue
        op = next(o for o in module.walk() if isinstance(o, nn.ConvWeightGradOp))
        on_gemm += conv_lowering.weight_grad_gemm_shape(op) is not None
        ys = nn.shape_of(op.operands[1].type)[1:]
        transpose = loop_tests.build([loop_tests.T(DYN, *ys), loop_tests.T(*ws)],
                                     lambda e, dy, wt: e(nn.ConvTransposeOp(dy, wt, **kw)))
        for batch in (1, 6):
            x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
            dy = rng.standard_normal((batch, *ys)).astype(np.float32)
            wt = rng.standard_normal(ws).astype(np.float32)
            for mod, inputs in ((module, [x, dy]), (transpose, [dy, wt])):
                want = ncc.reference.run(mod, [a.astype(np.float64) for a in inputs])[0]
                got = loop_tests.native(mod, inputs, "lower-to-loops")[0]
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
    assert on_gemm >= 3


# ---------------------------------------------------------------------------
# nn.packed_conv and pack-weights: a conv with few output positions as the
# transposed GEMM out^T = col^T @ w^T, w^T packed once.

PACKED_CONVS = [  # x shape (batch dynamic), w shape, params: more channels than positions, C x kernel >= 128
    ((64, 7, 7), (96, 64, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((160, 6, 6), (70, 160, 1, 1), {}),  # 1x1, stride 1: the image is the GEMM's A, read transposed
    ((32, 9, 8), (40, 32, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 1])),
    ((16, 8, 8), (65, 16, 3, 3), dict(dilations=[2, 2], pads=[2, 2, 2, 2])),
    ((48, 40), (50, 48, 3), dict(pads=[1, 1])),  # 1-D
]


def _conv_module(xs, ws, kw, activation="relu", seed=0, residual=False):
    """A conv (activation None) or fused_conv of x (batch dynamic), with a
    residual (a second input) if asked."""
    rng = np.random.default_rng(seed)
    w = nn.WeightOp("w", rng.standard_normal(ws).astype(np.float32) * 0.2)
    bias = nn.WeightOp("b", rng.standard_normal(ws[0]).astype(np.float32))
    out = nn.shape_of(nn.ConvOp(*dialect_tests.values(T((1, *xs)), T(ws)), **kw).result.type)[1:]

    def make(e, x, *r):
        wv = e(nn.WeightRefOp(w))
        if activation is None:
            return e(nn.ConvOp(x, wv, **kw))
        return e(nn.FusedConvOp(x, wv, e(nn.WeightRefOp(bias)), activation, **kw, residual=r[0] if r else None))
    return loop_tests.build([loop_tests.T(DYN, *xs)] + ([loop_tests.T(DYN, *out)] if residual else []), make,
                            [w] if activation is None else [w, bias])


def test_packed_conv_shape_rule_reference_and_errors():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((40, 3, 3, 3)).astype(np.float32)
    panels = nn_conv.pack_conv_panels(w)
    assert panels.shape == (2, 27, 32) and not panels[1, :, 8:].any()  # zeros past channel 40
    assert np.array_equal(nn_conv.unpack_conv_panels(panels, 40, [3, 3]), w)
    x, p, bias = dialect_tests.values(T((DYN, 3, 9, 9)), T((2, 27, 32)), T((40,)))
    op = nn.PackedConvOp(x, p, 40, [3, 3], bias, "relu", strides=[2, 2], pads=[1, 1, 1, 1])
    assert dialect_tests.shape(op) == (None, 40, 5, 5)
    xv = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    bv = rng.standard_normal(40).astype(np.float32)
    want = np.maximum(nn_conv.conv_reference(xv, w, [2, 2], [1, 1, 1, 1], [1, 1], 1) + bv[:, None, None], 0)
    np.testing.assert_allclose(nn.REFERENCE[nn.PackedConvOp](op, xv, panels, bv), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(VerifyException, match="do not hold 70 output channels"):
        nn.PackedConvOp(x, p, 70, [3, 3])
    with pytest.raises(VerifyException, match=r"do not hold a kernel \[2, 2\] over the input's 3 channels"):
        nn.PackedConvOp(x, p, 40, [2, 2])
    with pytest.raises(VerifyException, match="must have rank 3"):
        nn.PackedConvOp(x, p, 40, [27])
    short_bias, = dialect_tests.values(T((39,)))
    with pytest.raises(VerifyException, match="bias"):
        nn.PackedConvOp(x, p, 40, [3, 3], short_bias)


def test_pack_weights_transposes_only_convs_with_more_channels_than_positions():
    from ncc.passes.pack_weights import pack_weights

    for xs, ws, kw in PACKED_CONVS:
        module = _conv_module(xs, ws, kw)
        assert pack_weights(module) == 1, (xs, ws)
        assert [op.name for op in module.walk() if op.name.endswith("_conv")] == ["nn.packed_conv"]
    kept = [((64, 28, 28), (128, 64, 3, 3), dict(pads=[1, 1, 1, 1])),  # 784 positions > 128 channels
            ((32, 6, 6), (96, 32, 1, 1), {}),  # C x kernel = 32: too short to pay for the transpose
            ((3, 9, 9), (4, 3, 3, 3), {})]  # too small for the GEMM
    for xs, ws, kw in kept:
        assert pack_weights(_conv_module(xs, ws, kw)) == 0, (xs, ws)
    given = loop_tests.build([loop_tests.T(DYN, 64, 7, 7), loop_tests.T(96, 64, 3, 3)],
                             lambda e, x, w: e(nn.ConvOp(x, w)))  # a weight not known at compile time
    assert pack_weights(given) == 0


@pytest.mark.parametrize("case, activation", list(zip(PACKED_CONVS, [None, "relu", "tanh", "relu", "tanh"])), ids=str)
def test_packed_conv_runs_natively_and_interpreted(case, activation):
    """None: no epilogue; relu: in the GEMM's tile; tanh: in the pass that transposes out^T."""
    xs, ws, kw = case
    module = _conv_module(xs, ws, kw, activation, seed=len(xs))
    rng = np.random.default_rng(ws[0])
    model = ncc.compile(module, cache=False, threads=2)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *xs)).astype(np.float32)
        (want,) = ncc.reference.run(module, [x])
        np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    model.params["w"] = model.params["w"] * -0.5  # the panels follow the parameter
    (want,) = ncc.reference.run(module, [x], params={k: np.asarray(v) for k, v in model.params.items()})
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    packed = ncc.parse_module(ncc.print_module(module))
    ncc.run_passes(packed, "pack-weights,fold-weights")
    assert any(isinstance(op, nn.PackedConvOp) for op in packed.walk())
    loop_tests.check(packed, [x], rtol=1e-4, atol=1e-4)  # the loops and the GEMM, interpreted and native


@pytest.mark.parametrize("case, activation", list(zip(PACKED_CONVS[:3], ["relu", "tanh", "identity"])), ids=str)
def test_packed_conv_with_a_residual(case, activation):
    """A residual (a ResNet block's end, at 7 x 7): added, with the bias and the
    activation, as out^T is transposed back; natively and interpreted; exported."""
    xs, ws, kw = case
    module = _conv_module(xs, ws, kw, activation, seed=len(xs), residual=True)
    packed = ncc.parse_module(ncc.print_module(module))
    ncc.run_passes(packed, "pack-weights")
    export_tests.check(packed, [export_tests.randn(2, *xs), export_tests.randn(2, ws[0], *_out_of(module))],
                       tol=1e-4)
    ncc.run_passes(packed, "fold-weights")
    op = next(op for op in packed.walk() if isinstance(op, nn.PackedConvOp))
    assert op.residual is not None
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        loop_tests.check(packed, [rng.standard_normal((batch, *xs)).astype(np.float32),
                                  rng.standard_normal((batch, ws[0], *_out_of(module))).astype(np.float32)],
                         rtol=1e-4, atol=1e-4)


def _out_of(module) -> tuple:
    """The spatial output shape of the module's convolution."""
    return nn.shape_of(next(op for op in module.walk() if op.name.endswith("_conv")).result.type)[2:]


def test_packed_conv_exports_to_onnx():
    module = _conv_module(*PACKED_CONVS[0])
    ncc.run_passes(module, "pack-weights")
    export_tests.check(module, [export_tests.randn(2, *PACKED_CONVS[0][0])], tol=1e-4)


# ---------------------------------------------------------------------------
# Depthwise convolutions (MobileNet): a zero-bordered copy of each plane, the
# taps summed in registers along each output row.

DEPTHWISE = [  # x shape (batch dynamic), params, activation (None: nn.conv)
    ((8, 14, 14), dict(pads=[1, 1, 1, 1]), "relu6"),
    ((5, 15, 12), dict(strides=[2, 2], pads=[1, 0, 2, 1]), "relu"),
    ((3, 9, 9), dict(dilations=[2, 1], pads=[2, 1, 2, 1]), None),
    ((4, 7, 6), {}, "tanh"),
    ((3, 11, 40), dict(strides=[1, 3], dilations=[1, 2], pads=[1, 2, 1, 0]), "relu6"),  # 3 phases, 13 wide
    ((2, 6, 37), dict(strides=[2, 2], pads=[1, 1, 1, 1]), None),  # rows of 19 computed 32 wide
]


@pytest.mark.parametrize("case", DEPTHWISE, ids=str)
def test_depthwise_conv_runs_natively_and_interpreted(case):
    from ncc.passes.lowering.nn_to_loops import conv as conv_lowering

    xs, kw, act = case
    c = xs[0]
    rng = np.random.default_rng(c)
    w = nn.WeightOp("w", rng.standard_normal((c, 1, 3, 3)).astype(np.float32))
    bias = nn.WeightOp("b", rng.standard_normal(c).astype(np.float32))

    def make(e, x):
        if act is None:
            return e(nn.ConvOp(x, e(nn.WeightRefOp(w)), group=c, **kw))
        return e(nn.FusedConvOp(x, e(nn.WeightRefOp(w)), e(nn.WeightRefOp(bias)), act, group=c, **kw))
    module = loop_tests.build([loop_tests.T(DYN, *xs)], make, [w] if act is None else [w, bias])
    conv_op = next(op for op in module.walk() if isinstance(op, (nn.ConvOp, nn.FusedConvOp)))
    assert conv_lowering.conv_scratch_bytes(conv_op, 1) > 0, "the depthwise lowering's padded plane"
    for batch in (1, 3):
        loop_tests.check(module, [3 * rng.standard_normal((batch, *xs)).astype(np.float32)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [DEPTHWISE[0], DEPTHWISE[3]], ids=str)
def test_depthwise_and_direct_conv_with_a_residual(case):
    """MobileNetV2's block end has its residual after a 1x1 conv; a depthwise
    (and a small, direct) convolution takes one in a pass over its planes."""
    xs, kw, act = case
    c = xs[0]
    rng = np.random.default_rng(c)
    for ws, group in (((c, 1, 3, 3), c), ((4, c, 3, 3), 1)):
        module = _conv_module(xs, ws, {**kw, "group": group}, act, seed=c, residual=True)
        r = (1, ws[0], *_out_of(module))
        loop_tests.check(module, [rng.standard_normal((1, *xs)).astype(np.float32),
                                  rng.standard_normal(r).astype(np.float32)], rtol=1e-4, atol=1e-4)
