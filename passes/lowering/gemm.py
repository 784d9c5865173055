"""A register-blocked float32 GEMM, generated as LLVM IR for the host's vector ISA.

    C[M, N] (+)= A[M, K] @ B[K, N]        row-major, leading dimensions given

The structure is BLIS's (and onnxruntime's MLAS): the micro-kernel keeps an
MR x NR tile of C in vector registers -- NR = 2 vectors of the host's lanes,
MR rows as many as the register file holds -- and streams K through it from
packed panels: per k, NR/lanes vector loads of B, MR broadcasts of A and
MR * NR/lanes fused multiply-adds. Around it, the loops of the GotoBLAS
algorithm block C for the caches: NC columns of B (packed once per KC x NC
block, in NR-wide panels, kept in L2/L3), MC rows of A (packed into MR-tall
panels, kept in L2), KC deep (a panel pair fits L1). A row-major A of at
most IN_PLACE_A_ROWS rows, not 4 KiB apart (a transformer's activations, a
small batch), is not packed: the tiles broadcast from its rows where they
are, the last rows as tiles of exactly 8, 4, 2 and 1 rows.

`Tile.for_features` picks the tile from the CPU's features, never from one
machine: AVX-512 (32 vector registers) 14 x 32, AVX/AVX2 (16 registers)
6 x 16, SSE 6 x 8; every variant's code is valid on any host that has its ISA,
so an AVX-512 host runs and tests the AVX2 variant too.

Loop-level code calls one symbol, whatever the host:

    void ncc_sgemm(i64 M, i64 N, i64 K, ptr A, i64 a_row_stride, i64 a_col_stride,
                   ptr B, i64 ldb, ptr C, i64 ldc, i32 flags, ptr workspace, i64 threads,
                   ptr bias, ptr residual)

(A's element (i, k) at A[i * a_row_stride + k * a_col_stride]: a transposed A
costs nothing; C row-major; `flags`: ACCUMULATE (1) adds to C, else C is
overwritten; PACKED_B (2): B is prepacked panels [ceil(N / 32), K, 32], the
layout of nn.packed_matmul's weight (packed once, not on every call), else B
is row-major with ldb, or TRANSPOSED_B (64): B^T is, [N, K] with ldb (packed
like A, so a transposed B costs no more than a B that is packed); BIAS_ROWS (4) / BIAS_COLS (8): bias[i] / bias[j] added
to the product, RESIDUAL (128): + residual[i * ldc + j] (a residual
connection: C's shape and row length), then RELU (16): max(., 0), or RELU6
(32): min(max(., 0), 6), all in the tile before it is stored: a fused
layer's epilogue costs no pass over C.) The engine defines it for the CPU it compiles for (`define_gemm`),
so a kernel's IR does not depend on the host: once per process as a library
of its own that native kernels link against (`engine.load_gemm`), or inside
the module for `ncc-translate --emit-llvm`; the compile cache's keys cover
the choice (the host description and a digest of this code). The workspace, 64-byte aligned, holds the packed panels:
`threads * workspace_floats(M, N, K)` floats, for any variant.

With threads > 1 the columns of C are split into that many runs of whole
NR_MAX-column panels, one per thread of an OpenMP team (libgomp's
`GOMP_parallel`, as MLIR's OpenMP lowering calls it), each thread packing
its own part of B (and the whole of A) into its own part of the workspace;
a product of fewer than TEAM_MIN_WORK multiply-adds runs on the calling
thread alone (waking the team would cost more than it saves). Every element of C is computed by the same operations in the same order for
any thread count: the results are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ncc.dialects.nn.matmul import PANEL  # a prepacked B's panel width (nn.packed_matmul's layout)
from ncc.passes.lowering import openmp
from ncc.passes.lowering.llvmlite_ir import F32, I32, I64, PTR
from ncc.passes.lowering.llvmlite_ir import at_least_one as _c_max, const as _c, counted_loop as _loop
from ncc.passes.lowering.llvmlite_ir import float_at as _at, function_to_define, lane_mask as _mask, minimum as _min
from ncc.passes.lowering.llvmlite_ir import kernel_module, store_vector as _store_vector, transpose_block as _transpose_block

SYMBOL = "ncc_sgemm"
SIGNATURE = ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, I64, I64, PTR, I64, PTR, I64, I32, PTR, I64, PTR, PTR])
SERIAL = ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, I64, I64, PTR, I64, PTR, I64, I32, PTR, PTR, PTR])
KC, MC, NC = 256, 168, 4096  # cache blocking, the same for every variant
TEAM_MIN_WORK = 1 << 21  # multiply-adds below which threads > 1 still runs one thread (~10 us of work)
NR_MAX, MR_MAX = 32, 14  # the largest tile of any variant (every NR divides NR_MAX)
# The flags argument: add to C; B is prepacked panels; the epilogue (applied to
# the finished product): + bias[i] per row, + bias[j] per column, then relu;
# B is given transposed ([N, K], rows ldb apart); + residual[i, j] (rows ldc apart), before the activation.
ACCUMULATE, PACKED_B, BIAS_ROWS, BIAS_COLS, RELU, RELU6, TRANSPOSED_B, RESIDUAL = 1, 2, 4, 8, 16, 32, 64, 128
ACTIVATIONS = RELU | RELU6
IN_PLACE_ROWS = 256  # at most this many rows of A: B is read in place, not packed
IN_PLACE_A_ROWS = 64  # at most this many rows of a row-major A: A is read in place, not packed
ALIASING_LDB = 1024  # ... unless its rows are a multiple of this many floats (4 KiB) apart
PREFETCH_ROWS_APART = 1024  # a row-major A's packing prefetches its next K block when rows are this far apart


@dataclass(frozen=True)
class Tile:
    """The micro-kernel's register tile and the cache blocking around it."""

    lanes: int  # floats per vector register
    mr: int  # rows of C held in registers
    nr_vectors: int  # vectors per row: NR = nr_vectors * lanes columns
    kc: int = KC  # depth of one packed panel pair (A: MR x KC, B: KC x NR)
    mc: int = MC  # rows of A packed at a time (MC x KC floats stay in L2)
    nc: int = NC  # columns of B packed at a time (KC x NC floats)

    @property
    def nr(self) -> int:
        return self.lanes * self.nr_vectors

    @property
    def tag(self) -> str:
        return f"{self.mr}x{self.nr}"

    @staticmethod
    def for_features(features: set[str] | frozenset[str]) -> "Tile":
        """The tile for a CPU with these LLVM feature names (e.g. {"avx2", "fma"}):
        accumulators + NR/lanes B vectors + 1 broadcast within the register file."""
        if "avx512f" in features:  # 32 zmm: 14 x 2 accumulators, 2 of B, 1 of A
            return Tile(lanes=16, mr=14, nr_vectors=2)
        if "avx" in features or "avx2" in features:  # 16 ymm: 6 x 2 accumulators, 2 of B, 1 of A
            return Tile(lanes=8, mr=6, nr_vectors=2)
        return Tile(lanes=4, mr=6, nr_vectors=2)  # SSE: 16 xmm


VARIANTS = {"avx512": Tile.for_features({"avx512f"}), "avx2": Tile.for_features({"avx", "avx2", "fma"}),
            "sse": Tile.for_features(set())}
REQUIRES = {"avx512": {"avx512f"}, "avx2": {"avx", "fma"}, "sse": set()}  # what a variant's host needs

# LLVM's CPU names with AVX-512 or AVX2, for code compiled for a named CPU
# (ncc-translate --emit-llvm --target-cpu); any other name gets SSE, valid on every x86-64.
AVX512_CPUS = ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
               "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
               "graniterapids", "graniterapids-d", "znver4", "znver5", "x86-64-v4", "knl", "knm")
AVX2_CPUS = ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake",
             "arrowlake-s", "lunarlake", "gracemont", "sierraforest", "grandridge", "clearwaterforest",
             "znver1", "znver2", "znver3", "x86-64-v3", "bdver4")


def tile_for_cpu(cpu: str, features: set[str] | None = None) -> Tile:
    """The tile for code compiled for `cpu` (LLVM's name; with the host's
    `features` when it is the host)."""
    if features is not None:
        return Tile.for_features(features)
    if cpu in AVX512_CPUS:
        return VARIANTS["avx512"]
    if cpu in AVX2_CPUS:
        return VARIANTS["avx2"]
    return VARIANTS["sse"]


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def workspace_floats(m: int, n: int, k: int) -> int:
    """Floats of packed panels for a product of these sizes (m: the most rows
    one call has, or more), enough for every variant: one KC x NC block of B
    and one MC x KC block of A, each rounded up to whole panels (NR divides
    NR_MAX; MR rounding adds at most MR_MAX - 1 rows)."""
    kc, nc, mc = min(KC, max(k, 1)), min(NC, max(n, 1)), min(MC, max(m, 1))
    return kc * (_round_up(nc, NR_MAX) + mc + MR_MAX - 1)


# ---------------------------------------------------------------------------
# The micro-kernel


def _micro_kernel(module: ir.Module, t: Tile, rows: int, direct: bool = False) -> ir.Function:
    """tile(kc, a_panel, b_panel, b_stride, C, ldc, m, n, flags, row_bias, col_bias,
    added[, lda]): C[:m, :n] = (added[:m, :n] +) the MR x NR product of an MR x kc panel of A (k-major: MR values per
    k; `direct`: A's rows where they are, lda apart, exactly `rows` of them read) and a kc x NR panel of B
    (NR values per k, rows b_stride apart: NR when packed, B's own row length when read in place),
    accumulated in registers. `rows` <= MR of the panel's rows are computed (a tile for the last rows
    of A, or a small batch: no work on rows that do not exist)."""
    vec = ir.VectorType(F32, t.lanes)
    fnty = ir.FunctionType(ir.VoidType(), [I64, PTR, PTR, I64, PTR, I64, I64, I64, I32, PTR, PTR, PTR]
                           + ([I64] if direct else []))
    fn = ir.Function(module, fnty, f"ncc_sgemm_tile_{t.tag}" + ("" if rows == t.mr else f"_rows{rows}")
                     + ("_direct" if direct else ""))
    fn.linkage = "internal"
    # added: where the values accumulated into are read (C itself, or the residual), rows ldc apart
    kc, ap, bp, b_stride, cp, ldc, m, n, acc_flag, row_bias, col_bias, added = fn.args[:12]
    lda = fn.args[12] if direct else None
    for a in (ap, bp, cp):
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = module.globals.get(f"llvm.fma.v{t.lanes}f32") or ir.Function(
        module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{t.lanes}f32")
    vmax, vmin = (module.globals.get(f"llvm.{f}.v{t.lanes}f32") or ir.Function(  # NaN stays NaN (arith's)
        module, ir.FunctionType(vec, [vec, vec]), f"llvm.{f}.v{t.lanes}f32") for f in ("maximum", "minimum"))
    zero = ir.Constant(vec, [0.0] * t.lanes)
    entry = b.block
    head = b.append_basic_block("k.head")
    body = b.append_basic_block("k.body")
    done = b.append_basic_block("k.done")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64, "k")
    k.add_incoming(_c(0), entry)
    accs = [[b.phi(vec, f"c{r}_{v}") for v in range(t.nr_vectors)] for r in range(rows)]
    for row in accs:
        for a in row:
            a.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", k, kc), body, done)
    b.position_at_end(body)
    bk = _at(b, bp, b.mul(k, b_stride))
    bv = [b.load(_at(b, bk, _c(v * t.lanes)), typ=vec, align=4) for v in range(t.nr_vectors)]
    ak = _at(b, ap, k if direct else b.mul(k, _c(t.mr)))
    new = []
    for r in range(rows):
        a = b.load(_at(b, ak, b.mul(_c(r), lda) if direct else _c(r)), typ=F32, align=4)
        splat = b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), a, I32(0)),
                                 ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(I32, t.lanes), [0] * t.lanes))
        new.append([b.call(fma, [splat, bv[v], accs[r][v]]) for v in range(t.nr_vectors)])
    k.add_incoming(b.add(k, _c(1)), b.block)
    for r in range(rows):
        for v in range(t.nr_vectors):
            accs[r][v].add_incoming(new[r][v], b.block)
    b.branch(head)

    # Store: the whole tile with vector stores, or an edge tile through a buffer.
    b.position_at_end(done)
    full = b.and_(b.icmp_signed("==", m, _c(rows)), b.icmp_signed("==", n, _c(t.nr)))
    whole = b.append_basic_block("store.whole")
    edge = b.append_basic_block("store.edge")
    ret = b.append_basic_block("ret")
    adding = b.icmp_signed("!=", b.and_(acc_flag, I32(ACCUMULATE)), I32(0))
    relu = b.icmp_signed("!=", b.and_(acc_flag, I32(RELU)), I32(0))
    relu6 = b.icmp_signed("!=", b.and_(acc_flag, I32(RELU6)), I32(0))
    six = ir.Constant(F32, 6.0)
    b.cbranch(full, whole, edge)

    # The epilogue, on the last K block: + row_bias[r] + col_bias[j] (pointers to
    # zeros when there is none), then relu or relu6 if asked.
    b.position_at_end(whole)
    zero_v = ir.Constant(vec, [0.0] * t.lanes)
    col = [b.load(_at(b, col_bias, _c(v * t.lanes)), typ=vec, align=4) for v in range(t.nr_vectors)]
    for r in range(rows):
        row = _at(b, cp, b.mul(_c(r), ldc))
        src = _at(b, added, b.mul(_c(r), ldc))
        rb = b.load(_at(b, row_bias, _c(r)), typ=F32)
        rb = b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), rb, I32(0)),
                              ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(I32, t.lanes), [0] * t.lanes))
        for v in range(t.nr_vectors):
            p = _at(b, row, _c(v * t.lanes))
            old = b.load(_at(b, src, _c(v * t.lanes)), typ=vec, align=4)
            val = b.select(adding, b.fadd(old, accs[r][v]), accs[r][v])
            val = b.fadd(b.fadd(val, rb), col[v])
            val = b.select(relu, b.call(vmax, [val, zero_v]), val)
            val = b.select(relu6, b.call(vmin, [b.call(vmax, [val, zero_v]), ir.Constant(vec, [6.0] * t.lanes)]),
                           val)
            _store_vector(b, val, p)
    b.branch(ret)

    b.position_at_end(edge)
    slot = b.alloca(F32, size=_c(rows * t.nr))
    slot.align = 64
    buf = b.bitcast(slot, PTR)
    for r in range(rows):
        for v in range(t.nr_vectors):
            _store_vector(b, accs[r][v], _at(b, buf, _c(r * t.nr + v * t.lanes)))
    with _loop(b, _c(0), m, 1, "er") as r:
        row = _at(b, cp, b.mul(r, ldc))
        added_row = _at(b, added, b.mul(r, ldc))
        src = _at(b, buf, b.mul(r, _c(t.nr)))
        rb = b.load(_at(b, row_bias, r), typ=F32)
        with _loop(b, _c(0), n, 1, "ec") as j:
            dst = _at(b, row, j)
            val = b.load(_at(b, src, j), typ=F32)
            old = b.load(_at(b, added_row, j), typ=F32)
            val = b.fadd(b.fadd(b.select(adding, b.fadd(old, val), val), rb), b.load(_at(b, col_bias, j), typ=F32))
            negative = b.fcmp_ordered("<", val, ir.Constant(F32, 0.0))  # NaN stays NaN
            val = b.select(b.and_(b.or_(relu, relu6), negative), ir.Constant(F32, 0.0), val)
            b.store(b.select(b.and_(relu6, b.fcmp_ordered(">", val, six)), six, val), dst)
    b.branch(ret)
    b.position_at_end(ret)
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------
# Packing


def _pack_b(module: ir.Module, t: Tile) -> ir.Function:
    """pack_b(kc, nc, B, ldb, out): B[:kc, :nc] as NR-wide panels, each kc x NR
    row-major (columns past nc are zeros)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64, I64, PTR, I64, PTR]),
                     f"ncc_sgemm_pack_b_{t.tag}")
    fn.linkage = "internal"
    kc, nc, src, ldb, out = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with _loop(b, _c(0), nc, t.nr, "j") as j0:
        cols = _min(b, b.sub(nc, j0), _c(t.nr))
        panel = _at(b, out, b.mul(j0, kc))
        full = b.icmp_signed("==", cols, _c(t.nr))
        with _loop(b, _c(0), kc, 1, "k") as k:
            row = _at(b, src, b.add(b.mul(k, ldb), j0))
            dst = _at(b, panel, b.mul(k, _c(t.nr)))
            with b.if_else(full) as (then, otherwise):
                with then:  # a whole row of the panel: one straight copy (vectorized)
                    vec = ir.VectorType(F32, t.nr)
                    _store_vector(b, b.load(row, typ=vec, align=4), dst)
                with otherwise:
                    with _loop(b, _c(0), _c(t.nr), 1, "jj") as jj:
                        inside = b.icmp_signed("<", jj, cols)
                        safe = b.select(inside, jj, _c(0))
                        v = b.load(_at(b, row, safe), typ=F32)
                        b.store(b.select(inside, v, ir.Constant(F32, 0.0)), _at(b, dst, jj))
    b.ret_void()
    return fn


def _pack_a(module: ir.Module, t: Tile, mr: int | None = None, name: str = "a") -> ir.Function:
    """pack_a(mc, kc, A, rs, cs, out): A[:mc, :kc] (element (i, k) at A[i * rs +
    k * cs]) as MR-tall panels, each k-major (MR values per k; rows past mc are
    zeros). A whole panel, transposed A (rs = 1): one vector load and store
    per k; row-major A (cs = 1): per `lanes` values of k, one vector from each
    of the MR rows (zeros up to a multiple of lanes, and for the rows past mc),
    transposed in registers into the columns, MR values of each stored; else
    (and the last k) one row at a time. With mr = NR, the packing of a transposed B (its rows are C's
    columns): the B panels pack_b makes."""
    mr = mr or t.mr
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64, I64, PTR, I64, I64, PTR]),
                     f"ncc_sgemm_pack_{name}_{t.tag}")
    fn.linkage = "internal"
    mc, kc, src, rs, cs, out = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    column = ir.VectorType(F32, mr)
    prefetch = module.globals.get("llvm.prefetch.p0") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]), "llvm.prefetch.p0")
    lanes = ir.VectorType(F32, t.lanes)
    chunks = -(-mr // t.lanes)  # blocks of `lanes` rows the MR rows span: 1 or 2 (SSE's 6 of 4, any NR)
    assert chunks <= 2, t

    def by_rows(i0: ir.Value, rows: ir.Value, panel: ir.Value, k_start: ir.Value) -> None:
        for r in range(mr):
            inside = b.icmp_signed("<", _c(r), rows)
            row = _at(b, src, b.mul(b.add(i0, b.select(inside, _c(r), _c(0))), rs))
            with _loop(b, k_start, kc, 1, f"k{r}") as k:
                v = b.load(_at(b, row, b.mul(k, cs)), typ=F32)
                b.store(b.select(inside, v, ir.Constant(F32, 0.0)),
                        _at(b, panel, b.add(b.mul(k, _c(mr)), _c(r))))

    with _loop(b, _c(0), mc, mr, "i") as i0:
        rows = _min(b, b.sub(mc, i0), _c(mr))
        panel = _at(b, out, b.mul(i0, kc))
        full = b.icmp_signed("==", rows, _c(mr))
        with b.if_else(b.and_(full, b.icmp_signed("==", rs, _c(1)))) as (then, otherwise):
            with then:  # A transposed: the panel's MR values of each k side by side, one vector
                top = _at(b, src, i0)
                with _loop(b, _c(0), kc, 1, "kv") as k:
                    v = b.load(_at(b, top, b.mul(k, cs)), typ=column, align=4)
                    _store_vector(b, v, _at(b, panel, b.mul(k, _c(mr))))
            with otherwise:
                with b.if_else(b.icmp_signed("==", cs, _c(1))) as (rowwise, other):
                    with rowwise:  # row-major A: lanes x lanes blocks transposed in registers
                        inside = [b.icmp_signed("<", _c(r), rows) for r in range(mr)]
                        starts = [_at(b, src, b.mul(b.add(i0, b.select(inside[r], _c(r), _c(0))), rs))
                                  for r in range(mr)]
                        blocks = b.mul(b.sdiv(kc, _c(t.lanes)), _c(t.lanes))
                        zero = ir.Constant(lanes, None)

                        def transposed(k0: ir.Value, prefetching: bool, partial: bool = False) -> None:
                            loaded = [b.load(_at(b, p, k0), typ=lanes, align=4) for p in starts]
                            if partial:  # the last rows' panel: rows past mc are zeros (row 0 read in their place)
                                nothing = ir.Constant(lanes, [0.0] * t.lanes)
                                loaded = [v if r == 0 else b.select(inside[r], v, nothing) for r, v in enumerate(loaded)]
                            if prefetching:
                                ahead = b.add(k0, kc)
                                for p in starts:
                                    b.call(prefetch, [_at(b, p, ahead), I32(0), I32(2), I32(1)])
                            loaded += [zero] * (chunks * t.lanes - mr)
                            parts = [_transpose_block(b, loaded[j * t.lanes:(j + 1) * t.lanes])
                                     for j in range(chunks)]
                            for kk in range(t.lanes):  # column kk: its MR values, from one or two blocks
                                col = parts[0][kk] if chunks == 1 else b.shuffle_vector(
                                    parts[0][kk], parts[1][kk], _mask(list(range(2 * t.lanes))))
                                col = b.shuffle_vector(col, col, _mask(list(range(mr))))
                                _store_vector(b, col, _at(b, panel, b.mul(b.add(k0, _c(kk)), _c(mr))))
                        # rows PREFETCH_ROWS_APART floats apart or more: the next K block of these rows
                        # into L2 (the next block's or the next call's pack): MR rows pages apart are more
                        # streams than the hardware prefetcher follows (conv_weight_grad's dy rows: its
                        # stem 25.3 -> 23.0 ms on znver4); nearer rows (a transformer's activations) need
                        # none, and the prefetches would cost 2-3 % of its small products
                        with b.if_else(full) as (whole_panel, last_rows):
                            with whole_panel:
                                with b.if_else(b.icmp_signed(">=", rs, _c(PREFETCH_ROWS_APART))) as (far, near):
                                    with far, _loop(b, _c(0), blocks, t.lanes, "kbf") as k0:
                                        transposed(k0, True)
                                    with near, _loop(b, _c(0), blocks, t.lanes, "kb") as k0:
                                        transposed(k0, False)
                            with last_rows, _loop(b, _c(0), blocks, t.lanes, "kbp") as k0:
                                transposed(k0, False, True)
                        by_rows(i0, rows, panel, blocks)
                    with other:
                        by_rows(i0, rows, panel, _c(0))
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------
# The driver: the GotoBLAS loops


def _serial_gemm(module: ir.Module, t: Tile) -> ir.Function:
    """The GEMM on one thread: the GotoBLAS loops around the micro-kernel."""
    tiles = {r: _micro_kernel(module, t, r) for r in tile_heights(t.mr)}
    direct_tiles = {r: _micro_kernel(module, t, r, direct=True) for r in tile_heights(t.mr)}
    pack_a, pack_b, pack_bt = _pack_a(module, t), _pack_b(module, t), _pack_a(module, t, t.nr, "bt")
    fn = ir.Function(module, SERIAL, f"ncc_sgemm_serial_{t.tag}")
    fn.linkage = "internal"
    M, N, K, A, rs, cs, B, ldb, C, ldc, flags, ws, bias, residual = fn.args
    for a in (A, B, C, ws):
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    accumulate = b.and_(flags, I32(ACCUMULATE))
    with_residual = b.icmp_signed("!=", b.and_(flags, I32(RESIDUAL)), I32(0))
    zeros = _zeros(module)
    row_bias = b.icmp_signed("!=", b.and_(flags, I32(BIAS_ROWS)), I32(0))
    col_bias = b.icmp_signed("!=", b.and_(flags, I32(BIAS_COLS)), I32(0))
    prepacked = b.icmp_signed("!=", b.and_(flags, I32(PACKED_B)), I32(0))
    transposed = b.icmp_signed("!=", b.and_(flags, I32(TRANSPOSED_B)), I32(0))
    bpack = ws  # then the A panels, after the B block of this call's size
    apack = _at(b, ws, b.mul(_min(b, K, _c(t.kc)),
                             b.mul(b.sdiv(b.add(_min(b, N, _c(t.nc)), _c(NR_MAX - 1)), _c(NR_MAX)), _c(NR_MAX))))
    # Few rows of A: B is read where it is (a panel, kc rows of NR floats, is
    # loaded into L1 by the first row panel and reused there by the others;
    # packing it would cost a pass over B for little reuse), except the last,
    # partial panel (its loads would run past B's rows). Rows a multiple of
    # 4 KiB apart fall into the same few L1 sets and evict each other: packed,
    # as is B of many rows of A, once per K x N block, its panels reused by
    # every row panel. (Measured on znver5 with the AVX-512 and the AVX2
    # variants, on convolutions' and MLPs' shapes: in place 0.72-0.98x the
    # time where this holds, 1.05-1.4x with rows 4 KiB apart.) Or B is
    # packed already.
    few = b.icmp_signed("<=", M, _c(IN_PLACE_ROWS))
    # A few rows of a row-major A, not 4 KiB apart: read where they are by the tiles (the broadcasts load
    # from MR rows as well as from a packed panel; packing 32 x 128 floats into 14-float columns cost a
    # transformer's small products more than the tiles save)
    direct_a = b.and_(b.and_(b.icmp_signed("<=", M, _c(IN_PLACE_A_ROWS)), b.icmp_signed("==", cs, _c(1))),
                      b.icmp_signed("!=", b.srem(rs, _c(ALIASING_LDB)), _c(0)))
    aliasing = b.icmp_signed("==", b.srem(ldb, _c(ALIASING_LDB)), _c(0))
    in_place = b.and_(b.and_(few, b.not_(aliasing)), b.not_(b.or_(prepacked, transposed)))
    # K in blocks of equal depth, at most KC (576 = 288 + 288, not 256 + 256 + 64: every
    # block loads and stores the C tile once, so a shallow last block costs as much as a deep one)
    blocks = b.sdiv(b.add(K, _c(t.kc - 1)), _c(t.kc))
    depth = b.sdiv(b.add(K, b.sub(blocks, _c(1))), _c_max(b, blocks))
    with _loop(b, _c(0), N, t.nc, "jc") as jc:
        nc = _min(b, b.sub(N, jc), _c(t.nc))
        with _loop(b, _c(0), K, depth, "pc") as pc:
            kc = _min(b, b.sub(K, pc), depth)
            # the first K block writes C (or adds to C, if asked, or to the residual);
            # the others add to C; the last applies the epilogue (bias, relu)
            first = b.icmp_signed("==", pc, _c(0))
            from_residual = b.and_(first, with_residual)
            adding = b.select(first, b.select(with_residual, I32(ACCUMULATE), accumulate), I32(ACCUMULATE))
            last = b.icmp_signed(">=", b.add(pc, kc), K)
            tile_flags = b.or_(adding, b.select(last, b.and_(flags, I32(ACTIVATIONS)), I32(0)))
            bsrc = _at(b, B, b.add(b.mul(pc, ldb), jc))
            with b.if_else(transposed) as (given_t, given_rows):
                with given_t:  # B^T's rows jc.. from column pc: NR-tall panels of B^T are B's panels
                    b.call(pack_bt, [nc, kc, _at(b, B, b.add(b.mul(jc, ldb), pc)), ldb, _c(1), bpack])
                with given_rows, b.if_then(b.not_(prepacked)):
                    with b.if_else(in_place) as (then, otherwise):
                        with then:
                            whole = b.mul(b.sdiv(nc, _c(t.nr)), _c(t.nr))
                            with b.if_then(b.icmp_signed("<", whole, nc)):
                                b.call(pack_b, [kc, b.sub(nc, whole), _at(b, bsrc, whole), ldb,
                                                _at(b, bpack, b.mul(whole, kc))])
                        with otherwise:
                            b.call(pack_b, [kc, nc, bsrc, ldb, bpack])
            with _loop(b, _c(0), M, t.mc, "ic") as ic:
                mc = _min(b, b.sub(M, ic), _c(t.mc))
                with b.if_then(b.not_(direct_a)):
                    b.call(pack_a, [mc, kc, _at(b, A, b.add(b.mul(ic, rs), b.mul(pc, cs))), rs, cs, apack])
                with _loop(b, _c(0), nc, t.nr, "jr") as jr:
                    n = _min(b, b.sub(nc, jr), _c(t.nr))
                    # prepacked: panel (jc + jr) / PANEL of K x PANEL, from row pc, column (jc + jr) % PANEL
                    col = b.add(jc, jr)
                    given = _at(b, B, b.add(b.mul(b.sdiv(col, _c(PANEL)), b.mul(K, _c(PANEL))),
                                            b.add(b.mul(pc, _c(PANEL)), b.srem(col, _c(PANEL)))))
                    own = b.or_(b.not_(in_place), b.icmp_signed("<", n, _c(t.nr)))
                    bpanel = b.select(prepacked, given, b.select(own, _at(b, bpack, b.mul(jr, kc)), _at(b, bsrc, jr)))
                    stride = b.select(prepacked, _c(PANEL), b.select(own, _c(t.nr), ldb))
                    def tile_at(ir_: ir.Value, m: ir.Value, rows: int | None = None) -> None:
                        """The tile of rows ir_ .. ir_ + m of this block (`rows`: A read in place, exactly)."""
                        at = b.add(b.mul(b.add(ic, ir_), ldc), col)
                        c = _at(b, C, at)
                        rb = b.select(b.and_(last, row_bias), _at(b, bias, b.add(ic, ir_)), zeros)
                        cb = b.select(b.and_(last, col_bias), _at(b, bias, col), zeros)
                        added = b.select(from_residual, _at(b, residual, at), c)
                        args = [kc, _at(b, apack, b.mul(ir_, kc)), bpanel, stride, c, ldc, m, n, tile_flags, rb, cb,
                                added]
                        if rows is None:
                            call_tile(b, tiles, m, args)
                        else:
                            args[1] = _at(b, A, b.add(b.mul(b.add(ic, ir_), rs), pc))
                            b.call(direct_tiles[rows], [*args, rs])

                    whole = b.mul(b.sdiv(mc, _c(t.mr)), _c(t.mr))
                    with b.if_else(direct_a) as (in_place_a, packed_a):
                        with in_place_a:  # whole tiles, then the last rows as exact tiles (8, 4, 2, 1 rows)
                            with _loop(b, _c(0), whole, t.mr, "ird") as ir_:
                                tile_at(ir_, _c(t.mr), t.mr)
                            exact_tiles(b, whole, b.sub(mc, whole), t.mr, lambda at, h: tile_at(at, _c(h), h))
                        with packed_a, _loop(b, _c(0), mc, t.mr, "ir") as ir_:
                            tile_at(ir_, _min(b, b.sub(mc, ir_), _c(t.mr)))
    # K = 0: a product over nothing, 0, and the epilogue (what C or the residual adds, bias, relu)
    with b.if_then(b.icmp_signed("==", K, _c(0))):
        zero = ir.Constant(F32, 0.0)
        with _loop(b, _c(0), M, 1, "zi") as i:
            with _loop(b, _c(0), N, 1, "zj") as j:
                at = b.add(b.mul(i, ldc), j)
                v = b.select(b.icmp_signed("!=", accumulate, I32(0)), b.load(_at(b, C, at), typ=F32), zero)
                v = b.fadd(v, b.select(with_residual, b.load(_at(b, b.select(with_residual, residual, C), at), typ=F32),
                                       zero))
                for given, index in ((row_bias, i), (col_bias, j)):  # the zeros' first element where none
                    term = b.load(_at(b, b.select(given, bias, zeros), b.select(given, index, _c(0))), typ=F32)
                    v = b.fadd(v, term)
                acts = b.and_(flags, I32(ACTIVATIONS))
                v = b.select(b.and_(b.icmp_signed("!=", acts, I32(0)), b.fcmp_ordered("<", v, zero)), zero, v)
                six = ir.Constant(F32, 6.0)
                relu6 = b.icmp_signed("!=", b.and_(flags, I32(RELU6)), I32(0))
                b.store(b.select(b.and_(relu6, b.fcmp_ordered(">", v, six)), six, v), _at(b, C, at))
    b.ret_void()
    return fn


def _zeros(module: ir.Module) -> ir.Value:
    """A constant of MC + NR_MAX zeros: the bias of a product without one."""
    g = module.globals.get("ncc_sgemm_zeros")
    if g is None:
        arr = ir.ArrayType(F32, MC + NR_MAX)
        g = ir.GlobalVariable(module, arr, "ncc_sgemm_zeros")
        g.linkage, g.global_constant, g.align = "internal", True, 64
        g.initializer = ir.Constant(arr, None)
    return g.gep([ir.Constant(I32, 0), ir.Constant(I32, 0)])  # &zeros[0], a float pointer as _at's


def tile_heights(mr: int) -> list[int]:
    """The rows of the tiles a GEMM with MR-row tiles defines: MR, and 1, 2, 4
    and 8 for the last rows of A (no work on rows that do not exist)."""
    return sorted({r for r in (1, 2, 4, 8) if r < mr} | {mr})


def exact_tiles(b: ir.IRBuilder, whole: ir.Value, rest: ir.Value, mr: int, tile) -> None:
    """tile(first row, height) for the `rest` (< mr) rows after `whole` as tiles of exactly 8, 4, 2 and 1
    rows, the largest first: a tile read in place must not read rows past the operand's end."""
    for piece in reversed(tile_heights(mr)[:-1]):
        with b.if_then(b.icmp_signed("!=", b.and_(rest, _c(piece)), _c(0))):
            tile(b.add(whole, b.and_(rest, _c(-2 * piece))), piece)


def call_tile(b: ir.IRBuilder, tiles: dict[int, ir.Function], m: ir.Value, args: list) -> None:
    """The tile of the fewest rows that holds m (if m <= 1: ..., elif m <= 2: ...)."""
    rows = sorted(tiles)
    if len(rows) == 1:
        b.call(tiles[rows[0]], args)
        return
    with b.if_else(b.icmp_signed("<=", m, _c(rows[0]))) as (then, otherwise):
        with then:
            b.call(tiles[rows[0]], args)
        with otherwise:
            call_tile(b, {r: tiles[r] for r in rows[1:]}, m, args)


def _workspace_floats(b: ir.IRBuilder, M: ir.Value, N: ir.Value, K: ir.Value) -> ir.Value:
    """workspace_floats(M, N, K), at run time."""
    one = _c(1)
    kc = _min(b, b.select(b.icmp_signed("<", K, one), one, K), _c(KC))
    nc = _min(b, b.select(b.icmp_signed("<", N, one), one, N), _c(NC))
    mc = _min(b, b.select(b.icmp_signed("<", M, one), one, M), _c(MC))
    ncr = b.mul(b.sdiv(b.add(nc, _c(NR_MAX - 1)), _c(NR_MAX)), _c(NR_MAX))
    return b.mul(kc, b.add(b.add(ncr, mc), _c(MR_MAX - 1)))


def define_gemm(module: ir.Module, t: Tile) -> ir.Function:
    """Define `ncc_sgemm` for tile `t` in `module` (filling in its declaration,
    if the module has one): the serial GEMM, run by one thread or split over
    column panels by an OpenMP team."""
    serial = _serial_gemm(module, t)
    fn = function_to_define(module, SYMBOL, SIGNATURE)
    args = list(fn.args)
    M, N, K, A, rs, cs, B, ldb, C, ldc, flags, ws, threads, bias, residual = args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    panels = b.sdiv(b.add(N, _c(NR_MAX - 1)), _c(NR_MAX))
    team = _min(b, threads, panels)
    # a product too small to pay for waking the team runs alone
    team = b.select(b.icmp_signed("<", b.mul(b.mul(M, N), K), _c(TEAM_MIN_WORK)), _c(1), team)
    openmp.alone_or_on_team(b, serial, args[:12] + [bias, residual], _team_body(module, serial),
                            args[:12] + [bias, residual], team)
    b.ret_void()
    return fn


def _team_body(module: ir.Module, serial: ir.Function) -> ir.Function:
    """void body(i64 *words): thread t of the team computes C's columns of its
    run of NR_MAX-column panels with the serial GEMM, in its own workspace."""
    fn = ir.Function(module, openmp.BODY, serial.name + openmp.TEAM_SUFFIX)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    M, N, K, A, rs, cs, B, ldb, C, ldc, flags32, ws, bias, residual = openmp.from_words(
        b, fn.args[0], [a.type for a in serial.args[:12]] + [PTR, PTR])
    tid, n0, n1 = openmp.thread_columns(b, N, NR_MAX)
    n = b.sub(n1, n0)
    with b.if_then(b.icmp_signed(">", n, _c(0))):
        own = _at(b, ws, b.mul(tid, _workspace_floats(b, M, N, K)))
        prepacked = b.icmp_signed("!=", b.and_(flags32, I32(PACKED_B)), I32(0))
        transposed = b.icmp_signed("!=", b.and_(flags32, I32(TRANSPOSED_B)), I32(0))
        b_off = b.select(prepacked, b.mul(b.sdiv(n0, _c(PANEL)), b.mul(K, _c(PANEL))),  # n0: whole panels
                         b.select(transposed, b.mul(n0, ldb), n0))
        col_bias = b.icmp_signed("!=", b.and_(flags32, I32(BIAS_COLS)), I32(0))
        bias_at = b.select(col_bias, _at(b, bias, n0), _at(b, bias, _c(0)))  # rows: the same
        b.call(serial, [M, n, K, A, rs, cs, _at(b, B, b_off), ldb, _at(b, C, n0), ldc,
                        flags32, own, bias_at, _at(b, residual, n0)])
    b.ret_void()
    return fn


def callable_gemm(address: int):
    """ncc_sgemm at `address` as a ctypes function (tests and benchmarks call it
    directly): (M, N, K, A, rs, cs, B, ldb, C, ldc, flags, workspace, threads, bias, residual)."""
    import ctypes

    P, I = ctypes.c_void_p, ctypes.c_int64
    return ctypes.CFUNCTYPE(None, I, I, I, P, I, I, P, I, P, I, ctypes.c_int32, P, I, P, P)(address)


def gemm_module(tile: Tile, triple: str = "", data_layout: str = "") -> ir.Module:
    """An llvmlite module defining ncc_sgemm for `tile` alone (for tests and benchmarks)."""
    return kernel_module(f"ncc_sgemm_{tile.tag}", triple, data_layout, lambda m: define_gemm(m, tile))
