"""Lowering of the attention family: nn.attention, a block of query rows at a
time, their scores in a scratch of rows of Sk floats (never the score matrix).

A float32 attention whose products are the size matmul's lowering gives the
GEMM (Sk x D and Sk x Dv of at least GEMM_MIN_WORK) is two calls of the
register-blocked GEMM per block of QUERY_BLOCK query rows
(passes/lowering/gemm.py, as matmul's lowering calls it; q, kt and v read
where they are), a pass over each row of scores between them, one after:

    S    = q[i0:i0 + n] @ kt                    ncc_sgemm, S: n x Sk in the scratch
    S[i] = S[i] * scale + bias[i];  m = max S[i];  S[i] = exp(S[i] - m);  l[i] = sum S[i]
    o[i0:i0 + n] = S @ v                        ncc_sgemm
    o[i] = o[i] / l[i]

Other types and smaller products take loops (a call's overhead is more than
they cost), ROW_BLOCK query rows at a time (each value of kt and v loaded
once for the block); per row:

    s[j]  = sum_d q[i, d] kt[d, j]            KEY_BLOCK keys of the block's rows in registers over all d
    s[j]  = s[j] * scale + bias[i, j];  m = max_j s[j]
    s[j]  = exp(s[j] - m);  l = sum_j s[j]    (lanes_reduce)
    o[i]  = sum_j s[j] v[j] / l               KEY_BLOCK columns of o in registers over all j

(a vector of KEY_BLOCK sums per row, which LLVM's SLP vectorizer makes of
the scalar sums: broadcast-FMAs, no score stored between the terms; where
Sk or Dv is not a multiple of KEY_BLOCK, K_UNROLL terms per load and store
of the score or output element).

Causal attention (key j of query i only if j <= i) takes the same steps
over the keys its block's last query sees, min(Sk, i0 + n): the GEMMs' N
and K, the loops' blocks of keys (whole blocks of KEY_BLOCK, the scores
past each row's query -inf before the softmax); a block of the first rows
multiplies a fraction of the keys.

Blocks of rows are independent: each writes the scratch it reads (the
loops: parallelize-loops gives each thread its own; the GEMM calls run in
order, each on the kernel's threads when it is large enough)."""

from __future__ import annotations

import math as pymath
from typing import Callable

from xdsl.dialects import arith
from xdsl.dialects.builtin import UnitAttr, f32
from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import gemm
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, blocks, broadcast_map, lanes_reduce, linear_index
from ncc.passes.lowering.nn_to_loops.builder import view
from ncc.passes.lowering.nn_to_loops.matmul import GEMM_MIN_WORK, K_UNROLL, call_gemm, flat_view
from ncc.passes.lowering.nn_to_loops.softmax import row_max, shifted_exp
from ncc.passes.lowering.parallelize_loops import SCRATCH_PER_ITERATION

ROW_BLOCK = 8  # the loops: query rows at a time (each value of kt and v loaded once for them)
KEY_BLOCK = 16  # the loops: scores of this many keys (a vector) per row summed in registers over the depth
QUERY_BLOCK = 32  # query rows per pair of GEMM calls: their scores, QUERY_BLOCK x Sk floats, stay in L1 or L2


def _sizes(op: Operation) -> tuple[int, int, int, int, int]:
    """(query rows per block, Sq, Sk, D, Dv)."""
    *_, sq, d = nn.shape_of(op.query.type)
    sk, dv = nn.shape_of(op.keys_t.type)[-1], nn.shape_of(op.result.type)[-1]
    return (QUERY_BLOCK if sq == DYN else min(sq, QUERY_BLOCK)), sq, sk, d, dv


def _by_gemm(op: Operation) -> bool:
    """f32 products the size matmul gives the GEMM (Sk x D and Sk x Dv of at least GEMM_MIN_WORK)."""
    _, _, sk, d, dv = _sizes(op)
    return op.result.type.element_type == f32 and sk * min(d, dv) >= GEMM_MIN_WORK


def _gemm_layout(op: Operation) -> tuple[int, int]:
    """(offset, floats) of the GEMM's workspace in the scratch: after a block's scores and row sums."""
    qb, _, sk, d, dv = _sizes(op)
    start = -(-(qb * sk + qb) // 16) * 16  # 64-byte aligned
    return start, max(gemm.workspace_floats(qb, sk, d), gemm.workspace_floats(qb, dv, sk))


def attention_scratch_bytes(op: Operation, threads: int) -> int:
    """By the GEMM: a block's scores and row sums, the GEMM's workspace (one
    part per thread); else ROW_BLOCK rows of scores (f32 or f64)."""
    if _by_gemm(op):
        start, floats = _gemm_layout(op)
        return 4 * (start + threads * floats)
    return 8 * ROW_BLOCK * op.keys_t.type.get_shape()[-1]


def _register_sums(b: Builder, count: int, length: int, zero: SSAValue, left, right) -> list[list[SSAValue]]:
    """sums[r][u] = sum over t < length of left(r, t) * right(t)[u], for `count` rows and the
    KEY_BLOCK values right gives: scalars carried through one loop, which LLVM's SLP vectorizer
    makes a vector per row (broadcast-FMAs), nothing stored between the terms."""
    def step(tv, acc):
        across, down = right(tv[0]), [left(r, tv[0]) for r in range(count)]
        return [b(arith.AddfOp, acc[r * KEY_BLOCK + u], b(arith.MulfOp, a, x))
                for r, a in enumerate(down) for u, x in enumerate(across)]

    flat = b.nest([length], step, [zero] * (count * KEY_BLOCK))
    return [flat[r * KEY_BLOCK:(r + 1) * KEY_BLOCK] for r in range(count)]


def _softmax_rows(b: Builder, op, s: Buf, rows: list[SSAValue], queries: list[SSAValue], keys: int | SSAValue,
                  bias_of, step: int = 1) -> list[SSAValue]:
    """Rows of scores s (the first `keys` of each, a multiple of `step`) in place: s * scale + bias
    (bias_of(i, j): the bias of key j for query i, the row's entry of `queries`), -inf after the
    query if causal, then exp(s - max); returns each row's sum (lanes_reduce). Step by step over
    all the rows, not row after row: a row's steps are one chain of dependent latencies (max, exp,
    sum), the rows' are independent and overlap. A run-time `keys` goes `step` keys at a time (a
    loop of whole vectors, no remainder to handle)."""
    elt = s.elt
    scale = b.const(op.params.scale, elt)

    def each_key(body):
        if isinstance(keys, int) or step == 1:
            b.nest([keys], lambda j, _: body(j[0]))
        else:
            b.nest([b(arith.DivUIOp, keys, b.idx(step)), step], lambda j, _: body(b.add_i(b.mul_i(j[0], step), j[1])))

    for r, i in zip(rows, queries):
        def scaled(j, r=r, i=i):
            x = b(arith.MulfOp, b.load(s, [r, j]), scale)
            if bias_of is not None:
                x = b(arith.AddfOp, x, bias_of(i, j))
            if op.params.causal:
                x = b.select(b.cmpi("ugt", j, i), b.const(-pymath.inf, elt), x)
            b.store(x, s, [r, j])

        each_key(scaled)
    maxima = [row_max(b, keys, lambda j, r=r: b.load(s, [r, j]), elt) for r in rows]
    for r, mx in zip(rows, maxima):
        each_key(lambda j, r=r, mx=mx: b.store(shifted_exp(b, b(arith.SubfOp, b.load(s, [r, j]), mx)), s, [r, j]))
    return [lanes_reduce(b, "add", keys, lambda j, r=r: b.load(s, [r, j]), b.const(0.0, elt)) for r in rows]


def _bias_reader(b: Builder, bias: Buf | None, scores: tuple) -> Callable | None:
    """at -> bias_of(i, j), the bias of key j for query i of the heads `at` (the leading indices),
    for a bias broadcast to the scores [..., Sq, Sk]; None without a bias."""
    if bias is None:
        return None
    index = broadcast_map(b, scores, bias.shape)
    return lambda at: lambda i, j: b.load(bias, index([*at, i, j]))


def _keys_needed(b: Builder, op, keys: int, i0: SSAValue, count: int | SSAValue) -> int | SSAValue:
    """Keys the query rows [i0, i0 + count) attend to: all, or min(keys, i0 + count) if causal."""
    return b(arith.MinSIOp, b.idx(keys), b.add_i(i0, count)) if op.params.causal else keys


def _lower_by_gemm(b: Builder, op, out: Buf, q: Buf, kt: Buf, v: Buf, bias: Buf | None) -> None:
    qb, sq, sk, d, dv = _sizes(op)
    lead = out.shape[:-2]
    scores = view(b, b.scratch.ref, 0, (qb, sk))
    sums = view(b, b.scratch.ref, qb * sk, (qb,))
    start, floats = _gemm_layout(op)
    workspace = flat_view(b, b.scratch.ref, start, floats * b.threads)
    bias_reader = _bias_reader(b, bias, (*lead, sq, sk))
    rows_in_all = b.size(sq)

    def block(at, i0):
        n = b(arith.MinSIOp, b.idx(qb), b(arith.SubiOp, rows_in_all, i0))
        keys = _keys_needed(b, op, sk, i0, n)
        q_rows = flat_view(b, q.ref, linear_index(b, q.shape, [*at, i0]), b.mul_i(n, d))
        call_gemm(b, [n, keys, d, q_rows, d, 1, flat_view(b, kt.ref, linear_index(b, kt.shape, at), d * sk), sk,
                      flat_view(b, scores.ref, 0, qb * sk), sk], 0, workspace)
        bias_of = bias_reader(at) if bias_reader else None
        b.nest([n], lambda rv, _: b.store(
            _softmax_rows(b, op, scores, [rv[0]], [b.add_i(i0, rv[0])], keys, bias_of)[0], sums, [rv[0]]))
        o_at = linear_index(b, out.shape, [*at, i0])
        call_gemm(b, [n, dv, keys, flat_view(b, scores.ref, 0, qb * sk), sk, 1,
                      flat_view(b, v.ref, linear_index(b, v.shape, at), sk * dv), dv,
                      flat_view(b, out.ref, o_at, b.mul_i(n, dv)), dv], 0, workspace)
        b.nest([n, dv], lambda re, _: b.store(
            b(arith.DivfOp, b.load(out, [*at, b.add_i(i0, re[0]), re[1]]), b.load(sums, [re[0]])),
            out, [*at, b.add_i(i0, re[0]), re[1]]))

    count = b(arith.DivUIOp, b.add_i(rows_in_all, qb - 1), b.idx(qb))
    b.nest([*lead, count], lambda ivs, _: block(ivs[:-1], b.mul_i(ivs[-1], qb)))


def lower_attention(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    q, kt, v = ins[:3]
    if _by_gemm(op):
        _lower_by_gemm(b, op, out, q, kt, v, ins[3] if len(ins) > 3 else None)
        return
    bias = ins[3] if len(ins) > 3 else None
    lead, sq, dv = out.shape[:-2], out.shape[-2], out.shape[-1]
    depth, keys = q.shape[-1], kt.shape[-1]
    elt = out.elt
    s = view(b, b.scratch.ref, 0, (ROW_BLOCK, keys), elt)
    zero = b.const(0.0, elt)
    bias_reader = _bias_reader(b, bias, (*lead, sq, keys))
    marked: list = []

    def row_block(at, i0, count):  # `count` query rows: each value of kt and v loaded once for all
        marked.append(b.block)
        rows = [b.add_i(i0, r) for r in range(count)]
        needed = _keys_needed(b, op, keys, i0, count)

        def depth_block(d0, n):  # K_UNROLL products per load and store of a score
            ds = [b.add_i(d0, u) for u in range(n)]
            qs = [[b.load(q, [*at, i, d]) for d in ds] for i in rows]

            def key(j, _):
                ks = [b.load(kt, [*at, d, j[0]]) for d in ds]
                for r, qr in enumerate(qs):
                    total = b.load(s, [b.idx(r), j[0]])
                    for qd, k in zip(qr, ks):
                        total = b(arith.AddfOp, total, b(arith.MulfOp, qd, k))
                    b.store(total, s, [b.idx(r), j[0]])

            b.nest([needed], key)

        def scores_block(jv, _):  # KEY_BLOCK keys of `count` rows summed in registers over all of depth
            js = [b.add_i(b.mul_i(jv[0], KEY_BLOCK), u) for u in range(KEY_BLOCK)]
            sums = _register_sums(b, count, depth, zero, lambda r, d: b.load(q, [*at, rows[r], d]),
                                  lambda d: [b.load(kt, [*at, d, j]) for j in js])
            for r in range(count):
                for u, j in enumerate(js):
                    b.store(sums[r][u], s, [b.idx(r), j])

        scored, step = needed, 1  # the keys with scores: causal, whole blocks of them (masked past each query)
        if keys % KEY_BLOCK == 0:
            key_blocks = keys // KEY_BLOCK if isinstance(needed, int) else \
                b(arith.DivUIOp, b.add_i(needed, KEY_BLOCK - 1), b.idx(KEY_BLOCK))
            b.nest([key_blocks], scores_block)
            if not isinstance(needed, int):
                scored, step = b.mul_i(key_blocks, KEY_BLOCK), KEY_BLOCK
        else:
            b.nest([count, needed], lambda rj, _: b.store(zero, s, rj))
            blocks(b, depth, K_UNROLL, depth_block)
        bias_of = bias_reader(at) if bias_reader else None
        totals = _softmax_rows(b, op, s, [b.idx(r) for r in range(count)], rows, scored, bias_of, step)

        def values_block(ev, _):  # KEY_BLOCK output columns of `count` rows summed in registers over the keys
            es = [b.add_i(b.mul_i(ev[0], KEY_BLOCK), u) for u in range(KEY_BLOCK)]
            sums = _register_sums(b, count, needed, zero, lambda r, j: b.load(s, [b.idx(r), j]),
                                  lambda j: [b.load(v, [*at, j, e]) for e in es])
            for r, (i, total) in enumerate(zip(rows, totals)):
                for u, e in enumerate(es):
                    b.store(b(arith.DivfOp, sums[r][u], total), out, [*at, i, e])

        if dv % KEY_BLOCK == 0:
            b.nest([dv // KEY_BLOCK], values_block)
            return
        for i in rows:
            b.nest([dv], lambda e, _, i=i: b.store(zero, out, [*at, i, e[0]]))

        def key_block(j0, n):  # K_UNROLL products per load and store of an output element
            js = [b.add_i(j0, u) for u in range(n)]
            ps = [[b.load(s, [b.idx(r), j]) for j in js] for r in range(count)]

            def column(e, _):
                vs = [b.load(v, [*at, j, e[0]]) for j in js]
                for i, pr in zip(rows, ps):
                    total = b.load(out, [*at, i, e[0]])
                    for p, x in zip(pr, vs):
                        total = b(arith.AddfOp, total, b(arith.MulfOp, p, x))
                    b.store(total, out, [*at, i, e[0]])

            b.nest([dv], column)

        blocks(b, needed, K_UNROLL, key_block)
        for i, total in zip(rows, totals):
            b.nest([dv], lambda e, _, i=i, total=total: b.store(
                b(arith.DivfOp, b.load(out, [*at, i, e[0]]), total), out, [*at, i, e[0]]))

    outside = b.block
    b.nest(lead, lambda ivs, _: blocks(b, sq, ROW_BLOCK, lambda i0, n: row_block(ivs, i0, n)))
    for block in marked:  # each block of rows writes the scratch it reads
        loop = block.parent_op() if block is not outside else None
        while loop is not None:
            loop.attributes[SCRATCH_PER_ITERATION] = UnitAttr()
            loop = None if loop.parent_block() is outside else loop.parent_op()


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {nn.AttentionOp: lower_attention}
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {nn.AttentionOp: attention_scratch_bytes}
