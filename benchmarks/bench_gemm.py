"""The packed GEMM (passes/lowering/gemm.py) against the host's peak, OpenBLAS and PyTorch, in one run.

    python benchmarks/bench_gemm.py [--quick]

For each GEMM variant this host can run (AVX-512 14x32, AVX2 6x16, SSE 6x8)
and a few shapes (the MLP's first layer at batch 64, square 512 and 1024),
single-threaded: GFLOP/s of ncc, of numpy's BLAS (one thread) and of PyTorch
(one thread, if installed), and ncc's fraction of the host's peak. The peak
is measured, not looked up: a loop of independent vector FMAs at the host's
widest width (two per cycle on the cores this runs on, if the hardware has
two FMA units), the most a core can do. Times are the best of repeated blocks.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402

from ncc.passes.lowering import gemm  # noqa: E402
from ncc.runtime import engine  # noqa: E402
from ncc.runtime.calling import aligned_empty  # noqa: E402

try:
    import torch  # noqa: E402
    torch.set_num_threads(1)
except ImportError:  # PyTorch is optional here
    torch = None

SHAPES = [(64, 512, 784), (512, 512, 512), (1024, 1024, 1024)]  # M, N, K


def best_seconds(fn, block_seconds: float) -> float:
    """The best time per call over blocks of calls lasting about block_seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(block_seconds / once))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def peak_gflops(lanes: int, block_seconds: float) -> float:
    """Measured: 2 * lanes FLOP per FMA, 24 independent accumulator chains."""
    chains = 24
    vec = ir.VectorType(ir.FloatType(), lanes)
    module = ir.Module("peak")
    tm = engine.target_machine()
    module.triple, module.data_layout = tm.triple, str(tm.target_data)
    fma = ir.Function(module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}f32")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(64), ir.PointerType()]), "peak")
    n, out = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    # the operands come from memory: constants would let LLVM fold the loop away
    x = b.load(out, typ=vec, align=4)
    y = b.load(b.gep(out, [ir.Constant(ir.IntType(64), lanes)], source_etype=ir.FloatType()), typ=vec, align=4)
    entry = b.block
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(ir.IntType(64))
    accs = [b.phi(vec) for _ in range(chains)]
    new = [b.call(fma, [a, x, y]) for a in accs]
    i.add_incoming(ir.Constant(ir.IntType(64), 0), entry)
    for a, v in zip(accs, new):
        a.add_incoming(ir.Constant(vec, [1.0] * lanes), entry)
        a.add_incoming(v, loop)
    nxt = b.add(i, ir.Constant(ir.IntType(64), 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    total = new[0]
    for v in new[1:]:
        total = b.fadd(total, v)
    b.store(total, b.bitcast(out, vec.as_pointer()))
    b.ret_void()
    lib = engine.compile_llvm_ir(str(module))
    call = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(lib.address("peak"))
    sink = aligned_empty((2 * lanes,), np.dtype(np.float32))
    sink[:lanes], sink[lanes:] = 0.999, 1e-3
    iters = 1 << 20
    seconds = best_seconds(lambda: call(iters, sink.ctypes.data), block_seconds)
    return iters * chains * lanes * 2 / seconds / 1e9


def ncc_gemm(variant: str):
    tile = gemm.VARIANTS[variant]
    tm = engine.target_machine()
    lib = engine.compile_llvm_ir(str(gemm.gemm_module(tile, tm.triple, str(tm.target_data))))
    fn = gemm.callable_gemm(lib.address(gemm.SYMBOL))

    def bind(a, b, c):
        (m, k), n = a.shape, b.shape[1]
        ws = aligned_empty((gemm.workspace_floats(m, n, k),), np.dtype(np.float32))
        args = (m, n, k, a.ctypes.data, k, 1, b.ctypes.data, n, c.ctypes.data, n, 0, ws.ctypes.data, 1, None, None)
        return lambda ws=ws: fn(*args)  # the default keeps the workspace alive
    return lib, bind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing blocks")
    args = ap.parse_args()
    block = 0.05 if args.quick else 0.2
    print(f"host: {engine.host_summary()}")
    host_tile = engine.gemm_tile()
    peak = peak_gflops(host_tile.lanes, block)
    print(f"measured peak, 1 core, {host_tile.lanes}-float FMAs: {peak:.1f} GFLOP/s")
    variants = [v for v in gemm.VARIANTS if not gemm.REQUIRES[v] - engine.host_features()]
    rng = np.random.default_rng(0)
    header = f"{'M x N x K':>18} {'variant':>8} {'ncc':>9} {'numpy':>9} {'torch':>9}  ncc/numpy  ncc/torch  of peak"
    print(header)
    print("-" * len(header))
    kernels = {v: ncc_gemm(v) for v in variants}
    for m, n, k in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        flops = 2 * m * n * k
        t_np = best_seconds(lambda: np.matmul(a, b, out=c), block)
        t_torch = None
        if torch is not None:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty((m, n))
            t_torch = best_seconds(lambda: torch.matmul(ta, tb, out=tc), block)
        for v in variants:
            run = kernels[v][1](a, b, c)
            run()
            np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-3, atol=1e-3)
            t = best_seconds(run, block)
            g = flops / t / 1e9
            torch_col = f"{flops / t_torch / 1e9:9.1f}" if t_torch else f"{'-':>9}"
            ratio_torch = f"{t_torch / t:9.2f}x" if t_torch else f"{'-':>10}"
            print(f"{f'{m} x {n} x {k}':>18} {v:>8} {g:9.1f} {flops / t_np / 1e9:9.1f} {torch_col}"
                  f"  {t_np / t:8.2f}x {ratio_torch}  {g / peak:6.0%}"
                  + ("  (host's)" if gemm.VARIANTS[v] == host_tile else ""))
    print("GFLOP/s, 1 thread; numpy is its BLAS with one thread; 'of peak' is against the measured peak above")


if __name__ == "__main__":
    main()
