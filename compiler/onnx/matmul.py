"""The matmul family in ONNX, both directions: MatMul, Gemm and Einsum in;
matmul, matmul_transpose_a, matmul_transpose_b and fused_matmul out.
"""

from __future__ import annotations

import math
import re

from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.elementwise import activation_to_onnx
from ncc.onnx.exporter import Graph, to_onnx
from ncc.onnx.importer import Importer, from_onnx


# ---------------------------------------------------------------------------
# ONNX -> nn

@from_onnx("MatMul")
def _matmul(b, a):
    return b.build(nn.MatmulOp, b.v(0), b.v(1))


@from_onnx("Gemm")
def _gemm(b, a):
    x, w = b.v(0), b.v(1)
    if a.get("transA", 0):
        x = b.build(nn.TransposeOp, x, [1, 0])
    if a.get("transB", 0):
        w = b.build(nn.TransposeOp, w, [1, 0])
    y = b.build(nn.MatmulOp, x, w)
    if (alpha := a.get("alpha", 1.0)) != 1.0:
        y = b.binary("mul", y, b.scalar(alpha, y))
    if b.has(2):
        c = b.v(2)
        if (beta := a.get("beta", 1.0)) != 1.0:
            c = b.binary("mul", c, b.scalar(beta, c))
        y = b.binary("add", y, c)
    return y


def _einsum_labels(b: Importer, equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Each operand's labels and the output's; '...' stands for labels of its
    own (right-aligned across operands: '...0', '...1', ...)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise b.error(f"equation '{equation}' has {len(terms)} operands, the node {len(ranks)}")
    for t in [*terms, rhs]:
        if not re.fullmatch(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*", t):
            raise b.error(f"cannot read the einsum term '{t}' of '{equation}'")
    ell = max((r - len(t) + 3 for t, r in zip(terms, ranks) if "..." in t), default=0)

    def expand(term: str, rank: int) -> list[str]:
        head, dots, tail = term.partition("...")
        k = rank - len(head) - len(tail) if dots else 0
        if k < 0 or (not dots and len(term) != rank):
            raise b.error(f"einsum term '{term}' does not fit an operand of rank {rank}")
        return [*head, *(f"...{i}" for i in range(ell - k, ell)), *tail]

    labels = [expand(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        out = expand(rhs, len(rhs) - 3 + ell if "..." in rhs else len(rhs))
    else:  # implicit: the broadcast labels, then the labels used once, sorted
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                counts[lab] = counts.get(lab, 0) + 1
        out = [f"...{i}" for i in range(ell)] + sorted(x for x, c in counts.items() if c == 1 and len(x) == 1)
    if len(set(out)) != len(out) or not set(out) <= {x for ls in labels for x in ls}:
        raise b.error(f"the output of einsum '{equation}' repeats a label or has one no operand has")
    return labels, out


def _einsum_diagonals(b: Importer, x: SSAValue, labels: list[str]) -> tuple[SSAValue, list[str]]:
    """A label repeated within one operand takes the diagonal: both axes moved
    last, merged, and sliced with a step of n + 1."""
    while len(set(labels)) != len(labels):
        lab = next(x for x in labels if labels.count(x) > 1)
        i = labels.index(lab)
        j = labels.index(lab, i + 1)
        shape = shape_of(x.type)
        n = shape[i]
        if n == DYN or shape[j] != n:
            raise b.error(f"the diagonal of label '{lab}' needs equal static sizes, got {x.type}")
        others = [k for k in range(len(labels)) if k not in (i, j)]
        x = b.build(nn.TransposeOp, x, [*others, i, j])
        x = b.reshape_to(x, [-1 if shape[k] == DYN else shape[k] for k in others] + [n * n])
        x = b.build(nn.SliceOp, x, [0], [n * n], [-1], [n + 1])
        labels = [labels[k] for k in others] + [lab]
    return x, labels


def _einsum_sum(b: Importer, x: SSAValue, labels: list[str], keep: set[str]) -> tuple[SSAValue, list[str]]:
    axes = [i for i, lab in enumerate(labels) if lab not in keep]
    if axes:
        x = b.build(nn.REDUCE_OPS["reduce_sum"], x, axes)
        labels = [lab for lab in labels if lab in keep]
    return x, labels


def _einsum_pair(b: Importer, x: SSAValue, xl: list[str], y: SSAValue, yl: list[str],
                 keep: set[str]) -> tuple[SSAValue, list[str]]:
    """x and y contracted over their shared labels not in `keep`, as one
    batched matmul (batch..., left..., shared) @ (batch..., 1..., shared, right):
    x's own labels stay dimensions (the last is the matmul's rows, the others
    broadcast), so a dynamic batch among them stays dimension 0; the shared
    labels merge, and so do y's own (the operands swap if y holds the batch)."""
    if any(d == DYN for lab, d in zip(yl, shape_of(y.type)) if lab not in xl):
        x, xl, y, yl = y, yl, x, xl
    batch = [lab for lab in xl if lab in yl and lab in keep]
    shared = [lab for lab in xl if lab in yl and lab not in keep]
    left = [lab for lab in xl if lab not in yl]
    right = [lab for lab in yl if lab not in xl]
    xs, ys = dict(zip(xl, shape_of(x.type))), dict(zip(yl, shape_of(y.type)))
    if any(xs[lab] != ys[lab] for lab in shared):
        raise b.error(f"einsum: the summed labels {shared} have sizes "
                      f"{[xs[lab] for lab in shared]} and {[ys[lab] for lab in shared]}")

    def dims(sizes: dict[str, int], labels: list[str]) -> list[int]:
        return [-1 if sizes[lab] == DYN else sizes[lab] for lab in labels]

    k = math.prod(xs[lab] for lab in shared)
    rows = dims(xs, left) or [1]
    x = b.reshape_to(b.permuted(x, xl, batch + left + shared), dims(xs, batch) + rows + [k])
    y = b.reshape_to(b.permuted(y, yl, batch + shared + right),
                    dims(ys, batch) + [1] * (len(rows) - 1) + [k, math.prod(ys[lab] for lab in right)])
    z = b.build(nn.MatmulOp, x, y)
    out = [-1 if d == DYN else d for d in shape_of(z.type)[:len(batch) + len(left)]]
    return b.reshape_to(z, out + dims(ys, right)), batch + left + right


@from_onnx("Einsum")
def _einsum(b, a):
    # diagonals and labels of one operand only are summed first; then the
    # operands are contracted pairwise, left to right, by batched matmuls;
    # last, the labels not in the output are summed and the rest permuted
    eq = a["equation"]
    xs = [b.v(i) for i in range(len(b.node.input))]
    labels, out = _einsum_labels(b, eq, [len(shape_of(x.type)) for x in xs])
    ops = [_einsum_diagonals(b, x, ls) for x, ls in zip(xs, labels)]
    acc, acc_l = ops[0]
    for i in range(1, len(ops) + 1):
        later = {lab for _, ls in ops[i + 1:] for lab in ls} | set(out)
        if i == len(ops):
            acc, acc_l = _einsum_sum(b, acc, acc_l, set(out))
            break
        y, yl = ops[i]
        acc, acc_l = _einsum_sum(b, acc, acc_l, later | set(yl))
        y, yl = _einsum_sum(b, y, yl, later | set(acc_l))
        acc, acc_l = _einsum_pair(b, acc, acc_l, y, yl, later)
    return b.permuted(acc, acc_l, out)


# ---------------------------------------------------------------------------
# nn -> ONNX

to_onnx(nn.MatmulOp)(lambda g, op, ins: g.node("MatMul", ins))
to_onnx(nn.MatmulTransposeAOp)(lambda g, op, ins: g.node(
    "MatMul", [g.node("Transpose", ins[:1], perm=[1, 0]), ins[1]]))
to_onnx(nn.MatmulTransposeBOp)(lambda g, op, ins: g.node(
    "MatMul", [ins[0], g.node("Transpose", ins[1:], perm=[1, 0])]))


@to_onnx(nn.FusedMatmulOp)
def _export_fused_matmul(g: Graph, op: Operation, ins: list[str]) -> str:
    y = g.node("MatMul", ins[:2])
    for added in ins[2:]:  # the bias, the residual
        y = g.node("Add", [y, added])
    return activation_to_onnx(g, op.params.activation, y, op.result)


@to_onnx(nn.PackedMatmulOp)
def _export_packed_matmul(g: Graph, op: Operation, ins: list[str]) -> str:
    """The weight unpacked from its panels (transpose, reshape, slice), then as fused_matmul."""
    p, k, width = shape_of(op.panels.type)
    w = g.node("Reshape", [g.node("Transpose", [ins[1]], perm=[1, 0, 2]), g.const([k, p * width])])
    w = g.node("Slice", [w, g.const([0]), g.const([op.params.columns]), g.const([1])])
    y = g.node("MatMul", [ins[0], w])
    for added in ins[2:]:  # the bias, the residual
        y = g.node("Add", [y, added])
    return activation_to_onnx(g, op.params.activation, y, op.result)
