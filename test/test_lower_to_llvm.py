"""lower-to-llvm's output IR and errors, and expand-math's accuracy (in ulps, natively)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from xdsl.dialects import llvm

from ncc.diagnostics import NccError
from ncc.ir import parse_module, print_module
from ncc.passes.lowering.loops_to_llvm import kernel_abis
from ncc.pipeline import run_passes
from ncc.runtime import engine
from ncc.passes.lowering.abi import KernelABI

KERNEL = """
func.func @k(%x: memref<?x4xf32>, %w: memref<4xf32>, %y: memref<?x4xf32>, %arena: memref<?xi8>)
    attributes {ncc.arg_roles = ["input:x", "weight:w", "output:0", "arena"],
                ncc.arena_bytes = array<i64: 16, 0>} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %x, %c0 : memref<?x4xf32>
  %t = memref.view %arena[%c0][%n] : memref<?xi8> to memref<?x4xf32>
  scf.for %i = %c0 to %n step %c1 {
    scf.for %j = %c0 to %c4 step %c1 {
      %v = memref.load %x[%i, %j] : memref<?x4xf32>
      %b = memref.load %w[%j] : memref<4xf32>
      %s = arith.mulf %v, %b : f32
      memref.store %s, %t[%i, %j] : memref<?x4xf32>
      %u = memref.load %t[%i, %j] : memref<?x4xf32>
      memref.store %u, %y[%i, %j] : memref<?x4xf32>
    }
  }
  func.return
}
"""


def lowered(text: str, pipeline: str = "lower-to-llvm"):
    module = parse_module(text, "k.mlir")
    run_passes(module, pipeline)
    return module


def test_signature_is_the_kernel_abi():
    module = lowered(KERNEL)
    (fn,) = list(module.ops)
    assert isinstance(fn, llvm.FuncOp) and fn.linkage.linkage.data == "external"
    ptr = llvm.LLVMPointerType()
    assert list(fn.function_type.inputs.data) == [ptr, ptr, ptr, ptr, llvm.i64]
    assert isinstance(fn.function_type.output, llvm.LLVMVoidType)
    assert [set(d.data) for d in fn.arg_attrs.data] == [{"llvm.noalias"}] * 4 + [set()]
    # the ABI attributes survive, and read the same at both levels
    before = KernelABI.of(next(iter(parse_module(KERNEL).ops)))
    assert kernel_abis(module) == {"k": before}


def test_addresses_are_getelementptr_only():
    module = lowered(KERNEL)
    names = [op.name for op in module.walk()]
    assert "llvm.getelementptr" in names
    assert not {"llvm.ptrtoint", "llvm.inttoptr"} & set(names)
    assert not [n for n in names if n.split(".")[0] in ("memref", "scf", "arith", "math", "cf",
                                                        "func")]
    geps = [op for op in module.walk() if isinstance(op, llvm.GEPOp)]
    assert {str(g.elem_type) for g in geps} == {"f32", "i8"}  # elements, and the arena view
    assert all(g.inbounds is not None for g in geps)


def test_memref_dim_of_a_dynamic_argument_is_the_batch():
    text = print_module(lowered(KERNEL))
    # the loop bound compared against is the trailing i64 argument
    assert 'llvm.icmp "slt" %' in text
    fn = next(iter(lowered(KERNEL).ops))
    batch = fn.body.blocks.first.args[-1]
    assert any(isinstance(u.operation, llvm.ICmpOp) for u in batch.uses)


def test_printed_output_parses_back():
    text = print_module(lowered(KERNEL))
    again = parse_module(text, "again.mlir")
    assert print_module(again) == text


@pytest.mark.parametrize("body, op", [
    ("%r = memref.subview %x[0, 0][1, 4][1, 1] : memref<?x4xf32> to memref<1x4xf32, strided<[4, 1]>>\n"
     "  %v = memref.load %r[%c0, %c0] : memref<1x4xf32, strided<[4, 1]>>", "memref.subview"),
    ("%r = math.ctpop %i : i32\n  %v = arith.sitofp %r : i32 to f32", "math.ctpop"),
])
def test_unsupported_ops_are_named_with_their_location(body, op):
    text = f"""func.func @bad(%x: memref<?x4xf32>, %i: i32) {{
  %c0 = arith.constant 0 : index
  {body}
  memref.store %v, %x[%c0, %c0] : memref<?x4xf32>
  func.return
}}"""
    with pytest.raises(NccError) as err:
        lowered(text)
    assert f"'{op}' has no lowering to the llvm dialect" in str(err.value)
    assert str(err.value).startswith("k.mlir:3:")


def test_several_results_are_an_error():
    text = """func.func @two(%a: f32) -> (f32, f32) {
  func.return %a, %a : f32, f32
}"""
    with pytest.raises(NccError, match="returns 2 values"):
        lowered(text)


def test_options_turn_off_expansion_and_contraction():
    text = """func.func @e(%x: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %v = memref.load %x[%c0] : memref<?xf32>
  %e = math.exp %v : f32
  %m = arith.mulf %e, %e : f32
  %a = arith.addf %m, %v : f32
  memref.store %a, %x[%c0] : memref<?xf32>
  func.return
}"""
    default = print_module(lowered(text))
    assert "llvm.exp" not in default and '"llvm.fmuladd.f32"' in default
    plain = print_module(lowered(text, "lower-to-llvm{expand-math=false contract=false}"))
    assert '"llvm.exp.f32"' in plain and "fmuladd" not in plain and "llvm.fadd" in plain


# -- expand-math ---------------------------------------------------------------------------

UNARY = """
func.func @k(%x: memref<?x{T}>, %y: memref<?x{T}>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?x{T}>
  scf.for %i = %c0 to %n step %c1 {{
    %v = memref.load %x[%i] : memref<?x{T}>
    %r = math.{OP} %v : {T}
    memref.store %r, %y[%i] : memref<?x{T}>
  }}
  func.return
}}
"""

EXPANDED = ("exp", "log", "tanh", "erf", "log1p", "expm1")


@pytest.mark.parametrize("op", EXPANDED)
def test_expand_math_leaves_only_arith(op):
    module = lowered(UNARY.format(OP=op, T="f32"), "expand-math")
    names = {o.name for o in module.walk()}
    assert f"math.{op}" not in names
    assert names <= {"builtin.module", "func.func", "func.return", "scf.for", "scf.yield",
                     "memref.load", "memref.store", "memref.dim", "math.absf",
                     "math.copysign"} | {n for n in names if n.startswith("arith.")}


def test_expand_math_keeps_f64():
    module = lowered(UNARY.format(OP="exp", T="f64"), "expand-math")
    assert "math.exp" in {o.name for o in module.walk()}


def _erf(x):
    return np.vectorize(math.erf)(x)


REFERENCE = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": _erf, "log1p": np.log1p,
             "expm1": np.expm1}
# Measured maxima over the inputs below (exp 0.96, log 0.80, tanh 1.30, erf 5.4, log1p 2.2,
# expm1 2.4); bounds with a little slack.
MAX_ULPS = {"exp": 1, "log": 1, "tanh": 2, "erf": 6, "log1p": 3, "expm1": 3}

EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 1.17549435e-38, 1e-8, -1e-8,
         0.5, -0.5, 1.0, -1.0, 0.625, -0.625, 88.72, 88.73, 89.0, 100.0, -87.3, -87.4, -103.9,
         -104.0, -110.0, 3.4e38, -3.4e38, 4.0, -4.0, 3.9, 9.0, -9.0]


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([
        rng.uniform(-1, 1, 20000), rng.uniform(-20, 20, 20000), rng.uniform(-120, 120, 20000),
        np.exp(rng.uniform(-100, 88, 20000)), -np.exp(rng.uniform(-100, 5, 2000)),
        np.float32(2.0) ** np.arange(-149, 128), EDGES]).astype(np.float32)


def ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 spacing at the correctly rounded result."""
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = exact.astype(np.float32)
        same = (got == rounded) | (np.isnan(got) & np.isnan(rounded))
        spacing = np.maximum(np.spacing(np.abs(rounded)).astype(np.float64),
                             float(np.finfo(np.float32).smallest_subnormal))
        return np.where(same, 0.0, np.abs(got.astype(np.float64) - exact) / spacing)


@pytest.mark.parametrize("op", EXPANDED)
def test_expanded_math_accuracy_in_ulps(op):
    module = lowered(UNARY.format(OP=op, T="f32"))
    assert "math" not in {o.dialect_name() for o in module.walk()}
    lib = engine.compile_module(module)
    x = _inputs()
    y = np.empty_like(x)
    lib.kernel("k", 2)(x.ctypes.data, y.ctypes.data, x.size)
    with np.errstate(all="ignore"):
        exact = REFERENCE[op](x.astype(np.float64))
    err = ulp_error(y, exact)
    worst = int(np.argmax(err))
    assert err.max() <= MAX_ULPS[op], f"{op}({x[worst]!r}) = {y[worst]!r}, exact {exact[worst]!r}"
    # special values are exact: NaN stays NaN, infinities and zeros as libm gives them
    special = ~np.isfinite(exact) | (exact == 0)
    np.testing.assert_array_equal(y[special], exact[special].astype(np.float32))


def test_expanded_approximate_exp():
    """math.exp fastmath<afn> (the exp in 1 + exp(x): sigmoid, the tanh Gelu): exp's 1 ulp from
    2^-125 to 2^127 with one scale, exp(-86.5) below (never a subnormal result), inf from 88.38."""
    text = UNARY.format(OP="exp", T="f32").replace("math.exp %v : f32", "math.exp %v fastmath<afn> : f32")
    module = lowered(text)
    lib = engine.compile_module(module)
    x = _inputs()
    y = np.empty_like(x)
    lib.kernel("k", 2)(x.ctypes.data, y.ctypes.data, x.size)
    with np.errstate(all="ignore"):
        exact = np.exp(x.astype(np.float64))
    normal = (x >= -86.5) & (x < 88.37)
    assert ulp_error(y[normal], exact[normal]).max() <= MAX_ULPS["exp"]
    low = x < -86.5
    assert np.all(y[low] == np.float32(np.exp(np.float64(np.float32(-86.5)))))
    assert np.all(np.isinf(y[(x >= 88.38) & ~np.isnan(x)])) and np.isnan(y[np.isnan(x)]).all()
    assert not np.any((y != 0) & (np.abs(y) < np.finfo(np.float32).tiny))  # no subnormal result


def test_expanded_math_vectorizes():
    text = UNARY.format(OP="tanh", T="f32")
    ir = engine.optimized_llvm_ir(lowered(text))
    assert "x float>" in ir and "@tanhf" not in ir and "llvm.tanh" not in ir


def test_thousands_of_blocks():
    # Block ordering is iterative: 1,100 scf.if in sequence make 2,200 blocks, a chain
    # deeper than Python's recursion limit.
    ifs = "\n".join(f"""  %p{k} = arith.cmpf ogt, %v, %t{k % 7} : f32
  scf.if %p{k} {{
    memref.store %t{k % 7}, %x[%i0] : memref<?xf32>
  }}""" for k in range(1100))
    consts = "\n".join(f"  %t{j} = arith.constant {j}.0 : f32" for j in range(7))
    text = f"""func.func @many(%x: memref<?xf32>, %y: memref<?xf32>) {{
  %i0 = arith.constant 0 : index
{consts}
  %v = memref.load %y[%i0] : memref<?xf32>
{ifs}
  func.return
}}"""
    module = lowered(text)
    assert len(next(iter(module.ops)).body.blocks) > 2000
    lib = engine.compile_module(module)
    for v in (-1.0, 3.5, 9.0):
        x, y = np.full(1, 42.0, np.float32), np.full(1, v, np.float32)
        lib.kernel("many", 2)(x.ctypes.data, y.ctypes.data, 1)
        stored = [float(k % 7) for k in range(1100) if v > k % 7]
        assert x[0] == (stored[-1] if stored else 42.0)


def test_big_kernels_are_outlined_into_one_function_per_loop_nest():
    """A chain of 24 elementwise ops: 24 loop nests, each its own noinline function."""
    import ncc

    ops = ["relu", "tanh", "sigmoid", "exp", "neg"]
    lines = ["func.func @main(%v0: tensor<?x8xf32> {ncc.name = \"x\"}) -> (tensor<?x8xf32> {ncc.name = \"y\"}) {"]
    for k in range(24):
        lines.append(f"  %v{k + 1} = nn.{ops[k % len(ops)]} %v{k} : tensor<?x8xf32>")
    lines += ["  func.return %v24 : tensor<?x8xf32>", "}"]
    text = "\n".join(lines) + "\n"
    model = ncc.compile(text, cache=False, fuse=False)
    ir = model.llvm_ir
    assert len(re.findall(r"define internal .*void @main_nest\d+\(", ir)) == 24
    assert "noinline" in ir
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    (want,) = ncc.reference.run(ncc.parse_module(text), [x])
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
