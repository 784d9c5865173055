"""Lowering of the conv family: conv / fused_conv as a GEMM per image when large
(im2col into the arena scratch, then the packed GEMM; a 1x1 convolution of
stride 1 reads the image itself), else along output rows; conv_transpose in
scatter form, conv_weight_grad with accumulator rows on the stack."""

from __future__ import annotations

import math as pymath
from typing import Callable, Sequence

from xdsl.dialects import arith, math, memref
from xdsl.dialects.builtin import f32
from xdsl.ir import Attribute, Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import gemm
from ncc.passes.lowering.nn_to_loops.builder import (Buf, Builder, by_padded_plane, epilogue, if_else,
                                                      padded_plane_floats, ranges, row_major_strides, view,
                                                      window_range)
from ncc.passes.lowering.nn_to_loops.matmul import GEMM_MIN_WORK, call_gemm, epilogue_flags, flat_view


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
    return _reads_the_image_of(op.params, op.params.kernel if isinstance(op, nn.ConvWeightGradOp)
                               else kernel_of(op))


def _reads_the_image_of(p, kernel: Sequence[int]) -> bool:
    return all(k == 1 for k in kernel) and all(s == 1 for s in p.strides) and not any(p.pads)


def _scratch_parts(op: Operation) -> tuple[int, int, int]:
    """Floats of im2col's K x N matrix (none for a 1x1 convolution of stride 1),
    of out^T (transposed only) and of the image split by stride phase."""
    m, n, k = gemm_shape(op)
    col = 0 if _reads_the_image(op) else _floats(k * n)
    phases = 0 if _reads_the_image(op) else phase_floats(nn.shape_of(op.operands[0].type), op.params.strides)
    return col, _floats(m * n) if isinstance(op, nn.PackedConvOp) else 0, phases


def conv_scratch_bytes(op: Operation, threads: int) -> int:
    """im2col's matrix, out^T, and the GEMM's workspace, one part per thread;
    a depthwise convolution's padded plane."""
    if _is_depthwise(op):
        return 4 * _depthwise_floats(op)
    shape = gemm_shape(op)
    if shape is None:
        return 0
    m, n, k = shape
    rows, cols = (n, m) if isinstance(op, nn.PackedConvOp) else (m, n)
    return 4 * (sum(_scratch_parts(op)) + threads * gemm.workspace_floats(rows, cols, k))


def _conv_by_gemm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, w = ins[0], ins[1]
    bias, residual = (*ins[2:], None, None)[:2]
    p = op.params
    m, n, k = gemm_shape(op)
    kernel = kernel_of(op)
    image = pymath.prod(x.shape[1:])
    direct = _reads_the_image(op)
    transposed = isinstance(op, nn.PackedConvOp)
    col_floats, outt_floats, phase_part = _scratch_parts(op)
    used = col_floats + outt_floats + phase_part
    ws = flat_view(b, b.scratch.ref, b.idx(used), b.scratch.shape[0] - used)
    col_shape = (x.shape[1], *kernel, *out.shape[2:])  # row (c, k...), column o...: the GEMM's B (A^T)
    col = None if direct else view(b, b.scratch.ref, 0, col_shape)
    outt = view(b, b.scratch.ref, col_floats, (n, m)) if transposed else None
    fused = isinstance(op, (nn.FusedConvOp, nn.PackedConvOp))
    if fused and transposed and residual is not None:  # out^T's tile is not the residual's: all in the transpose
        flags, in_tile = 0, False
    elif fused:
        flags, in_tile = epilogue_flags(op, bias, gemm.BIAS_COLS if transposed else gemm.BIAS_ROWS, (m,), residual)
    else:
        flags, in_tile = 0, True
    bias_arg = flat_view(b, bias.ref, b.idx(0), m) if flags & (gemm.BIAS_ROWS | gemm.BIAS_COLS) else None
    weight = flat_view(b, w.ref, b.idx(0), pymath.prod(w.shape))

    def per_image(ivs, _):
        ni = ivs[0]
        if direct:
            src = flat_view(b, x.ref, b.mul_i(ni, image), image)
        else:
            im2col(b, p, x, ni, col, col_floats + outt_floats)
            src = flat_view(b, b.scratch.ref, b.idx(0), k * n)
        if transposed:  # out^T = col^T (rows n, read with strides 1, n) @ the packed w^T
            call_gemm(b, [n, m, k, src, 1, n, weight, m, flat_view(b, b.scratch.ref, b.idx(col_floats), m * n), m],
                      flags | gemm.PACKED_B, ws, bias_arg)
        else:
            image_r = residual and flat_view(b, residual.ref, b.mul_i(ni, m * n), m * n)
            call_gemm(b, [m, n, k, weight, k, 1, src, n, flat_view(b, out.ref, b.mul_i(ni, m * n), m * n), n],
                      flags, ws, bias_arg, image_r if flags & gemm.RESIDUAL else None)
        if transposed:  # out[n, m, o] = act(out^T[o, m] (+ bias[m]) (+ residual[n, m, o]))
            image_r = residual and view(b, residual.ref, b.mul_i(ni, m * n), (m, n))
            _transpose(b, outt, view(b, out.ref, b.mul_i(ni, m * n), (m, n)), None if in_tile else
                       lambda v, mo, o: epilogue(b, op, bias, [mo], v, residual and b.load(image_r, [mo, o])))
        elif not in_tile:
            def fin(mo, _):
                at = [ni, *mo]
                b.store(epilogue(b, op, bias, [mo[0]], b.load(out, at), residual and b.load(residual, at)), out, at)
            b.nest(out.shape[1:], fin)

    b.nest([out.shape[0]], per_image)


def phase_floats(x_shape: Sequence[int], strides: Sequence[int]) -> int:
    """Floats of an image split into its stride phases (none at stride 1): a
    C x stride... x ceil(size / stride)... buffer, see _im2col."""
    if all(s == 1 for s in strides):
        return 0
    return _floats(x_shape[1] * pymath.prod(strides) * pymath.prod(-(-h // s) for h, s in zip(x_shape[2:], strides)))


def im2col(b: Builder, p, x: Buf, ni: SSAValue, col: Buf, phases_at: int, fill: SSAValue | None = None,
           scratch: SSAValue | None = None) -> None:
    """col[c, k..., o...] = x[n, c, o * stride + k * dilation - pad], `fill`
    (default 0) outside the image: one row of the GEMM operand per channel
    and kernel offset, along the output positions. At stride 1 a row is a run
    of the image; at a larger stride the image is first split by phase
    (elements of `scratch`, default the op's, from `phases_at`, phase_floats
    of them for floats),
        phase[c, r..., i...] = x[n, c, i * stride + r],
    so that each row is a unit-stride run of one phase plane: with
    t = k * dilation - pad, position o reads phase t mod stride at o + t div stride."""
    nd = len(x.shape) - 2
    kernel, positions, spatial = col.shape[1:1 + nd], col.shape[1 + nd:], x.shape[2:]
    zero = fill if fill is not None else b.const(0, f32)
    strided = any(s > 1 for s in p.strides)
    if strided:
        sizes = [-(-h // s) for h, s in zip(spatial, p.strides)]
        phase = view(b, scratch if scratch is not None else b.scratch.ref, phases_at, (x.shape[1], *p.strides, *sizes))

        def split(crs, _):
            c, rs = crs[0], crs[1:]
            ends = [b(arith.DivUIOp, b(arith.SubiOp, b.idx(h + s - 1), r), b.idx(s))
                    for h, s, r in zip(spatial, p.strides, rs)]  # ceil((size - r) / stride)
            ranges(b, [b.idx(0)] * nd, ends, lambda i: b.store(
                b.load(x, [ni, c, *(b.add_i(b.mul_i(i[d], p.strides[d]), rs[d]) for d in range(nd))]),
                phase, [c, *rs, *i]))
        b.nest([x.shape[1], *p.strides], split)

    def window(d: int, k: SSAValue) -> tuple[SSAValue | None, SSAValue, SSAValue, SSAValue]:
        """(phase, shift, lo, hi): position o of [lo, hi) reads o * stride + shift
        of the image, or o + shift of the phase plane."""
        if not strided:
            return (None, *window_range(b, k, spatial[d], positions[d], p.strides[d], p.dilations[d], p.pads[d]))
        s = p.strides[d]
        t = b(arith.SubiOp, b.mul_i(k, p.dilations[d]), b.idx(p.pads[d])) if p.pads[d] else b.mul_i(k, p.dilations[d])
        q = b(arith.FloorDivSIOp, t, b.idx(s)) if s > 1 else t
        r = b(arith.SubiOp, t, b.mul_i(q, s)) if s > 1 else b.idx(0)
        size = b(arith.DivUIOp, b(arith.SubiOp, b.idx(spatial[d] + s - 1), r), b.idx(s))
        lo = b(arith.MaxSIOp, b.idx(0), b(arith.SubiOp, b.idx(0), q))
        hi = b(arith.MinSIOp, b.idx(positions[d]), b(arith.SubiOp, size, q))
        return r, q, lo, hi

    # stride 1 keeping a 2-D image's width (3x3 pad 1, ...): a row is the image
    # plane shifted, so one flat copy of it, then the padding over what fell
    # outside (one long run per row, not one per output row)
    plane_copy = (not strided and nd == 2 and p.dilations[1] == 1 and spatial[1] == positions[1]
                  and DYN not in spatial)

    def row(cks, _):
        c, ks = cks[0], cks[1:]
        win = [window(d, ks[d]) for d in range(nd)]
        if plane_copy:
            width, plane = spatial[1], pymath.prod(spatial)
            flat = pymath.prod(positions)
            at = b.mul_i(b.add_i(b.mul_i(c, kernel[0] * kernel[1]), b.add_i(b.mul_i(ks[0], kernel[1]), ks[1])), flat)
            dst = view(b, col.ref, at, (flat,))
            src = view(b, x.ref, b.mul_i(b.add_i(b.mul_i(ni, x.shape[1]), c), plane), (plane,))
            shift = b(arith.AddiOp, b(arith.MuliOp, win[0][1], b.idx(width)), win[1][1])
            lo = b(arith.MaxSIOp, b.mul_i(win[0][2], width), b(arith.SubiOp, b.idx(0), shift))
            hi = b(arith.MinSIOp, b.mul_i(win[0][3], width), b(arith.SubiOp, b.idx(plane), shift))
            ranges(b, [lo], [hi], lambda f: b.store(b.load(src, [b.add_i(f[0], shift)]), dst, f))
            _outside(b, [w[1:] for w in win], positions, lambda o: b.store(zero, col, [c, *ks, *o]))
            return
        if any(p.pads):
            _outside(b, [w[1:] for w in win], positions, lambda o: b.store(zero, col, [c, *ks, *o]))

        def point(o):
            if strided:
                v = b.load(phase, [c, *(w[0] for w in win), *(b.add_i(o[d], win[d][1]) for d in range(nd))])
            else:
                v = b.load(x, [ni, c, *(b.add_i(b.mul_i(o[d], p.strides[d]), win[d][1]) for d in range(nd))])
            b.store(v, col, [c, *ks, *o])
        ranges(b, [w[2] for w in win], [w[3] for w in win], point)
    b.nest([x.shape[1], *kernel], row)


def _outside(b: Builder, win: list[tuple[SSAValue, SSAValue, SSAValue]], sizes: Sequence[int | SSAValue],
             body: Callable[[list[SSAValue]], None], starts: Sequence[SSAValue] | None = None) -> None:
    """body(o) for the output positions o of [starts, sizes) (starts: 0)
    outside the box [lo, hi) of the window ranges `win` (whose input is
    padding), slab by slab; the box is clamped into those bounds."""
    starts = list(starts) if starts is not None else [b.idx(0)] * len(sizes)
    ends = [b.size(e) if isinstance(e, int) else e for e in sizes]
    lows = [b(arith.MinSIOp, b(arith.MaxSIOp, v[1], s), e) for v, s, e in zip(win, starts, ends)]
    highs = [b(arith.MaxSIOp, b(arith.MinSIOp, v[2], e), lo) for v, e, lo in zip(win, ends, lows)]
    for d in range(len(sizes)):
        for lo, hi in ((starts[d], lows[d]), (highs[d], ends[d])):
            ranges(b, [*lows[:d], lo, *starts[d + 1:]], [*highs[:d], hi, *ends[d + 1:]], body)


def _transpose(b: Builder, src: Buf, dst: Buf,
               f: Callable[[SSAValue, SSAValue, SSAValue], SSAValue] | None = None) -> None:
    """dst[c, r] = f(src[r, c], c, r) (or src[r, c]) for a 2-D src of R x C,
    TRANSPOSE_BLOCK values of r at a time: a vector store into dst's row."""
    rows, cols = src.shape

    def put(r: SSAValue, c: SSAValue) -> None:
        v = b.load(src, [r, c])
        b.store(v if f is None else f(v, c, r), dst, [c, r])

    def block(ivs, _):
        for j in range(TRANSPOSE_BLOCK):
            put(b.add_i(b.mul_i(ivs[0], TRANSPOSE_BLOCK), j), ivs[1])
    full, rest = divmod(rows, TRANSPOSE_BLOCK)
    b.nest([full, cols], block)

    def last_rows(ivs, _):  # unrolled: LLVM interleaves their loads into dst's rows (no gather)
        for j in range(rest):
            put(b.idx(rows - rest + j), ivs[0])
    if rest:
        b.nest([cols], last_rows)


# ---------------------------------------------------------------------------
# depthwise convolution (one input channel per output channel: MobileNet's 3 x 3)


def _is_depthwise(op: Operation) -> bool:
    """A 2-D float32 conv or fused_conv whose every output channel reads its own input channel."""
    if not isinstance(op, (nn.ConvOp, nn.FusedConvOp)):
        return False
    x, w = (nn.shape_of(v.type) for v in op.operands[:2])
    return len(w) == 4 and w[1] == 1 and op.params.group == w[0] == x[1] > 1 \
        and x[1] != DYN and DYN not in x[2:] and op.result.type.element_type == f32


def _depthwise_floats(op: Operation) -> int:
    return padded_plane_floats(nn.shape_of(op.operands[0].type), nn.shape_of(op.result.type), op.params)


def _lower_depthwise(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """By padded plane (builder.by_padded_plane, zero border):
        out[n, c, i, j] = act(bias[c] + sum_k w[c, 0, kh, kw] * padded[i*s + kh*d, j*s + kw*d])
    with the taps' weights loaded once per plane and the sum in registers,
    in the reference's order of kernel offsets."""
    x, w = ins[0], ins[1]
    bias, residual = (*ins[2:], None, None)[:2]
    fused = isinstance(op, nn.FusedConvOp) and residual is None  # with a residual: a pass after

    def per_plane(ni: SSAValue, c: SSAValue):
        weights = {(u, v): b.load(w, [c, b.idx(0), b.idx(u), b.idx(v)])
                   for u in range(w.shape[2]) for v in range(w.shape[3])}
        start = b.load(bias, [c]) if bias is not None else b.const(0, f32)
        return (start, lambda acc, u, v, x_: b(arith.AddfOp, acc, b(arith.MulfOp, weights[u, v], x_)),
                (lambda acc: epilogue(b, op, None, [], acc)) if fused else (lambda acc: acc))
    by_padded_plane(b, x, out, b.scratch, op.params, w.shape[2:], b.const(0.0, x.elt), per_plane)
    if residual is not None:
        b.nest(out.shape, lambda o, _: b.store(epilogue(b, op, None, [], b.load(out, o), b.load(residual, o)), out, o))


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
    bias, residual = (*ins[2:], None, None)[:2]
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
        if fused and (op.params.activation != "identity" or residual is not None):
            for mi in ms:
                b.nest(out.shape[2:], lambda o, _, mi=mi: b.store(epilogue(
                    b, op, None, [], b.load(out, [ni, mi, *o]), residual and b.load(residual, [ni, mi, *o])),
                    out, [ni, mi, *o]))

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
    if transpose_gemm_shape(op) is not None:
        return _transpose_by_gemm(b, op, out, ins)
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
    if weight_grad_gemm_shape(op) is not None:
        return _weight_grad_by_gemm(b, op, out, ins)
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


# ---------------------------------------------------------------------------
# a conv's backward on the GEMM (one group, float32, all but the batch static):
# conv_weight_grad as dy[n] @ im2col^T summed over the images, conv_transpose
# as w^T @ x[n] scattered back into the image (col2im), as onnxruntime does


def _floats(n: int) -> int:
    """n floats rounded up to a 64-byte multiple (each scratch part stays aligned)."""
    return -(-n // 16) * 16


def _one_static_group(op: Operation) -> bool:
    return op.params.group == 1 and all(v.type.element_type == f32 for v in (*op.operands, op.result)) \
        and all(DYN not in nn.shape_of(v.type)[1:] for v in (*op.operands, op.result))


def weight_grad_gemm_shape(op: Operation) -> tuple[int, int, int] | None:
    """(M, N, K) of nn.conv_weight_grad as a GEMM per image, summed over the batch:
        dw' (M x kernel*C) += dy[n] (M x OHW) @ col'[n] (OHW x kernel*C)
    where col'[n][o, k, c] = x[n, c, o * stride + k * dilation - pad] (each
    row a run of C floats of the image made channels-last; dw' is dw with its
    kernel offsets first), or None: groups, or col' under GEMM_MIN_WORK floats."""
    if not _one_static_group(op):
        return None
    dy, dw = nn.shape_of(op.operands[1].type), nn.shape_of(op.result.type)
    m, cols, depth = dw[0], pymath.prod(dw[1:]), pymath.prod(dy[2:])
    return (m, cols, depth) if cols * depth >= GEMM_MIN_WORK and m >= 4 else None


def _image_groups(b: Builder, batch: SSAValue, g: int, body: Callable[[SSAValue, SSAValue], None]) -> None:
    """body(first image, count) for the batch in groups of g images (the last group may be smaller)."""
    def group(gs, _):
        first = b.mul_i(gs[0], g)
        body(first, b(arith.MinSIOp, b.idx(g), b(arith.SubiOp, batch, first)) if g > 1 else b.idx(1))
    b.nest([b(arith.DivUIOp, b.add_i(batch, g - 1), b.idx(g)) if g > 1 else batch], group)


def _channel_major(op: Operation) -> bool:
    """Whether conv_weight_grad's col' is ordered (c, k) like dw, as im2col's
    matrix transposed per image, rather than (k, c) from the channels-last
    image: when there are fewer output positions than output channels (the
    7 x 7 and 14 x 14 stages): then dw' (M x kernel x C, the GEMM's product
    in (k, c) order) would be larger than col' itself, and moving it into dw
    would cost more than the transposes per image."""
    m, _, depth = weight_grad_gemm_shape(op)
    return depth < m and pymath.prod(op.params.kernel) > 1


def images_per_product(op: Operation) -> int:
    """Images whose output positions one GEMM call of conv_weight_grad sums
    (its depth): as many as fit in the GEMM's KC, so that a small image (7 x 7)
    does not read and write all of dw once per image."""
    return max(1, gemm.KC // weight_grad_gemm_shape(op)[2])


WEIGHT_GRAD_CHUNK = 256  # conv_weight_grad: output positions of col' per GEMM call, when an image has many


def weight_grad_chunk_rows(op: Operation) -> int | None:
    """Rows of the first output axis whose col' one GEMM call sums, when one
    image's col' would not stay in L2 (a stem: 112 x 112 positions x 147
    floats, 7 MiB): col' is then made and consumed WEIGHT_GRAD_CHUNK positions
    at a time, in cache, instead of written whole and read back (the stem of
    ResNet-18 at batch 8: 0.79x PyTorch's speed before, 0.86x after; its 56 x 56
    layers 0.95x before, 1.02x after: benchmarks/bench_conv_grad.py on znver5).
    None: the whole image at once (channel-major, 1x1 of stride 1, several
    images per product, a 1-D convolution, or few positions)."""
    _, _, depth = weight_grad_gemm_shape(op)
    positions = nn.shape_of(op.operands[1].type)[2:]
    if _channel_major(op) or _reads_the_image(op) or images_per_product(op) > 1 or len(positions) < 2 \
            or depth <= 2 * WEIGHT_GRAD_CHUNK:
        return None
    rows = max(1, WEIGHT_GRAD_CHUNK // pymath.prod(positions[1:]))
    return rows if rows < positions[0] else None


def _weight_grad_swapped(op: Operation) -> bool:
    """Whether conv_weight_grad's GEMM runs as dw'^T (kernel*C x M) += col'^T @
    dy^T, its rows dw's columns: for a stem (chunked, few columns: ResNet's 3
    x 7 x 7 = 147 against 64 channels), whose columns fill the GEMM's tiles
    badly (147 = 4 x 32 + 19) where its channels fill them exactly."""
    m, cols, _ = weight_grad_gemm_shape(op)
    return weight_grad_chunk_rows(op) is not None and cols < 4 * m and m % 32 == 0 \
        and pymath.prod(op.params.kernel) > 1


def _weight_grad_parts(op: Operation) -> tuple[int, int, int, int]:
    """Floats of the scratch before the GEMM's workspace: the image's staging
    (channel-major: im2col's stride phases, and its matrix when several images
    make one product; else the channels-last image, none for a 1x1 convolution
    of stride 1, whose channels-last image is col'), col' of images_per_product
    images (channel-major with one image: im2col's matrix, which the GEMM reads
    as col'^T, packing it, instead of a transpose per image: ResNet-18's 256
    channels at 14 x 14, 19.9-22.8 -> 18.3-18.9 ms on znver4), their dy rows
    side by side (for more than one image), and dw' (kernel-major with a
    kernel larger than 1x1)."""
    m, cols, depth = weight_grad_gemm_shape(op)
    g = images_per_product(op)
    x = nn.shape_of(op.operands[0].type)
    if _channel_major(op):  # im2col's matrix (none when the GEMM reads it as col'^T), its stride phases
        staging = (0 if g == 1 else _floats(depth * cols)) + phase_floats(x, op.params.strides)
    else:
        staging = 0 if _reads_the_image(op) else _floats(pymath.prod(x[1:]))
    one = pymath.prod(op.params.kernel) == 1
    chunk = weight_grad_chunk_rows(op)
    col = chunk * pymath.prod(nn.shape_of(op.operands[1].type)[3:]) * cols if chunk else g * depth * cols
    return (staging, _floats(col), _floats(m * g * depth) if g > 1 else 0,
            0 if one or _channel_major(op) else _floats(m * cols))


def _weight_grad_by_gemm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, dy = ins
    p = op.params
    m, cols, depth = weight_grad_gemm_shape(op)
    kernel, nd, c = tuple(p.kernel), len(p.kernel), x.shape[1]
    spatial, positions = x.shape[2:], dy.shape[2:]
    image = pymath.prod(spatial)
    channel_major, direct, g = _channel_major(op), _reads_the_image(op), images_per_product(op)
    col_transposed = channel_major and g == 1  # the GEMM reads im2col's matrix as col'^T
    staging, col_floats, stage_floats, acc_floats = _weight_grad_parts(op)
    at_col, at_stage, at_acc = staging, staging + col_floats, staging + col_floats + stage_floats
    used = at_acc + acc_floats
    stage = view(b, b.scratch.ref, at_stage, (m, g * depth))
    chunk = weight_grad_chunk_rows(op)
    swapped = _weight_grad_swapped(op)  # dw'^T = col'^T @ dy^T: the GEMM's rows are dw's columns
    acc = view(b, b.scratch.ref, at_acc, (cols, m) if swapped else (m, *kernel, c)) if acc_floats else out
    ws = flat_view(b, b.scratch.ref, b.idx(used), b.scratch.shape[0] - used)
    zero = b.const(0, f32)
    b.nest(list(acc.shape), lambda ivs, _: b.store(zero, acc, ivs))
    batch = b.size(x.shape[0])

    def runs(slot: SSAValue, r0: SSAValue | None = None, r1: SSAValue | None = None) -> None:
        """col'[o, k, :] = the channels-last image (staged) at o * s + k * d - p, or
        zeros, at `slot`: along the last axis, adjacent taps (no dilation) are
        one run of taps x C floats, cut where it leaves the image (zeros
        there); with r0, r1 only the output rows r0 <= o[0] < r1 (from slot's
        start)."""
        taps = kernel[-1] if p.dilations[-1] == 1 else 1
        run, width, s_last = taps * c, spatial[-1] * c, p.strides[-1]
        xt = view(b, b.scratch.ref, 0, (*spatial[:-1], width))
        col = view(b, b.scratch.ref, slot, (chunk if r0 is not None else positions[0], *positions[1:],
                                            *kernel[:-1], kernel[-1] * c))

        def offset(ks, _):  # the kernel offset but along the last axis, and the run's first tap
            outer, first = ks[:-1], b.mul_i(ks[-1], taps)
            win = [window_range(b, outer[d], spatial[d], positions[d], p.strides[d], p.dilations[d],
                                p.pads[d]) for d in range(nd - 1)]
            if r0 is not None:  # this chunk's rows only
                t0, lo0, hi0 = win[0]
                lo0 = b(arith.MinSIOp, b(arith.MaxSIOp, lo0, r0), r1)
                win[0] = (t0, lo0, b(arith.MaxSIOp, b(arith.MinSIOp, hi0, r1), lo0))
            shift = (lambda o: [b(arith.SubiOp, o[0], r0), *o[1:]]) if r0 is not None else (lambda o: list(o))
            at = (lambda o, j: [*shift(o), *outer, b.add_i(b.mul_i(first, c), j)])
            if any(p.pads):
                bounds = positions[:-1] if r0 is None else [r1, *positions[1:-1]]
                starts = None if r0 is None else [r0, *[b.idx(0)] * (nd - 2)]
                _outside(b, win, bounds, lambda o: b.nest(
                    [positions[-1], run], lambda wj, _: b.store(zero, col, at([*o, wj[0]], wj[1]))), starts)

            def row(o):
                pos = [b.add_i(b.mul_i(o[d], p.strides[d]), win[d][0]) for d in range(nd - 1)]

                def point(ws, _):
                    start = b.add_i(b.mul_i(ws[0], s_last), b.mul_i(first, p.dilations[-1]))
                    base = b.mul_i(b(arith.SubiOp, start, b.idx(p.pads[nd - 1])), c) if p.pads[nd - 1] \
                        else b.mul_i(start, c)
                    lo = b(arith.MinSIOp, b.idx(run), b(arith.MaxSIOp, b.idx(0), b(arith.SubiOp, b.idx(0), base)))
                    hi = b(arith.MaxSIOp, lo, b(arith.MinSIOp, b.idx(run), b(arith.SubiOp, b.idx(width), base)))
                    here = [*o, ws[0]]
                    def copy(j) -> None:
                        b.store(b.load(xt, [*pos, b.add_i(base, j[0])]), col, at(here, j[0]))

                    def cut() -> None:  # the run leaves the image: zeros before lo and from hi
                        ranges(b, [b.idx(0)], [lo], lambda j: b.store(zero, col, at(here, j[0])))
                        ranges(b, [lo], [hi], copy)
                        ranges(b, [hi], [b.idx(run)], lambda j: b.store(zero, col, at(here, j[0])))
                    # inside the image (most runs): a copy of a static length, which LLVM vectorizes
                    if_else(b, b(arith.AndIOp, b.cmpi("eq", lo, b.idx(0)), b.cmpi("eq", hi, b.idx(run))),
                            lambda: b.nest([run], lambda j, _: copy(j)), cut)
                b.nest([positions[-1]], point)
            ranges(b, [v[1] for v in win], [v[2] for v in win], row)
        b.nest([*kernel[:-1], kernel[-1] // taps], offset)

    def fill(first: SSAValue, j: SSAValue) -> None:
        """col' rows of image first + j (all of them, unless chunked: then the
        channels-last image only), and its dy rows into the stage."""
        ni = b.add_i(first, j)
        slot = b.add_i(b.mul_i(j, depth * cols), at_col)
        if col_transposed:  # im2col's matrix is col'^T: the GEMM reads it transposed (packing it)
            im2col(b, p, x, ni, view(b, b.scratch.ref, slot, (c, *kernel, *positions)), 0)
        elif channel_major:  # col' = im2col's matrix (c, k rows) transposed, images side by side
            im2col(b, p, x, ni, view(b, b.scratch.ref, 0, (c, *kernel, *positions)), _floats(depth * cols))
            _transpose(b, view(b, b.scratch.ref, 0, (cols, depth)), view(b, b.scratch.ref, slot, (depth, cols)))
        else:  # the channels-last image (col' itself for a 1x1 convolution of stride 1)
            _transpose(b, view(b, x.ref, b.mul_i(ni, c * image), (c, image)),
                       view(b, b.scratch.ref, slot if direct else 0, (image, c)))
        if not channel_major and not direct and chunk is None:
            runs(slot)
        if g > 1:
            rows = view(b, dy.ref, b.mul_i(ni, m * depth), (m, depth))
            b.nest([m, depth], lambda mo, _: b.store(b.load(rows, mo), stage,
                                                     [mo[0], b.add_i(b.mul_i(j, depth), mo[1])]))

    def product(first: SSAValue, count: SSAValue) -> None:  # dw' += dy rows (m x count*depth) @ col'
        ranges(b, [b.idx(0)], [count], lambda js: fill(first, js[0]))
        if chunk is not None:  # one image: col' and the GEMM chunk by chunk of output rows
            inner = depth // positions[0]

            def part(cs, _):
                r0 = b.mul_i(cs[0], chunk)
                r1 = b(arith.MinSIOp, b.add_i(r0, chunk), b.idx(positions[0]))
                runs(b.idx(at_col), r0, r1)
                a = flat_view(b, dy.ref, b.add_i(b.mul_i(first, m * depth), b.mul_i(r0, inner)),
                              b(arith.SubiOp, b.idx(m * depth), b.mul_i(r0, inner)))
                rows = b.mul_i(b(arith.SubiOp, r1, r0), inner)
                col = flat_view(b, b.scratch.ref, b.idx(at_col), chunk * inner * cols)
                into = flat_view(b, acc.ref, b.idx(0), m * cols)
                if swapped:
                    call_gemm(b, [cols, m, rows, col, 1, cols, a, depth, into, m],
                              gemm.ACCUMULATE | gemm.TRANSPOSED_B, ws)
                else:
                    call_gemm(b, [m, cols, rows, a, depth, 1, col, cols, into, cols], gemm.ACCUMULATE, ws)
            b.nest([-(-positions[0] // chunk)], part)
            return
        a = flat_view(b, b.scratch.ref, b.idx(at_stage), m * g * depth) if g > 1 else \
            flat_view(b, dy.ref, b.mul_i(first, m * depth), m * depth)
        col = flat_view(b, b.scratch.ref, b.idx(at_col), g * depth * cols)
        call_gemm(b, [m, cols, b.mul_i(count, depth), a, g * depth, 1, col, depth if col_transposed else cols,
                      flat_view(b, acc.ref, b.idx(0), m * cols), cols],
                  gemm.ACCUMULATE | (gemm.TRANSPOSED_B if col_transposed else 0), ws)

    _image_groups(b, batch, g, product)
    if swapped:  # dw[m, c, k] = dw'^T[(k, c), m]
        kn = pymath.prod(kernel)
        flat_out = view(b, out.ref, 0, (m, c, kn))
        b.nest([kn, c, m], lambda v, _: b.store(b.load(acc, [b.add_i(b.mul_i(v[0], c), v[1]), v[2]]), flat_out,
                                                [v[2], v[1], v[0]]))
    elif acc_floats:  # dw[m, c, k] = dw'[m, k, c]
        kn = pymath.prod(kernel)
        b.nest([m], lambda ms, _: _transpose(b, view(b, acc.ref, b.mul_i(ms[0], cols), (kn, c)),
                                             view(b, out.ref, b.mul_i(ms[0], cols), (c, kn))))


def transpose_gemm_shape(op: Operation) -> tuple[int, int, int] | None:
    """(M, N, K) of nn.conv_transpose as a GEMM per image,
        col (M/group*kernel x IHW) = w^T (rows of w's columns) @ x[n] (C x IHW),
    then out[n, m, i * stride + k * dilation - pad] += col[m, k, i], or None:
    groups, or x[n] under GEMM_MIN_WORK floats."""
    if not _one_static_group(op):
        return None
    x, w = (nn.shape_of(v.type) for v in op.operands)
    rows, n, depth = pymath.prod(w[1:]), pymath.prod(x[2:]), w[0]
    return (rows, n, depth) if depth * n >= GEMM_MIN_WORK and rows >= 4 else None


def _transpose_writes_the_image(op: Operation) -> bool:
    """A 1x1 kernel that moves no point: the GEMM's product is the output."""
    x, y = nn.shape_of(op.operands[0].type), nn.shape_of(op.result.type)
    return _reads_the_image_of(op.params, nn.shape_of(op.operands[1].type)[2:]) and x[2:] == y[2:]


def _transposed_product(op: Operation) -> bool:
    """Whether conv_transpose's GEMM runs as col^T (IHW x M/group*kernel) =
    x[n]^T @ w, col^T transposed into col afterwards: when there are more rows
    than input points (the GEMM is fastest with many columns, as for
    nn.packed_conv)."""
    rows, n, _ = transpose_gemm_shape(op)
    return rows > n


def _transpose_images(op: Operation) -> int:
    """Images whose points one GEMM call of a transposed conv_transpose
    takes (its rows): about KC of them, so that w, the GEMM's B, is packed
    once for several small images (7 x 7), not once per image."""
    return max(1, gemm.KC // transpose_gemm_shape(op)[1]) if _transposed_product(op) else 1


def _transpose_parts(op: Operation) -> tuple[int, int, int]:
    """Floats of col (none when the product is the output), of col^T of
    _transpose_images images (transposed only) and of their images side by
    side (for more than one)."""
    rows, n, depth = transpose_gemm_shape(op)
    g = _transpose_images(op)
    col = 0 if _transpose_writes_the_image(op) else _floats(rows * n)
    return (col, _floats(g * n * rows) if _transposed_product(op) else 0,
            _floats(depth * g * n) if g > 1 else 0)


def _transpose_by_gemm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, w = ins
    p = op.params
    rows, n, depth = transpose_gemm_shape(op)
    mg, kernel, nd = w.shape[1], w.shape[2:], len(w.shape) - 2
    g = _transpose_images(op)
    col_floats, colt_floats, stage_floats = _transpose_parts(op)
    used = col_floats + colt_floats + stage_floats
    ws = flat_view(b, b.scratch.ref, b.idx(used), b.scratch.shape[0] - used)
    image_out = mg * pymath.prod(out.shape[2:])
    weight = flat_view(b, w.ref, b.idx(0), depth * rows)
    stage = view(b, b.scratch.ref, col_floats + colt_floats, (depth, g * n))
    zero = b.const(0, f32)
    batch = b.size(x.shape[0])

    def scatter(ni: SSAValue, j: SSAValue | None) -> None:
        """Image ni's col (from row block j of col^T when transposed) into its output."""
        col = view(b, out.ref, b.mul_i(ni, image_out), (rows, n)) if not col_floats else \
            view(b, b.scratch.ref, 0, (rows, n))
        if j is not None:
            _transpose(b, view(b, b.scratch.ref, b.add_i(b.mul_i(j, n * rows), col_floats), (n, rows)), col)
        if not col_floats:
            return
        col = view(b, b.scratch.ref, 0, (mg, *kernel, *x.shape[2:]))
        b.nest(out.shape[1:], lambda o, _: b.store(zero, out, [ni, *o]))

        def plane(mks, _):  # out[n, m] += col[m, k] at the positions its points land on
            mi, ks = mks[0], mks[1:]
            win = [window_range(b, ks[d], out.shape[2 + d], x.shape[2 + d], p.strides[d], p.dilations[d],
                                p.pads[d]) for d in range(nd)]

            def point(i):
                at = [ni, mi, *(b.add_i(b.mul_i(i[d], p.strides[d]), win[d][0]) for d in range(nd))]
                b.store(b(arith.AddfOp, b.load(out, at), b.load(col, [mi, *ks, *i])), out, at)
            ranges(b, [v[1] for v in win], [v[2] for v in win], point)
        b.nest([mg, *kernel], plane)

    def per_image(ivs, _):  # col = w^T (read with strides 1, rows) @ x[n]
        ni = ivs[0]
        dst = flat_view(b, b.scratch.ref, b.idx(0), rows * n) if col_floats else \
            flat_view(b, out.ref, b.mul_i(ni, image_out), image_out)
        call_gemm(b, [rows, n, depth, weight, 1, rows, flat_view(b, x.ref, b.mul_i(ni, depth * n), depth * n), n,
                      dst, n], 0, ws)
        scatter(ni, None)

    def per_group(first: SSAValue, count: SSAValue) -> None:  # col^T = their points (strides 1, g * n) @ w
        if g > 1:
            def copy(js):
                image = view(b, x.ref, b.mul_i(b.add_i(first, js[0]), depth * n), (depth, n))
                b.nest([depth, n], lambda cp, _: b.store(b.load(image, cp), stage,
                                                         [cp[0], b.add_i(b.mul_i(js[0], n), cp[1])]))
            ranges(b, [b.idx(0)], [count], copy)
            a = flat_view(b, b.scratch.ref, b.idx(col_floats + colt_floats), depth * g * n)
        else:
            a = flat_view(b, x.ref, b.mul_i(first, depth * n), depth * n)
        call_gemm(b, [b.mul_i(count, n), rows, depth, a, 1, g * n, weight, rows,
                      flat_view(b, b.scratch.ref, b.idx(col_floats), g * n * rows), rows], 0, ws)
        ranges(b, [b.idx(0)], [count], lambda js: scatter(b.add_i(first, js[0]), js[0]))

    if colt_floats:
        _image_groups(b, batch, g, per_group)
    else:
        b.nest([x.shape[0]], per_image)


def backward_scratch_bytes(op: Operation, threads: int) -> int:
    """conv_weight_grad's and conv_transpose's scratch on the GEMM (0: by loops)."""
    if isinstance(op, nn.ConvWeightGradOp):
        shape = weight_grad_gemm_shape(op)
        parts = _weight_grad_parts(op) if shape else ()
        if shape:
            shape = (shape[0], shape[1], shape[2] * images_per_product(op))
    else:
        shape = transpose_gemm_shape(op)
        parts = _transpose_parts(op) if shape else ()
        if shape and _transposed_product(op):
            shape = (shape[1] * _transpose_images(op), shape[0], shape[2])
    return 4 * (sum(parts) + threads * gemm.workspace_floats(*shape)) if shape else 0


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.ConvOp: lower_conv, nn.FusedConvOp: lower_conv, nn.PackedConvOp: lower_conv,
    nn.ConvTransposeOp: lower_conv_transpose,
    nn.ConvWeightGradOp: lower_conv_weight_grad,
}
# Bytes of scratch (in the arena) an op's lowering needs, as `b.scratch`.
SCRATCH: dict[type, Callable[[Operation, int], int]] = {
    nn.ConvOp: conv_scratch_bytes, nn.FusedConvOp: conv_scratch_bytes, nn.PackedConvOp: conv_scratch_bytes,
    nn.ConvTransposeOp: backward_scratch_bytes, nn.ConvWeightGradOp: backward_scratch_bytes,
}
