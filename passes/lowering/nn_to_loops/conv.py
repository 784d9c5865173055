"""Lowering of the conv family: conv / fused_conv as a GEMM per image when large
(im2col into the arena scratch, then the packed GEMM; a 1x1 convolution of
stride 1 reads the image itself), else along output rows; conv_transpose in
scatter form, conv_weight_grad with accumulator rows on the stack."""

from __future__ import annotations

import math as pymath
from typing import Callable, Sequence

from xdsl.dialects import arith, func, math, memref
from xdsl.dialects.builtin import MemRefType, f32, i32
from xdsl.ir import Attribute, Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import gemm
from ncc.passes.lowering.nn_to_loops.builder import (Buf, Builder, epilogue, ranges, row_major_strides,
                                                      window_range)
from ncc.passes.lowering.nn_to_loops.matmul import GEMM_ARGS, GEMM_MIN_WORK, epilogue_flags, flat_view


C_UNROLL = 4  # conv: input channels per load/store of the output in the inner loop
M_BLOCK = 4  # conv: output channels computed together (each input load feeds M_BLOCK of them)


# ---------------------------------------------------------------------------
# conv as a GEMM per image: out[n] (M x OHW) = w (M x C*K) @ col (C*K x OHW),
# or, nn.packed_conv, transposed: out[n]^T (OHW x M) = col^T @ w^T, w^T packed once


TRANSPOSED_MIN_K = 128  # packed_conv: the shortest product (C x kernel) worth transposing out^T for
TRANSPOSE_BLOCK = 16  # packed_conv: output positions per block of out^T read row by row (a 64-byte store each)


def kernel_of(op: Operation) -> Sequence[int]:
    return op.params.kernel if isinstance(op, nn.PackedConvOp) else nn.shape_of(op.operands[1].type)[2:]


def gemm_shape(op: Operation) -> tuple[int, int, int] | None:
    """(M, N, K) = (output channels, output positions, C x kernel) of a conv
    computed as a GEMM per image, or None: float32, one group, and at least
    GEMM_MIN_WORK elements of the K x N matrix (im2col pays for itself);
    nn.packed_conv always."""
    x, w, y = (nn.shape_of(v.type) for v in (op.operands[0], op.operands[1], op.result))
    if isinstance(op, nn.PackedConvOp):
        return op.params.channels, pymath.prod(y[2:]), w[1]
    if op.params.group != 1 or any(v.type.element_type != f32 for v in (op.operands[0], op.operands[1])) \
            or DYN in y[1:]:
        return None
    m, k, n = w[0], pymath.prod(w[1:]), pymath.prod(y[2:])
    if k * n < GEMM_MIN_WORK or m < 4:
        return None
    return m, n, k


def transposed_is_cheaper(op: Operation) -> bool:
    """Whether the conv's GEMM runs faster transposed, out^T = col^T @ w^T
    with w^T packed once as B, than as w @ col: when there are more output
    channels than output positions (ResNet's 14 x 14 and 7 x 7 stages) and
    the products are long enough (C x kernel >= TRANSPOSED_MIN_K) to pay for
    transposing out^T into out. The GEMM is fastest with many columns: each
    packed block of A then feeds many panels of B; as w @ col a 7 x 7 image
    gives two panels of columns, the second half empty, and w itself is
    packed on every call. (Measured on znver5, AVX-512's 14 x 32 tile, on
    ResNet-50's, SqueezeNet's and MobileNet's convolutions at batch 1:
    transposed 0.53-0.89x the time where this holds, 1.01-3.0x where it
    does not.)"""
    shape = gemm_shape(op)
    if shape is None:
        return False
    m, n, k = shape
    return m > n and k >= TRANSPOSED_MIN_K


def _reads_the_image(op: Operation) -> bool:
    """A 1x1 convolution of stride 1 without padding: the image is the GEMM's B (A, transposed)."""
    p = op.params
    return all(k == 1 for k in kernel_of(op)) and all(s == 1 for s in p.strides) and not any(p.pads)


def _scratch_parts(op: Operation) -> tuple[int, int]:
    """Floats of im2col's K x N matrix (none for a 1x1 convolution) and of out^T (transposed only)."""
    m, n, k = gemm_shape(op)
    col = 0 if _reads_the_image(op) else -(-k * n // 16) * 16
    return col, -(-m * n // 16) * 16 if isinstance(op, nn.PackedConvOp) else 0


def conv_scratch_bytes(op: Operation, threads: int) -> int:
    """im2col's matrix, out^T, and the GEMM's workspace, one part per thread;
    a depthwise convolution's padded plane."""
    if _is_depthwise(op):
        return 4 * pymath.prod(_padded_plane(op))
    shape = gemm_shape(op)
    if shape is None:
        return 0
    m, n, k = shape
    rows, cols = (n, m) if isinstance(op, nn.PackedConvOp) else (m, n)
    return 4 * (sum(_scratch_parts(op)) + threads * gemm.workspace_floats(rows, cols, k))


def _conv_by_gemm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    p = op.params
    m, n, k = gemm_shape(op)
    kernel, nd = kernel_of(op), len(kernel_of(op))
    image = pymath.prod(x.shape[1:])
    direct = _reads_the_image(op)
    transposed = isinstance(op, nn.PackedConvOp)
    col_floats, outt_floats = _scratch_parts(op)
    ws = flat_view(b, b.scratch.ref, b.idx(col_floats + outt_floats),
                   b.scratch.shape[0] - col_floats - outt_floats)
    col_shape = (x.shape[1], *kernel, *out.shape[2:])  # row (c, k...), column o...: the GEMM's B (A^T)
    col = None if direct else _view(b, b.scratch.ref, 0, col_shape)
    outt = _view(b, b.scratch.ref, col_floats, (n, m)) if transposed else None
    zero = b.const(0, f32)
    b.externals[gemm.SYMBOL] = (list(GEMM_ARGS), [])
    fused = isinstance(op, (nn.FusedConvOp, nn.PackedConvOp))
    if fused:
        flags, in_tile = epilogue_flags(op, bias, gemm.BIAS_COLS if transposed else gemm.BIAS_ROWS, (m,))
    else:
        flags, in_tile = 0, True
    bias_arg = flat_view(b, bias.ref, b.idx(0), m) if flags & (gemm.BIAS_ROWS | gemm.BIAS_COLS) else ws
    weight = flat_view(b, w.ref, b.idx(0), pymath.prod(w.shape))

    def per_image(ivs, _):
        ni = ivs[0]
        if direct:
            src = flat_view(b, x.ref, b.mul_i(ni, image), image)
        else:
            def row(cks, _):  # col[c, k..., o...] = x[n, c, o*s + k*d - p], 0 outside the image
                c, ks = cks[0], cks[1:]
                win = [window_range(b, ks[d], x.shape[2 + d], out.shape[2 + d], p.strides[d],
                                    p.dilations[d], p.pads[d]) for d in range(nd)]
                if any(p.pads):  # zeros around the box of positions inside the image, slab by slab
                    lows, highs = [v[1] for v in win], [v[2] for v in win]
                    for d in range(nd):
                        full = [b.idx(e) for e in out.shape[3 + d:]]
                        for lo, hi in ((b.idx(0), lows[d]), (highs[d], b.idx(out.shape[2 + d]))):
                            ranges(b, [*lows[:d], lo, *(b.idx(0) for _ in full)], [*highs[:d], hi, *full],
                                   lambda o: b.store(zero, col, [c, *ks, *o]))

                def point(o):
                    pos = [b.add_i(b.mul_i(o[d], p.strides[d]), win[d][0]) for d in range(nd)]
                    b.store(b.load(x, [ni, c, *pos]), col, [c, *ks, *o])
                ranges(b, [v[1] for v in win], [v[2] for v in win], point)
            b.nest([x.shape[1], *kernel], row)
            src = flat_view(b, b.scratch.ref, b.idx(0), k * n)
        if transposed:  # out^T = col^T (rows n, read with strides 1, n) @ the packed w^T
            args = [n, m, k, src, 1, n, weight, m, flat_view(b, b.scratch.ref, b.idx(col_floats), m * n), m,
                    flags | gemm.PACKED_B]
        else:
            args = [m, n, k, weight, k, 1, src, n, flat_view(b, out.ref, b.mul_i(ni, m * n), m * n), n, flags]
        args = [b.idx(v) if isinstance(v, int) else v for v in args[:-1]] + [b.const(args[-1], i32)]
        b.emit(func.CallOp(gemm.SYMBOL, [*args, ws, b.idx(b.threads), bias_arg], []))
        if transposed:  # out[n, m, o] = act(out^T[o, m] (+ bias[m])), TRANSPOSE_BLOCK positions at a time
            image_out = _view(b, out.ref, b.mul_i(ni, m * n), (m, n))

            def put(o: SSAValue, mo: SSAValue) -> None:
                v = b.load(outt, [o, mo])
                b.store(v if in_tile else epilogue(b, op, bias, [mo], v), image_out, [mo, o])

            def block(ivs, _):  # one row of out^T after another: unit-stride reads, a vector store
                for j in range(TRANSPOSE_BLOCK):
                    put(b.add_i(b.mul_i(ivs[0], TRANSPOSE_BLOCK), j), ivs[1])
            full, rest = divmod(n, TRANSPOSE_BLOCK)
            b.nest([full, m], block)
            if rest:
                b.nest([m, rest], lambda ivs, _: put(b.add_i(ivs[1], n - rest), ivs[0]))
        elif not in_tile:
            def fin(mo, _):
                at = [ni, *mo]
                v = b.load(out, at)
                v = b(arith.AddfOp, v, b.load(bias, [mo[0]])) if bias is not None else v
                b.store(epilogue(b, op, None, [], v), out, at)
            b.nest(out.shape[1:], fin)

    b.nest([out.shape[0]], per_image)


def _view(b: Builder, ref: SSAValue, offset: int | SSAValue, shape: Sequence[int]) -> Buf:
    """Floats of `ref` from element `offset` as a row-major buffer of `shape`."""
    return Buf(b.emit(memref.ReinterpretCastOp.from_dynamic(
        ref, [offset], list(shape), row_major_strides(shape), MemRefType(f32, list(shape)))),
        tuple(shape), f32)


# ---------------------------------------------------------------------------
# depthwise convolution (one input channel per output channel: MobileNet's 3 x 3)


def _is_depthwise(op: Operation) -> bool:
    """A 2-D float32 conv or fused_conv whose every output channel reads its own input channel."""
    if not isinstance(op, (nn.ConvOp, nn.FusedConvOp)):
        return False
    x, w = (nn.shape_of(v.type) for v in op.operands[:2])
    return len(w) == 4 and w[1] == 1 and op.params.group == w[0] == x[1] > 1 \
        and x[1] != DYN and DYN not in x[2:] and op.result.type.element_type == f32


def _padded_plane(op: Operation) -> tuple[int, int]:
    (h, wd), p = nn.shape_of(op.operands[0].type)[2:], op.params.pads
    return h + p[0] + p[2], wd + p[1] + p[3]


def _lower_depthwise(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per channel plane: the image copied into the middle of a zero-bordered
    plane (the scratch, whose border is zeroed once per call), then per output
    row, along the row (it vectorizes):
        out[n, c, i, j] = act(bias[c] + sum_k w[c, 0, kh, kw] * padded[i*s + kh*d, j*s + kw*d])
    with the taps' weights loaded once per plane and the sum in registers:
    one store per output, no padding tests."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    p = op.params
    (kh, kw), (h, wd) = w.shape[2:], x.shape[2:]
    padded = _view(b, b.scratch.ref, 0, _padded_plane(op))
    zero = b.const(0, f32)
    b.nest(padded.shape, lambda ij, _: b.store(zero, padded, ij))
    top, left = p.pads[0], p.pads[1]

    def plane(ivs, _):
        ni, c = ivs
        b.nest([h, wd], lambda ij, _: b.store(b.load(x, [ni, c, *ij]), padded,
                                              [b.add_i(ij[0], top), b.add_i(ij[1], left)]))
        taps = [(u, v, b.load(w, [c, b.idx(0), b.idx(u), b.idx(v)])) for u in range(kh) for v in range(kw)]
        start = b.load(bias, [c]) if bias is not None else zero

        def point(o, _):
            rows, cols = b.mul_i(o[0], p.strides[0]), b.mul_i(o[1], p.strides[1])
            acc = start
            for u, v, wt in taps:  # in the reference's order of kernel offsets
                xv = b.load(padded, [b.add_i(rows, u * p.dilations[0]), b.add_i(cols, v * p.dilations[1])])
                acc = b(arith.AddfOp, acc, b(arith.MulfOp, wt, xv))
            b.store(epilogue(b, op, None, [], acc) if isinstance(op, nn.FusedConvOp) else acc, out, [ni, c, *o])
        b.nest(out.shape[2:], point)

    b.nest(out.shape[:2], plane)


def lower_conv(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Direct convolution, vectorized along the last output dimension. Per
    image and block of M_BLOCK output channels, the output planes start at the
    bias (fused) or 0; then for each kernel offset and block of C_UNROLL input
    channels c:
        out[m, o] += sum_c w[m, c, k] * x[n, c, o*stride + k*dilation - pad]
    over just the output positions whose input is inside the image (the loop
    bounds are computed per offset, so the inner loop has no padding tests and
    its loads are unit-stride at stride 1). Each input value loaded feeds
    M_BLOCK accumulations, each output is loaded and stored once per C_UNROLL
    channels. Fused: activation last. Large float32 convolutions of one group:
    a GEMM per image instead (_conv_by_gemm); depthwise ones: _lower_depthwise."""
    if gemm_shape(op) is not None:
        return _conv_by_gemm(b, op, out, ins)
    if _is_depthwise(op):
        return _lower_depthwise(b, op, out, ins)
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    p = op.params
    m, cg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    per_group = m // p.group
    nd = len(kernel)
    fused = isinstance(op, nn.FusedConvOp)
    unroll = C_UNROLL if cg >= C_UNROLL else 1
    mb = next(k for k in (M_BLOCK, 2, 1) if per_group % k == 0)

    def planes(ivs, _):
        ni = ivs[0]
        ms = [b.add_i(b.mul_i(ivs[1], mb), j) for j in range(mb)]
        for mi in ms:
            start = b.load(bias, [mi]) if fused and bias is not None else b.const(0, out.elt)
            b.nest(out.shape[2:], lambda o, _: b.store(start, out, [ni, mi, *o]))
        cbase = b.mul_i(b(arith.DivUIOp, ms[0], b.idx(per_group)), cg) if p.group > 1 else None

        def offset(ks, _):
            # input position o*s + t, t = k*dilation - pad: inside for o in [lo, hi)
            win = [window_range(b, ks[d], x.shape[2 + d], out.shape[2 + d], p.strides[d], p.dilations[d],
                                p.pads[d]) for d in range(nd)]
            shift, lo, hi = ([w[i] for w in win] for i in range(3))

            def channels(chans: list[SSAValue]) -> None:
                xcs = [c if cbase is None else b.add_i(cbase, c) for c in chans]
                wv = [[b.load(w, [mi, c, *ks]) for c in chans] for mi in ms]

                def point(o: list[SSAValue]) -> None:
                    pos = [b.add_i(b.mul_i(o[d], p.strides[d]), shift[d]) for d in range(nd)]
                    xv = [b.load(x, [ni, xc, *pos]) for xc in xcs]
                    for mi, wm in zip(ms, wv):
                        acc = b.load(out, [ni, mi, *o])
                        for wq, xq in zip(wm, xv):  # same order of additions as one channel at a time
                            acc = b(arith.AddfOp, acc, b(arith.MulfOp, wq, xq))
                        b.store(acc, out, [ni, mi, *o])

                ranges(b, lo, hi, point)

            b.nest([cg // unroll], lambda cs, _: channels([b.add_i(b.mul_i(cs[0], unroll), u)
                                                            for u in range(unroll)]))
            for r in range(cg - cg % unroll, cg):
                channels([b.idx(r)])

        b.nest(kernel, offset)
        if fused and op.params.activation != "identity":
            for mi in ms:
                b.nest(out.shape[2:], lambda o, _: b.store(
                    epilogue(b, op, None, [], b.load(out, [ni, mi, *o])), out, [ni, mi, *o]))

    b.nest([out.shape[0], m // mb], planes)


def lower_conv_transpose(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Scatter form, vectorized along the last input dimension (lower_conv with
    the roles of input and output swapped). Per image and block of M_BLOCK
    output channels of one group, the output planes start at 0; then for each
    kernel offset and block of C_UNROLL input channels c of the group:
        out[m, i*stride + k*dilation - pad] += sum_c w[c, m, k] * x[n, c, i]
    over just the input points i that land inside the output (loop bounds per
    offset: no tests in the inner loop, whose loads are unit-stride in x, and in
    the output at stride 1). Each input value loaded feeds M_BLOCK outputs;
    each output is loaded and stored once per C_UNROLL channels."""
    x, w = ins
    p = op.params
    cw, mg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    cg = cw // p.group
    nd = len(kernel)
    unroll = C_UNROLL if cg >= C_UNROLL else 1
    mb = next(k for k in (M_BLOCK, 2, 1) if mg % k == 0)
    zero = b.const(0, out.elt)

    def planes(ivs, _):
        ni = ivs[0]
        ms = [b.add_i(b.mul_i(ivs[1], mb), j) for j in range(mb)]
        for mi in ms:
            b.nest(out.shape[2:], lambda o, _: b.store(zero, out, [ni, mi, *o]))
        if p.group > 1:  # the group's input channels; each m's column of the weight
            cbase = b.mul_i(b(arith.DivUIOp, ms[0], b.idx(mg)), cg)
            js = [b(arith.RemUIOp, mi, b.idx(mg)) for mi in ms]
        else:
            cbase, js = None, ms

        def offset(ks, _):
            # input point i lands at i*s + t, t = k*dilation - pad: inside for i in [lo, hi)
            win = [window_range(b, ks[d], out.shape[2 + d], x.shape[2 + d], p.strides[d], p.dilations[d],
                                p.pads[d]) for d in range(nd)]

            def channels(chans: list[SSAValue]) -> None:
                xcs = [c if cbase is None else b.add_i(cbase, c) for c in chans]
                wv = [[b.load(w, [xc, j, *ks]) for xc in xcs] for j in js]

                def point(i: list[SSAValue]) -> None:
                    pos = [b.add_i(b.mul_i(i[d], p.strides[d]), win[d][0]) for d in range(nd)]
                    xv = [b.load(x, [ni, xc, *i]) for xc in xcs]
                    for mi, wm in zip(ms, wv):
                        acc = b.load(out, [ni, mi, *pos])
                        for wq, xq in zip(wm, xv):  # same order of additions as one channel at a time
                            acc = b(arith.AddfOp, acc, b(arith.MulfOp, wq, xq))
                        b.store(acc, out, [ni, mi, *pos])

                ranges(b, [v[1] for v in win], [v[2] for v in win], point)

            b.nest([cg // unroll], lambda cs, _: channels([b.add_i(b.mul_i(cs[0], unroll), u)
                                                            for u in range(unroll)]))
            for r in range(cg - cg % unroll, cg):
                channels([b.idx(r)])

        b.nest(kernel, offset)

    b.nest([out.shape[0], out.shape[1] // mb], planes)


WG_SCRATCH = 16384  # conv_weight_grad: elements of its accumulator rows (a buffer on the stack)
N_UNROLL = 2  # conv_weight_grad: images per load/store of the accumulators in the inner loop
#   (2 ran fastest on 3x3 convs of 32x32 images: with 3 or 4 more planes are read at once)


def _scratch(b: Builder, shape: Sequence[int], elt: Attribute) -> Buf:
    """A buffer of the kernel's own, of static size: a memref.alloca at the top
    of the kernel (a fixed stack slot, never inside a loop)."""
    op = memref.AllocaOp.get(elt, shape=list(shape))
    if b.entry.first_op is not None:
        b.entry.insert_op_before(op, b.entry.first_op)
    else:
        b.entry.add_op(op)
    return Buf(op.memref, tuple(shape), elt)


def lower_conv_weight_grad(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """dw[m, c, k] = sum over n, o of dy[n, m, o] * x[n, c', o * stride + k * dilation - pad].
    A sum along o would be a loop-carried scalar (float additions are not
    reassociated, so it does not vectorize); instead, per block of M_BLOCK
    output channels m_j and input channel c, accumulator rows along the last
    output dimension (a stack buffer acc[kernel offset, j, o_last]) gather
    the whole batch, N_UNROLL images n_u at a time:
        for k, for o in range:  acc[k, j, o_last] += sum_u dy[n_u, m_j, o] * x[n_u, c', pos(o, k)]
    The inner loop (o_last) is unit-stride in dy and acc (and in x at stride
    1), with no dependence between iterations: it vectorizes. Each x load feeds
    the block's M_BLOCK rows, each row is loaded and stored once per N_UNROLL
    images; the images' dy planes of the block and x channel are read for
    every kernel offset in turn while they are in cache; the
    output positions whose input is inside the image are loop bounds (no
    padding tests), as in lower_conv. Last, each row is summed into dw. When
    the rows of every offset would exceed WG_SCRATCH elements, the last output
    dimension is taken in chunks of the rows' length."""
    x, dy = ins
    p = op.params
    m, cg, kernel = out.shape[0], out.shape[1], tuple(p.kernel)
    nd = len(kernel)
    per_group = m // p.group
    kn = pymath.prod(kernel)
    last = dy.shape[-1]
    mb = next(k for k in (M_BLOCK, 2, 1) if per_group % k == 0)
    if kn * mb * min(last, 64) > WG_SCRATCH:  # big kernels: rows of one channel, longer
        mb = 1
    t = max(1, min(last, WG_SCRATCH // (kn * mb)))
    chunks = -(-last // t)
    acc = _scratch(b, (kn, mb, t), out.elt)
    zero = b.const(0, out.elt)
    kstrides = row_major_strides(kernel)
    batch = x.shape[0] if x.shape[0] != DYN else dy.shape[0]

    def flat(ks: Sequence[SSAValue]) -> SSAValue:
        f = b.idx(0)
        for k, st in zip(ks, kstrides):
            f = b.add_i(f, b.mul_i(k, st))
        return f

    def block(ivs, _):
        ms = [b.add_i(b.mul_i(ivs[0], mb), j) for j in range(mb)]
        ci = ivs[1]
        xc = ci if p.group == 1 else b.add_i(b.mul_i(b(arith.DivUIOp, ms[0], b.idx(per_group)), cg), ci)
        b.nest([kn, mb, t], lambda z, _: b.store(zero, acc, z))

        def images(nis: list[SSAValue]) -> None:
            def offset(ks, _):
                kf = flat(ks)
                win = [window_range(b, ks[d], x.shape[2 + d], dy.shape[2 + d], p.strides[d],
                                    p.dilations[d], p.pads[d]) for d in range(nd)]
                shift = [w[0] for w in win]

                def rows(outer: list[SSAValue]) -> None:
                    def run(lo: SSAValue, hi: SSAValue, start: SSAValue | None) -> None:
                        def point(o: list[SSAValue]) -> None:
                            oo = [*outer, o[0]]
                            pos = [b.add_i(b.mul_i(oo[d], p.strides[d]), shift[d]) for d in range(nd)]
                            xv = [b.load(x, [ni, xc, *pos]) for ni in nis]
                            a_i = o[0] if start is None else b(arith.SubiOp, o[0], start)
                            for j, mj in enumerate(ms):
                                at = [kf, b.idx(j), a_i]
                                a = b.load(acc, at)
                                for ni, xq in zip(nis, xv):
                                    a = b(arith.AddfOp, a, b(arith.MulfOp, b.load(dy, [ni, mj, *oo]), xq))
                                b.store(a, acc, at)

                        ranges(b, [lo], [hi], point)

                    lo, hi = win[-1][1], win[-1][2]
                    if chunks == 1:
                        run(lo, hi, None)
                        return

                    def chunk(cs, _):
                        start = b.mul_i(cs[0], t)
                        run(b(arith.MaxSIOp, lo, start), b(arith.MinSIOp, hi, b.add_i(start, t)), start)

                    b.nest([chunks], chunk)

                ranges(b, [w[1] for w in win[:-1]], [w[2] for w in win[:-1]], rows)

            b.nest(kernel, offset)

        # whole blocks of N_UNROLL images, then the rest one by one
        u = N_UNROLL
        blocks = b(arith.DivUIOp, b.batch, b.idx(u)) if batch == DYN else batch // u
        done = b.mul_i(blocks, u) if batch == DYN else b.idx(blocks * u)
        rest = b(arith.SubiOp, b.batch, done) if batch == DYN else batch % u
        if blocks != 0:
            b.nest([blocks], lambda ns, _: images([b.add_i(b.mul_i(ns[0], u), v) for v in range(u)]))
        if rest != 0:
            b.nest([rest], lambda ns, _: images([b.add_i(ns[0], done)]))

        def total(ks, _):
            kf = flat(ks)
            for j, mj in enumerate(ms):
                s, = b.nest([t], lambda i, c: [b(arith.AddfOp, c[0], b.load(acc, [kf, b.idx(j), i[0]]))],
                            [zero])
                b.store(s, out, [mj, ci, *ks])

        b.nest(kernel, total)

    b.nest([m // mb, cg], block)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.ConvOp: lower_conv, nn.FusedConvOp: lower_conv, nn.PackedConvOp: lower_conv,
    nn.ConvTransposeOp: lower_conv_transpose,
    nn.ConvWeightGradOp: lower_conv_weight_grad,
}
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {cls: conv_scratch_bytes for cls in
                                                        (nn.ConvOp, nn.FusedConvOp, nn.PackedConvOp)}
