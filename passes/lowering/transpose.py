"""A float32 matrix transposed, generated as LLVM IR for the host's vector width:

    dst[j * ldd + i] = src[i * lds + j]          i < rows, j < cols

in blocks of L x L (L the lanes of a vector: 16 on AVX-512, 8 on AVX2, 4
elsewhere): L rows loaded as L vectors, transposed in registers
(llvmlite_ir.transpose_block: log2 L rounds of two shuffles per pair of
rows), stored as L columns; the rows and columns past the last whole block
element by element. What LLVM makes of the same loops is one gather per L
elements (vgatherdps), several times slower. The bits are moved, not
computed: any 32-bit values transpose alike.

Loop-level code calls one symbol, whatever the host (nn.transpose of f32
that moves the last axis, once per 2-D slab):

    void ncc_transpose32(i64 rows, i64 cols, ptr src, i64 lds, ptr dst, i64 ldd)

The engine defines it with the GEMM, in the process's kernel library.
"""

from __future__ import annotations

import ctypes

from llvmlite import ir

from ncc.passes.lowering.llvmlite_ir import F32, I64, PTR, const, counted_loop, float_at, function_to_define
from ncc.passes.lowering.llvmlite_ir import kernel_module, store_vector, transpose_block

SYMBOL = "ncc_transpose32"
SIGNATURE = ir.FunctionType(ir.VoidType(), [I64, I64, PTR, I64, PTR, I64])
VARIANTS = {"avx512": 16, "avx2": 8, "sse": 4}  # lanes of a vector
REQUIRES = {"avx512": {"avx512f"}, "avx2": {"avx2"}, "sse": set()}


def lanes_for_features(features: set[str] | frozenset[str]) -> int:
    return VARIANTS["avx512" if "avx512f" in features else "avx2" if "avx2" in features else "sse"]


def define_transpose(module: ir.Module, lanes: int) -> ir.Function:
    """Define `ncc_transpose32` with blocks of `lanes` x `lanes` in `module` (filling in its declaration, if any)."""
    fn = function_to_define(module, SYMBOL, SIGNATURE)
    rows, cols, src, lds, dst, ldd = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vec = ir.VectorType(F32, lanes)
    whole_rows = b.mul(b.sdiv(rows, const(lanes)), const(lanes))
    whole_cols = b.mul(b.sdiv(cols, const(lanes)), const(lanes))

    def element(i: ir.Value, j: ir.Value) -> None:
        value = b.load(float_at(b, src, b.add(b.mul(i, lds), j)), typ=F32)
        b.store(value, float_at(b, dst, b.add(b.mul(j, ldd), i)))

    with counted_loop(b, const(0), whole_rows, lanes, "block_rows") as i0:
        with counted_loop(b, const(0), whole_cols, lanes, "block_cols") as j0:
            loaded = [b.load(b.bitcast(float_at(b, src, b.add(b.mul(b.add(i0, const(r)), lds), j0)),
                                       vec.as_pointer()), typ=vec, align=4) for r in range(lanes)]
            for c, column in enumerate(transpose_block(b, loaded)):
                store_vector(b, column, float_at(b, dst, b.add(b.mul(b.add(j0, const(c)), ldd), i0)))
        with counted_loop(b, whole_cols, cols, 1, "right_cols") as j:  # the columns past the last block
            with counted_loop(b, const(0), const(lanes), 1, "right_rows") as r:
                element(b.add(i0, r), j)
    with counted_loop(b, whole_rows, rows, 1, "bottom_rows") as i:  # the rows past the last block
        with counted_loop(b, const(0), cols, 1, "bottom_cols") as j:
            element(i, j)
    b.ret_void()
    return fn


def transpose_module(lanes: int, triple: str = "", data_layout: str = "") -> ir.Module:
    """An llvmlite module defining ncc_transpose32 for `lanes` alone (for tests and benchmarks)."""
    return kernel_module(f"{SYMBOL}_{lanes}", triple, data_layout, lambda m: define_transpose(m, lanes))


def callable_transpose(address: int):
    """ncc_transpose32 at `address` as a ctypes function (pointers as integers)."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, i64, i64, ptr, i64, ptr, i64)(address)
