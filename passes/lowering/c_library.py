"""The library kernels that loop-level code calls, as portable C99 for
`ncc.emit_c`: each follows the contract of its native version (the flags,
packed layouts and epilogues documented in passes/lowering/gemm.py,
qgemm.py and spmm.py) with plain loops a C compiler vectorizes. They ignore
the thread count (the C runs on the caller's thread) and use the workspace
the native kernel is given, never more.

    ncc_sgemm   register-blocked as BLIS is: an MR x NR tile in a local array
    ncc_qgemm   per 32-column panel, B minus its zero points unpacked once
                into the workspace as 32-bit words, 4 rows of A at a time
    ncc_spmm    the column form, FEATURE_ROWS rows at a time transposed into
                the workspace, one vectorizable loop per nonzero
"""

from ncc.dialects.nn.sparse import COLUMN_BLOCK
from ncc.passes.lowering import gemm, qgemm, spmm

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

QGEMM = f"""/* C = (A - a_zero) @ (B - b_zero), bytes (int8 or uint8) multiplied in 32 bits,
   then requantized to bytes or stored as int32: passes/lowering/qgemm.py's
   contract. Sums wrap modulo 2^32 as the native kernel's int32 lanes do
   (unsigned arithmetic: no overflow in C). A prepacked operand's words are
   read by value, so the bytes come out the same on any byte order. */
static inline int32_t ncc_qbyte(uint32_t word, int64_t k) {{
    return (int32_t)((word >> (8 * (k & 3))) & 0xFFu);
}}
static void {qgemm.SYMBOL}(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                      int64_t ldb, int8_t *C, int64_t ldc, int32_t a_zero, int32_t b_zero,
                      const int32_t *b_zeros, int32_t flags, int8_t *workspace, int64_t threads,
                      const int32_t *bias, const float *scale, int32_t c_zero) {{
    (void)threads;
    const int64_t q = (K + 3) / 4;  /* words of four bytes of K */
    const uint8_t *a_bytes = (const uint8_t *)A, *b_bytes = (const uint8_t *)B;
    const int32_t *a_words = (const int32_t *)(const void *)A, *b_words = (const int32_t *)(const void *)B;
    uint32_t *restrict panel = (uint32_t *)(void *)workspace;  /* K x 32: a panel of B minus its zero points */
    const int32_t low = (flags & {qgemm.C_UNSIGNED}) ? 0 : -128, high = (flags & {qgemm.C_UNSIGNED}) ? 255 : 127;
    const int32_t floor_ = (flags & {qgemm.RELU}) && c_zero > low ? c_zero : low;
    for (int64_t j0 = 0; j0 < N; j0 += 32) {{
        const int64_t nr = N - j0 < 32 ? N - j0 : 32;
        for (int64_t k = 0; k < K; ++k)
            for (int64_t j = 0; j < 32; ++j) {{
                int32_t w = 0;
                if (j < nr) {{
                    if (flags & {qgemm.PACKED_B}) {{  /* nn.qpack: bytes made signed (uint8 ^ 0x80) */
                        const int32_t s = ncc_qbyte((uint32_t)b_words[(j0 / 32) * (q * 32 + 32) + (k / 4) * 32 + j], k);
                        w = (flags & {qgemm.B_UNSIGNED}) ? (s ^ 0x80) : (s ^ 0x80) - 128;
                    }} else {{
                        const int32_t u = b_bytes[k * ldb + j0 + j];
                        w = (flags & {qgemm.B_UNSIGNED}) ? u : (u ^ 0x80) - 128;
                    }}
                    w -= (flags & {qgemm.B_ZERO_COLUMNS}) ? b_zeros[j0 + j] : b_zero;
                }}
                panel[k * 32 + j] = (uint32_t)w;
            }}
        for (int64_t i0 = 0; i0 < M; i0 += 4) {{
            const int64_t mr = M - i0 < 4 ? M - i0 : 4;
            uint32_t acc[4][32];
            for (int r = 0; r < 4; ++r)
                for (int j = 0; j < 32; ++j) acc[r][j] = 0u;
            for (int64_t k = 0; k < K; ++k) {{
                uint32_t a[4];
                for (int r = 0; r < 4; ++r) {{
                    int32_t v = 0;
                    if (r < mr) {{
                        const int64_t i = i0 + r;
                        if (flags & {qgemm.PACKED_A}) {{  /* nn.qpack_rows: int8 made unsigned (^ 0x80) */
                            const int32_t u = ncc_qbyte((uint32_t)a_words[i * (q + 1) + k / 4], k);
                            v = (flags & {qgemm.A_SIGNED}) ? u - 128 : u;
                        }} else {{
                            const int32_t u = a_bytes[i * lda + k];
                            v = (flags & {qgemm.A_SIGNED}) ? (u ^ 0x80) - 128 : u;
                        }}
                        v -= a_zero;
                    }}
                    a[r] = (uint32_t)v;
                }}
                const uint32_t *restrict b = panel + k * 32;
                for (int r = 0; r < 4; ++r)
                    for (int j = 0; j < 32; ++j) acc[r][j] += a[r] * b[j];
            }}
            for (int64_t r = 0; r < mr; ++r)
                for (int64_t j = 0; j < nr; ++j) {{
                    const int64_t row = i0 + r, col = j0 + j;
                    if (!(flags & {qgemm.REQUANTIZE})) {{
                        ((int32_t *)(void *)C)[row * ldc + col] = (int32_t)acc[r][j];
                        continue;
                    }}
                    const int64_t at = (flags & {qgemm.BY_ROW}) ? row : col;
                    float y = (float)(int32_t)(acc[r][j] + (uint32_t)bias[at]) * scale[at];
                    y = y > 4194304.0f ? 4194304.0f : y >= -4194304.0f ? y : -4194304.0f;  /* saturates anyway */
                    int32_t v = (int32_t)nearbyintf(y) + c_zero;  /* half to even */
                    v = v < floor_ ? floor_ : v > high ? high : v;
                    ((uint8_t *)C)[row * ldc + col] = (uint8_t)(v & 0xFF);
                }}
        }}
    }}
}}"""

SPMM = f"""/* Y = act(X @ W + bias) for a sparse W: passes/lowering/spmm.py's contract,
   from its column form (per block of {COLUMN_BLOCK} rows of K, each column's nonzeros).
   {spmm.FEATURE_ROWS} rows at a time, X^T and Y^T live in the workspace, as the native
   kernel's do, so a nonzero is one loop over those rows. */
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
    float *restrict xt = workspace, *restrict yt = workspace + K * ROWS;
    for (int64_t r0 = 0; r0 < rows; r0 += ROWS) {{
        const int64_t rr = rows - r0 < ROWS ? rows - r0 : ROWS;
        for (int64_t k = 0; k < K; ++k)
            for (int64_t r = 0; r < rr; ++r) xt[k * ROWS + r] = feature_major ? X[k * ldx + r0 + r] : X[(r0 + r) * ldx + k];
        for (int64_t at = 0; at < N * ROWS; ++at) yt[at] = 0.0f;
        for (int64_t block = 0; block < blocks_of_k; ++block)
            for (int64_t n = 0; n < N; ++n)
                for (int64_t e = colptr[block * N + n]; e < colptr[block * N + n + 1]; ++e) {{
                    const float v = column_values[e];
                    const float *restrict x = xt + (int64_t)rowidx[e] * ROWS;
                    float *restrict y = yt + n * ROWS;
                    for (int64_t r = 0; r < rr; ++r) y[r] += v * x[r];
                }}
        for (int64_t n = 0; n < N; ++n)
            for (int64_t r = 0; r < rr; ++r) {{
                float v = yt[n * ROWS + r];
                if (flags & {gemm.BIAS_COLS}) v += bias[n];
                if (flags & {gemm.ACTIVATIONS}) v = v > 0.0f ? v : 0.0f;
                if (flags & {gemm.RELU6}) v = v < 6.0f ? v : 6.0f;
                Y[feature_major ? n * ldy + r0 + r : (r0 + r) * ldy + n] = v;
            }}
    }}
}}"""

LIBRARY = {gemm.SYMBOL: SGEMM, qgemm.SYMBOL: QGEMM, spmm.SYMBOL: SPMM}
