"""The library kernels that loop-level code calls, as portable C99 for
`ncc.emit_c`: each follows the contract of its native version (the flags,
packed layouts and epilogues documented in passes/lowering/gemm.py,
qgemm.py and spmm.py) with plain loops a C compiler vectorizes. They ignore
the thread count (the C runs on the caller's thread) and use the workspace
the native kernel is given, never more.

    ncc_sgemm   register-blocked as BLIS is: an MR x NR tile in a local array
    ncc_qgemm   int16 dot products (vpmaddwd / vpdpwssd) of rows of A and
                columns of B unpacked into the workspace minus their zero points
    ncc_spmm    the column form, FEATURE_ROWS rows at a time transposed into
                the workspace, each output column summed four nonzeros a pass
    ncc_transpose32  element by element
"""

from ncc.dialects.nn.sparse import COLUMN_BLOCK
from ncc.passes.lowering import gemm, qgemm, spmm, transpose

assert qgemm.NR_MAX == 32, "ncc_qgemm's C reads a prepacked B in panels of 32 columns"

SGEMM = f"""/* C (+)= A @ B, then + bias, + residual, relu: passes/lowering/gemm.py's contract.
   Register-blocked as BLIS is, in portable C: an MR x NR tile of C accumulates
   in a local array, which the compiler keeps in vector registers, while k
   streams NR columns of a row of B and MR values of A (6 x 32 with 32 vector
   registers, AVX-512; 6 x 16 otherwise); edges and B^T take the plain loops. */
#if defined(__AVX512F__)
#define NCC_NR 32
#else
#define NCC_NR 16
#endif
#define NCC_MR 6
static void ncc_sgemm_tile(int64_t K, const float *restrict a0, int64_t a_row_stride, int64_t a_col_stride,
                           const float *restrict b0, int64_t bk, float *restrict out) {{
    float acc[NCC_MR][NCC_NR];
    for (int r = 0; r < NCC_MR; ++r)
        for (int j = 0; j < NCC_NR; ++j) acc[r][j] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {{
        const float *restrict b = b0 + k * bk;
        for (int r = 0; r < NCC_MR; ++r) {{
            const float a = a0[r * a_row_stride + k * a_col_stride];
            for (int j = 0; j < NCC_NR; ++j) acc[r][j] += a * b[j];
        }}
    }}
    for (int r = 0; r < NCC_MR; ++r)
        for (int j = 0; j < NCC_NR; ++j) out[r * NCC_NR + j] = acc[r][j];
}}

static void {gemm.SYMBOL}(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_row_stride,
                       int64_t a_col_stride, const float *B, int64_t ldb, float *C, int64_t ldc, int32_t flags,
                       void *workspace, int64_t threads, const float *bias, const float *residual) {{
    (void)workspace;
    (void)threads;
    const int64_t bk = (flags & {gemm.PACKED_B}) ? {gemm.NR_MAX} : ldb;  /* B's row k of the tile: b0 + k * bk */
    for (int64_t i0 = 0; i0 < M; i0 += NCC_MR) {{
        const int64_t mr = M - i0 < NCC_MR ? M - i0 : NCC_MR;
        const float *a0 = A + i0 * a_row_stride;
        for (int64_t j0 = 0; j0 < N; j0 += NCC_NR) {{
            const int64_t nr = N - j0 < NCC_NR ? N - j0 : NCC_NR;
            const float *b0 = (flags & {gemm.PACKED_B})
                ? B + (j0 / {gemm.NR_MAX}) * K * {gemm.NR_MAX} + j0 % {gemm.NR_MAX} : B + j0;
            float acc[NCC_MR * NCC_NR];
            /* a prepacked B's panels are zero-padded to whole panels: its last columns take the tile too */
            const int whole = nr == NCC_NR || (flags & {gemm.PACKED_B});
            if (mr == NCC_MR && whole && !(flags & {gemm.TRANSPOSED_B})) {{
                ncc_sgemm_tile(K, a0, a_row_stride, a_col_stride, b0, bk, acc);
            }} else {{  /* an edge, or B^T: rows of the tile along k, each a loop over its columns */
                for (int64_t r = 0; r < mr; ++r)
                    for (int64_t j = 0; j < nr; ++j) acc[r * NCC_NR + j] = 0.0f;
                for (int64_t k = 0; k < K; ++k)
                    for (int64_t r = 0; r < mr; ++r) {{
                        const float a = a0[r * a_row_stride + k * a_col_stride];
                        float *restrict row = acc + r * NCC_NR;
                        if (flags & {gemm.TRANSPOSED_B})
                            for (int64_t j = 0; j < nr; ++j) row[j] += a * B[(j0 + j) * ldb + k];
                        else {{
                            const float *restrict b = b0 + k * bk;
                            for (int64_t j = 0; j < nr; ++j) row[j] += a * b[j];
                        }}
                    }}
            }}
            for (int64_t r = 0; r < mr; ++r) {{
                float *c = C + (i0 + r) * ldc + j0;
                for (int64_t j = 0; j < nr; ++j) {{
                    float v = acc[r * NCC_NR + j];
                    if (flags & {gemm.ACCUMULATE}) v += c[j];
                    if (flags & {gemm.BIAS_ROWS}) v += bias[i0 + r];
                    if (flags & {gemm.BIAS_COLS}) v += bias[j0 + j];
                    if (flags & {gemm.RESIDUAL}) v += residual[(i0 + r) * ldc + j0 + j];
                    if (flags & {gemm.ACTIVATIONS}) v = v > 0.0f ? v : 0.0f;
                    if (flags & {gemm.RELU6}) v = v < 6.0f ? v : 6.0f;
                    c[j] = v;
                }}
            }}
        }}
    }}
}}"""

QGEMM = f"""/* C = (A - a_zero) @ (B - b_zero), bytes (int8 or uint8), then requantized to
   bytes or stored as int32: passes/lowering/qgemm.py's contract. The operands
   minus their zero points fit int16 (|x| <= 383), so each element of C is a
   dot product of int16 rows, which compilers turn into vpmaddwd (AVX2) or
   vpdpwssd (AVX-512 VNNI): rows of A (as many as the workspace holds, up to
   64) and 32 columns of B are unpacked into the workspace, then 2 rows x 4
   columns of C at a time. Sums wrap modulo 2^32 as the native kernel's int32
   lanes do (unsigned: no overflow in C). A prepacked operand's words are read
   by value, so its bytes come out the same on any byte order. */
static inline int32_t ncc_qbyte(uint32_t word, int64_t k) {{
    return (int32_t)((word >> (8 * (k & 3))) & 0xFFu);
}}
static inline int32_t ncc_qa(const int8_t *A, int64_t lda, int64_t q, int32_t flags, int64_t i, int64_t k) {{
    if (flags & {qgemm.PACKED_A}) {{  /* nn.qpack_rows: int8 made unsigned (^ 0x80), rows of q + 1 words */
        const int32_t u = ncc_qbyte((uint32_t)((const int32_t *)(const void *)A)[i * (q + 1) + k / 4], k);
        return (flags & {qgemm.A_SIGNED}) ? u - 128 : u;
    }}
    const int32_t u = ((const uint8_t *)A)[i * lda + k];
    return (flags & {qgemm.A_SIGNED}) ? (u ^ 0x80) - 128 : u;
}}
static inline int32_t ncc_qb(const int8_t *B, int64_t ldb, int32_t flags, int64_t k, int64_t j) {{
    const int32_t u = ((const uint8_t *)B)[k * ldb + j];  /* B as it is (a packed B: the panel loop below) */
    return (flags & {qgemm.B_UNSIGNED}) ? u : (u ^ 0x80) - 128;
}}
static void {qgemm.SYMBOL}(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                      int64_t ldb, int8_t *C, int64_t ldc, int32_t a_zero, int32_t b_zero,
                      const int32_t *b_zeros, int32_t flags, int8_t *workspace, int64_t threads,
                      const int32_t *bias, const float *scale, int32_t c_zero) {{
    (void)threads;
    const int64_t q = (K + 3) / 4, kp = (K + 31) / 32 * 32;  /* K padded with zeros to whole vectors */
    /* the workspace qgemm.workspace_bytes(K) promises: 32 columns of B, then as many rows of A as fit */
    const int64_t room = 4 * (q * {2 * qgemm.MC + qgemm.NR_MAX} + {qgemm.MC + 2 * qgemm.NR_MAX}) - 64 * kp;
    const int64_t rows = kp == 0 || room / (2 * kp) >= 64 ? 64 : room / (2 * kp);
    int16_t *restrict bt = (int16_t *)(void *)workspace, *restrict at = bt + 32 * kp;
    const int32_t low = (flags & {qgemm.C_UNSIGNED}) ? 0 : -128, high = (flags & {qgemm.C_UNSIGNED}) ? 255 : 127;
    const int32_t floor_ = (flags & {qgemm.RELU}) && c_zero > low ? c_zero : low;
    for (int64_t i0 = 0; i0 < M; i0 += rows) {{
        const int64_t mb = M - i0 < rows ? M - i0 : rows;
        for (int64_t r = 0; r < mb; ++r)
            for (int64_t k = 0; k < kp; ++k)
                at[r * kp + k] = (int16_t)(k < K ? ncc_qa(A, lda, q, flags, i0 + r, k) - a_zero : 0);
        for (int64_t j0 = 0; j0 < N; j0 += 32) {{
            const int64_t nr = N - j0 < 32 ? N - j0 : 32;
            for (int64_t j = 0; j < 32; ++j) {{
                const int32_t zero = j >= nr ? 0 : (flags & {qgemm.B_ZERO_COLUMNS}) ? b_zeros[j0 + j] : b_zero;
                int16_t *restrict column = bt + j * kp;
                for (int64_t k = K; k < kp; ++k) column[k] = 0;
                if (j >= nr)
                    for (int64_t k = 0; k < K; ++k) column[k] = 0;
                else if (!(flags & {qgemm.PACKED_B}))
                    for (int64_t k = 0; k < K; ++k) column[k] = (int16_t)(ncc_qb(B, ldb, flags, k, j0 + j) - zero);
            }}
            if (flags & {qgemm.PACKED_B}) {{  /* the panel's words in order: a column's four bytes of K each */
                const int32_t *words = (const int32_t *)(const void *)B + (j0 / 32) * (q * 32 + 32);
                const int32_t shift = (flags & {qgemm.B_UNSIGNED}) ? 0 : 128;
                for (int64_t quad = 0; quad < q; ++quad)
                    for (int64_t j = 0; j < nr; ++j) {{
                        const uint32_t word = (uint32_t)words[quad * 32 + j];
                        const int32_t zero = (flags & {qgemm.B_ZERO_COLUMNS}) ? b_zeros[j0 + j] : b_zero;
                        for (int64_t b = 0; b < 4 && 4 * quad + b < K; ++b)
                            bt[j * kp + 4 * quad + b] = (int16_t)(((int32_t)((word >> (8 * b)) & 0xFFu) ^ 0x80) - shift - zero);
                    }}
            }}
            for (int64_t r = 0; r < mb; r += 2) {{
                const int16_t *restrict a0 = at + r * kp, *restrict a1 = at + (r + 1 < mb ? r + 1 : r) * kp;
                for (int64_t j = 0; j < nr; j += 4) {{
                    const int16_t *restrict b0 = bt + j * kp, *restrict b1 = b0 + kp;
                    const int16_t *restrict b2 = b1 + kp, *restrict b3 = b2 + kp;
                    uint32_t s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
                    for (int64_t k = 0; k < kp; ++k) {{
                        const int32_t x0 = a0[k], x1 = a1[k];
                        s00 += (uint32_t)(x0 * b0[k]); s01 += (uint32_t)(x0 * b1[k]);
                        s02 += (uint32_t)(x0 * b2[k]); s03 += (uint32_t)(x0 * b3[k]);
                        s10 += (uint32_t)(x1 * b0[k]); s11 += (uint32_t)(x1 * b1[k]);
                        s12 += (uint32_t)(x1 * b2[k]); s13 += (uint32_t)(x1 * b3[k]);
                    }}
                    const uint32_t sums[2][4] = {{{{s00, s01, s02, s03}}, {{s10, s11, s12, s13}}}};
                    for (int64_t d = 0; d < 2 && r + d < mb; ++d)
                        for (int64_t e = 0; e < 4 && j + e < nr; ++e) {{
                            const int64_t row = i0 + r + d, col = j0 + j + e;
                            if (!(flags & {qgemm.REQUANTIZE})) {{
                                ((int32_t *)(void *)C)[row * ldc + col] = (int32_t)sums[d][e];
                                continue;
                            }}
                            const int64_t at_ = (flags & {qgemm.BY_ROW}) ? row : col;
                            float y = (float)(int32_t)(sums[d][e] + (uint32_t)bias[at_]) * scale[at_];
                            y = y > 4194304.0f ? 4194304.0f : y >= -4194304.0f ? y : -4194304.0f;  /* saturates */
                            int32_t v = (int32_t)nearbyintf(y) + c_zero;  /* half to even */
                            v = v < floor_ ? floor_ : v > high ? high : v;
                            ((uint8_t *)C)[row * ldc + col] = (uint8_t)(v & 0xFF);
                        }}
                }}
            }}
        }}
    }}
}}"""

SPMM = f"""/* Y = act(X @ W + bias) for a sparse W: passes/lowering/spmm.py's contract,
   from its column form (per block of {COLUMN_BLOCK} rows of K, each column's nonzeros).
   {spmm.FEATURE_ROWS} rows at a time, X^T lives in the workspace, as the native kernel's
   does; each output column sums its nonzeros' rows of X^T. */
static void {spmm.SYMBOL}(int64_t rows, int64_t K, int64_t N, const float *X, int64_t ldx, float *Y, int64_t ldy,
                     const int32_t *steps, const int32_t *blocks, const int8_t *lanes, const float *slice_values,
                     const int32_t *colptr, const int32_t *rowidx, const float *column_values, int32_t flags,
                     const float *bias, float *workspace, int64_t threads) {{
    (void)steps;
    (void)blocks;
    (void)lanes;
    (void)slice_values;
    (void)threads;
    enum {{ ROWS = {spmm.FEATURE_ROWS} }};
    const int feature_major = (flags & {spmm.FEATURE_MAJOR}) != 0;  /* X^T and Y^T given */
    const int64_t blocks_of_k = (K + {COLUMN_BLOCK - 1}) / {COLUMN_BLOCK};
    float *restrict xt = workspace;
    for (int64_t r0 = 0; r0 < rows; r0 += ROWS) {{
        const int64_t rr = rows - r0 < ROWS ? rows - r0 : ROWS;
        if (feature_major)  /* each loop reads X in its order (a loop across it would gather) */
            for (int64_t k = 0; k < K; ++k)
                for (int64_t r = 0; r < rr; ++r) xt[k * ROWS + r] = X[k * ldx + r0 + r];
        else
            for (int64_t r = 0; r < rr; ++r)
                for (int64_t k = 0; k < K; ++k) xt[k * ROWS + r] = X[(r0 + r) * ldx + k];
        for (int64_t n = 0; n < N; ++n) {{
            /* the sum of a column's nonzeros' rows of X^T, four nonzeros per pass over it (one pass each
               would wait on the last one's stores: the compiler vectorizes a loop over rows, not its sum) */
            float *restrict acc = workspace + K * ROWS;
            for (int64_t r = 0; r < rr; ++r) acc[r] = 0.0f;
            for (int64_t block = 0; block < blocks_of_k; ++block) {{
                int64_t e = colptr[block * N + n];
                const int64_t end = colptr[block * N + n + 1];
                for (; e + 4 <= end; e += 4) {{
                    const float v0 = column_values[e], v1 = column_values[e + 1];
                    const float v2 = column_values[e + 2], v3 = column_values[e + 3];
                    const float *restrict x0 = xt + (int64_t)rowidx[e] * ROWS;
                    const float *restrict x1 = xt + (int64_t)rowidx[e + 1] * ROWS;
                    const float *restrict x2 = xt + (int64_t)rowidx[e + 2] * ROWS;
                    const float *restrict x3 = xt + (int64_t)rowidx[e + 3] * ROWS;
                    for (int64_t r = 0; r < rr; ++r) acc[r] += (v0 * x0[r] + v1 * x1[r]) + (v2 * x2[r] + v3 * x3[r]);
                }}
                for (; e < end; ++e) {{
                    const float v = column_values[e];
                    const float *restrict x = xt + (int64_t)rowidx[e] * ROWS;
                    for (int64_t r = 0; r < rr; ++r) acc[r] += v * x[r];
                }}
            }}
            for (int64_t r = 0; r < rr; ++r) {{
                float v = acc[r];
                if (flags & {gemm.BIAS_COLS}) v += bias[n];
                if (flags & {gemm.ACTIVATIONS}) v = v > 0.0f ? v : 0.0f;
                if (flags & {gemm.RELU6}) v = v < 6.0f ? v : 6.0f;
                Y[feature_major ? n * ldy + r0 + r : (r0 + r) * ldy + n] = v;
            }}
        }}
    }}
}}"""

TRANSPOSE = """/* dst[j * ldd + i] = src[i * lds + j]: passes/lowering/transpose.py's contract (32-bit values). */
static void ncc_transpose32(int64_t rows, int64_t cols, const float *restrict src, int64_t lds,
                            float *restrict dst, int64_t ldd) {
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j)
            dst[j * ldd + i] = src[i * lds + j];
}"""

LIBRARY = {gemm.SYMBOL: SGEMM, qgemm.SYMBOL: QGEMM, spmm.SYMBOL: SPMM, transpose.SYMBOL: TRANSPOSE}
