"""The attention op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import ncc
from ncc.onnx import import_onnx

import test_onnx_decompositions as decomposition_tests
from ncc.passes.lowering.nn_to_loops.matmul import GEMM_MIN_WORK

# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


def attention_case(*, rank=4, n=2, hq=4, hkv=4, q_len=3, kv_len=5, head=8, v_head=8, mask=None,
                   past=0, nonpad=None, batch="static", outputs=("y",), opset=23, **attrs):
    """An Attention node, its inputs and random feeds (mask: an array, fed as a float input)."""
    if rank == 3:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
    lead = "N" if batch == "dynamic" else n

    def shape(h, s, d):
        return [h, s, d] if rank == 4 else [s, h * d]

    inputs = {"q": (decomposition_tests.F, [lead, *shape(hq, q_len, head)]), "k": (decomposition_tests.F, [lead, *shape(hkv, kv_len, head)]),
              "v": (decomposition_tests.F, [lead, *shape(hkv, kv_len, v_head)])}
    names = ["q", "k", "v", "", "", "", ""]
    if mask is not None:
        inputs["m"], names[3] = (decomposition_tests.F, list(mask.shape)), "m"
    if past:
        inputs["pk"], inputs["pv"] = (decomposition_tests.F, [lead, hkv, past, head]), (decomposition_tests.F, [lead, hkv, past, v_head])
        names[4:6] = ["pk", "pv"]
    if nonpad is not None:
        inputs["len"], names[6] = (decomposition_tests.I64, [n]), "len"
    feeds = {k: decomposition_tests.randn(n, *s[1:]) for k, (t, s) in inputs.items() if t == decomposition_tests.F}
    if mask is not None:
        feeds["m"] = mask
    if nonpad is not None:
        feeds["len"] = np.asarray(nonpad, np.int64)
    while not names[-1]:
        names.pop()
    outs = {o: decomposition_tests.F for o in outputs if o}
    node = helper.make_node("Attention", names, list(outputs), **attrs)
    return decomposition_tests.model([node], inputs, outs, opset=opset), feeds


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
    "float_mask_4d": dict(mask=decomposition_tests.randn(2, 1, 3, 5)),
    "rows_with_no_key": dict(mask=neg_inf_rows((3, 5), [1]), outputs=("y", "", "", "qk"),
                             qk_matmul_output_mode=3),
    "past_and_present_causal_mask": dict(past=2, is_causal=1, mask=decomposition_tests.randn(4, 3, 7), hkv=2,
                                         outputs=("y", "present_k", "present_v")),
    "dynamic_batch_3d": dict(rank=3, hq=4, hkv=2, batch="dynamic", is_causal=1),
    "nonpad_causal_decode": dict(opset=24, q_len=1, kv_len=8, hkv=2, nonpad=[3, 8], is_causal=1),
    "nonpad_mask_negative_offset": dict(opset=24, q_len=4, kv_len=4, nonpad=[2, 0], is_causal=1,
                                        mask=decomposition_tests.randn(4, 4)),
    "local_window": dict(opset=25, is_causal=1, left_window_size=1, q_len=4, kv_len=6),
    **{f"qk_output_mode_{mode}": dict(softcap=1.5, mask=decomposition_tests.randn(3, 5), qk_matmul_output_mode=mode,
                                      outputs=("y", "", "", "qk")) for mode in range(4)},
}


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_import_attention(case):
    kw = ATTENTION_CASES[case]
    m, feeds = attention_case(**kw)
    module = decomposition_tests.check(m, feeds)
    ops = [o.name for o in list(module.ops)[-1].body.block.ops]
    masked = "mask" in kw or "nonpad" in kw
    assert ("nn.softmax" in ops) != masked  # a row may lose every key: the zeroing softmax


def test_import_attention_mask_shorter_than_the_keys_against_onnx_reference():
    # the mask covers the first 4 of 6 keys; the rest are masked (onnxruntime refuses this)
    from onnx.reference import ReferenceEvaluator

    m, feeds = attention_case(opset=24, kv_len=6, mask=decomposition_tests.randn(2, 4, 3, 4), nonpad=[4, 3])
    want = ReferenceEvaluator(m).run(None, feeds)
    decomposition_tests.same(ncc.reference.run(import_onnx(m), feeds), want, 1e-4, 1e-5)
    decomposition_tests.same(ncc.compile(m).run(feeds), want, 1e-4, 1e-5)


def test_import_attention_constant_boolean_mask():
    mask = decomposition_tests.RNG.random((3, 5)) < 0.7
    mask[:, 0] = True
    m, feeds = attention_case()
    m.graph.initializer.append(numpy_helper.from_array(mask, "bm"))
    m.graph.node[0].input.append("bm")
    decomposition_tests.check(m, feeds)


def test_import_attention_boolean_mask_input():
    mask = decomposition_tests.RNG.random((2, 1, 3, 5)) < 0.6
    mask[..., 0, :] = False  # a query row with no key: zeros
    m, feeds = attention_case()
    m.graph.input.append(helper.make_tensor_value_info("bm", decomposition_tests.B, [2, 1, 3, 5]))
    m.graph.node[0].input.append("bm")
    feeds["bm"] = mask
    decomposition_tests.check(m, feeds)


def test_import_attention_diagnostics():
    m, _ = attention_case(rank=3)
    del m.graph.node[0].attribute[:]
    m.graph.node[0].name = "att"
    assert decomposition_tests.diag(m) == "g: error: node 'att' (Attention): 3-D inputs need the attributes q_num_heads and kv_num_heads"


@pytest.mark.parametrize("rank,interleaved,rot,positions", [
    (4, 0, 0, True), (4, 1, 0, False), (3, 0, 4, True), (3, 1, 4, True), (4, 1, 6, False)])
def test_import_rotary_embedding(rank, interleaved, rot, positions):
    n, heads, seq, head = 2, 3, 5, 8
    half = (rot or head) // 2
    x_shape = [n, heads, seq, head] if rank == 4 else [n, seq, heads * head]
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot}
    if rank == 3:
        attrs["num_heads"] = heads
    inputs = {"x": (decomposition_tests.F, x_shape)}
    angles = decomposition_tests.RNG.random((11, half)).astype(np.float32) * 6
    if positions:
        inputs["pos"] = (decomposition_tests.I64, [n, seq])
        feeds = {"x": decomposition_tests.randn(*x_shape), "pos": decomposition_tests.RNG.integers(0, 11, (n, seq))}
        cos, sin = np.cos(angles), np.sin(angles)
        names = ["x", "cos", "sin", "pos"]
    else:
        feeds = {"x": decomposition_tests.randn(*x_shape)}
        idx = decomposition_tests.RNG.integers(0, 11, (n, seq))
        cos, sin = np.cos(angles)[idx], np.sin(angles)[idx]
        names = ["x", "cos", "sin"]
    node = helper.make_node("RotaryEmbedding", names, ["y"], **attrs)
    decomposition_tests.check(decomposition_tests.model([node], inputs, inits={"cos": cos, "sin": sin}, opset=23), feeds)


def test_import_rotary_embedding_with_a_dynamic_batch():
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])
    angles = decomposition_tests.RNG.random((6, 4)).astype(np.float32)
    m = decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 2, 3, 8]), "pos": (decomposition_tests.I64, ["N", 3])},
              inits={"cos": np.cos(angles), "sin": np.sin(angles)}, opset=23)
    decomposition_tests.check(m, {"x": decomposition_tests.randn(4, 2, 3, 8), "pos": decomposition_tests.RNG.integers(0, 6, (4, 3))})


@pytest.mark.parametrize("rule,steps,hq,hkv,past,decay_per_key", [
    ("linear", 3, 2, 2, False, False), ("gated", 4, 4, 2, True, True),
    ("delta", 1, 2, 1, True, False), ("gated_delta", 3, 2, 2, False, False)])
def test_import_linear_attention(rule, steps, hq, hkv, past, decay_per_key):
    n, dk, dv = 2, 4, 3
    inputs = {"q": (decomposition_tests.F, ["N", steps, hq * dk]), "k": (decomposition_tests.F, ["N", steps, hkv * dk]),
              "v": (decomposition_tests.F, ["N", steps, hkv * dv])}
    feeds = {"q": decomposition_tests.randn(n, steps, hq * dk), "k": decomposition_tests.randn(n, steps, hkv * dk) / 2,
             "v": decomposition_tests.randn(n, steps, hkv * dv)}
    names = ["q", "k", "v", "", "", ""]
    if past:
        inputs["s"], names[3] = (decomposition_tests.F, ["N", hkv, dk, dv]), "s"
        feeds["s"] = decomposition_tests.randn(n, hkv, dk, dv)
    if rule in ("gated", "gated_delta"):
        width = hkv * dk if decay_per_key else hkv
        inputs["g"], names[4] = (decomposition_tests.F, ["N", steps, width]), "g"
        feeds["g"] = -decomposition_tests.RNG.random((n, steps, width)).astype(np.float32)
    if rule in ("delta", "gated_delta"):
        inputs["beta"], names[5] = (decomposition_tests.F, ["N", steps, hkv]), "beta"
        feeds["beta"] = decomposition_tests.RNG.random((n, steps, hkv)).astype(np.float32)
    while not names[-1]:
        names.pop()
    node = helper.make_node("LinearAttention", names, ["y", "state"], update_rule=rule,
                            q_num_heads=hq, kv_num_heads=hkv)
    decomposition_tests.check_against_onnx_reference(decomposition_tests.model([node], inputs, ("y", "state"), opset=27), feeds)


def flex_case(hq=4, hkv=2, score_mod=None, prob_mod=None, batch="dynamic", **attrs):
    n, q_len, kv_len, head, v_head = 2, 3, 5, 8, 6
    lead = "N" if batch == "dynamic" else n
    if score_mod is not None:
        attrs["score_mod"] = score_mod
    if prob_mod is not None:
        attrs["prob_mod"] = prob_mod
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", **attrs)
    inputs = {"q": (decomposition_tests.F, [lead, hq, q_len, head]), "k": (decomposition_tests.F, [lead, hkv, kv_len, head]),
              "v": (decomposition_tests.F, [lead, hkv, kv_len, v_head])}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info("y", decomposition_tests.F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26),
                                                helper.make_opsetid("ai.onnx.preview", 1)])
    feeds = {k: decomposition_tests.randn(n, *s[1:]) for k, (t, s) in inputs.items()}
    return m, feeds


def modifier(nodes, inits, name):
    x, y = f"{name}_in", f"{name}_out"
    return helper.make_graph(nodes(x, y), name, [helper.make_tensor_value_info(x, decomposition_tests.F, None)],
                             [helper.make_tensor_value_info(y, decomposition_tests.F, None)],
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
    helper.make_node("Cast", ["rel"], ["relf"], to=decomposition_tests.F), helper.make_node("Add", [x, "relf"], [y])],
    {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "two": np.array(2, np.int64),
     "three": np.array(3, np.int64), "last": np.array([1], np.int64)}, "relative")


SHARPEN = modifier(lambda x, y: [helper.make_node("Mul", [x, "k"], [y])], {"k": np.array(0.5, np.float32)}, "sharpen")


@pytest.mark.parametrize("kw", [dict(hq=2, hkv=2), dict(scale=0.1), dict(score_mod=SOFTCAP),
                                dict(score_mod=RELATIVE, prob_mod=SHARPEN, batch="static")],
                         ids=["mha", "gqa_scale", "score_mod", "score_and_prob_mod"])
def test_import_flex_attention(kw):
    m, feeds = flex_case(**kw)
    decomposition_tests.check_against_onnx_reference(m, feeds)


def test_import_flex_attention_subgraph_diagnostic():
    bad = modifier(lambda x, y: [helper.make_node("Foo", [x], [y], name="foo")], {}, "bad")
    m, _ = flex_case(score_mod=bad)
    assert decomposition_tests.diag(m) == "g: error: node 'foo' (Foo): ncc does not import Foo (in the score_mod subgraph)"




# ---------------------------------------------------------------------------
# nn.attention: the op, its reference, native code (one block of query rows at a
# time, no score matrix), its decomposition for autodiff and export


def _attention_module(lead, sq, sk, d, dv, bias_shape=None, scale=0.25, elt="f32", causal=False):
    from ncc.ir import parse_module

    def t(*s):
        return "tensor<" + "x".join("?" if x is None else str(x) for x in s) + f"x{elt}>"
    args = [f"%q: {t(*lead, sq, d)}", f"%kt: {t(*lead, d, sk)}", f"%v: {t(*lead, sk, dv)}"]
    types = [t(*lead, sq, d), t(*lead, d, sk), t(*lead, sk, dv)]
    operands = "%q, %kt, %v"
    if bias_shape is not None:
        args.append(f"%b: {t(*bias_shape)}")
        types.append(t(*bias_shape))
        operands += ", %b"
    out = t(*lead, sq, dv)
    return parse_module(f"func.func @main({', '.join(args)}) -> {out} {{\n"
                        f"  %o = nn.attention {operands} scale {scale}{' causal' * causal} : {', '.join(types)} -> {out}\n"
                        f"  func.return %o : {out}\n}}")


def _numpy_attention(q, kt, v, bias, scale, causal=False):
    s = q.astype(np.float64) @ kt.astype(np.float64) * scale
    if bias is not None:
        s = s + bias
    if causal:  # key j of query i only if j <= i
        s = np.where(np.tri(*s.shape[-2:], dtype=bool), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v.astype(np.float64)


ATTENTION_SHAPES = [  # lead, Sq, Sk, D, Dv, bias: edge sizes 1, primes, past ROW_BLOCK, K_UNROLL, KEY_BLOCK and the
    # GEMM's tile (MR rows: 14, 6), two blocks of QUERY_BLOCK query rows (131)
    ((2, 3), 5, 7, 8, 8, (5, 7)), ((1,), 1, 1, 1, 1, None), ((2,), 13, 11, 9, 3, (2, 1, 11)),
    ((1, 2), 4, 33, 16, 17, None), ((3,), 6, 2, 5, 4, (1, 6, 1)), ((1, 1), 9, 40, 64, 64, (9, 40)),
    ((2,), 131, 70, 64, 65, (131, 70)), ((1, 2), 29, 97, 67, 64, (2, 29, 97)), ((1,), 30, 128, 32, 32, None),
    ((2,), 11, 32, 8, 16, (2, 11, 32)), ((1,), 9, 16, 5, 7, None),  # the loops' register blocks of 16 keys, values
]


@pytest.mark.parametrize("elt", ["f32", "f64"])  # f32: the GEMM's calls (Sk x D, Sk x Dv >= 4096) or loops
@pytest.mark.parametrize("lead, sq, sk, d, dv, bias", ATTENTION_SHAPES)
def test_attention_op_natively_against_numpy(lead, sq, sk, d, dv, bias, elt):
    from ncc import reference

    rng = np.random.default_rng(sq * 100 + sk)
    dtype, tol = (np.float32, 1e-4) if elt == "f32" else (np.float64, 1e-12)  # f32 scores of up to 67 terms
    m = _attention_module((None, *lead[1:]), sq, sk, d, dv, bias, elt=elt)
    args = [rng.standard_normal(s).astype(dtype) for s in ((*lead, sq, d), (*lead, d, sk), (*lead, sk, dv))]
    if bias is not None:
        args.append((rng.standard_normal(bias) * 3).astype(dtype))
    want = _numpy_attention(*args[:3], args[3] if bias is not None else None, 0.25)
    np.testing.assert_allclose(reference.run(m, args)[0], want, rtol=tol, atol=tol / 10)
    f = ncc.compile(m.clone(), cache=False, threads=1)
    assert ("@ncc_sgemm(" in f.llvm_ir) == (elt == "f32" and sk * min(d, dv) >= GEMM_MIN_WORK)
    one = f(*args)
    np.testing.assert_allclose(one, want, rtol=tol, atol=tol / 10)
    two = ncc.compile(m.clone(), cache=False, threads=2)(*args)
    np.testing.assert_array_equal(two, one)  # the same operations whatever the threads


CAUSAL_SHAPES = [  # lead, Sq, Sk, D, Dv, bias: the loops (keys a multiple of KEY_BLOCK or not, values too; blocks of
    # ROW_BLOCK rows and the last rows one at a time), the GEMM (blocks of QUERY_BLOCK rows); more queries than keys
    ((1, 4), 32, 32, 32, 32, None), ((2,), 13, 11, 9, 3, (2, 1, 11)), ((1, 2), 40, 48, 16, 16, None),
    ((1,), 1, 1, 1, 1, None), ((2,), 131, 70, 64, 65, None), ((1,), 30, 128, 32, 32, (30, 128)),
]


@pytest.mark.parametrize("elt", ["f32", "f64"])
@pytest.mark.parametrize("lead, sq, sk, d, dv, bias", CAUSAL_SHAPES)
def test_causal_attention_natively_against_numpy(lead, sq, sk, d, dv, bias, elt):
    """`causal`: each block of query rows multiplies only the keys its last query sees
    and masks the rest of each row; against numpy's masked softmax on 1 and 2 threads."""
    from ncc import reference

    rng = np.random.default_rng(sq * 7 + sk)
    dtype, tol = (np.float32, 1e-4) if elt == "f32" else (np.float64, 1e-12)
    m = _attention_module(lead, sq, sk, d, dv, bias, elt=elt, causal=True)
    args = [rng.standard_normal(s).astype(dtype) for s in ((*lead, sq, d), (*lead, d, sk), (*lead, sk, dv))]
    if bias is not None:
        args.append((rng.standard_normal(bias) * 3).astype(dtype))
    want = _numpy_attention(*args[:3], args[3] if bias is not None else None, 0.25, causal=True)
    np.testing.assert_allclose(reference.run(m, args)[0], want, rtol=tol, atol=tol / 10)
    f = ncc.compile(m.clone(), cache=False, threads=1)
    assert ("@ncc_sgemm(" in f.llvm_ir) == (elt == "f32" and sk * min(d, dv) >= GEMM_MIN_WORK)
    one = f(*args)
    np.testing.assert_allclose(one, want, rtol=tol, atol=tol / 10)
    np.testing.assert_array_equal(ncc.compile(m.clone(), cache=False, threads=2)(*args), one)


def test_causal_attention_needs_static_lengths():
    with pytest.raises(ncc.NccError, match=r"causal attention needs static query and key lengths, got scores \[\?, 5\]"):
        _attention_module((), None, 5, 4, 4, causal=True)


def test_attention_rows_of_the_batch():
    """q of run-time rows (2-D, the batch its rows) by the GEMM: one block of QUERY_BLOCK rows, a part of
    one, several."""
    from ncc.ir import parse_module

    m = parse_module("""func.func @main(%q: tensor<?x64xf32>, %kt: tensor<64x80xf32>, %v: tensor<80x70xf32>)
    -> tensor<?x70xf32> {
  %o = nn.attention %q, %kt, %v scale 0.125 : tensor<?x64xf32>, tensor<64x80xf32>, tensor<80x70xf32> -> tensor<?x70xf32>
  func.return %o : tensor<?x70xf32>
}""")
    rng = np.random.default_rng(5)
    kt, v = rng.standard_normal((64, 80)).astype(np.float32), rng.standard_normal((80, 70)).astype(np.float32)
    f = ncc.compile(m, cache=False, threads=1)
    assert "@ncc_sgemm(" in f.llvm_ir
    for rows in (1, 128, 300):
        q = rng.standard_normal((rows, 64)).astype(np.float32)
        np.testing.assert_allclose(f(q, kt, v), _numpy_attention(q, kt, v, None, 0.125), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_decomposed_differentiated_and_exported(causal):
    """Autodiff and ONNX export take nn.attention as its matmul, scale, bias,
    (causal mask,) softmax and matmul: gradients against finite differences,
    onnxruntime's output against the reference."""
    import onnxruntime as ort

    from ncc import reference
    from ncc.passes.autodiff import differentiate
    from vjp_check import finite_differences

    rng = np.random.default_rng(3)
    m64 = _attention_module((2,), 3, 4, 5, 2, (3, 4), elt="f64", causal=causal)
    args = [rng.standard_normal(s) for s in ((2, 3, 5), (2, 5, 4), (2, 4, 2), (3, 4))]
    g = rng.standard_normal((2, 3, 2))
    want = finite_differences(m64, args, g, [0, 1, 2, 3])
    d = m64.clone()
    differentiate(d, "main", mode="combined")
    got = reference.run(d, [*args, g], function="main_vjp")[1:]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    m = _attention_module((2,), 3, 4, 5, 2, (3, 4), causal=causal)
    args32 = [a.astype(np.float32) for a in args]
    proto = ncc.export_onnx(m)
    assert {"MatMul", "Softmax"} <= {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, dict(zip(["q", "kt", "v", "b"], args32)))[0]
    np.testing.assert_allclose(out, reference.run(m, args32)[0], rtol=1e-5, atol=1e-6)
