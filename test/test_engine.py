"""Native code end to end: hand-written loop-level kernels -> lower-to-llvm -> the
llvmlite engine -> ctypes calls on numpy buffers, compared with numpy."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from ncc.diagnostics import NccError
from ncc.ir import parse_module
from ncc.pipeline import run_passes
from ncc.runtime import engine
from ncc.passes.lowering.abi import ArgRole

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def native(text: str, pipeline: str = "lower-to-llvm") -> engine.NativeLibrary:
    module = parse_module(text, "kernel.mlir")
    run_passes(module, pipeline)
    return engine.compile_module(module)


def call(lib, name, *buffers, batch=0):
    lib.kernel(name, len(buffers))(*[b.ctypes.data for b in buffers], batch)


ELEMENTWISE = """
func.func @gelu_ish(%x: memref<?x7xf32>, %b: memref<7xf32>, %y: memref<?x7xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c7 = arith.constant 7 : index
  %half = arith.constant 0.5 : f32
  %n = memref.dim %x, %c0 : memref<?x7xf32>
  scf.for %i = %c0 to %n step %c1 {
    scf.for %j = %c0 to %c7 step %c1 {
      %v = memref.load %x[%i, %j] : memref<?x7xf32>
      %bj = memref.load %b[%j] : memref<7xf32>
      %z = arith.addf %v, %bj : f32
      %t = math.tanh %z : f32
      %e = math.exp %t : f32
      %r = arith.mulf %e, %half : f32
      memref.store %r, %y[%i, %j] : memref<?x7xf32>
    }
  }
  func.return
}
"""


@pytest.mark.parametrize("batch", [0, 1, 2, 17, 1000])
def test_elementwise_dynamic_batch(batch):
    lib = native(ELEMENTWISE)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    y = np.full((batch, 7), np.nan, np.float32)
    call(lib, "gelu_ish", x, b, y, batch=batch)
    np.testing.assert_allclose(y, np.exp(np.tanh(x + b)) * 0.5, rtol=2e-6, atol=1e-7)


PUNNED_VIEW = """
func.func @second_float(%x: memref<?x4xf32>, %y: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %one = arith.constant 1 : index
  %bytes = memref.reinterpret_cast %x to offset: [%c4], sizes: [%c4], strides: [%one] : memref<?x4xf32> to memref<?xi8>
  %f = memref.reinterpret_cast %bytes to offset: [%c0], sizes: [%one], strides: [%one] : memref<?xi8> to memref<?xf32>
  %v = memref.load %f[%c0] : memref<?xf32>
  memref.store %v, %y[%c0] : memref<?xf32>
  func.return
}
"""


def test_a_view_of_another_element_type_counts_its_own_elements():
    """memref.reinterpret_cast to bytes at offset 4 starts 4 bytes in (x[0, 1]),
    natively as in the loop interpreter: the int8 GEMM's workspace and output views rely on it."""
    lib = native(PUNNED_VIEW)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros(1, np.float32)
    call(lib, "second_float", x, y, batch=3)
    assert y[0] == x[0, 1]


FLAT = """
func.func @sigmoid(%x: memref<?xf32>, %y: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f32
  %n = memref.dim %x, %c0 : memref<?xf32>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf32>
    %m = arith.negf %v : f32
    %e = math.exp %m : f32
    %d = arith.addf %e, %one : f32
    %r = arith.divf %one, %d : f32
    memref.store %r, %y[%i] : memref<?xf32>
  }
  func.return
}
"""


def test_elementwise_loop_is_vectorized_for_the_host():
    # A correctness check of the pipeline (O3, host CPU features, vectorizers on, exp
    # expanded to arith), not timing.
    lib = native(FLAT)
    ir = lib.llvm_ir
    assert re.search(r"<(4|8|16) x float>", ir)  # the host's width (lit checks named CPUs)
    assert "ptrtoint" not in ir and "inttoptr" not in ir and "@expf" not in ir
    x = np.linspace(-30, 30, 1001, dtype=np.float32)
    y = np.empty_like(x)
    call(lib, "sigmoid", x, y, batch=x.size)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=0)


MATMUL = """
func.func @matmul(%a: memref<?x13xf32>, %b: memref<13x5xf32>, %c: memref<?x5xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c5 = arith.constant 5 : index
  %c13 = arith.constant 13 : index
  %zero = arith.constant 0.0 : f32
  %m = memref.dim %a, %c0 : memref<?x13xf32>
  scf.for %i = %c0 to %m step %c1 {
    scf.for %j = %c0 to %c5 step %c1 {
      memref.store %zero, %c[%i, %j] : memref<?x5xf32>
    }
    scf.for %k = %c0 to %c13 step %c1 {
      %aik = memref.load %a[%i, %k] : memref<?x13xf32>
      scf.for %j = %c0 to %c5 step %c1 {
        %bkj = memref.load %b[%k, %j] : memref<13x5xf32>
        %cij = memref.load %c[%i, %j] : memref<?x5xf32>
        %p = arith.mulf %aik, %bkj : f32
        %s = arith.addf %cij, %p : f32
        memref.store %s, %c[%i, %j] : memref<?x5xf32>
      }
    }
  }
  func.return
}
"""


@pytest.mark.parametrize("contract", ["true", "false"])
@pytest.mark.parametrize("m", [1, 3, 64])
def test_matmul(m, contract):
    lib = native(MATMUL, f"lower-to-llvm{{contract={contract}}}")
    rng = np.random.default_rng(m)
    a = rng.standard_normal((m, 13)).astype(np.float32)
    b = rng.standard_normal((13, 5)).astype(np.float32)
    c = np.empty((m, 5), np.float32)
    call(lib, "matmul", a, b, c, batch=m)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


REDUCE = """
func.func @row_max_sum(%x: memref<?x11xf64>, %y: memref<?x2xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c11 = arith.constant 11 : index
  %zero = arith.constant 0.0 : f64
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %n = memref.dim %y, %c0 : memref<?x2xf64>
  scf.for %i = %c0 to %n step %c1 {
    %s, %mx = scf.for %j = %c0 to %c11 step %c1 iter_args(%acc = %zero, %best = %ninf) -> (f64, f64) {
      %v = memref.load %x[%i, %j] : memref<?x11xf64>
      %a = arith.addf %acc, %v : f64
      %b = arith.maximumf %best, %v : f64
      scf.yield %a, %b : f64, f64
    }
    memref.store %s, %y[%i, %c0] : memref<?x2xf64>
    memref.store %mx, %y[%i, %c1] : memref<?x2xf64>
  }
  func.return
}
"""


def test_reduction_with_loop_carried_values():
    lib = native(REDUCE)
    x = np.random.default_rng(1).standard_normal((29, 11))
    x[3, 4] = np.nan  # maximumf propagates NaN (llvm.maximum)
    y = np.empty((29, 2))
    call(lib, "row_max_sum", x, y, batch=29)
    np.testing.assert_allclose(y[:, 0], x.sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(y[:, 1], np.max(x, axis=1))


ARENA = """
func.func @chain(%x: memref<?x3xf32>, %y: memref<?x3xf32>, %arena: memref<?xi8>)
    attributes {ncc.arg_roles = ["input:x", "output:0", "arena"], ncc.arena_bytes = array<i64: 24, 64>} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c12 = arith.constant 12 : index
  %c64 = arith.constant 64 : index
  %n = memref.dim %x, %c0 : memref<?x3xf32>
  %off = arith.muli %n, %c12 : index
  %off2 = arith.addi %off, %c64 : index
  %t0 = memref.view %arena[%c64][%n] : memref<?xi8> to memref<?x3xf32>
  %t1 = memref.view %arena[%off2][%n] : memref<?xi8> to memref<?x3xf32>
  %m = memref.dim %t1, %c0 : memref<?x3xf32>
  scf.for %i = %c0 to %m step %c1 {
    scf.for %j = %c0 to %c3 step %c1 {
      %v = memref.load %x[%i, %j] : memref<?x3xf32>
      %d = arith.addf %v, %v : f32
      memref.store %d, %t0[%i, %j] : memref<?x3xf32>
      %e = math.absf %d : f32
      memref.store %e, %t1[%i, %j] : memref<?x3xf32>
      %a = memref.load %t0[%i, %j] : memref<?x3xf32>
      %b = memref.load %t1[%i, %j] : memref<?x3xf32>
      %r = arith.subf %b, %a : f32
      memref.store %r, %y[%i, %j] : memref<?x3xf32>
    }
  }
  func.return
}
"""


def test_arena_views_at_byte_offsets():
    module = parse_module(ARENA)
    run_passes(module, "lower-to-llvm")
    from ncc.passes.lowering.loops_to_llvm import kernel_abis

    abi = kernel_abis(module)["chain"]
    assert abi.roles[-1] == ArgRole("arena", "") and abi.arena_bytes(10) == 304
    lib = engine.compile_module(module)
    n = 10
    x = np.random.default_rng(2).standard_normal((n, 3)).astype(np.float32)
    arena = np.zeros(abi.arena_bytes(n), np.uint8)
    y = np.empty_like(x)
    call(lib, "chain", x, y, arena, batch=n)
    np.testing.assert_array_equal(y, np.abs(2 * x) - 2 * x)
    t0 = arena[64:64 + 12 * n].view(np.float32).reshape(n, 3)
    t1 = arena[64 + 12 * n:64 + 24 * n].view(np.float32).reshape(n, 3)
    np.testing.assert_array_equal(t0, 2 * x)  # each view is where its byte offset says
    np.testing.assert_array_equal(t1, np.abs(2 * x))
    assert not arena[:64].any()


INTEGERS = """
func.func @ints(%idx: memref<6xi64>, %table: memref<4xf32>, %f: memref<6xf32>,
                %out: memref<6xf32>, %iout: memref<6xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c6 = arith.constant 6 : index
  %c4 = arith.constant 4 : i64
  %z = arith.constant 0 : i64
  %m3 = arith.constant -3 : i64
  scf.for %i = %c0 to %c6 step %c1 {
    %k = memref.load %idx[%i] : memref<6xi64>
    %neg = arith.cmpi slt, %k, %z : i64
    %wrapped = arith.addi %k, %c4 : i64
    %kk = arith.select %neg, %wrapped, %k : i64
    %j = arith.index_cast %kk : i64 to index
    %v = memref.load %table[%j] : memref<4xf32>
    %fd = arith.floordivsi %k, %m3 : i64
    %mx = arith.maxsi %fd, %z : i64
    %fl = arith.sitofp %mx : i64 to f32
    %s = arith.addf %v, %fl : f32
    memref.store %s, %out[%i] : memref<6xf32>
    %x = memref.load %f[%i] : memref<6xf32>
    %t = arith.fptosi %x : f32 to i32
    memref.store %t, %iout[%i] : memref<6xi32>
  }
  func.return
}
"""


def test_integer_ops_casts_and_gather():
    lib = native(INTEGERS)
    idx = np.array([0, 3, -1, -4, 2, 1], np.int64)
    table = np.array([10, 20, 30, 40], np.float32)
    f = np.array([1.9, -1.9, 3e9, -3e9, np.nan, 0.5], np.float32)
    out, iout = np.empty(6, np.float32), np.empty(6, np.int32)
    call(lib, "ints", idx, table, f, out, iout)
    np.testing.assert_array_equal(out, table[idx] + np.maximum(idx // -3, 0))
    # fptosi saturates (and NaN -> 0) rather than being undefined
    np.testing.assert_array_equal(iout, [1, -1, 2**31 - 1, -2**31, 0, 0])


CONTROL = """
func.func @clip(%x: memref<?xf32>, %y: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %lim = arith.constant 1.0 : f32
  %n = memref.dim %x, %c0 : memref<?xf32>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf32>
    %big = arith.cmpf ogt, %v, %lim : f32
    %r = scf.if %big -> (f32) {
      scf.yield %lim : f32
    } else {
      %w = func.call @square(%v) : (f32) -> f32
      scf.yield %w : f32
    }
    memref.store %r, %y[%i] : memref<?xf32>
  }
  func.return
}
func.func @square(%v: f32) -> f32 {
  %r = arith.mulf %v, %v : f32
  func.return %r : f32
}
func.func @twice(%x: memref<?xf32>, %y: memref<?xf32>) {
  func.call @clip(%x, %y) : (memref<?xf32>, memref<?xf32>) -> ()
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %y, %c0 : memref<?xf32>
  %tmp = memref.alloc(%n) : memref<?xf32>
  "memref.copy"(%y, %tmp) : (memref<?xf32>, memref<?xf32>) -> ()
  %s = memref.alloca() : memref<1xf32>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %tmp[%i] : memref<?xf32>
    memref.store %v, %s[%c0] : memref<1xf32>
    %w = memref.load %s[%c0] : memref<1xf32>
    %r = arith.addf %v, %w : f32
    memref.store %r, %y[%i] : memref<?xf32>
  }
  memref.dealloc %tmp : memref<?xf32>
  func.return
}
"""


def test_control_flow_calls_and_memory_ops():
    lib = native(CONTROL)
    x = np.linspace(-2, 2, 41, dtype=np.float32)
    y = np.empty_like(x)
    call(lib, "twice", x, y, batch=x.size)
    np.testing.assert_array_equal(y, 2 * np.where(x > 1, 1, x * x))


LIBM_F64 = """
func.func @f64math(%x: memref<?xf64>, %y: memref<?x4xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %n = memref.dim %x, %c0 : memref<?xf64>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf64>
    %a = math.erf %v : f64
    %b = math.tanh %v : f64
    %c = math.log1p %v : f64
    %d = math.rsqrt %v : f64
    memref.store %a, %y[%i, %c0] : memref<?x4xf64>
    memref.store %b, %y[%i, %c1] : memref<?x4xf64>
    memref.store %c, %y[%i, %c2] : memref<?x4xf64>
    memref.store %d, %y[%i, %c3] : memref<?x4xf64>
  }
  func.return
}
"""


def test_f64_math_keeps_libm_precision():
    import math

    lib = native(LIBM_F64)
    x = np.linspace(0.01, 5, 33)
    y = np.empty((33, 4))
    call(lib, "f64math", x, y, batch=33)
    expect = np.stack([[math.erf(v) for v in x], np.tanh(x), np.log1p(x), 1 / np.sqrt(x)], 1)
    np.testing.assert_allclose(y, expect, rtol=1e-14)


def test_object_code_round_trip():
    lib = native(ELEMENTWISE)
    blob = lib.object_code()
    assert isinstance(blob, bytes) and blob[:4] == b"\x7fELF"
    again = engine.NativeLibrary.from_object(blob)
    assert again.llvm_ir is None
    x = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32)
    b = np.ones(7, np.float32)
    y1, y2 = np.empty_like(x), np.empty_like(x)
    call(lib, "gelu_ish", x, b, y1, batch=5)
    call(again, "gelu_ish", x, b, y2, batch=5)
    np.testing.assert_array_equal(y1, y2)
    with pytest.raises(KeyError, match="no function 'nope'"):
        again.address("nope")


def test_concurrent_compiles_and_calls_from_threads():
    # Building xDSL IR is not thread-safe, so the modules are lowered here; the engine's
    # compiles and loads (serialized by its lock) and the native calls run in threads.
    modules = []
    for _ in range(4):
        module = parse_module(MATMUL)
        run_passes(module, "lower-to-llvm")
        modules.append(module)
    results, errors = {}, []

    def work(k: int):
        try:
            lib = engine.compile_module(modules[k])
            again = engine.NativeLibrary.from_object(lib.object_code())
            a = np.full((64, 13), k, np.float32)
            for trial, code in enumerate((lib, again) * 10):
                c = np.empty((64, 5), np.float32)
                call(code, "matmul", a, np.ones((13, 5), np.float32), c, batch=64)
                results[k, trial] = c
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 80
    for (k, _), c in results.items():
        np.testing.assert_array_equal(c, np.full((64, 5), 13 * k, np.float32))


def test_engine_rejects_unlowered_modules():
    with pytest.raises(NccError, match="'func.func' is not lowered to the llvm dialect"):
        engine.compile_module(parse_module(ELEMENTWISE))


def test_llvm_ir_text_from_a_neuron_net():
    import ncc

    module = ncc.import_adjacency(str(EXAMPLES / "xor_values.txt"))
    text = engine.llvm_ir_text(module)
    assert "define void @" in text and "x float>" in text


def test_host_description_names_the_cpu():
    import llvmlite.binding as llvm

    assert llvm.get_host_cpu_name() in engine.host_description()
    summary = engine.host_summary()  # what benchmarks print: the CPU and its vector width
    assert summary.startswith(llvm.get_host_cpu_name())
    assert re.search(r"(AVX-512 \(512|AVX2 \(256|AVX \(256|SSE \(128)-bit vectors\)", summary)


# -- whole nn functions: lower-to-loops -> lower-to-llvm -> native, vs ncc.reference --------

def run_native(module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Lower an nn module, JIT it and call its kernel with buffers laid out by its ABI."""
    from ncc.dialects import nn
    from ncc.passes.lowering.loops_to_llvm import kernel_abis

    run_passes(module, "lower-to-loops")
    kernel = next(op for op in module.ops if op.name == "func.func")
    types = [t for t in kernel.function_type.inputs.data]
    weights = {op.sym: np.asarray(op.data) for op in module.ops if isinstance(op, nn.WeightOp)}
    run_passes(module, "lower-to-llvm")
    (abi,) = kernel_abis(module).values()
    batch = inputs[0].shape[0] if inputs and inputs[0].ndim else 0
    feeds, args, outputs = iter(inputs), [], []
    for role, t in zip(abi.roles, types):
        shape = [batch if d < 0 else d for d in t.get_shape()]
        dtype = nn.numpy_dtype(t.element_type)
        if role.kind == "input":
            a = np.ascontiguousarray(next(feeds), dtype)
        elif role.kind == "weight":
            a = np.ascontiguousarray(weights[role.name], dtype).reshape(shape)
        elif role.kind == "output":
            a = np.full(shape, np.nan if dtype.kind == "f" else -1, dtype)
            outputs.append(a)
        else:
            a = np.full(abi.arena_bytes(batch), 0xFF, np.uint8)  # garbage: kernels must not read it first
        args.append(a)
    lib = engine.compile_module(module)
    call(lib, abi.name, *args, batch=batch)
    return outputs


NN_FUNCTIONS = {
    "mlp": ("""
nn.weight @w1 : tensor<5x8xf32> = dense<[[0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8], [0.2, 0.1, -0.3, 0.5, 0.4, -0.1, 0.2, 0.3], [-0.4, 0.3, 0.2, -0.1, 0.6, 0.5, -0.2, 0.1], [0.3, -0.6, 0.1, 0.2, -0.3, 0.4, 0.5, -0.1], [0.5, 0.4, -0.2, -0.6, 0.1, 0.3, 0.2, 0.4]]>
nn.weight @b1 : tensor<8xf32> = dense<[0.1, 0.0, -0.1, 0.2, 0.0, 0.3, -0.2, 0.1]>
nn.weight @w2 : tensor<8x3xf32> = dense<[[0.5, -0.5, 0.1], [0.2, 0.3, -0.4], [-0.1, 0.6, 0.2], [0.4, -0.2, 0.3], [0.3, 0.1, -0.6], [-0.5, 0.2, 0.4], [0.1, -0.3, 0.5], [0.6, 0.4, -0.2]]>
func.func @mlp(%x: tensor<?x5xf32>) -> tensor<?x3xf32> {
  %w1 = nn.weight_ref @w1 : tensor<5x8xf32>
  %b1 = nn.weight_ref @b1 : tensor<8xf32>
  %w2 = nn.weight_ref @w2 : tensor<8x3xf32>
  %0 = nn.matmul %x, %w1 : tensor<?x5xf32>, tensor<5x8xf32> -> tensor<?x8xf32>
  %1 = nn.add %0, %b1 : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %2 = nn.tanh %1 : tensor<?x8xf32>
  %3 = nn.fused_matmul %2, %w2 activation sigmoid : tensor<?x8xf32>, tensor<8x3xf32> -> tensor<?x3xf32>
  %4 = nn.softmax %3 : tensor<?x3xf32>
  func.return %4 : tensor<?x3xf32>
}""", [(7, 5)]),
    "conv_pool": ("""
func.func @cp(%x: tensor<?x3x9x9xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<?x4x4x4xf32> {
  %0 = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x3x9x9xf32>, tensor<4x3x3x3xf32> -> tensor<?x4x9x9xf32>
  %1 = nn.relu %0 : tensor<?x4x9x9xf32>
  %2 = nn.max_pool %1 kernel [3, 3] strides [2, 2] : tensor<?x4x9x9xf32> -> tensor<?x4x4x4xf32>
  func.return %2 : tensor<?x4x4x4xf32>
}""", [(2, 3, 9, 9), (4, 3, 3, 3)]),
    "norm_gelu": ("""
func.func @ng(%x: tensor<3x5x8xf32>, %s: tensor<8xf32>, %b: tensor<8xf32>) -> tensor<3x5x8xf32> {
  %0 = nn.layer_norm %x, %s, %b : tensor<3x5x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<3x5x8xf32>
  %1 = nn.erf %0 : tensor<3x5x8xf32>
  %2 = nn.mul %0, %1 : tensor<3x5x8xf32>, tensor<3x5x8xf32> -> tensor<3x5x8xf32>
  %3 = nn.log_softmax %2 : tensor<3x5x8xf32>
  func.return %3 : tensor<3x5x8xf32>
}""", [(3, 5, 8), (8,), (8,)]),
    "f64_shapes": ("""
func.func @sh(%x: tensor<?x4x6xf64>) -> tensor<?x6x4xf64> {
  %0 = nn.transpose %x perm [0, 2, 1] : tensor<?x4x6xf64> -> tensor<?x6x4xf64>
  %1 = nn.exp %0 : tensor<?x6x4xf64>
  %2 = nn.log %1 : tensor<?x6x4xf64>
  %3 = nn.sub %1, %2 : tensor<?x6x4xf64>, tensor<?x6x4xf64> -> tensor<?x6x4xf64>
  func.return %3 : tensor<?x6x4xf64>
}""", [(5, 4, 6)]),
}


@pytest.mark.parametrize("name", NN_FUNCTIONS)
def test_nn_functions_natively_equal_the_reference(name):
    import ncc

    text, shapes = NN_FUNCTIONS[name]
    rng = np.random.default_rng(7)
    dtype = np.float64 if "f64" in text.split("->")[0] else np.float32
    inputs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    expect = ncc.reference.run(parse_module(text), inputs)
    got = run_native(parse_module(text), inputs)
    for e, g in zip(expect, got):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
