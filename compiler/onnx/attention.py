"""Attention in ONNX (import only: nn has no attention op yet): Attention
(opsets 23 to 25), RotaryEmbedding, LinearAttention and the preview
FlexAttention, decomposed into matmuls, softmax, reshapes, transposes and
slices; every mask becomes an additive bias of 0 and -inf.
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.ir import SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.importer import UNROLLED_STEPS, Importer, from_onnx


def _split_heads(b: Importer, x: SSAValue, heads: int) -> SSAValue:
    """(B, S, heads * D) -> (B, heads, S, D)."""
    n, s, hidden = shape_of(x.type)
    if heads < 1 or hidden % heads:
        raise b.error(f"the hidden size of {x.type} is not a multiple of {heads} heads")
    x = b.build(nn.ReshapeOp, x, [-1 if n == DYN else n, s, heads, hidden // heads])
    return b.build(nn.TransposeOp, x, [0, 2, 1, 3])


def _frontier(e: np.ndarray, causal: bool, left: int, right: int) -> np.ndarray:
    """Whether a query at position p attends key j, from e = j - p: causally
    (j <= p) and within the windows (p - left <= j <= p + right; -1: unbounded)."""
    ok = np.ones(e.shape, np.bool_)
    if causal:
        ok &= e <= 0
    if left >= 0:
        ok &= -e <= left
    if right >= 0:
        ok &= e <= right
    return ok


def _bias_of(ok: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.where(ok, 0, -np.inf).astype(dtype)


def _attention_bias(b: Importer, a: dict, q_len: int, kv_len: int, past: int,
                    like: SSAValue) -> tuple[SSAValue | None, bool]:
    """The sum of every additive bias (attn_mask, is_causal, the windows,
    nonpad_kv_seqlen's padding) and whether some query row may have no key
    left (a row the softmax must turn into zeros, as the spec asks)."""
    dtype = nn.numpy_dtype(like.type.element_type)
    causal, left, right = (bool(a.get("is_causal", 0)), a.get("left_window_size", -1),
                           a.get("right_window_size", -1))
    static: np.ndarray | None = None  # the constant part
    parts: list[SSAValue] = []  # the computed parts
    j = np.arange(kv_len)
    nonpad = b.v(6) if b.opset >= 24 and b.has(6) else None
    if nonpad is not None:
        # Per batch, keys j < n[b] are valid and query i sits at p = i + n[b] - q_len.
        # nn has no comparisons: both tests are lookups, in constant tables, of
        # integer differences: j - n[b] (padding) and e = j - p (the frontier).
        if past:
            raise b.error("nonpad_kv_seqlen cannot be combined with past_key and past_value")
        if nn.numpy_dtype(nonpad.type.element_type) != np.int64:
            raise b.error(f"nonpad_kv_seqlen must be int64, got {nonpad.type}")
        lens = b.build(nn.ReshapeOp, nonpad, [-1, 1])
        rel = b.binary("sub", b.emit(nn.ConstantOp(j + kv_len)), lens)  # j - n + kv_len
        table = _bias_of(np.arange(2 * kv_len) < kv_len, dtype)
        pad = b.build(nn.GatherOp, b.emit(nn.ConstantOp(table)), rel, 0)  # (B, kv)
        parts.append(b.build(nn.ReshapeOp, pad, [-1, 1, 1, kv_len]))
        if causal or left >= 0 or right >= 0:
            lens3 = b.build(nn.ReshapeOp, nonpad, [-1, 1, 1])
            base = j[None, :] - np.arange(q_len)[:, None] + q_len + kv_len - 1  # e + kv_len - 1 + n
            e_idx = b.binary("sub", b.emit(nn.ConstantOp(base)), lens3)  # (B, q, kv)
            e = np.arange(2 * kv_len + q_len - 1) - (kv_len - 1)
            table = _bias_of(_frontier(e, causal, left, right), dtype)
            front = b.build(nn.GatherOp, b.emit(nn.ConstantOp(table)), e_idx, 0)
            parts.append(b.build(nn.ReshapeOp, front, [-1, 1, q_len, kv_len]))
    elif causal or left >= 0 or right >= 0:
        static = _bias_of(_frontier(j[None, :] - (np.arange(q_len)[:, None] + past),
                                    causal, left, right), dtype)
    if b.has(3):
        name, mask = b.node.input[3], b.v(3)
        mshape = shape_of(mask.type)
        if not mshape or mshape[-1] == DYN or mshape[-1] > kv_len:
            raise b.error(f"attn_mask {mask.type} does not fit {kv_len} keys")
        short = kv_len - mshape[-1]  # a shorter mask is padded with -inf (or False)
        if mask.type.element_type == nn.i1 and name in b.consts:
            m = _bias_of(np.pad(b.consts[name], [(0, 0)] * (len(mshape) - 1) + [(0, short)]), dtype)
            static = m if static is None else static + m
        else:
            if mask.type.element_type == nn.i1:  # True attends: 0, False: -inf
                mask = b.build(nn.SelectOp, mask, b.scalar(0, like), b.scalar(-np.inf, like))
            if short:
                pads = [0] * (2 * len(mshape))
                pads[-1] = short
                mask = b.build(nn.PadOp, mask, pads, "constant", -np.inf)
            parts.append(mask)
    may_empty = bool(parts) or (static is not None and bool(np.isneginf(static).all(-1).any()))
    bias = None if static is None else b.emit(nn.ConstantOp(static))
    for p in parts:
        bias = p if bias is None else b.binary("add", bias, p)
    return bias, may_empty


def _kv_for_q_heads(b: Importer, t: SSAValue, hq: int) -> SSAValue:
    """K or V (B, Hkv, S, D) for hq query heads: GQA's head h reads head h // (hq / Hkv)."""
    hkv = shape_of(t.type)[1]
    if hkv == hq:
        return t
    if hkv < 1 or hq % hkv:
        raise b.error(f"the query's {hq} heads must be a multiple of the key and value heads, got {hkv}")
    idx = b.emit(nn.ConstantOp(np.arange(hq, dtype=np.int64) // (hq // hkv)))
    return b.build(nn.GatherOp, t, idx, 1)


def _softmax_or_zero(b: Importer, s: SSAValue) -> SSAValue:
    """Softmax over the last axis, with a row of -inf only giving zeros (not
    NaN): its max is raised to the lowest float, so exp gives 0 and a sum of
    0, which the division by max(sum, tiny) keeps at 0. Any other row has a
    sum >= 1 and is the plain softmax."""
    finfo = np.finfo(nn.numpy_dtype(s.type.element_type))
    mx = b.build(nn.REDUCE_OPS["reduce_max"], s, [-1], keepdims=True)
    e = b.unary("exp", b.binary("sub", s, b.binary("max", mx, b.scalar(finfo.min, s))))
    total = b.build(nn.REDUCE_OPS["reduce_sum"], e, [-1], keepdims=True)
    return b.binary("div", e, b.binary("max", total, b.scalar(finfo.tiny, s)))


@from_onnx("Attention")
def _attention(b, a):
    # Y = softmax(softcap(Q K^T * scale) + bias) V per head; 3-D inputs are
    # split into heads first; GQA repeats each K/V head for its group of Q heads.
    # The softmax runs in the inputs' precision (softmax_precision aside).
    q, k, v = b.v(0), b.v(1), b.v(2)
    rank = len(shape_of(q.type))
    if rank not in (3, 4) or any(len(shape_of(t.type)) != rank for t in (k, v)):
        raise b.error(f"Q, K and V must all be 3-D or all 4-D, got {q.type}, {k.type}, {v.type}")
    if rank == 3:
        hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
        if not hq or not hkv:
            raise b.error("3-D inputs need the attributes q_num_heads and kv_num_heads")
        q, k, v = _split_heads(b, q, hq), _split_heads(b, k, hkv), _split_heads(b, v, hkv)
    if b.has(4) != b.has(5):
        raise b.error("past_key and past_value must be given together")
    past = 0
    if b.has(4):
        past = shape_of(b.v(4).type)[2]
        k = b.build(nn.ConcatOp, [b.v(4), k], 2)
        v = b.build(nn.ConcatOp, [b.v(5), v], 2)
    n, hq, q_len, head = shape_of(q.type)
    hkv, kv_len = shape_of(k.type)[1:3]
    if DYN in (hq, q_len, head, hkv, kv_len, past) or hkv < 1 or head < 1 or hq % hkv:
        raise b.error(f"needs static, nonzero sizes but the batch and q heads a multiple of kv heads, "
                      f"got Q {q.type} and K {k.type}")
    kx, vx = _kv_for_q_heads(b, k, hq), _kv_for_q_heads(b, v, hq)
    scale = a.get("scale", 1 / math.sqrt(head))
    scores = b.build(nn.MatmulOp, b.binary("mul", q, b.scalar(scale, q)),
                     b.build(nn.TransposeOp, kx, [0, 1, 3, 2]))
    stages = [scores]  # qk_matmul_output by mode: 0 raw, 1 softcapped, 2 biased, 3 softmax
    if (cap := a.get("softcap", 0.0)) > 0:
        t = b.unary("tanh", b.binary("div", scores, b.scalar(cap, scores)))
        scores = b.binary("mul", t, b.scalar(cap, scores))
    stages.append(scores)
    bias, may_empty = _attention_bias(b, a, q_len, kv_len, past, q)
    if bias is not None:
        scores = b.binary("add", scores, bias)
    stages.append(scores)
    probs = _softmax_or_zero(b, scores) if may_empty else b.build(nn.SoftmaxOp, scores, -1)
    stages.append(probs)
    y = b.build(nn.MatmulOp, probs, vx)
    if rank == 3:
        y = b.build(nn.TransposeOp, y, [0, 2, 1, 3])
        y = b.build(nn.ReshapeOp, y, [-1 if n == DYN else n, q_len, hq * shape_of(v.type)[3]])
    mode = a.get("qk_matmul_output_mode", 0)
    if not 0 <= mode <= 3:
        raise b.error(f"qk_matmul_output_mode must be 0 to 3, got {mode}")
    return [y, k, v, stages[mode]]


@from_onnx("RotaryEmbedding")
def _rotary_embedding(b, a):
    # The first rotary_embedding_dim features of each head are rotated as
    # pairs (halves, or even/odd with `interleaved`) by the angle whose cos
    # and sin the caches hold at each position; the others pass through.
    x, cos, sin = b.v(0), b.v(1), b.v(2)
    given, shape = x.type, shape_of(x.type)
    n = -1 if shape[0] == DYN else shape[0]
    if len(shape) == 4:  # (B, H, S, D)
        heads, seq, head = shape[1:]
    elif len(shape) == 3:  # (B, S, H * D), viewed as (B, S, H, D)
        heads = a.get("num_heads", 0)
        if not heads or shape[2] % heads:
            raise b.error(f"a 3-D input needs num_heads dividing its hidden size, got {x.type} "
                          f"and num_heads {heads}")
        seq, head = shape[1], shape[2] // heads
        x = b.build(nn.ReshapeOp, x, [n, seq, heads, head])
    else:
        raise b.error(f"the input must be 3-D or 4-D, got {x.type}")
    rot = a.get("rotary_embedding_dim", 0) or head
    half = rot // 2
    if rot % 2 or rot > head:
        raise b.error(f"rotary_embedding_dim {rot} must be even and at most the head size {head}")
    if b.has(3):  # caches indexed by position: (max positions, rot / 2) -> (B, S, rot / 2)
        cos, sin = b.build(nn.GatherOp, cos, b.v(3), 0), b.build(nn.GatherOp, sin, b.v(3), 0)
    for t in (cos, sin):
        if len(shape_of(t.type)) != 3 or shape_of(t.type)[-1] != half:
            raise b.error(f"the cos and sin caches must be (batch, sequence, {half}), got {t.type}")
    at = [-1, 1, seq, half] if len(shape) == 4 else [-1, seq, 1, half]
    cos, sin = b.build(nn.ReshapeOp, cos, at), b.build(nn.ReshapeOp, sin, at)
    if a.get("interleaved", 0):
        x1, x2 = (b.build(nn.SliceOp, x, [s], [rot], [3], [2]) for s in (0, 1))
    else:
        x1, x2 = (b.build(nn.SliceOp, x, [s], [s + half], [3]) for s in (0, half))
    real = b.binary("sub", b.binary("mul", cos, x1), b.binary("mul", sin, x2))
    imag = b.binary("add", b.binary("mul", sin, x1), b.binary("mul", cos, x2))
    lead = list(shape_of(real.type)[:3])
    lead[0] = n
    if a.get("interleaved", 0):
        pairs = [b.build(nn.ReshapeOp, t, [*lead, half, 1]) for t in (real, imag)]
        y = b.build(nn.ReshapeOp, b.build(nn.ConcatOp, pairs, 4), [*lead, rot])
    else:
        y = b.build(nn.ConcatOp, [real, imag], 3)
    if rot < head:
        y = b.build(nn.ConcatOp, [y, b.build(nn.SliceOp, x, [rot], [head], [3])], 3)
    return y if len(shape) == 4 else b.build(nn.ReshapeOp, y, given)


@from_onnx("LinearAttention")
def _linear_attention(b, a):
    # The recurrence over the T tokens, unrolled (T is static): per token, with
    # S (B, Hkv, dk, dv), k_t and v_t as rows of their heads:
    #   gated: S *= exp(g_t)            delta: v_t = beta_t * (v_t - k_t S)
    #   S += k_t^T v_t                  o_t = scale * q_t S (GQA: each group of
    # q heads as the rows of one matmul with its kv head's state)
    q, k, v = b.v(0), b.v(1), b.v(2)
    rule = a.get("update_rule", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise b.error(f"unknown update_rule '{rule}' (known: linear, gated, delta, gated_delta)")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != b.has(4) or delta != b.has(5):
        raise b.error(f"update_rule '{rule}' {'needs' if gated else 'takes no'} decay and "
                      f"{'needs' if delta else 'takes no'} beta")
    hq, hkv = a.get("q_num_heads", 0), a.get("kv_num_heads", 0)
    shapes = [shape_of(t.type) for t in (q, k, v)]
    if hq <= 0 or hkv <= 0 or hq % hkv or any(len(s) != 3 or DYN in s[1:] for s in shapes):
        raise b.error(f"needs q_num_heads a multiple of kv_num_heads and (B, T, heads * d) inputs "
                      f"with static sizes but the batch, got {q.type}, {k.type}, {v.type}")
    n, steps = shapes[0][:2]
    if steps > UNROLLED_STEPS:
        raise b.error(f"{steps} tokens: the recurrence is unrolled, at most {UNROLLED_STEPS}")
    dk, dv, g = shapes[0][2] // hq, shapes[2][2] // hkv, hq // hkv
    if dk < 1 or dv < 1 or shapes[0][2] % hq or shapes[2][2] % hkv:
        raise b.error(f"the hidden sizes of {q.type} and {v.type} must be nonzero multiples of the heads")
    lead = -1 if n == DYN else n

    def token(x: SSAValue, i: int, dims: list[int]) -> SSAValue:
        return b.build(nn.ReshapeOp, b.build(nn.SliceOp, x, [i], [i + 1], [1]), [lead, *dims])

    state = b.v(3) if b.has(3) else None  # None: zeros, so far
    if gated:
        decay = b.unary("exp", b.v(4))
        dg = shape_of(decay.type)[2] // hkv
    if delta:
        beta, hb = b.v(5), shape_of(b.v(5).type)[2]
    scale = a.get("scale", 0.0) or 1 / math.sqrt(dk)
    outs = []
    for i in range(steps):
        v_t = token(v, i, [hkv, 1, dv])
        if gated and state is not None:
            state = b.binary("mul", state, token(decay, i, [hkv, dg, 1]))
        if delta:
            err = v_t if state is None else b.binary(
                "sub", v_t, b.build(nn.MatmulOp, token(k, i, [hkv, 1, dk]), state))
            v_t = b.binary("mul", token(beta, i, [hb, 1, 1]), err)
        outer = b.build(nn.MatmulOp, token(k, i, [hkv, dk, 1]), v_t)
        state = outer if state is None else b.binary("add", state, outer)
        o = b.build(nn.MatmulOp, token(q, i, [hkv, g, dk]), state)
        outs.append(b.build(nn.ReshapeOp, o, [lead, 1, hq * dv]))
    y = outs[0] if steps == 1 else b.build(nn.ConcatOp, outs, 1)
    return [b.binary("mul", y, b.scalar(scale, y)), state]


@from_onnx("ai.onnx.preview.FlexAttention")
def _flex_attention(b, a):
    # softmax(score_mod(Q K^T * scale)), prob_mod applied, times V; the
    # modifiers are subgraphs imported in place (the softmax runs in the
    # inputs' precision)
    q, k, v = b.v(0), b.v(1), b.v(2)
    if any(len(shape_of(t.type)) != 4 for t in (q, k, v)):
        raise b.error(f"Q, K and V must be 4-D, got {q.type}, {k.type}, {v.type}")
    hq, head, hkv = shape_of(q.type)[1], shape_of(q.type)[3], shape_of(k.type)[1]
    if DYN in (hq, head, hkv) or hkv < 1 or head < 1 or hq % hkv:
        raise b.error(f"the q heads must be a multiple of the kv heads, a head nonzero, got {q.type} and {k.type}")
    scale = a.get("scale", 1 / math.sqrt(head))
    scores = b.build(nn.MatmulOp, b.binary("mul", q, b.scalar(scale, q)),
                     b.build(nn.TransposeOp, _kv_for_q_heads(b, k, hq), [0, 1, 3, 2]))
    if "score_mod" in a:
        scores, = b.subgraph(a["score_mod"], [scores], "score_mod")
    probs = b.build(nn.SoftmaxOp, scores, -1)
    if "prob_mod" in a:
        probs, = b.subgraph(a["prob_mod"], [probs], "prob_mod")
    return b.build(nn.MatmulOp, probs, _kv_for_q_heads(b, v, hq))
