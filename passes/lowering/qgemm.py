"""An int8 GEMM accumulating in int32, generated as LLVM IR for the host's
integer dot-product instructions.

    C[M, N] (i32) = (A[M, K] - a_zero) @ (B[K, N] - b_zero)        row-major bytes

A's and B's bytes are int8 or uint8 (the flags say which); b_zero is one
value or one per column of B. The structure is gemm.py's (BLIS, MLAS): an MR
x NR tile of i32 accumulators in vector registers, K streamed through it
four bytes at a time from packed panels -- per step, NR/lanes vector loads of
B (each 32-bit lane a column's four consecutive bytes of K), MR broadcasts
of A's four bytes, MR x NR/lanes dot products:

    vnni    AVX-512 VNNI or AVX-VNNI: one vpdpbusd per vector (u8 x s8,
            four products summed into each i32 lane, exact)
    madd    without VNNI: the bytes widened to int16, two vpmaddwd (s16 x
            s16, pairs summed into i32, exact: no vpmaddubsw, whose int16
            sums saturate) and two adds per vector

`Variant.for_features` picks the variant and width from the CPU's features:
AVX-512 VNNI 16 lanes (MR 14), AVX-VNNI 8 (MR 6), AVX-512BW without VNNI 16
(MR 12), AVX2 8 (MR 4), else SSE2 4 (MR 4); an AVX-512 VNNI host runs and
tests every variant.

The dot instruction multiplies unsigned bytes by signed ones, so the kernel
works on a = A (xor 0x80 if int8: + 128) and b = B (xor 0x80 if uint8:
- 128), their zero points moved the same way: (A - a_zero)(B - b_zero) is
unchanged. Packing makes the sums of a's rows and b's columns, and the tile
is stored as sum(a b) - a_zero colsum_b - b_zero (rowsum_a - K a_zero).

The last rows of A take the tile of the fewest rows that holds them (1, 2,
4, 8 or MR), as gemm.py's do; a prepacked A's last rows, read in place, take
tiles of exactly 8, 4, 2 and 1 rows (a larger tile would read past A). Loops
around the micro-kernel: MC rows of A packed at a time (the workspace does
not grow with M), then per NR-column panel of B its K x NR bytes packed
and the tiles of those rows. With threads > 1 and at least TEAM_MIN_WORK
multiply-adds, the column panels are split over an OpenMP team (each thread
its own workspace part) -- or, with A_IN_PLACE and PACKED_B (nothing packed
per call), runs of whole MR-row tiles; every element is computed by the same
operations: the results are the same for any thread count.

    void ncc_qgemm(i64 M, i64 N, i64 K, ptr A, i64 lda, ptr B, i64 ldb, ptr C, i64 ldc,
                   i32 a_zero, i32 b_zero, ptr b_zeros, i32 flags, ptr workspace, i64 threads,
                   ptr bias, ptr scale, i32 c_zero)

flags: A_SIGNED (A holds int8), B_UNSIGNED (B holds uint8), B_ZERO_COLUMNS
(b_zeros[j], N i32 values, instead of b_zero), PACKED_B (B is packed once,
ahead: nn.qpack's layout, nn.pack_quads, ldb unused), PACKED_A (A is packed
once, ahead: nn.qpack_rows's layout, nn.pack_rows, lda unused; the VNNI
variants read its whole panels of MR rows in place), A_IN_PLACE (the VNNI
variants read A's rows where they are, not packing them: A uint8, lda a
multiple of 4, each row readable up to 4 ceil(K / 4) bytes, and B int8 with
zero point 0, since its rows' sums are not made -- a channels-last
convolution's image rows; the others pack A as without it). The workspace,
64-byte aligned, holds `threads * workspace_bytes(K)` bytes.

REQUANTIZE: the tile is requantized before it is stored (QLinearConv's and
QLinearMatMul's output, nn.requantize's arithmetic, onnxruntime's bits): C
holds bytes, int8 (uint8 with C_UNSIGNED),

    C[i, j] = saturate(round_half_even(float(acc + bias[.]) * scale[.]) + c_zero)

bias (i32) and scale (f32) indexed by the row (BY_ROW: a convolution's
channels) or else by the column; RELU floors the result at c_zero. The
i32 product is never written: the epilogue costs no pass over memory.
bias, scale and c_zero are unused without REQUANTIZE.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ncc.dialects.nn.quant import QPANEL, ROUNDING_MAGIC, ROUNDING_MAGIC_BITS, quads

from ncc.passes.lowering import openmp
from ncc.passes.lowering.gemm import AVX2_CPUS, AVX512_CPUS, call_tile, exact_tiles, tile_heights
from ncc.passes.lowering.llvmlite_ir import F32, I32, I64, PTR, carried_loop, const, counted_loop, function_to_define
from ncc.passes.lowering.llvmlite_ir import kernel_module, lane_mask, minimum, splat

SYMBOL = "ncc_qgemm"
SIGNATURE = ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, I64, PTR, I64, PTR, I64, I32, I32, PTR, I32, PTR,
                                            I64, PTR, PTR, I32])
THREADS = 14  # the argument the serial code does not take
SERIAL_ARGS = SIGNATURE.args[:THREADS] + SIGNATURE.args[THREADS + 1:]
A_SIGNED, B_UNSIGNED, B_ZERO_COLUMNS, PACKED_B, PACKED_A = 1, 2, 4, 8, 16
REQUANTIZE, BY_ROW, C_UNSIGNED, RELU, A_IN_PLACE = 32, 64, 128, 256, 512
NR_MAX = QPANEL  # the widest panel of any variant: a prepacked B's panel (nn.qpack's layout)
MC = 168  # rows of A packed at a time (a multiple of every MR)
TEAM_MIN_WORK = 1 << 21  # multiply-adds below which threads > 1 still runs one thread
I8, I16 = ir.IntType(8), ir.IntType(16)
I1 = ir.IntType(1)
# The micro-kernel's epilogue arguments: requantize?, bias and scale by row and by column, low, high, c_zero
EPILOGUE_TYPES = [I1, PTR, PTR, PTR, PTR, F32, F32, I32]


@dataclass(frozen=True)
class Variant:
    """How the host computes four-byte dot products, its vector width and the tile."""

    dot: str  # "vnni" | "madd"
    lanes: int  # i32 lanes per vector
    mr: int  # rows of the tile

    @property
    def nr(self) -> int:
        return 2 * self.lanes

    @property
    def words(self) -> int:
        """i32 words of packed A per row and four bytes of K (madd: two int16 pairs)."""
        return 1 if self.dot == "vnni" else 2

    @property
    def tag(self) -> str:
        return f"{self.dot}{32 * self.lanes}"

    @staticmethod
    def for_features(features: set[str] | frozenset[str]) -> "Variant":
        if {"avx512vnni", "avx512bw"} <= features:
            return VARIANTS["vnni512"]
        if "avxvnni" in features or {"avx512vnni", "avx512vl"} <= features:
            return VARIANTS["vnni256"]
        if "avx512bw" in features:
            return VARIANTS["madd512"]
        if "avx2" in features:
            return VARIANTS["madd256"]
        return VARIANTS["madd128"]


VARIANTS = {"vnni512": Variant("vnni", 16, 14), "vnni256": Variant("vnni", 8, 6),
            "madd512": Variant("madd", 16, 12), "madd256": Variant("madd", 8, 4), "madd128": Variant("madd", 4, 4)}
REQUIRES = {"vnni512": {"avx512vnni", "avx512bw"}, "vnni256": {"avx512vnni", "avx512vl"},
            "madd512": {"avx512bw"}, "madd256": {"avx2"}, "madd128": set()}
assert all(MC % v.mr == 0 and NR_MAX % v.nr == 0 for v in VARIANTS.values())

# LLVM's CPU names by what they have, for code compiled for a named CPU
# (ncc-translate --emit-llvm --target-cpu); any other name gets SSE2.
VNNI512_CPUS = ("cascadelake", "cooperlake", "icelake-client", "icelake-server", "tigerlake", "rocketlake",
                "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5")
AVXVNNI_CPUS = ("alderlake", "raptorlake", "meteorlake", "arrowlake", "arrowlake-s", "lunarlake", "gracemont",
                "sierraforest", "grandridge", "clearwaterforest")
AVX512BW_CPUS = ("skylake-avx512", "cannonlake", "x86-64-v4")


def variant_for_cpu(cpu: str) -> Variant:
    """The variant of code compiled for the CPU LLVM calls `cpu`."""
    features = ({"avx512vnni", "avx512bw"} if cpu in VNNI512_CPUS else {"avxvnni"} if cpu in AVXVNNI_CPUS
                else {"avx512bw"} if cpu in AVX512BW_CPUS else {"avx2"} if cpu in AVX2_CPUS + AVX512_CPUS else set())
    return Variant.for_features(features)


def workspace_bytes(k: int) -> int:
    """Bytes of one thread's workspace: MC rows of packed A (and their sums),
    one packed panel of B (and its column sums), the most any variant uses."""
    return 4 * (MC * quads(k) * 2 + MC + NR_MAX * quads(k) + 2 * NR_MAX)


def _workspace_bytes(b: ir.IRBuilder, k: ir.Value) -> ir.Value:
    q = b.sdiv(b.add(k, const(3)), const(4))
    return b.mul(const(4), b.add(b.mul(q, const(2 * MC + NR_MAX)), const(MC + 2 * NR_MAX)))


def _byte_at(b: ir.IRBuilder, p: ir.Value, offset: ir.Value) -> ir.Value:
    return b.gep(p, [offset], inbounds=True, source_etype=I8)


def _word_at(b: ir.IRBuilder, p: ir.Value, offset: ir.Value) -> ir.Value:
    return b.gep(p, [offset], inbounds=True, source_etype=I32)


def _intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, args), name)


def _constant_lanes(module: ir.Module, name: str, t: ir.Type, value) -> ir.Value:
    """A pointer to NR_MAX constant `value`s of type t: the bias (zeros) or scale
    (ones) of the side of the tile an epilogue does not index."""
    symbol = f"{SYMBOL}_{name}"
    g = module.globals.get(symbol)
    if g is None:
        arr = ir.ArrayType(t, NR_MAX)
        g = ir.GlobalVariable(module, arr, symbol)
        g.linkage, g.global_constant, g.align = "internal", True, 64
        g.initializer = ir.Constant(arr, [ir.Constant(t, value)] * NR_MAX)
    return g.gep([I32(0), I32(0)])


# ---------------------------------------------------------------------------
# Packing


def _pack_a(module: ir.Module, v: Variant) -> ir.Function:
    """pack_a(A, lda, rows, K, flip, Ap, sums): `rows` (<= MC) rows of A as
    panels of MR rows, [panel][quad][row][word] (vnni: the quad's four bytes
    as one word; madd: two words of zero-extended int16 pairs), the rows past
    `rows` that the last rows' tile reads zero; sums[r] = the row's sum of
    bytes. flip: 0x80 to turn int8 into the kernel's unsigned bytes, else 0.
    A row's whole quads are loaded as words, its last partial quad byte by byte."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64, I64, I8, PTR, PTR]),
                     f"{SYMBOL}_pack_a_{v.tag}")
    fn.linkage = "internal"
    fn.attributes.add("noinline")  # a loop per MC rows: its own symbol in a profile
    a, lda, rows, k, flip, ap, sums = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    q = b.sdiv(b.add(k, const(3)), const(4))
    flip32 = b.mul(b.zext(flip, I32), I32(0x01010101))
    # rows past `rows` are zeros up to the tile that computes the last ones (the fewest of 1, 2, 4, 8
    # or MR rows, which is all it reads): a row vector of K = 8192 pads 1 row, not 13 x 2048 words
    whole = b.mul(b.sdiv(rows, const(v.mr)), const(v.mr))
    rest = b.sub(rows, whole)
    tail = const(v.mr)
    for r in reversed(tile_heights(v.mr)[:-1]):
        tail = b.select(b.icmp_signed("<=", rest, const(r)), const(r), tail)
    padded = b.add(whole, b.select(b.icmp_signed("==", rest, const(0)), const(0), tail))

    def words_of(w: ir.Value) -> list[ir.Value]:
        if v.dot == "vnni":
            return [w]
        return [b.or_(b.and_(w, I32(0xFF)), b.shl(b.and_(w, I32(0xFF00)), I32(8))),
                b.or_(b.and_(b.lshr(w, I32(16)), I32(0xFF)), b.and_(b.lshr(w, I32(8)), I32(0xFF0000)))]

    with counted_loop(b, const(0), padded, 1, "row") as r:
        live = b.icmp_signed("<", r, rows)
        row = _byte_at(b, a, b.mul(b.select(live, r, const(0)), lda))
        panel_base = b.mul(b.mul(b.sdiv(r, const(v.mr)), q), const(v.mr * v.words))
        slot = b.srem(r, const(v.mr))

        def store(qi, w):
            base = b.add(panel_base, b.mul(b.add(b.mul(qi, const(v.mr)), slot), const(v.words)))
            for i, word in enumerate(words_of(w)):
                b.store(word, _word_at(b, ap, b.add(base, const(i))))

        whole = b.select(live, b.sdiv(k, const(4)), const(0))
        with counted_loop(b, const(0), whole, 1, "quad") as qi:
            word = b.load(b.bitcast(_byte_at(b, row, b.mul(qi, const(4))), I32.as_pointer()), typ=I32, align=1)
            store(qi, b.xor(word, flip32))
        with counted_loop(b, whole, b.select(live, q, const(0)), 1, "tail") as qi:  # the partial quad
            word = I32(0)
            for t in range(4):
                kk = b.add(b.mul(qi, const(4)), const(t))
                ok = b.icmp_signed("<", kk, k)
                byte = b.xor(b.load(_byte_at(b, row, b.select(ok, kk, const(0))), typ=I8), flip)
                word = b.or_(word, b.shl(b.zext(b.select(ok, byte, I8(0)), I32), I32(8 * t)))
            store(qi, word)
        with counted_loop(b, b.select(live, q, const(0)), q, 1, "pad") as qi:  # a row past `rows`: zeros
            store(qi, I32(0))
        total = carried_loop(b, const(0), b.select(live, k, const(0)), [I32(0)], lambda kk, acc: [
            b.add(acc[0], b.zext(b.xor(b.load(_byte_at(b, row, kk), typ=I8), flip), I32))], "sum")[0]
        b.store(total, _word_at(b, sums, r))
    b.ret_void()
    return fn


def _pack_b(module: ir.Module, v: Variant) -> ir.Function:
    """pack_b(B, ldb, j0, N, K, flip, Bp, sums): columns j0 .. j0 + NR of B as
    [quad][column] words of four bytes (columns past N and bytes past K zero),
    sums[c] = the column's sum of signed bytes. flip: 0x80 to turn uint8 into
    the kernel's signed bytes, else 0. Whole groups of `lanes` columns are
    interleaved with shuffles, the last partial group byte by byte."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64, I64, I64, I8, PTR, PTR]),
                     f"{SYMBOL}_pack_b_{v.tag}")
    fn.linkage = "internal"
    fn.attributes.add("noinline")  # a loop per panel: its own symbol in a profile
    bm, ldb, j0, n, k, flip, bp, sums = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lanes = v.lanes
    q = b.sdiv(b.add(k, const(3)), const(4))
    row_t = ir.VectorType(I8, lanes)
    flips = splat(b, flip, lanes)
    zero_row = ir.Constant(row_t, [I8(0)] * lanes)
    interleave = lane_mask([t * lanes + c for c in range(lanes) for t in range(4)])
    for g in range(v.nr // lanes):
        col = b.add(j0, const(g * lanes))
        whole = b.icmp_signed("<=", b.add(col, const(lanes)), n)
        with b.if_else(whole) as (vector, scalar):
            with vector:
                def quad(qi, carried, tail: bool, flipping: bool = True):
                    acc, = carried
                    rows = []
                    for t in range(4):
                        kk = b.add(b.mul(qi, const(4)), const(t))
                        ok = b.icmp_signed("<", kk, k) if tail else None  # only the last quad passes K
                        p = _byte_at(b, bm, b.add(b.mul(b.select(ok, kk, const(0)) if tail else kk, ldb), col))
                        row = b.load(b.bitcast(p, row_t.as_pointer()), typ=row_t, align=1)
                        row = b.xor(row, flips) if flipping else row
                        rows.append(b.select(ok, row, zero_row) if tail else row)
                    low = b.shuffle_vector(rows[0], rows[1], lane_mask(list(range(2 * lanes))))
                    high = b.shuffle_vector(rows[2], rows[3], lane_mask(list(range(2 * lanes))))
                    words = b.shuffle_vector(low, high, interleave)
                    dst = _word_at(b, bp, b.add(b.mul(qi, const(v.nr)), const(g * lanes)))
                    b.store(words, b.bitcast(dst, words.type.as_pointer()), align=4)
                    if v.dot == "vnni":  # the column sums by one dot product with bytes of 1
                        return [_dot(module, b, v, acc, [I32(0x01010101)], words, None)]
                    for row in rows:
                        acc = b.add(acc, b.sext(row, ir.VectorType(I32, lanes)))
                    return [acc]

                full = b.sdiv(k, const(4))
                zeros = [ir.Constant(ir.VectorType(I32, lanes), [I32(0)] * lanes)]
                # the whole quads: with the flip (uint8 B) or without (int8 B: nothing to do per byte)
                with b.if_else(b.icmp_signed("!=", flip, I8(0))) as (flipped, signed):
                    with flipped:
                        acc_f = carried_loop(b, const(0), full, zeros, lambda qi, c: quad(qi, c, False), f"bquad{g}")
                        end_f = b.block
                    with signed:
                        acc_s = carried_loop(b, const(0), full, zeros, lambda qi, c: quad(qi, c, False, False),
                                             f"bquads{g}")
                        end_s = b.block
                acc = b.phi(acc_f[0].type)
                acc.add_incoming(acc_f[0], end_f)
                acc.add_incoming(acc_s[0], end_s)
                acc, = carried_loop(b, full, q, [acc], lambda qi, c: quad(qi, c, True), f"btail{g}")
                b.store(acc, b.bitcast(_word_at(b, sums, const(g * lanes)), acc.type.as_pointer()), align=4)
            with scalar:
                with counted_loop(b, const(0), const(lanes), 1, f"bcol{g}") as c:
                    j = b.add(col, c)
                    live = b.icmp_signed("<", j, n)

                    def quad_bytes(qi, carried):
                        total, = carried
                        word = I32(0)
                        for t in range(4):
                            kk = b.add(b.mul(qi, const(4)), const(t))
                            ok = b.and_(live, b.icmp_signed("<", kk, k))
                            at = b.select(ok, b.add(b.mul(kk, ldb), j), const(0))
                            byte = b.select(ok, b.xor(b.load(_byte_at(b, bm, at), typ=I8), flip), I8(0))
                            total = b.add(total, b.sext(byte, I32))
                            word = b.or_(word, b.shl(b.zext(byte, I32), I32(8 * t)))
                        b.store(word, _word_at(b, bp, b.add(b.mul(qi, const(v.nr)), b.add(const(g * lanes), c))))
                        return [total]

                    total, = carried_loop(b, const(0), q, [I32(0)], quad_bytes, f"bq{g}")
                    b.store(total, _word_at(b, sums, b.add(const(g * lanes), c)))
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------
# The micro-kernel


def _dot(module: ir.Module, b: ir.IRBuilder, v: Variant, acc: ir.Value, a_words: list[ir.Value],
         b_vec: ir.Value, b_halves: list[ir.Value] | None) -> ir.Value:
    """acc + the four-byte dot products of one row's broadcast A words with a B vector."""
    vec = ir.VectorType(I32, v.lanes)
    if v.dot == "vnni":
        bytes_t = ir.VectorType(I8, 4 * v.lanes)
        f = _intrinsic(module, f"llvm.x86.avx512.vpdpbusd.{32 * v.lanes}", vec, [vec, bytes_t, bytes_t])
        return b.call(f, [acc, b.bitcast(splat(b, a_words[0], v.lanes), bytes_t), b_vec])
    pairs = ir.VectorType(I16, 2 * v.lanes)
    name = {16: "llvm.x86.avx512.pmaddw.d.512", 8: "llvm.x86.avx2.pmadd.wd", 4: "llvm.x86.sse2.pmadd.wd"}[v.lanes]
    f = _intrinsic(module, name, vec, [pairs, pairs])
    for word, half in zip(a_words, b_halves):
        acc = b.add(acc, b.call(f, [b.bitcast(splat(b, word, v.lanes), pairs), half]))
    return acc


def _micro_kernel(module: ir.Module, v: Variant, mr: int) -> ir.Function:
    """tile(Ap, a_qstride, a_rstride, Bp, bstride, Q, K, C, ldc, rows, cols, a_zero, a_sums, a_sum_stride,
    b_zeros, b_sums, requant, bias_rows, bias_cols, scale_rows, scale_cols, low, high, c_zero): the mr x NR
    tile of C at C (rows x cols of it stored) from panels of Q quads: A's words of row r and quad q at
    r * a_rstride + q * a_qstride, B's a quad every bstride words. With `requant`, the tile stored as
    bytes (`_requantized`): bias and scale of row r at bias_rows[r] and scale_rows[r], of column j at
    bias_cols[j] and scale_cols[j] (the side not indexed reads zeros and ones)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64, PTR, I64, I64, I64, PTR, I64, I64, I64,
                                                             I32, PTR, I64, PTR, PTR, *EPILOGUE_TYPES]),
                     f"{SYMBOL}_tile_{v.tag}_{mr}")
    fn.linkage = "internal"
    (ap, a_qstride, a_rstride, bp, bstride, q, k, c, ldc, rows, cols, a_zero, a_sums, a_sum_stride, b_zeros,
     b_sums, *epilogue) = fn.args
    requant, bias_rows, bias_cols, scale_rows, scale_cols, r_low, r_high, c_zero = epilogue
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vec = ir.VectorType(I32, v.lanes)
    vectors = v.nr // v.lanes
    zero = ir.Constant(vec, [I32(0)] * v.lanes)
    low = lane_mask([4 * (i // 2) + i % 2 for i in range(2 * v.lanes)])  # bytes 0, 1 of each word
    high = lane_mask([4 * (i // 2) + 2 + i % 2 for i in range(2 * v.lanes)])  # bytes 2, 3

    def step(qi, accs):
        bytes_t = ir.VectorType(I8, 4 * v.lanes)
        b_vecs, halves = [], []
        for j in range(vectors):
            p = _word_at(b, bp, b.add(b.mul(qi, bstride), const(j * v.lanes)))
            bv = b.load(b.bitcast(p, bytes_t.as_pointer()), typ=bytes_t, align=4)
            b_vecs.append(bv)
            if v.dot == "madd":
                halves.append([b.sext(b.shuffle_vector(bv, ir.Constant(bytes_t, ir.Undefined), m),
                                      ir.VectorType(I16, 2 * v.lanes)) for m in (low, high)])
        out = []
        base = b.mul(qi, a_qstride)
        for r in range(mr):
            at = b.add(base, b.mul(const(r), a_rstride))
            words = [b.load(_word_at(b, ap, b.add(at, const(w))), typ=I32) for w in range(v.words)]
            for j in range(vectors):
                out.append(_dot(module, b, v, accs[r * vectors + j], words, b_vecs[j],
                                halves[j] if halves else None))
        return out

    accs = carried_loop(b, const(0), q, [zero] * (mr * vectors), step, "k")
    # C = sum(a b) - a_zero colsum_b - b_zero (rowsum_a - K a_zero)
    a0 = splat(b, a_zero, v.lanes)
    k_a0 = b.mul(b.trunc(k, I32), a_zero)
    fvec = ir.VectorType(F32, v.lanes)
    for j in range(vectors):
        sums_j = b.load(b.bitcast(_word_at(b, b_sums, const(j * v.lanes)), vec.as_pointer()), typ=vec, align=4)
        zeros_j = b.load(b.bitcast(_word_at(b, b_zeros, const(j * v.lanes)), vec.as_pointer()), typ=vec, align=4)
        col_term = b.mul(a0, sums_j)
        # the columns' bias and scale (zeros and ones by row, and without REQUANTIZE: always readable)
        col_bias = b.load(b.bitcast(_word_at(b, bias_cols, const(j * v.lanes)), vec.as_pointer()), typ=vec, align=4)
        col_scale = b.load(b.bitcast(_word_at(b, scale_cols, const(j * v.lanes)), fvec.as_pointer()), typ=fvec,
                           align=4)
        whole = b.icmp_signed(">=", cols, const((j + 1) * v.lanes))
        for r in range(mr):
            with b.if_then(b.icmp_signed("<", const(r), rows)):
                row_sum = b.sub(b.load(_word_at(b, a_sums, b.mul(const(r), a_sum_stride)), typ=I32), k_a0)
                value = b.sub(b.sub(accs[r * vectors + j], col_term), b.mul(zeros_j, splat(b, row_sum, v.lanes)))
                at = b.add(b.mul(const(r), ldc), const(j * v.lanes))
                with b.if_else(requant) as (narrow, wide):
                    with narrow:
                        total = b.add(b.add(value, col_bias), splat(b, b.load(_word_at(b, bias_rows, const(r)),
                                                                               typ=I32), v.lanes))
                        scale = b.fmul(col_scale, splat(b, b.load(_word_at(b, scale_rows, const(r)), typ=F32),
                                                         v.lanes))
                        _store_lanes(b, _requantized(b, total, scale, r_low, r_high, c_zero), _byte_at(b, c, at),
                                     whole, cols, j * v.lanes)
                    with wide:
                        _store_lanes(b, value, _word_at(b, c, at), whole, cols, j * v.lanes)
    b.ret_void()
    return fn


def _store_lanes(b: ir.IRBuilder, value: ir.Value, dst: ir.Value, whole: ir.Value, cols: ir.Value, first: int
                 ) -> None:
    """Store a vector at dst: whole, or its lanes first + l < cols one by one."""
    with b.if_else(whole) as (full, part):
        with full:
            b.store(value, b.bitcast(dst, value.type.as_pointer()), align=1)
        with part:
            for lane in range(value.type.count):
                with b.if_then(b.icmp_signed("<", const(first + lane), cols)):
                    element = b.extract_element(value, I32(lane))
                    b.store(element, b.gep(dst, [const(lane)], inbounds=True, source_etype=element.type))


def _requantized(b: ir.IRBuilder, total: ir.Value, scale: ir.Value, low: ir.Value, high: ir.Value,
                 c_zero: ir.Value) -> ir.Value:
    """The bytes of saturate(round_half_even(float(total) * scale) + c_zero), as
    nn.requantize's lowering computes them: the product clamped to [low, high]
    (the range less the zero point), rounded by adding ROUNDING_MAGIC and
    reading the bits (MLAS's way), the zero point added."""
    lanes = total.type.count
    r = b.fmul(b.sitofp(total, scale.type), scale)
    lo, hi = splat(b, low, lanes), splat(b, high, lanes)
    r = b.select(b.fcmp_unordered("<", r, lo), lo, r)
    r = b.select(b.fcmp_ordered(">", r, hi), hi, r)
    magic = ir.Constant(scale.type, [ir.Constant(F32, ROUNDING_MAGIC)] * lanes)
    bits = b.bitcast(b.fadd(r, magic), total.type)
    q = b.add(b.sub(bits, splat(b, I32(ROUNDING_MAGIC_BITS), lanes)), splat(b, c_zero, lanes))
    return b.trunc(q, ir.VectorType(I8, lanes))


# ---------------------------------------------------------------------------
# The loops around it


def _serial(module: ir.Module, v: Variant) -> ir.Function:
    """serial(M, N, K, A, lda, B, ldb, C, ldc, a_zero, b_zero, b_zeros, flags, ws, bias, scale, c_zero, j0, j1):
    the columns j0 <= j < j1 (whole panels but the last) on one thread."""
    pack_a, pack_b = _pack_a(module, v), _pack_b(module, v)
    tiles = {r: _micro_kernel(module, v, r) for r in tile_heights(v.mr)}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [*SERIAL_ARGS, I64, I64]), f"{SYMBOL}_serial_{v.tag}")
    fn.linkage = "internal"
    m, n, k, a, lda, bm, ldb, c, ldc, a_zero, b_zero, b_zeros, flags, ws, bias, scale, c_zero, j0, j1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    q = b.sdiv(b.add(k, const(3)), const(4))
    a_signed = b.icmp_signed("!=", b.and_(flags, I32(A_SIGNED)), I32(0))
    b_unsigned = b.icmp_signed("!=", b.and_(flags, I32(B_UNSIGNED)), I32(0))
    per_column = b.icmp_signed("!=", b.and_(flags, I32(B_ZERO_COLUMNS)), I32(0))
    packed = b.icmp_signed("!=", b.and_(flags, I32(PACKED_B)), I32(0))
    a_flip = b.select(a_signed, I8(0x80), I8(0))
    b_flip = b.select(b_unsigned, I8(0x80), I8(0))
    az = b.select(a_signed, b.add(a_zero, I32(128)), a_zero)  # the zero points moved with the bytes
    shift = b.select(b_unsigned, I32(128), I32(0))
    ap = ws
    a_sums = _word_at(b, ws, b.mul(q, const(MC * 2)))
    bp = _word_at(b, a_sums, const(MC))
    b_sums = _word_at(b, bp, b.mul(q, const(NR_MAX)))
    b_zeros_panel = _word_at(b, b_sums, const(NR_MAX))
    packed_a = b.icmp_signed("!=", b.and_(flags, I32(PACKED_A)), I32(0))
    # A read where it is (VNNI): a prepacked A (its rows: quads, then the row's sum) or A_IN_PLACE's rows
    # (lda bytes apart, no sums: B's zero point is 0, the row sums' weight)
    rows_in_place = b.icmp_signed("!=", b.and_(flags, I32(A_IN_PLACE)), I32(0)) if v.dot == "vnni" else I1(0)
    direct_a = b.or_(packed_a, rows_in_place)
    row_words = b.select(rows_in_place, b.sdiv(lda, const(4)), b.add(q, const(1)))
    requant = b.icmp_signed("!=", b.and_(flags, I32(REQUANTIZE)), I32(0))
    by_row = b.and_(requant, b.icmp_signed("!=", b.and_(flags, I32(BY_ROW)), I32(0)))
    by_column = b.and_(requant, b.not_(by_row))
    c_bytes = b.select(requant, const(1), const(4))  # C's element size
    zeros, ones = _constant_lanes(module, "zeros", I32, 0), _constant_lanes(module, "ones", F32, 1.0)
    c_unsigned = b.icmp_signed("!=", b.and_(flags, I32(C_UNSIGNED)), I32(0))
    c_zero_f = b.sitofp(c_zero, F32)  # the range [low, high] of the product before the zero point is added
    low = b.select(b.icmp_signed("!=", b.and_(flags, I32(RELU)), I32(0)), ir.Constant(F32, 0.0),
                   b.fsub(b.select(c_unsigned, ir.Constant(F32, 0.0), ir.Constant(F32, -128.0)), c_zero_f))
    high = b.fsub(b.select(c_unsigned, ir.Constant(F32, 255.0), ir.Constant(F32, 127.0)), c_zero_f)
    with counted_loop(b, const(0), m, MC, "mc") as i0:
        rows = minimum(b, b.sub(m, i0), const(MC))
        # rows [0, full) read in place (a prepacked A, VNNI: its whole panels of MR rows, then its
        # last rows as tiles of exactly 8, 4, 2 and 1 rows), the rest packed here
        whole = b.mul(b.sdiv(rows, const(v.mr)), const(v.mr))
        full = b.select(direct_a, rows, const(0)) if v.dot == "vnni" else const(0)
        first = b.add(i0, full)
        src = b.select(packed_a, _word_at(b, a, b.mul(first, row_words)), _byte_at(b, a, b.mul(first, lda)))
        b.call(pack_a, [src, b.select(packed_a, b.mul(row_words, const(4)), lda), b.sub(rows, full),
                        b.select(packed_a, b.mul(q, const(4)), k), b.select(packed_a, I8(0), a_flip), ap, a_sums])
        with counted_loop(b, j0, j1, v.nr, "nc") as jp:
            # B's panel: packed ahead (PACKED_B: its 32-column panel's words, from this column on) or here
            panel = b.add(b.mul(b.sdiv(jp, const(NR_MAX)), b.add(b.mul(q, const(NR_MAX)), const(NR_MAX))),
                          b.srem(jp, const(NR_MAX)))
            given_b = _word_at(b, bm, panel)
            with b.if_then(b.not_(packed)):
                b.call(pack_b, [bm, ldb, jp, n, k, b_flip, bp, b_sums])
            b_panel = b.select(packed, given_b, bp)
            b_panel_sums = b.select(packed, _word_at(b, given_b, b.mul(q, const(NR_MAX))), b_sums)
            stride = b.select(packed, const(NR_MAX), const(v.nr))
            cols = minimum(b, b.sub(n, jp), const(v.nr))
            with counted_loop(b, const(0), const(v.nr), 1, "bz") as cz:  # the panel's b zero points, moved
                j = minimum(b, b.add(jp, cz), b.sub(n, const(1)))
                given = b.load(_word_at(b, b_zeros, b.select(per_column, j, const(0))), typ=I32)
                zb = b.select(per_column, given, b_zero)
                b.store(b.sub(zb, shift), _word_at(b, b_zeros_panel, cz))

            def tile_at(ir_: ir.Value, tile_rows: ir.Value, direct: ir.Value) -> None:
                """The tile of rows ir_ .. ir_ + tile_rows (read in place if direct, else packed)."""
                in_place = _word_at(b, a, b.mul(b.add(i0, ir_), row_words))
                packed_rows = b.sub(ir_, full)
                a_panel = b.select(direct, in_place, _word_at(b, ap, b.mul(b.mul(b.sdiv(packed_rows, const(v.mr)), q),
                                                                          const(v.mr * v.words))))
                sums = b.select(direct, b.select(rows_in_place, zeros, _word_at(b, in_place, q)),
                                _word_at(b, a_sums, packed_rows))
                row = b.add(i0, ir_)
                dst = _byte_at(b, c, b.mul(b.add(b.mul(row, ldc), jp), c_bytes))
                epilogue = [requant, b.select(by_row, _word_at(b, bias, row), zeros),
                            b.select(by_column, _word_at(b, bias, jp), zeros),
                            b.select(by_row, _word_at(b, scale, row), ones),
                            b.select(by_column, _word_at(b, scale, jp), ones), low, high, c_zero]
                call_tile(b, tiles, tile_rows, [a_panel, b.select(direct, const(1), const(v.mr * v.words)),
                                                b.select(direct, row_words, const(v.words)), b_panel, stride, q, k,
                                                dst, ldc, tile_rows, cols, az, sums,
                                                b.select(direct, b.select(rows_in_place, const(0), row_words),
                                                         const(1)), b_zeros_panel, b_panel_sums,
                                                *epilogue])

            with counted_loop(b, const(0), whole, v.mr, "mr") as ir_:
                tile_at(ir_, const(v.mr), b.icmp_signed("<", ir_, full))
            rest = b.sub(rows, whole)
            with b.if_else(b.icmp_signed(">", full, whole)) as (exact, packed_rest):
                with exact:  # exact tiles, the largest first: a larger one would read rows past A's end
                    exact_tiles(b, whole, rest, v.mr, lambda at, h: tile_at(at, const(h), I1(1)))
                with packed_rest, b.if_then(b.icmp_signed(">", rest, const(0))):
                    tile_at(whole, rest, I1(0))
    b.ret_void()
    return fn


def _team_body(module: ir.Module, serial: ir.Function, v: Variant) -> ir.Function:
    """void body(i64 *words): thread t computes its run of whole column panels in its own workspace part;
    with A_IN_PLACE (nothing of A or B packed per call: a channels-last convolution's few column
    panels, its many rows), its run of whole MR-row tiles, all columns."""
    fn = ir.Function(module, openmp.BODY, serial.name + openmp.TEAM_SUFFIX)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args = openmp.from_words(b, fn.args[0], SERIAL_ARGS)
    m, n, k, a, lda, c, ldc, flags, ws, bias, scale = (args[i] for i in (0, 1, 2, 3, 4, 7, 8, 12, 13, 14, 15))
    own = _byte_at(b, ws, b.mul(openmp.thread_and_team(b)[0], _workspace_bytes(b, k)))
    with b.if_else(_by_rows(b, flags)) as (rows, columns):
        with rows:
            _, i0, i1 = openmp.thread_columns(b, m, v.mr)
            with b.if_then(b.icmp_signed("<", i0, i1)):
                requant = b.icmp_signed("!=", b.and_(flags, I32(REQUANTIZE)), I32(0))
                by_row = b.and_(requant, b.icmp_signed("!=", b.and_(flags, I32(BY_ROW)), I32(0)))
                c_bytes = b.select(requant, const(1), const(4))
                shifted = list(args)
                shifted[0], shifted[3] = b.sub(i1, i0), _byte_at(b, a, b.mul(i0, lda))
                shifted[7] = _byte_at(b, c, b.mul(b.mul(i0, ldc), c_bytes))
                shifted[14] = b.select(by_row, _word_at(b, bias, i0), bias)
                shifted[15] = b.select(by_row, _word_at(b, scale, i0), scale)
                b.call(serial, [*shifted[:13], own, *shifted[14:], const(0), n])
        with columns:
            _, j0, j1 = openmp.thread_columns(b, n, v.nr)
            with b.if_then(b.icmp_signed("<", j0, j1)):
                b.call(serial, [*args[:13], own, *args[14:], j0, j1])
    b.ret_void()
    return fn


def _by_rows(b: ir.IRBuilder, flags: ir.Value) -> ir.Value:
    """A team splits the rows (A_IN_PLACE with PACKED_B: nothing packed per call), else the column panels."""
    both = I32(A_IN_PLACE | PACKED_B)
    return b.icmp_signed("==", b.and_(flags, both), both)


def define_qgemm(module: ir.Module, v: Variant) -> ir.Function:
    """Define `ncc_qgemm` for variant `v` in `module` (filling in its declaration, if any)."""
    serial = _serial(module, v)
    fn = function_to_define(module, SYMBOL, SIGNATURE)
    args = list(fn.args)
    m, n, k, threads = args[0], args[1], args[2], args[THREADS]
    serial_args = args[:THREADS] + args[THREADS + 1:]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    panels = b.select(_by_rows(b, args[12]), b.sdiv(b.add(m, const(v.mr - 1)), const(v.mr)),
                      b.sdiv(b.add(n, const(v.nr - 1)), const(v.nr)))
    team = minimum(b, threads, panels)
    team = b.select(b.icmp_signed("<", b.mul(b.mul(m, n), k), const(TEAM_MIN_WORK)), const(1), team)
    openmp.alone_or_on_team(b, serial, [*serial_args, const(0), n], _team_body(module, serial, v), serial_args, team)
    b.ret_void()
    return fn


def qgemm_module(variant: Variant, triple: str = "", data_layout: str = "") -> ir.Module:
    """An llvmlite module defining ncc_qgemm for `variant` alone (for tests and benchmarks)."""
    return kernel_module(f"{SYMBOL}_{variant.tag}", triple, data_layout, lambda m: define_qgemm(m, variant))


def callable_qgemm(address: int):
    """ncc_qgemm at `address` as a ctypes function (tests and benchmarks call it directly)."""
    import ctypes

    P, I, W = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    return ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, W, W, P, W, P, I, P, P, W)(address)
