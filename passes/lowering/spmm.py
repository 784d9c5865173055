"""A float32 product with a sparse weight whose pattern is known at compile
time, generated as LLVM IR for the host's vector ISA:

    Y[r, n] = act(sum_k X[r, k] * W[k, n] (+ bias[n]))     X and Y row-major (ldx, ldy)

The weight W (K x N) comes packed twice (`pack`, at compile time; the values
are derived weights, the index tables constants):

  slices   for a few rows (batch 1): the output columns in slices of SLICE =
           16 and K in blocks of BLOCK = 32 rows; a slice is a list of steps,
           each holding for every column (lane) of the slice one nonzero of
           one block: its row within the block (a byte, 0..31) and its value
           (0 where the column has no more nonzeros in that block). A step is
           16 multiply-adds in one vector: the 16 inputs x[32 * block + row]
           taken from the two vectors of that block of x by one permute
           (AVX-512's vpermi2ps; AVX2's vpermps on its four 8-float parts and
           blends; one load per lane elsewhere), a vector of values, one FMA. Padding to the busiest column costs ~2x slots at
           10 % density and is still 2.5-3x faster than a loop per nonzero.
  columns  for more rows: per block of COLUMN_BLOCK = 128 rows of K, each output
           column's nonzeros there (CSC per block: rows, values). Up to
           FEATURE_ROWS = 64 rows at a time are transposed into X^T, so that a
           nonzero (k, n) is one broadcast of its value and 64 / lanes vector
           loads of row k of X^T and FMAs into Y^T's row n; a block's rows of
           X^T (32 KiB) stay in L1 while every column reads them (without the
           blocks, each nonzero fetched its row from L2: 0.8x the speed); Y^T is
           transposed into Y.

Loop-level code calls one symbol, whatever the host:

    void ncc_spmm(i64 rows, i64 K, i64 N, ptr X, i64 ldx, ptr Y, i64 ldy,
                  ptr steps (i32 per slice), ptr blocks (i32 per step), ptr lanes (i8 per slot),
                  ptr slice_values (f32 per slot), ptr colptr (i32 per block and column, + 1), ptr rowidx,
                  ptr column_values (f32 per nonzero), i32 flags, ptr bias, ptr workspace, i64 threads)

with gemm's flags BIAS_COLS, RELU, RELU6, and FEATURE_MAJOR (X and Y given
transposed: a 1x1 convolution's image and output, channels first, which the
column form then reads and writes where they are, as XNNPACK's sparse 1x1
convolutions do), and a 64-byte aligned workspace of
`threads * workspace_floats(K, N)` floats: with threads > 1 (and enough
work) the output columns split over an OpenMP team, whole slices each. The
engine defines it with the GEMM, in the process's kernel library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ncc.dialects.nn.sparse import BLOCK, COLUMN_BLOCK, SLICE, column_segments
from ncc.passes.lowering import openmp
from ncc.passes.lowering.gemm import BIAS_COLS, RELU, RELU6
from ncc.passes.lowering.llvmlite_ir import F32, I32, I64, PTR, carried_loop, const, counted_loop, float_at
from ncc.passes.lowering.llvmlite_ir import function_to_define, kernel_module, lane_mask, minimum, splat, store_vector
from ncc.passes.lowering.llvmlite_ir import transpose_block

SYMBOL = "ncc_spmm"
SIGNATURE = ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, I64, PTR, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR,
                                            I32, PTR, PTR, I64])
FEATURE_ROWS = 64  # rows of X transposed at a time for the column form
FEATURE_MIN_ROWS = 4  # fewer rows than this: the slice form, row by row
FEATURE_MAJOR = 64  # a flag: X and Y are given transposed (X^T: K rows of ldx, Y^T: N rows of ldy)
TEAM_MIN_WORK = 1 << 17  # multiply-adds below which threads > 1 still runs one thread
I8 = ir.IntType(8)


@dataclass(frozen=True)
class Variant:
    """How the host runs the kernels: its vector width, and how the slice
    form's 16 inputs of a step come from the block's 32 values of x: one
    two-register permute (AVX-512's vpermi2ps), four one-register permutes
    and three blends per 8 lanes (AVX2's vpermps), or one load per lane."""

    lanes: int
    gather: str  # "vpermi2ps" | "vpermps" | "loads"

    @staticmethod
    def for_features(features: set[str] | frozenset[str]) -> "Variant":
        if "avx512f" in features:
            return Variant(16, "vpermi2ps")
        if "avx2" in features:
            return Variant(8, "vpermps")
        return Variant(8 if "avx" in features else 4, "loads")

    @property
    def tag(self) -> str:
        return f"{self.lanes}{self.gather}"


VARIANTS = {"avx512": Variant(16, "vpermi2ps"), "avx2": Variant(8, "vpermps"), "sse": Variant(4, "loads")}
REQUIRES = {"avx512": {"avx512f"}, "avx2": {"avx2", "fma"}, "sse": set()}


def workspace_floats(k: int, n: int) -> int:
    """Floats of one thread's workspace: a row of x padded to whole blocks, X^T and Y^T of FEATURE_ROWS rows."""
    return -(-k // BLOCK) * BLOCK + FEATURE_ROWS * (k + n)


def _workspace_floats(b: ir.IRBuilder, k: ir.Value, n: ir.Value) -> ir.Value:
    """workspace_floats(K, N), at run time."""
    return b.add(b.mul(b.sdiv(b.add(k, const(BLOCK - 1)), const(BLOCK)), const(BLOCK)),
                 b.mul(const(FEATURE_ROWS), b.add(k, n)))


# ---------------------------------------------------------------------------
# Packing (numpy, at compile time)


@dataclass
class Packed:
    """W's two packed forms (see the module docstring); `slice_gather` and
    `column_gather` are the flat indices (row-major in W, K * N for a slot
    with no nonzero) whose values the slots hold."""

    steps: np.ndarray  # i32 [ceil(N / SLICE)]
    blocks: np.ndarray  # i32 [steps]
    lanes: np.ndarray  # i8 [steps * SLICE]
    slice_gather: np.ndarray  # i64 [steps * SLICE]
    colptr: np.ndarray  # i32 [column_segments(K, N) + 1]
    rowidx: np.ndarray  # i32 [nonzeros]
    column_gather: np.ndarray  # i64 [nonzeros]


def pack(mask: np.ndarray) -> Packed:
    """The packed forms of a K x N pattern (nonzero where W may be nonzero)."""
    k, n = mask.shape
    nz = mask != 0
    segments = [kb + np.flatnonzero(nz[kb:kb + COLUMN_BLOCK, j]) for kb in range(0, k, COLUMN_BLOCK)
                for j in range(n)]
    assert len(segments) == column_segments(k, n)
    colptr = np.zeros(len(segments) + 1, np.int32)
    colptr[1:] = np.cumsum([len(c) for c in segments])
    rowidx = np.concatenate(segments).astype(np.int32) if segments else np.zeros(0, np.int32)
    column_gather = np.concatenate([c * n + s % n for s, c in enumerate(segments)]).astype(np.int64) \
        if segments else np.zeros(0, np.int64)
    steps, blocks, lanes, gather = [], [], [], []
    for s in range(0, n, SLICE):
        count = 0
        for kb in range(0, k, BLOCK):
            seg = [np.flatnonzero(nz[kb:kb + BLOCK, j]) if j < n else np.zeros(0, np.int64)
                   for j in range(s, s + SLICE)]
            depth = max(len(q) for q in seg)
            lane = np.zeros((depth, SLICE), np.int8)
            where = np.full((depth, SLICE), k * n, np.int64)
            for j, q in enumerate(seg):
                lane[:len(q), j] = q
                where[:len(q), j] = (kb + q) * n + s + j
            lanes.append(lane)
            gather.append(where)
            blocks += [kb // BLOCK] * depth
            count += depth
        steps.append(count)
    return Packed(np.array(steps, np.int32), np.array(blocks, np.int32),
                  np.concatenate(lanes).ravel() if lanes else np.zeros(0, np.int8),
                  np.concatenate(gather).ravel() if gather else np.zeros(0, np.int64),
                  colptr, rowidx, column_gather)


# ---------------------------------------------------------------------------
# The kernels


def _epilogue(b: ir.IRBuilder, v: ir.Value, flags: ir.Value, bias_vector) -> ir.Value:
    """+ bias (if BIAS_COLS; bias_vector() loads it), then relu or relu6 (NaN stays NaN)."""
    vec = v.type
    zero = ir.Constant(vec, [0.0] * vec.count)
    has_bias = b.icmp_signed("!=", b.and_(flags, I32(BIAS_COLS)), I32(0))
    relu = b.icmp_signed("!=", b.and_(flags, I32(RELU | RELU6)), I32(0))
    relu6 = b.icmp_signed("!=", b.and_(flags, I32(RELU6)), I32(0))
    v = b.select(has_bias, b.fadd(v, bias_vector()), v)
    v = b.select(relu, b.select(b.fcmp_ordered("<", v, zero), zero, v), v)
    six = ir.Constant(vec, [6.0] * vec.count)
    return b.select(relu6, b.select(b.fcmp_ordered(">", v, six), six, v), v)


def _slice_inputs(b: ir.IRBuilder, module: ir.Module, variant: Variant, x: ir.Value, block: ir.Value,
                  lanes: ir.Value) -> ir.Value:
    """The 16 inputs of a step: x[BLOCK * block + lane] for each lane byte."""
    vec, idx = ir.VectorType(F32, SLICE), ir.VectorType(I32, SLICE)
    base = b.mul(block, const(BLOCK))
    lane = b.zext(lanes, idx)
    if variant.gather == "vpermi2ps":
        name = "llvm.x86.avx512.vpermi2var.ps.512"
        permute = module.globals.get(name) or ir.Function(module, ir.FunctionType(vec, [vec, idx, vec]), name)
        low = b.load(float_at(b, x, base), typ=vec, align=4)
        high = b.load(float_at(b, x, b.add(base, const(SLICE))), typ=vec, align=4)
        return b.call(permute, [low, lane, high])
    if variant.gather == "vpermps":  # per 8 lanes: x[lane & 7] of each 8 values, then bits 3 and 4 choose
        v8, i8x8 = ir.VectorType(F32, 8), ir.VectorType(I32, 8)
        name = "llvm.x86.avx2.permps"
        permute = module.globals.get(name) or ir.Function(module, ir.FunctionType(v8, [v8, i8x8]), name)
        parts = [b.load(float_at(b, x, b.add(base, const(8 * q))), typ=v8, align=4) for q in range(4)]
        halves = []
        for h in range(2):
            sel = b.shuffle_vector(lane, lane, lane_mask(list(range(8 * h, 8 * h + 8))))
            picked = [b.call(permute, [p, sel]) for p in parts]
            bit3 = b.icmp_unsigned("!=", b.and_(sel, ir.Constant(i8x8, [8] * 8)), ir.Constant(i8x8, [0] * 8))
            bit4 = b.icmp_unsigned("!=", b.and_(sel, ir.Constant(i8x8, [16] * 8)), ir.Constant(i8x8, [0] * 8))
            halves.append(b.select(bit4, b.select(bit3, picked[3], picked[2]), b.select(bit3, picked[1], picked[0])))
        return b.shuffle_vector(halves[0], halves[1], lane_mask(list(range(SLICE))))
    out = ir.Constant(vec, ir.Undefined)
    for j in range(SLICE):
        k = b.add(base, b.zext(b.extract_element(lane, I32(j)), I64))
        out = b.insert_element(out, b.load(float_at(b, x, k), typ=F32), I32(j))
    return out


def _slice_rows(module: ir.Module, variant: Variant) -> ir.Function:
    """row(x (padded to whole blocks), N, steps, blocks, lanes, values, y, flags, bias, s0, s1):
    one row of Y from one row of X, slices s0 <= s < s1, four accumulators."""
    vec = ir.VectorType(F32, SLICE)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, PTR, PTR, PTR, PTR, PTR, I32, PTR, I64, I64]),
                     f"{SYMBOL}_slices_{variant.tag}")
    fn.linkage = "internal"
    x, n, steps, blocks, lanes, values, y, flags, bias, s0, s1 = fn.args
    for a in (x, y):
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = module.globals.get("llvm.fma.v16f32") or ir.Function(
        module, ir.FunctionType(vec, [vec, vec, vec]), "llvm.fma.v16f32")
    zero = ir.Constant(vec, [0.0] * SLICE)

    def step(t: ir.Value, acc: ir.Value) -> ir.Value:
        block = b.sext(b.load(b.gep(blocks, [t], source_etype=I32), typ=I32), I64)
        slot = b.mul(t, const(SLICE))
        lane = b.load(b.gep(lanes, [slot], source_etype=I8), typ=ir.VectorType(I8, SLICE), align=1)
        inputs = _slice_inputs(b, module, variant, x, block, lane)
        weights = b.load(float_at(b, values, slot), typ=vec, align=4)
        return b.call(fma, [weights, inputs, acc])

    def one_slice(s: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        first = carried[0]
        count = b.sext(b.load(b.gep(steps, [s], source_etype=I32), typ=I32), I64)
        quads = b.sdiv(count, const(4))
        accs = carried_loop(b, const(0), quads, [zero] * 4, lambda q, a: [
            step(b.add(first, b.add(b.mul(q, const(4)), const(u))), a[u]) for u in range(4)], "quad")
        done = b.add(first, b.mul(quads, const(4)))
        rest = carried_loop(b, const(0), b.sub(count, b.mul(quads, const(4))), [accs[0]],
                            lambda t, a: [step(b.add(done, t), a[0])], "rest")
        total = b.fadd(b.fadd(rest[0], accs[1]), b.fadd(accs[2], accs[3]))
        col = b.mul(s, const(SLICE))
        width = minimum(b, b.sub(n, col), const(SLICE))
        live = b.icmp_signed("<", ir.Constant(ir.VectorType(I64, SLICE), list(range(SLICE))), splat(b, width, SLICE))
        masked_load = module.globals.get("llvm.masked.load.v16f32.p0") or ir.Function(
            module, ir.FunctionType(vec, [PTR, I32, live.type, vec]), "llvm.masked.load.v16f32.p0")
        masked_store = module.globals.get("llvm.masked.store.v16f32.p0") or ir.Function(
            module, ir.FunctionType(ir.VoidType(), [vec, PTR, I32, live.type]), "llvm.masked.store.v16f32.p0")
        out = _epilogue(b, total, flags, lambda: b.call(masked_load, [float_at(b, bias, col), I32(4), live, zero]))
        b.call(masked_store, [out, float_at(b, y, col), I32(4), live])
        return [b.add(first, count)]

    before = carried_loop(b, const(0), s0, [const(0)], lambda s, c: [  # the steps of the slices before s0
        b.add(c[0], b.sext(b.load(b.gep(steps, [s], source_etype=I32), typ=I32), I64))], "skip")
    carried_loop(b, s0, s1, before, one_slice, "slice")
    b.ret_void()
    return fn


def _transposed(b: ir.IRBuilder, lanes: int, src: ir.Value, src_stride: ir.Value, rows: ir.Value,
                cols: ir.Value, dst: ir.Value, dst_stride: ir.Value, finish=None) -> None:
    """dst[c * dst_stride + r] = finish(src[r * src_stride + c]) for r < rows,
    c < cols: lanes x lanes blocks transposed in registers, the edges one by
    one. finish(v, r, whole) gets a vector of dst's run from row r: all its
    lanes (whole), or lane 0 alone."""
    vec = ir.VectorType(F32, lanes)
    full_r = b.mul(b.sdiv(rows, const(lanes)), const(lanes))
    full_c = b.mul(b.sdiv(cols, const(lanes)), const(lanes))
    with counted_loop(b, const(0), full_r, lanes, "tr") as r0:
        with counted_loop(b, const(0), full_c, lanes, "tc") as c0:
            block = [b.load(float_at(b, src, b.add(b.mul(b.add(r0, const(i)), src_stride), c0)), typ=vec, align=4)
                     for i in range(lanes)]
            for j, column in enumerate(transpose_block(b, block)):
                c = b.add(c0, const(j))
                store_vector(b, column if finish is None else finish(column, r0, True),
                             float_at(b, dst, b.add(b.mul(c, dst_stride), r0)))

    def one(r: ir.Value, c: ir.Value) -> None:
        v = b.load(float_at(b, src, b.add(b.mul(r, src_stride), c)), typ=F32)
        if finish is not None:
            v = b.extract_element(finish(splat(b, v, lanes), r, False), I32(0))
        b.store(v, float_at(b, dst, b.add(b.mul(c, dst_stride), r)))
    with counted_loop(b, const(0), full_r, 1, "er") as r:  # the columns past the last whole block
        with counted_loop(b, full_c, cols, 1, "ec") as c:
            one(r, c)
    with counted_loop(b, full_r, rows, 1, "fr") as r:  # the rows past the last whole block
        with counted_loop(b, const(0), cols, 1, "fc") as c:
            one(r, c)


def _columns(module: ir.Module, variant: Variant, given: bool) -> ir.Function:
    """columns(R, K, N, X, ldx, Y, ldy, colptr, rowidx, values, flags, bias, ws, n0, n1):
    R <= FEATURE_ROWS rows, output columns n0 <= n < n1. Row-major X and Y: X^T and Y^T in the workspace,
    transposed in and out. `given` (FEATURE_MAJOR): X^T and Y^T are given (a 1x1
    convolution's image and output, channels first): a whole chunk is read
    and written where it is, the epilogue on the last block of K; a partial
    one goes through the workspace (its rows padded)."""
    lanes = variant.lanes
    vec = ir.VectorType(F32, lanes)
    parts = FEATURE_ROWS // lanes
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, I64, PTR, I64, PTR, PTR, PTR,
                                                             I32, PTR, PTR, I64, I64]),
                     f"{SYMBOL}_columns_{'given' if given else 'rows'}_{variant.tag}")
    fn.linkage = "internal"
    rows, k, n, x, ldx, y, ldy, colptr, rowidx, values, flags, bias, ws, n0, n1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = module.globals.get(f"llvm.fma.v{lanes}f32") or ir.Function(
        module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{lanes}f32")
    wide = const(FEATURE_ROWS)
    # given and whole: X^T and Y^T read and written where they are
    in_place = b.icmp_signed("==", rows, wide) if given else ir.Constant(ir.IntType(1), 0)
    xt = b.select(in_place, x, ws) if given else ws
    xt_ld = b.select(in_place, ldx, wide) if given else wide
    yt_ws = float_at(b, ws, b.mul(k, wide))
    yt = b.select(in_place, y, yt_ws) if given else yt_ws
    yt_ld = b.select(in_place, ldy, wide) if given else wide
    with b.if_then(b.not_(in_place)):
        with counted_loop(b, rows, wide, 1, "pad") as r:  # rows past R are zeros (their outputs unused)
            with counted_loop(b, const(0), k, 1, "padk") as kk:
                b.store(ir.Constant(F32, 0.0), float_at(b, ws, b.add(b.mul(kk, wide), r)))
        if given:
            with counted_loop(b, const(0), k, 1, "ck") as kk:
                with counted_loop(b, const(0), rows, 1, "cr") as r:
                    b.store(b.load(float_at(b, x, b.add(b.mul(kk, ldx), r)), typ=F32),
                            float_at(b, ws, b.add(b.mul(kk, wide), r)))
        else:
            _transposed(b, lanes, x, ldx, rows, k, ws, wide)
    zero = ir.Constant(vec, [0.0] * lanes)

    def bias_of(r: ir.Value, whole: bool) -> ir.Value:
        p = float_at(b, bias, r)
        return b.load(p, typ=vec, align=4) if whole else splat(b, b.load(p, typ=F32), lanes)

    def nonzero(j: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        row = b.sext(b.load(b.gep(rowidx, [j], source_etype=I32), typ=I32), I64)
        w = splat(b, b.load(float_at(b, values, j), typ=F32), lanes)
        src = float_at(b, xt, b.mul(row, xt_ld))
        return [b.call(fma, [w, b.load(float_at(b, src, const(p * lanes)), typ=vec, align=4), acc[p]])
                for p in range(parts)]

    blocks = b.sdiv(b.add(k, const(COLUMN_BLOCK - 1)), const(COLUMN_BLOCK))
    with counted_loop(b, const(0), blocks, 1, "kb") as kb:
        first = b.icmp_signed("==", kb, const(0))
        finish = b.and_(in_place, b.icmp_signed("==", kb, b.sub(blocks, const(1)))) if given else None
        with counted_loop(b, n0, n1, 1, "n") as col:
            segment = b.add(b.mul(kb, n), col)
            lo = b.sext(b.load(b.gep(colptr, [segment], source_etype=I32), typ=I32), I64)
            hi = b.sext(b.load(b.gep(colptr, [b.add(segment, const(1))], source_etype=I32), typ=I32), I64)
            out = float_at(b, yt, b.mul(col, yt_ld))
            # the first block starts Y^T's row at zero, the others add to it
            start = [b.select(first, zero, b.load(float_at(b, out, const(p * lanes)), typ=vec, align=4))
                     for p in range(parts)]
            pairs = b.sdiv(b.sub(hi, lo), const(2))
            both = carried_loop(b, const(0), pairs, start + [zero] * parts, lambda q, a: (
                nonzero(b.add(lo, b.mul(q, const(2))), a[:parts])
                + nonzero(b.add(lo, b.add(b.mul(q, const(2)), const(1))), a[parts:])), "pair")
            last = carried_loop(b, b.add(lo, b.mul(pairs, const(2))), hi, both[:parts], nonzero, "odd")
            for p in range(parts):
                total = b.fadd(last[p], both[parts + p])
                if given:
                    total = b.select(finish, _epilogue(b, total, flags, lambda: bias_of(col, False)), total)
                store_vector(b, total, float_at(b, out, const(p * lanes)))
    with b.if_then(b.not_(in_place)):
        if given:
            with counted_loop(b, n0, n1, 1, "on") as col:
                with counted_loop(b, const(0), rows, 1, "or") as r:
                    v = splat(b, b.load(float_at(b, yt_ws, b.add(b.mul(col, wide), r)), typ=F32), lanes)
                    v = b.extract_element(_epilogue(b, v, flags, lambda: bias_of(col, False)), I32(0))
                    b.store(v, float_at(b, y, b.add(b.mul(col, ldy), r)))
        else:  # columns n0..n1 of Y: rows n0..n1 of Y^T
            _transposed(b, lanes, float_at(b, yt_ws, b.mul(n0, wide)), wide, b.sub(n1, n0), rows,
                        float_at(b, y, n0), ldy,
                        lambda v, r, whole: _epilogue(b, v, flags, lambda: bias_of(b.add(n0, r), whole)))
    b.ret_void()
    return fn


def _serial(module: ir.Module, variant: Variant) -> ir.Function:
    """serial(rows, K, N, X, ldx, Y, ldy, tables..., flags, bias, ws, n0, n1): the
    output columns n0 <= n < n1 (a multiple of SLICE, or N), on one thread."""
    slices = _slice_rows(module, variant)
    by_rows, by_given = _columns(module, variant, False), _columns(module, variant, True)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [*SIGNATURE.args[:-1], I64, I64]), f"{SYMBOL}_serial")
    fn.linkage = "internal"
    rows, k, n, x, ldx, y, ldy, steps, blocks, lanes, svals, colptr, rowidx, cvals, flags, bias, ws, n0, n1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    given = b.icmp_signed("!=", b.and_(flags, I32(FEATURE_MAJOR)), I32(0))
    # the column form for FEATURE_ROWS rows at a time while FEATURE_MIN_ROWS or more are left
    # (always for X^T given: the slice form reads rows of X)
    chunks = b.select(b.and_(b.icmp_signed("<", rows, const(FEATURE_MIN_ROWS)), b.not_(given)), const(0),
                      b.sdiv(b.add(rows, const(FEATURE_ROWS - 1)), const(FEATURE_ROWS)))
    with counted_loop(b, const(0), chunks, 1, "chunk") as c:
        r0 = b.mul(c, const(FEATURE_ROWS))
        count = minimum(b, b.sub(rows, r0), const(FEATURE_ROWS))
        x0 = b.select(given, float_at(b, x, r0), float_at(b, x, b.mul(r0, ldx)))  # a column of X^T, or a row of X
        y0 = b.select(given, float_at(b, y, r0), float_at(b, y, b.mul(r0, ldy)))
        args = [count, k, n, x0, ldx, y0, ldy, colptr, rowidx, cvals, flags, bias, ws, n0, n1]
        with b.if_else(given) as (transposed, row_major):
            with transposed:
                b.call(by_given, args)
            with row_major:
                b.call(by_rows, args)
    padded = b.mul(b.sdiv(b.add(k, const(BLOCK - 1)), const(BLOCK)), const(BLOCK))
    with counted_loop(b, k, padded, 1, "tail") as kk:  # x past K: zeros (lanes never point there)
        b.store(ir.Constant(F32, 0.0), float_at(b, ws, kk))
    s0 = b.sdiv(n0, const(SLICE))
    s1 = b.sdiv(b.add(n1, const(SLICE - 1)), const(SLICE))
    with counted_loop(b, b.select(b.icmp_signed(">", chunks, const(0)), rows, const(0)), rows, 1, "row") as r:
        with counted_loop(b, const(0), k, 1, "copy") as kk:
            b.store(b.load(float_at(b, x, b.add(b.mul(r, ldx), kk)), typ=F32), float_at(b, ws, kk))
        b.call(slices, [ws, n, steps, blocks, lanes, svals, float_at(b, y, b.mul(r, ldy)), flags, bias, s0, s1])
    b.ret_void()
    return fn


def _team_body(module: ir.Module, serial: ir.Function) -> ir.Function:
    """void body(i64 *words): thread t of the team computes its run of whole
    slices of output columns, in its own part of the workspace."""
    fn = ir.Function(module, openmp.BODY, serial.name + openmp.TEAM_SUFFIX)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args = openmp.from_words(b, fn.args[0], SIGNATURE.args[:-1])
    k, n, ws = args[1], args[2], args[16]
    tid, n0, n1 = openmp.thread_columns(b, n, SLICE)
    with b.if_then(b.icmp_signed("<", n0, n1)):
        b.call(serial, [*args[:16], float_at(b, ws, b.mul(tid, _workspace_floats(b, k, n))), n0, n1])
    b.ret_void()
    return fn


def define_spmm(module: ir.Module, variant: Variant) -> ir.Function:
    """Define `ncc_spmm` for `variant` in `module` (filling in its declaration,
    if any): on the calling thread, or with threads > 1 and at least
    TEAM_MIN_WORK multiply-adds, its output columns split over an OpenMP team
    (whole slices each; the same operations per column: identical results)."""
    serial = _serial(module, variant)
    fn = function_to_define(module, SYMBOL, SIGNATURE)
    args = list(fn.args)
    rows, n, colptr, threads = args[0], args[2], args[11], args[17]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    segments = b.mul(b.sdiv(b.add(args[1], const(COLUMN_BLOCK - 1)), const(COLUMN_BLOCK)), n)
    nonzeros = b.sext(b.load(b.gep(colptr, [segments], source_etype=I32), typ=I32), I64)  # colptr's last
    team = minimum(b, threads, b.sdiv(b.add(n, const(SLICE - 1)), const(SLICE)))
    team = b.select(b.icmp_signed("<", b.mul(rows, nonzeros), const(TEAM_MIN_WORK)), const(1), team)
    openmp.alone_or_on_team(b, serial, [*args[:17], const(0), n], _team_body(module, serial), args[:17], team)
    b.ret_void()
    return fn


def spmm_module(variant: Variant, triple: str = "", data_layout: str = "") -> ir.Module:
    """An llvmlite module defining ncc_spmm for `variant` alone (for tests and benchmarks)."""
    return kernel_module(f"{SYMBOL}_{variant.tag}", triple, data_layout, lambda m: define_spmm(m, variant))


def callable_spmm(address: int):
    """ncc_spmm at `address` as a ctypes function (tests and benchmarks call it directly)."""
    import ctypes

    P, I = ctypes.c_void_p, ctypes.c_int64
    return ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, P, P, P, P, P, P, ctypes.c_int32, P, P, I)(address)
