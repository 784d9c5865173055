"""ONNX ops the importer decomposes into nn ops (normalizations, losses,
attention, rotary embeddings, einsum, ...): each checked against onnxruntime
in the reference interpreter and as native code, and the exported import
passes onnx.checker (full_check) and gives onnxruntime's results again."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import onnx_model
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.diagnostics import NccError
from ncc.onnx import import_onnx

F, D, I64, B = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL
RNG = np.random.default_rng(3)


model = onnx_model


def ort_run(m, feeds):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feeds[n] for n in names})


def same(got, want, rtol, atol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check(m, feeds, rtol=1e-4, atol=1e-5, native=True):
    """onnxruntime's results = the reference run of the import = native code
    (ncc.compile) = onnxruntime on the exported import (after onnx.checker)."""
    want = ort_run(m, feeds)
    module = import_onnx(m)
    same(ncc.reference.run(module, feeds), want, rtol, atol)
    exported = ncc.export_onnx(module)
    onnx.checker.check_model(exported, full_check=True)
    same(ort_run(exported, feeds), want, rtol, atol)
    if native:
        same(ncc.compile(m).run(feeds), want, rtol, atol)
    return module


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def diag(m) -> str:
    with pytest.raises(NccError) as e:
        import_onnx(m)
    return str(e.value)


# ---------------------------------------------------------------------------
# Normalizations


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_layer_norm_mean_and_inv_std_dev(axis):
    shape = [2, 3, 4]
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"],
                            axis=axis, epsilon=1e-3)
    inits = {"s": randn(*shape[axis:]), "b": randn(*shape[axis:])}
    check(model([node], {"x": (F, shape)}, ("y", "mean", "inv"), inits, opset=17), {"x": randn(*shape)})


def test_layer_norm_mean_only_with_a_dynamic_batch():
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], axis=1)
    check(model([node], {"x": (F, ["N", 3, 4])}, ("y", "mean"), {"s": randn(3, 4)}, opset=17),
          {"x": randn(5, 3, 4)})


def test_layer_norm_stats_of_another_stash_type():
    # a double input, its Mean and InvStdDev in float (stash_type 1, the default)
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv"])
    m = model([node], {"x": (D, [2, 3])}, {"y": D, "mean": F, "inv": F},
              {"s": randn(3, dtype=np.float64)}, opset=17)
    check(m, {"x": randn(2, 3, dtype=np.float64)})


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_normalization(axis):
    shape = [2, 3, 4]
    node = helper.make_node("RMSNormalization", ["x", "s"], ["y"], axis=axis, epsilon=1e-3)
    check(model([node], {"x": (F, shape)}, inits={"s": randn(*shape[axis:])}, opset=23),
          {"x": randn(*shape)})


def test_instance_normalization():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    check(model([node], {"x": (F, ["N", 3, 4, 5])}, inits={"s": randn(3), "b": randn(3)}),
          {"x": randn(2, 3, 4, 5)})


@pytest.mark.parametrize("opset", [18, 21])  # scale and bias per group, then per channel
def test_group_normalization(opset):
    c = 2 if opset == 18 else 6
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-3)
    check(model([node], {"x": (F, ["N", 6, 2, 3])}, inits={"s": randn(c), "b": randn(c)}, opset=opset),
          {"x": randn(3, 6, 2, 3)})


def test_group_normalization_groups_must_divide_the_channels():
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=4, name="gn")
    m = model([node], {"x": (F, [1, 6, 2])}, inits={"s": randn(6), "b": randn(6)}, opset=21)
    assert diag(m) == "g: error: node 'gn' (GroupNormalization): num_groups 4 must divide the 6 channels"


@pytest.mark.parametrize("axes", [None, [1, 2]])
def test_mean_variance_normalization(axes):
    attrs = {} if axes is None else {"axes": axes}
    node = helper.make_node("MeanVarianceNormalization", ["x"], ["y"], **attrs)
    check(model([node], {"x": (F, [2, 3, 4, 5])}, opset=13), {"x": randn(2, 3, 4, 5)})


@pytest.mark.parametrize("p,axis", [(1, -1), (2, 0), (2, 1)])
def test_lp_normalization_with_a_zero_row(p, axis):
    x = randn(3, 4)
    x[1] = 0
    x[:, 2] = 0
    node = helper.make_node("LpNormalization", ["x"], ["y"], p=p, axis=axis)
    check(model([node], {"x": (F, [3, 4])}, opset=22), {"x": x})


def test_lp_normalization_needs_p_1_or_2():
    m = model([helper.make_node("LpNormalization", ["x"], ["y"], p=3, name="lp")], {"x": (F, [3])})
    assert diag(m) == "g: error: node 'lp' (LpNormalization): p must be 1 or 2, got 3"


@pytest.mark.parametrize("opset,keepdims", [(13, 0), (18, 1), (18, 0)])
def test_reduce_log_sum_exp_of_large_values(opset, keepdims):
    if opset < 18:
        node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[0, -1], keepdims=keepdims)
        inits = {}
    else:
        node = helper.make_node("ReduceLogSumExp", ["x", "a"], ["y"], keepdims=keepdims)
        inits = {"a": np.array([1, -1], np.int64)}
    x = randn(2, 3, 4) * 100  # exp alone would overflow float32
    check(model([node], {"x": (F, [2, 3, 4])}, inits=inits, opset=opset), {"x": x})


def test_reduce_log_sum_exp_of_every_axis_with_a_dynamic_batch():
    node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], keepdims=0)
    check(model([node], {"x": (F, ["N", 3])}, opset=18), {"x": randn(4, 3) * 50})


# ---------------------------------------------------------------------------
# Losses


def loss_case(op, shape, *, weight=False, ii=None, reduction="mean", batch="static",
              log_prob=False, opset=13):
    n, c, *rest = shape
    x = randn(*shape)
    if op == "NegativeLogLikelihoodLoss":
        x = np.log(np.abs(x) + 0.1)
    t = RNG.integers(0, c, size=[n, *rest]).astype(np.int64)
    if ii is not None:
        t.reshape(-1)[::3] = ii
    attrs = {"reduction": reduction, **({} if ii is None else {"ignore_index": ii})}
    outs = ("loss", "log_prob") if log_prob else ("loss",)
    lead = "N" if batch == "dynamic" else n
    inputs = {"x": (F, [lead, c, *rest]), "t": (I64, [lead, *rest])}
    feeds = {"x": x, "t": t}
    if weight:
        inputs["w"] = (F, [c])
        feeds["w"] = RNG.random(c).astype(np.float32)
    node = helper.make_node(op, list(inputs), list(outs), **attrs)
    return model([node], inputs, outs, opset=opset), feeds


LOSS_CASES = [  # shape, weight, ignore_index, reduction, batch
    ((4, 5), False, None, "mean", "static"),
    ((4, 5), True, None, "sum", "dynamic"),
    ((3, 5, 2, 3), False, None, "none", "static"),
    ((3, 5, 2, 3), True, None, "mean", "dynamic"),
    ((3, 5, 4), False, 2, "mean", "static"),     # ignore_index is a class
    ((3, 5, 4), True, -1, "mean", "dynamic"),    # below the classes
    ((6, 5), True, 9, "sum", "static"),          # above the classes
    ((3, 5, 2, 2), False, -3, "none", "dynamic"),
    ((3, 5, 2, 2), True, 4, "none", "static"),
]


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("shape,weight,ii,reduction,batch", LOSS_CASES)
def test_losses(op, shape, weight, ii, reduction, batch):
    m, feeds = loss_case(op, shape, weight=weight, ii=ii, reduction=reduction, batch=batch,
                         log_prob=op == "SoftmaxCrossEntropyLoss" and batch == "static")
    check(m, feeds)


def test_loss_of_many_classes_with_a_dynamic_batch():
    m, feeds = loss_case("SoftmaxCrossEntropyLoss", (3, 5000, 2), weight=True, ii=7, batch="dynamic")
    check(m, feeds)


def test_nll_loss_opset_12_and_22():
    for opset in (12, 22):
        m, feeds = loss_case("NegativeLogLikelihoodLoss", (3, 4, 2), weight=True, ii=1, opset=opset)
        check(m, feeds, native=False)


def test_loss_diagnostics():
    m, _ = loss_case("SoftmaxCrossEntropyLoss", (2, 3), reduction="max")
    assert diag(m).endswith("(SoftmaxCrossEntropyLoss): unknown reduction 'max' (known: none, sum, mean)")
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="nll")
    m = model([node], {"x": (F, [2, 3, 4]), "t": (I64, [2, 5])})
    assert diag(m) == ("g: error: node 'nll' (NegativeLogLikelihoodLoss): the input (N, C, d...) and "
                       "the target (N, d...) do not match: tensor<2x3x4xf32> and tensor<2x5xi64>")


# ---------------------------------------------------------------------------
# Attention and rotary embeddings


def attention_case(*, rank=4, n=2, hq=4, hkv=4, q_len=3, kv_len=5, head=8, v_head=8, mask=None,
                   past=0, nonpad=None, batch="static", outputs=("y",), opset=23, **attrs):
    """An Attention node, its inputs and random feeds (mask: an array, fed as a float input)."""
    if rank == 3:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
    lead = "N" if batch == "dynamic" else n

    def shape(h, s, d):
        return [h, s, d] if rank == 4 else [s, h * d]

    inputs = {"q": (F, [lead, *shape(hq, q_len, head)]), "k": (F, [lead, *shape(hkv, kv_len, head)]),
              "v": (F, [lead, *shape(hkv, kv_len, v_head)])}
    names = ["q", "k", "v", "", "", "", ""]
    if mask is not None:
        inputs["m"], names[3] = (F, list(mask.shape)), "m"
    if past:
        inputs["pk"], inputs["pv"] = (F, [lead, hkv, past, head]), (F, [lead, hkv, past, v_head])
        names[4:6] = ["pk", "pv"]
    if nonpad is not None:
        inputs["len"], names[6] = (I64, [n]), "len"
    feeds = {k: randn(n, *s[1:]) for k, (t, s) in inputs.items() if t == F}
    if mask is not None:
        feeds["m"] = mask
    if nonpad is not None:
        feeds["len"] = np.asarray(nonpad, np.int64)
    while not names[-1]:
        names.pop()
    outs = {o: F for o in outputs if o}
    node = helper.make_node("Attention", names, list(outputs), **attrs)
    return model([node], inputs, outs, opset=opset), feeds


def neg_inf_rows(shape, rows):
    """A float mask: 0 everywhere, -inf on the given query rows (no key left)."""
    m = np.zeros(shape, np.float32)
    m[..., rows, :] = -np.inf
    return m


ATTENTION_CASES = {
    "mha": {},
    "3d_gqa_other_value_size": dict(rank=3, hq=6, hkv=2, v_head=5),
    "scale_softcap": dict(scale=0.3, softcap=2.0),
    "causal_more_queries_than_keys": dict(is_causal=1, q_len=6, kv_len=4),
    "float_mask_4d": dict(mask=randn(2, 1, 3, 5)),
    "rows_with_no_key": dict(mask=neg_inf_rows((3, 5), [1]), outputs=("y", "", "", "qk"),
                             qk_matmul_output_mode=3),
    "past_and_present_causal_mask": dict(past=2, is_causal=1, mask=randn(4, 3, 7), hkv=2,
                                         outputs=("y", "present_k", "present_v")),
    "dynamic_batch_3d": dict(rank=3, hq=4, hkv=2, batch="dynamic", is_causal=1),
    "nonpad_causal_decode": dict(opset=24, q_len=1, kv_len=8, hkv=2, nonpad=[3, 8], is_causal=1),
    "nonpad_mask_negative_offset": dict(opset=24, q_len=4, kv_len=4, nonpad=[2, 0], is_causal=1,
                                        mask=randn(4, 4)),
    "local_window": dict(opset=25, is_causal=1, left_window_size=1, q_len=4, kv_len=6),
    **{f"qk_output_mode_{mode}": dict(softcap=1.5, mask=randn(3, 5), qk_matmul_output_mode=mode,
                                      outputs=("y", "", "", "qk")) for mode in range(4)},
}


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention(case):
    kw = ATTENTION_CASES[case]
    m, feeds = attention_case(**kw)
    module = check(m, feeds)
    ops = [o.name for o in list(module.ops)[-1].body.block.ops]
    masked = "mask" in kw or "nonpad" in kw
    assert ("nn.softmax" in ops) != masked  # a row may lose every key: the zeroing softmax


def test_attention_mask_shorter_than_the_keys_against_onnx_reference():
    # the mask covers the first 4 of 6 keys; the rest are masked (onnxruntime refuses this)
    from onnx.reference import ReferenceEvaluator

    m, feeds = attention_case(opset=24, kv_len=6, mask=randn(2, 4, 3, 4), nonpad=[4, 3])
    want = ReferenceEvaluator(m).run(None, feeds)
    same(ncc.reference.run(import_onnx(m), feeds), want, 1e-4, 1e-5)
    same(ncc.compile(m).run(feeds), want, 1e-4, 1e-5)


def test_attention_constant_boolean_mask():
    mask = RNG.random((3, 5)) < 0.7
    mask[:, 0] = True
    m, feeds = attention_case()
    m.graph.initializer.append(numpy_helper.from_array(mask, "bm"))
    m.graph.node[0].input.append("bm")
    check(m, feeds)


def test_attention_boolean_mask_input():
    mask = RNG.random((2, 1, 3, 5)) < 0.6
    mask[..., 0, :] = False  # a query row with no key: zeros
    m, feeds = attention_case()
    m.graph.input.append(helper.make_tensor_value_info("bm", B, [2, 1, 3, 5]))
    m.graph.node[0].input.append("bm")
    feeds["bm"] = mask
    check(m, feeds)


def test_attention_diagnostics():
    m, _ = attention_case(rank=3)
    del m.graph.node[0].attribute[:]
    m.graph.node[0].name = "att"
    assert diag(m) == "g: error: node 'att' (Attention): 3-D inputs need the attributes q_num_heads and kv_num_heads"


@pytest.mark.parametrize("rank,interleaved,rot,positions", [
    (4, 0, 0, True), (4, 1, 0, False), (3, 0, 4, True), (3, 1, 4, True), (4, 1, 6, False)])
def test_rotary_embedding(rank, interleaved, rot, positions):
    n, heads, seq, head = 2, 3, 5, 8
    half = (rot or head) // 2
    x_shape = [n, heads, seq, head] if rank == 4 else [n, seq, heads * head]
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot}
    if rank == 3:
        attrs["num_heads"] = heads
    inputs = {"x": (F, x_shape)}
    angles = RNG.random((11, half)).astype(np.float32) * 6
    if positions:
        inputs["pos"] = (I64, [n, seq])
        feeds = {"x": randn(*x_shape), "pos": RNG.integers(0, 11, (n, seq))}
        cos, sin = np.cos(angles), np.sin(angles)
        names = ["x", "cos", "sin", "pos"]
    else:
        feeds = {"x": randn(*x_shape)}
        idx = RNG.integers(0, 11, (n, seq))
        cos, sin = np.cos(angles)[idx], np.sin(angles)[idx]
        names = ["x", "cos", "sin"]
    node = helper.make_node("RotaryEmbedding", names, ["y"], **attrs)
    check(model([node], inputs, inits={"cos": cos, "sin": sin}, opset=23), feeds)


def test_rotary_embedding_with_a_dynamic_batch():
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])
    angles = RNG.random((6, 4)).astype(np.float32)
    m = model([node], {"x": (F, ["N", 2, 3, 8]), "pos": (I64, ["N", 3])},
              inits={"cos": np.cos(angles), "sin": np.sin(angles)}, opset=23)
    check(m, {"x": randn(4, 2, 3, 8), "pos": RNG.integers(0, 6, (4, 3))})


# ---------------------------------------------------------------------------
# Einsum, SwiGLU, Swish, CenterCropPad

EINSUM_CASES = [  # equation, operand shapes
    ("ij->ji", [(3, 4)]), ("ij->i", [(3, 4)]), ("...ii->...i", [(3, 5, 5)]), ("ii", [(4, 4)]),
    ("->", [()]), ("bij->", [(2, 3, 4)]), ("i,i", [(5,), (5,)]), ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]), ("abcd,dce->bea", [(2, 3, 4, 5), (5, 4, 6)]),
    ("iij,jk->ik", [(3, 3, 4), (4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES, ids=[e for e, _ in EINSUM_CASES])
def test_einsum(equation, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    check(model([node], {n: (D, list(s)) for n, s in zip(names, shapes)}, {"y": D}, opset=12),
          {n: randn(*s, dtype=np.float64) for n, s in zip(names, shapes)}, rtol=1e-10, atol=1e-12)


def test_einsum_with_a_dynamic_batch():
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation="bij,jk->bik")
    check(model([node], {"x": (F, ["N", 3, 4]), "w": (F, [4, 5])}, opset=12),
          {"x": randn(6, 3, 4), "w": randn(4, 5)})


def test_einsum_broadcasting_ellipsis_against_numpy():
    # ...ij,...jk with ellipses of ranks 2 and 1 (onnxruntime refuses them)
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation="...ij,...jk")
    m = model([node], {"a": (F, [2, 1, 3, 4]), "b": (F, [5, 4, 6])}, opset=12)
    feeds = {"a": randn(2, 1, 3, 4), "b": randn(5, 4, 6)}
    want = [np.einsum("...ij,...jk", feeds["a"], feeds["b"])]
    same(ncc.reference.run(import_onnx(m), feeds), want, 1e-5, 1e-5)
    same(ncc.compile(m).run(feeds), want, 1e-5, 1e-5)


def test_einsum_diagnostics():
    m = model([helper.make_node("Einsum", ["x"], ["y"], equation="ijk->i", name="e")], {"x": (F, [3, 4])})
    assert diag(m) == "g: error: node 'e' (Einsum): einsum term 'ijk' does not fit an operand of rank 2"
    m = model([helper.make_node("Einsum", ["x"], ["y"], equation="ij->k", name="e")], {"x": (F, [3, 4])})
    assert diag(m) == ("g: error: node 'e' (Einsum): the output of einsum 'ij->k' repeats a label "
                       "or has one no operand has")


def test_swiglu_against_onnx_reference():
    # onnxruntime has no Swish-24 kernel for SwiGLU's function body
    from onnx.reference import ReferenceEvaluator

    for alpha in (1.0, 1.702):
        node = helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=alpha)
        m = model([node], {"a": (F, ["N", 6]), "b": (F, ["N", 6])}, opset=28)
        feeds = {"a": randn(3, 6), "b": randn(3, 6)}
        want = ReferenceEvaluator(m).run(None, feeds)
        same(ncc.reference.run(import_onnx(m), feeds), want, 1e-5, 1e-6)
        same(ncc.compile(m).run(feeds), want, 1e-5, 1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_swish(alpha):
    node = helper.make_node("Swish", ["x"], ["y"], alpha=alpha)
    check(model([node], {"x": (F, [3, 4])}, opset=24), {"x": randn(3, 4)})


@pytest.mark.parametrize("shape,axes", [([10, 7, 3], None), ([25, 8], [0, 1]), ([5, 13], [-3, -2])])
def test_center_crop_pad(shape, axes):
    attrs = {} if axes is None else {"axes": axes}
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], **attrs)
    check(model([node], {"x": (F, [20, 10, 3])}, inits={"s": np.array(shape, np.int64)}, opset=18),
          {"x": randn(20, 10, 3)})


# ---------------------------------------------------------------------------
# Opset 27's CausalConvWithState and LinearAttention (onnxruntime has neither:
# checked against onnx's reference implementation)


def check_against_onnx_reference(m, feeds, rtol=1e-4, atol=1e-5):
    from onnx.reference import ReferenceEvaluator

    want = [np.asarray(w) for w in ReferenceEvaluator(m).run(None, feeds)]
    module = import_onnx(m)
    same(ncc.reference.run(module, feeds), want, rtol, atol)
    onnx.checker.check_model(ncc.export_onnx(module), full_check=True)
    same(ncc.compile(m).run(feeds), want, rtol, atol)


@pytest.mark.parametrize("k,bias,past,activation", [(4, True, False, "none"), (3, False, True, "silu"),
                                                     (1, True, True, "swish")])
def test_causal_conv_with_state(k, bias, past, activation):
    n, c, length = 2, 3, 5
    names = ["x", "w", "b" if bias else "", "s" if past else ""]
    inputs = {"x": (F, ["N", c, length])}
    feeds = {"x": randn(n, c, length)}
    if past:
        inputs["s"] = (F, ["N", c, k - 1])
        feeds["s"] = randn(n, c, k - 1)
    while not names[-1]:
        names.pop()
    node = helper.make_node("CausalConvWithState", names, ["y", "state"], activation=activation)
    m = model([node], inputs, ("y", "state"), inits={"w": randn(c, 1, k), "b": randn(c)}, opset=27)
    check_against_onnx_reference(m, feeds)


@pytest.mark.parametrize("rule,steps,hq,hkv,past,decay_per_key", [
    ("linear", 3, 2, 2, False, False), ("gated", 4, 4, 2, True, True),
    ("delta", 1, 2, 1, True, False), ("gated_delta", 3, 2, 2, False, False)])
def test_linear_attention(rule, steps, hq, hkv, past, decay_per_key):
    n, dk, dv = 2, 4, 3
    inputs = {"q": (F, ["N", steps, hq * dk]), "k": (F, ["N", steps, hkv * dk]),
              "v": (F, ["N", steps, hkv * dv])}
    feeds = {"q": randn(n, steps, hq * dk), "k": randn(n, steps, hkv * dk) / 2,
             "v": randn(n, steps, hkv * dv)}
    names = ["q", "k", "v", "", "", ""]
    if past:
        inputs["s"], names[3] = (F, ["N", hkv, dk, dv]), "s"
        feeds["s"] = randn(n, hkv, dk, dv)
    if rule in ("gated", "gated_delta"):
        width = hkv * dk if decay_per_key else hkv
        inputs["g"], names[4] = (F, ["N", steps, width]), "g"
        feeds["g"] = -RNG.random((n, steps, width)).astype(np.float32)
    if rule in ("delta", "gated_delta"):
        inputs["beta"], names[5] = (F, ["N", steps, hkv]), "beta"
        feeds["beta"] = RNG.random((n, steps, hkv)).astype(np.float32)
    while not names[-1]:
        names.pop()
    node = helper.make_node("LinearAttention", names, ["y", "state"], update_rule=rule,
                            q_num_heads=hq, kv_num_heads=hkv)
    check_against_onnx_reference(model([node], inputs, ("y", "state"), opset=27), feeds)


# ---------------------------------------------------------------------------
# RNN, GRU, LSTM


def recurrent_case(kind, *, steps=3, n=3, isize=5, hid=4, direction="forward", layout=0, bias=True,
                   h0=False, c0=False, peepholes=False, lens=None, batch="static",
                   outputs=("Y", "Y_h"), **attrs):
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    dirs = 2 if direction == "bidirectional" else 1
    lead = "N" if batch == "dynamic" else n

    def shape(*dims):  # the layout's order: (seq or dirs, batch, ...) or (batch, seq or dirs, ...)
        return [dims[1], dims[0], *dims[2:]] if layout else list(dims)

    inputs = {"X": (F, shape(steps, lead, isize))}
    inits = {"W": randn(dirs, gates * hid, isize) / 2, "R": randn(dirs, gates * hid, hid) / 2}
    names = ["X", "W", "R", "", "", "", "", ""]
    if bias:
        inits["B"], names[3] = randn(dirs, 2 * gates * hid) / 2, "B"
    if lens is not None:
        inputs["L"], names[4] = (TensorProto.INT32, [n]), "L"
    if h0:
        inputs["h0"], names[5] = (F, shape(dirs, lead, hid)), "h0"
    if c0:
        inputs["c0"], names[6] = (F, shape(dirs, lead, hid)), "c0"
    if peepholes:
        inits["P"], names[7] = randn(dirs, 3 * hid), "P"
    while not names[-1]:
        names.pop()
    feeds = {k: randn(*[n if d == "N" else d for d in s]) for k, (t, s) in inputs.items() if t == F}
    if lens is not None:
        feeds["L"] = np.asarray(lens, np.int32)
    node = helper.make_node(kind, names, list(outputs), hidden_size=hid, direction=direction,
                            layout=layout, **attrs)
    return model([node], inputs, tuple(o for o in outputs if o), inits, opset=22), feeds


RECURRENT_CASES = [
    ("RNN", {}),
    ("RNN", dict(direction="reverse", h0=True, activations=["Relu"])),
    ("RNN", dict(direction="bidirectional", activations=["LeakyRelu", "ScaledTanh"],
                 activation_alpha=[0.2, 1.5], activation_beta=[0.7])),
    ("GRU", {}),
    ("GRU", dict(linear_before_reset=1, h0=True)),
    ("GRU", dict(linear_before_reset=1, bias=False, activations=["HardSigmoid", "Affine"],
                 activation_alpha=[0.3, 2.0], activation_beta=[0.4, 0.1])),
    ("GRU", dict(direction="bidirectional", lens=[3, 2, 1], clip=0.8)),
    ("LSTM", dict(outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(peepholes=True, h0=True, c0=True, lens=[2, 3, 1], outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(direction="bidirectional", peepholes=True, lens=[2, 3, 0], outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(input_forget=1, clip=0.5, outputs=("", "Y_h", "Y_c"))),
    ("LSTM", dict(activations=["Elu", "Softsign", "ThresholdedRelu"], activation_alpha=[0.5, 0.1],
                  direction="reverse", lens=[1, 3, 2])),
]
NATIVE_RECURRENT = {1, 6, 9, 11}  # compiling unrolled recurrences takes seconds: natively, a few


@pytest.mark.parametrize("case", range(len(RECURRENT_CASES)))
def test_recurrent(case):
    kind, kw = RECURRENT_CASES[case]
    m, feeds = recurrent_case(kind, **kw)
    check(m, feeds, native=case in NATIVE_RECURRENT)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrent_batch_first_with_a_dynamic_batch(kind):
    # layout 1 (onnxruntime has none): the same weights in layout 0, inputs and outputs transposed
    outputs = ("Y", "Y_h", "Y_c") if kind == "LSTM" else ("Y", "Y_h")
    kw = dict(direction="bidirectional" if kind == "LSTM" else "reverse", h0=True, c0=kind == "LSTM",
              outputs=outputs)
    m1, feeds1 = recurrent_case(kind, layout=1, batch="dynamic", **kw)
    m0, _ = recurrent_case(kind, **kw)
    for init0, init1 in zip(m0.graph.initializer, m1.graph.initializer):
        init0.CopyFrom(init1)
    feeds0 = {"X": feeds1["X"].transpose(1, 0, 2), "h0": feeds1["h0"].transpose(1, 0, 2)}
    if kind == "LSTM":
        feeds0["c0"] = feeds1["c0"].transpose(1, 0, 2)
    y, *states = ort_run(m0, feeds0)
    want = [y.transpose(2, 0, 1, 3), *(s.transpose(1, 0, 2) for s in states)]
    same(ncc.reference.run(import_onnx(m1), feeds1), want, 1e-4, 1e-5)
    same(ncc.compile(m1).run(feeds1), want, 1e-4, 1e-5)


def test_recurrent_diagnostics():
    m, _ = recurrent_case("GRU", activations=["Sigmoid", "Gelu"])
    assert diag(m).endswith("(GRU): unknown activation 'Gelu' (known: Sigmoid, Tanh, Relu, Softsign, "
                            "Softplus, LeakyRelu, ThresholdedRelu, Elu, HardSigmoid, Affine, ScaledTanh)")
    m, _ = recurrent_case("LSTM", activations=["Sigmoid", "Tanh"])
    assert diag(m).endswith("(LSTM): LSTM takes 3 activations here, got 2")
    m, _ = recurrent_case("RNN", steps=300)
    assert diag(m).endswith("(RNN): 300 steps: the recurrence is unrolled, at most 256")


def test_a_constant_folded_away_can_be_used_again():
    # A converter may hold a weight's value across builds (an RNN's W, per
    # direction); a fold that took the weight's last use must not break the next.
    # Only data (integer initializers) folds: an op on a float parameter stays.
    from ncc.dialects import nn
    from ncc.onnx import Importer

    def importer_holding(name, value):
        m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": (F, [3])}, inits={name: value})
        imp = Importer(m, "g")
        imp.node = m.graph.node[0]
        imp.consts[name] = value
        imp.from_initializers.add(name)
        return imp

    imp = importer_holding("p", np.arange(1, 4, dtype=np.float32))
    assert isinstance(imp.build(nn.NegOp, imp.weight("p")).owner, nn.NegOp)

    w = np.arange(1, 4, dtype=np.int64)
    imp = importer_holding("w", w)
    ref = imp.weight("w")
    double = imp.build(nn.AddOp, ref, ref)  # folded: the weight_ref of w is removed
    assert ref.owner not in imp.ops
    twice = imp.build(nn.SubOp, ref, double)  # w used again
    defined = set()
    for op in imp.ops:
        assert all(v in defined for v in op.operands)
        defined.update(op.results)
    assert twice in defined
    np.testing.assert_array_equal(imp.consts[imp.weight_source[twice.owner.sym]], -w)


# ---------------------------------------------------------------------------
# FlexAttention (domain ai.onnx.preview; onnxruntime has none): its modifier
# subgraphs are imported in place


def flex_case(hq=4, hkv=2, score_mod=None, prob_mod=None, batch="dynamic", **attrs):
    n, q_len, kv_len, head, v_head = 2, 3, 5, 8, 6
    lead = "N" if batch == "dynamic" else n
    if score_mod is not None:
        attrs["score_mod"] = score_mod
    if prob_mod is not None:
        attrs["prob_mod"] = prob_mod
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", **attrs)
    inputs = {"q": (F, [lead, hq, q_len, head]), "k": (F, [lead, hkv, kv_len, head]),
              "v": (F, [lead, hkv, kv_len, v_head])}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26),
                                                helper.make_opsetid("ai.onnx.preview", 1)])
    feeds = {k: randn(n, *s[1:]) for k, (t, s) in inputs.items()}
    return m, feeds


def modifier(nodes, inits, name):
    x, y = f"{name}_in", f"{name}_out"
    return helper.make_graph(nodes(x, y), name, [helper.make_tensor_value_info(x, F, None)],
                             [helper.make_tensor_value_info(y, F, None)],
                             [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])


SOFTCAP = modifier(lambda x, y: [helper.make_node("Div", [x, "cap"], ["t0"]),
                                 helper.make_node("Tanh", ["t0"], ["t1"]),
                                 helper.make_node("Mul", ["t1", "cap"], [y])],
                   {"cap": np.array(2.0, np.float32)}, "softcap")
RELATIVE = modifier(lambda x, y: [  # scores + (q index - k index), from the scores' shape
    helper.make_node("Shape", [x], ["shape"]),
    helper.make_node("Gather", ["shape", "two"], ["rows"]), helper.make_node("Gather", ["shape", "three"], ["cols"]),
    helper.make_node("Range", ["zero", "rows", "one"], ["qi"]),
    helper.make_node("Range", ["zero", "cols", "one"], ["ki"]),
    helper.make_node("Unsqueeze", ["qi", "last"], ["qc"]), helper.make_node("Sub", ["qc", "ki"], ["rel"]),
    helper.make_node("Cast", ["rel"], ["relf"], to=F), helper.make_node("Add", [x, "relf"], [y])],
    {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "two": np.array(2, np.int64),
     "three": np.array(3, np.int64), "last": np.array([1], np.int64)}, "relative")
SHARPEN = modifier(lambda x, y: [helper.make_node("Mul", [x, "k"], [y])], {"k": np.array(0.5, np.float32)}, "sharpen")


@pytest.mark.parametrize("kw", [dict(hq=2, hkv=2), dict(scale=0.1), dict(score_mod=SOFTCAP),
                                dict(score_mod=RELATIVE, prob_mod=SHARPEN, batch="static")],
                         ids=["mha", "gqa_scale", "score_mod", "score_and_prob_mod"])
def test_flex_attention(kw):
    m, feeds = flex_case(**kw)
    check_against_onnx_reference(m, feeds)


def test_flex_attention_subgraph_diagnostic():
    bad = modifier(lambda x, y: [helper.make_node("Foo", [x], [y], name="foo")], {}, "bad")
    m, _ = flex_case(score_mod=bad)
    assert diag(m) == "g: error: node 'foo' (Foo): ncc does not import Foo (in the score_mod subgraph)"


# ---------------------------------------------------------------------------
# Control flow: Scan (unrolled) and If (on a constant condition)


def test_scan_with_directions_axes_and_an_outer_value():
    # body(state, x_t, r_t) = (state + x_t * w, [state * r_t, x_t]); w from outside the body
    vi = lambda n, s: helper.make_tensor_value_info(n, F, s)  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "w"], ["xw"]), helper.make_node("Add", ["s", "xw"], ["s_out"]),
         helper.make_node("Mul", ["s", "r_t"], ["p"]), helper.make_node("Identity", ["x_t"], ["x_out"])],
        "body", [vi("s", [2]), vi("x_t", [2]), vi("r_t", [2])], [vi("s_out", [2]), vi("p", [2]), vi("x_out", [2])])
    node = helper.make_node("Scan", ["s0", "x", "r"], ["s_final", "ps", "xs"], body=body, num_scan_inputs=2,
                            scan_input_axes=[0, 1], scan_input_directions=[0, 1],
                            scan_output_axes=[0, -1], scan_output_directions=[1, 0])
    m = model([node], {"s0": (F, [2]), "x": (F, [4, 2]), "r": (F, [2, 4])}, ("s_final", "ps", "xs"),
              inits={"w": randn(2)}, opset=16)
    check(m, {"s0": randn(2), "x": randn(4, 2), "r": randn(2, 4)})


@pytest.mark.parametrize("cond", [True, False])
def test_if_on_a_constant_condition(cond):
    vi = lambda n: helper.make_tensor_value_info(n, F, [3])  # noqa: E731
    then = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [], [vi("t")],
                             [numpy_helper.from_array(np.ones(3, np.float32), "one")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e")])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    m = model([helper.make_node("Relu", ["x0"], ["x"]), node], {"x0": (F, [3])},
              inits={"c": np.array(cond)}, opset=16)
    module = check(m, {"x0": randn(3)})
    names = [o.name for o in list(module.ops)[-1].body.block.ops]
    assert names == (["nn.relu", "nn.weight_ref", "nn.add", "func.return"] if cond
                     else ["nn.relu", "nn.neg", "func.return"])  # the selected branch only


# ---------------------------------------------------------------------------
# Fourier transforms


@pytest.mark.parametrize("opset,c,axis,inverse,onesided,length", [
    (17, 1, 1, 0, 0, None), (17, 2, 2, 0, 0, 12), (17, 1, 1, 0, 1, None), (20, 2, -2, 1, 0, 6),
    (20, 2, 1, 1, 1, None), (20, 1, 2, 0, 1, 7)])
def test_dft(opset, c, axis, inverse, onesided, length):
    shape = [2, 8, 5, c]
    names, inits = ["x", "" if length is None else "n"], {}
    if length is not None:
        inits["n"] = np.array(length, np.int64)
    attrs = {"inverse": inverse, "onesided": onesided}
    if opset >= 20:
        names.append("a")
        inits["a"] = np.array(axis, np.int64)
    else:
        attrs["axis"] = axis
    while not names[-1]:
        names.pop()
    m = model([helper.make_node("DFT", names, ["y"], **attrs)], {"x": (F, ["N", *shape[1:]])},
              inits=inits, opset=opset)
    check(m, {"x": randn(*shape)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length", [9, 10, 16])
def test_dft_inverse_one_sided_of_a_given_length_against_numpy(length):
    # onnxruntime's IRFFT of a dft_length other than 2 * (bins - 1) differs from
    # numpy.fft.irfft, which onnx's reference (and ncc) follow
    m = model([helper.make_node("DFT", ["x", "n", "a"], ["y"], inverse=1, onesided=1)], {"x": (F, [2, 8, 5, 2])},
              inits={"n": np.array(length, np.int64), "a": np.array(1, np.int64)}, opset=20)
    x = randn(2, 8, 5, 2)
    want = [np.fft.irfft(x[..., 0] + 1j * x[..., 1], n=length, axis=1)[..., None].astype(np.float32)]
    check_against_onnx_reference(m, {"x": x})
    same(ncc.reference.run(import_onnx(m), {"x": x}), want, 1e-4, 1e-5)


@pytest.mark.parametrize("c,window,onesided", [(1, False, 1), (1, True, 1), (2, True, 0)])
def test_stft(c, window, onesided):
    names = ["x", "step", "w" if window else "", "" if window else "size"]
    while not names[-1]:
        names.pop()
    inits = {"step": np.array(3, np.int64), "size": np.array(8, np.int64)}
    inputs = {"x": (F, ["N", 30, c])}
    if window:
        inputs["w"] = (F, [8])
    m = model([helper.make_node("STFT", names, ["y"], onesided=onesided)], inputs, inits=inits, opset=17)
    feeds = {"x": randn(2, 30, c)}
    if window:
        feeds["w"] = np.hanning(8).astype(np.float32)
    check(m, feeds, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Indexing and grids


def test_size_is_a_constant():
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Cast", ["n"], ["nf"], to=F),
             helper.make_node("Mul", ["x", "nf"], ["y"])]
    module = check(model(nodes, {"x": (F, [2, 3])}, opset=21), {"x": randn(2, 3)})
    assert [o.name for o in list(module.ops)[-1].body.block.ops] == ["nn.constant", "nn.mul", "func.return"]


@pytest.mark.parametrize("axis,cond", [(0, [0, 1, 1]), (1, [1, 0]), (-1, [1]), (None, [0, 1, 0, 0, 1])])
def test_compress_on_a_constant_condition(axis, cond):
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("Compress", ["x", "c"], ["y"], **attrs)
    check(model([node], {"x": (F, [3, 2])}, inits={"c": np.array(cond, np.bool_)}, opset=11),
          {"x": randn(3, 2)})


@pytest.mark.parametrize("data_shape,idx,batch_dims", [
    ([2, 2], [[0, 0], [1, 1]], 0), ([2, 3, 4], [[1], [-2]], 0), ([2, 3, 4], [[[0, 2]], [[1, -1]]], 0),
    ([2, 3, 4], [[1], [0]], 1), ([2, 3, 4, 2], [[[2, 1], [0, -4]], [[-1, 3], [1, 0]]], 1)])
def test_gather_nd(data_shape, idx, batch_dims):
    idx = np.array(idx, np.int64)
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    m = model([node], {"x": (F, data_shape), "i": (I64, list(idx.shape))}, opset=13)
    check(m, {"x": randn(*data_shape), "i": idx})


@pytest.mark.parametrize("size,align", [([2, 3, 4, 5], 0), ([2, 3, 5, 4], 1), ([2, 1, 3, 4, 2], 0),
                                        ([2, 1, 2, 3, 4], 1)])
def test_affine_grid(size, align):
    r = len(size) - 2
    node = helper.make_node("AffineGrid", ["theta", "s"], ["y"], align_corners=align)
    m = model([node], {"theta": (F, ["N", r, r + 1])}, inits={"s": np.array(size, np.int64)}, opset=20)
    check(m, {"theta": randn(2, r, r + 1)})


def test_if_with_a_sequence_branch_is_refused():
    seq = helper.make_tensor_sequence_value_info("s", F, [3])
    branch = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["s"])], "b", [], [seq])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [3])],
                              [helper.make_tensor_sequence_value_info("y", F, [3])],
                              [numpy_helper.from_array(np.array(True), "c")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    assert diag(m) == ("g: error: node 'if' (If): the then_branch subgraph returns a sequence ('s'); "
                       "ncc imports tensors only")


def test_a_node_of_constants_giving_a_sequence_is_not_folded_into_a_tensor():
    seq = helper.make_tensor_sequence_value_info("s", F, [3])
    branch = helper.make_graph([helper.make_node("SequenceConstruct", ["k"], ["s"])], "b", [], [seq])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    make = helper.make_node("SequenceConstruct", ["k"], ["y2"], name="make")
    for nodes, out in (([node], "y"), ([make], "y2")):
        graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_sequence_value_info(out, F, [3])],
                                  [numpy_helper.from_array(np.array(True), "c"),
                                   numpy_helper.from_array(np.ones(3, np.float32), "k")])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
        assert diag(m) == ("g: error: node 'if' (If): the then_branch subgraph returns a sequence ('s'); "
                           "ncc imports tensors only" if out == "y" else
                           "g: error: node 'make' (SequenceConstruct): evaluates to a sequence or an "
                           "optional; ncc imports tensors only")
