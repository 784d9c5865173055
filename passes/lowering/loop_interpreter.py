"""An interpreter of loop-level kernels (func + scf + arith + math + memref) on numpy.

    outs = run_kernel(module, [x])                 # allocates outputs and the arena
    outs = run_kernel(module, {"x": x}, params={"fc1_w": w}, function="main")

It follows passes/lowering/abi.py exactly, like the native runtime does: inputs,
outputs, weights (from the module's `nn.weight` data or `params`) and the arena
are numpy buffers; `memref.view` is a numpy view of the arena bytes, so two
buffers the memory plan wrongly overlaps really do overwrite each other.
Outputs, the arena and a kernel's own stack buffers (`memref.alloca`) start
filled with 0xFF bytes (NaN for floats), so reading memory no op wrote shows
up in the results. Every load and store is
bounds-checked and every view must lie inside the arena.

Scalars are numpy scalars of the element type (f32 arithmetic rounds like
native f32 code); index and integer values are Python ints. This is for tests
(a few microseconds per op): keep shapes small.
"""

from __future__ import annotations

import math as pymath
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, IntegerType, MemRefType, ModuleOp
from xdsl.ir import Block, Operation, SSAValue

from ncc.dialects import nn
from ncc.dialects.nn.quant import unpack_quads, unpack_rows
from ncc.dialects.nn.sparse import entry_columns
from ncc.passes.lowering import gemm, qgemm, spmm, transpose
from ncc.passes.lowering.abi import KernelABI


class KernelError(Exception):
    """The kernel did something invalid (out-of-bounds access, a view outside the arena)."""


def _dtype(t) -> np.dtype:
    return nn.numpy_dtype(t)


def _float(fn: Callable) -> Callable:
    """A float op on numpy scalars: the result keeps the operand's dtype."""
    def run(*xs):
        with np.errstate(all="ignore"):
            return xs[0].dtype.type(fn(*xs))
    return run


def _unordered(p):
    return lambda a, b: bool(np.isnan(a) or np.isnan(b) or p(a, b))


def _ordered(p):
    return lambda a, b: bool(not (np.isnan(a) or np.isnan(b)) and p(a, b))


_REL = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}
CMPF = {**{"o" + k: _ordered(p) for k, p in _REL.items()},
        **{"u" + k: _unordered(p) for k, p in _REL.items()},
        "false": lambda a, b: False, "true": lambda a, b: True,
        "ord": lambda a, b: not (np.isnan(a) or np.isnan(b)),
        "uno": lambda a, b: bool(np.isnan(a) or np.isnan(b))}
CMPI = {"eq": _REL["eq"], "ne": _REL["ne"], "slt": _REL["lt"], "sle": _REL["le"],
        "sgt": _REL["gt"], "sge": _REL["ge"], "ult": _REL["lt"], "ule": _REL["le"],
        "ugt": _REL["gt"], "uge": _REL["ge"]}


def _maximum(a, b):
    return np.maximum(a, b)  # NaN-propagating, like arith.maximumf


def _minimum(a, b):
    return np.minimum(a, b)


def _trunc_div(a: int, b: int) -> int:
    a, b = int(a), int(b)  # loads give numpy scalars, whose abs(INT_MIN) overflows
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# Pure scalar ops: op class -> function of the operand values.
SCALAR: dict[type, Callable[..., Any]] = {
    arith.AddfOp: _float(np.add), arith.SubfOp: _float(np.subtract),
    arith.MulfOp: _float(np.multiply), arith.DivfOp: _float(np.divide),
    arith.MaximumfOp: _float(_maximum), arith.MinimumfOp: _float(_minimum),
    arith.MaxnumfOp: _float(np.fmax), arith.MinnumfOp: _float(np.fmin),
    arith.NegfOp: _float(np.negative),
    arith.AddiOp: lambda a, b: a + b, arith.SubiOp: lambda a, b: a - b,
    arith.MuliOp: lambda a, b: a * b, arith.DivUIOp: lambda a, b: a // b,
    arith.RemUIOp: lambda a, b: a % b, arith.DivSIOp: _trunc_div,
    arith.RemSIOp: lambda a, b: a - b * _trunc_div(a, b),
    arith.FloorDivSIOp: lambda a, b: a // b,
    arith.MaxSIOp: max, arith.MinSIOp: min, arith.MaxUIOp: max, arith.MinUIOp: min,
    arith.AndIOp: lambda a, b: a & b, arith.OrIOp: lambda a, b: a | b,
    arith.XOrIOp: lambda a, b: a ^ b,
    arith.SelectOp: lambda c, a, b: a if c else b,
    math.ExpOp: _float(np.exp), math.LogOp: _float(np.log), math.TanhOp: _float(np.tanh),
    math.SqrtOp: _float(np.sqrt), math.AbsFOp: _float(np.abs), math.SinOp: _float(np.sin),
    math.CosOp: _float(np.cos), math.FloorOp: _float(np.floor), math.CeilOp: _float(np.ceil),
    math.ExpM1Op: _float(np.expm1), math.Log1pOp: _float(np.log1p),
    math.PowFOp: _float(np.power), math.RsqrtOp: _float(lambda x: 1 / np.sqrt(x)),
    math.ErfOp: _float(lambda x: pymath.erf(x) if np.isfinite(x) else np.sign(x)),
    math.FmaOp: _float(lambda a, b, c: a * b + c),
    math.AcosOp: _float(np.arccos), math.AsinOp: _float(np.arcsin), math.AtanOp: _float(np.arctan),
    math.SinhOp: _float(np.sinh), math.CoshOp: _float(np.cosh), math.AsinhOp: _float(np.arcsinh),
    math.AcoshOp: _float(np.arccosh), math.AtanhOp: _float(np.arctanh),
    math.RoundEvenOp: _float(np.rint),
}


# C math library functions kernels call (declared `func.func private`).
LIBM: dict[str, Callable[..., Any]] = {"fmod": np.fmod, "fmodf": np.fmod}


def _typed(t, v):
    """A Python value as the scalar of MLIR type t."""
    if isinstance(t, IntegerType) and t.width.data == 1:
        return bool(v)  # i1: true is -1 in an IntegerAttr
    if isinstance(t, (IndexType, IntegerType)):
        return int(v)
    return _dtype(t).type(v)


class _Interpreter:
    def __init__(self):
        self.env: dict[SSAValue, Any] = {}

    def run_block(self, block: Block, args: Sequence[Any]) -> tuple:
        env = self.env
        for a, v in zip(block.args, args):
            env[a] = v
        for op in block.ops:
            vals = [env[o] for o in op.operands]
            if isinstance(op, (scf.YieldOp, func.ReturnOp)):
                return tuple(vals)
            fn = SCALAR.get(type(op))
            if fn is not None:
                env[op.results[0]] = fn(*vals)
                continue
            results = self.run_op(op, vals)
            for r, v in zip(op.results, results):
                env[r] = v
        return ()

    def run_op(self, op: Operation, vals: list[Any]) -> Sequence[Any]:
        if isinstance(op, scf.ForOp):
            lb, ub, step, *carried = vals
            for i in range(lb, ub, step):
                carried = self.run_block(op.body.block, (i, *carried))
            return carried
        if isinstance(op, scf.IfOp):
            region = op.true_region if vals[0] else op.false_region
            return self.run_block(region.block, ()) if region.blocks else ()
        if isinstance(op, arith.ConstantOp):
            v = op.value
            if not isinstance(v, (FloatAttr, IntegerAttr)):
                raise KernelError(f"arith.constant of {v} is not supported")
            return (_typed(op.result.type, v.value.data),)
        if isinstance(op, arith.CmpfOp):
            return (CMPF[_predicate(op, CMPF)](*vals),)
        if isinstance(op, arith.CmpiOp):
            return (CMPI[_predicate(op, CMPI)](*vals),)
        if isinstance(op, (arith.IndexCastOp, arith.ExtSIOp, arith.TruncIOp)):
            return (int(vals[0]),)
        if isinstance(op, (arith.SIToFPOp, arith.UIToFPOp, arith.ExtFOp, arith.TruncFOp)):
            return (_dtype(op.result.type).type(vals[0]),)
        if isinstance(op, (arith.FPToSIOp, arith.FPToUIOp)):
            return (int(vals[0]),)
        if isinstance(op, arith.BitcastOp):  # the same bits as the result type
            return (np.asarray(vals[0], _dtype(op.input.type)).view(_dtype(op.result.type))[()],)
        if isinstance(op, arith.ExtUIOp):  # the bits as unsigned
            return (int(vals[0]) & ((1 << op.input.type.width.data) - 1),)
        if isinstance(op, memref.LoadOp):
            arr, *idx = vals
            return (arr[self._index(op, arr, idx)],)
        if isinstance(op, memref.StoreOp):
            v, arr, *idx = vals
            arr[self._index(op, arr, idx)] = v
            return ()
        if isinstance(op, memref.DimOp):
            return (vals[0].shape[vals[1]],)
        if isinstance(op, memref.ViewOp):
            return (self._view(op, *vals),)
        if isinstance(op, memref.AllocaOp) and not vals:  # a kernel's scratch buffer, 0xFF bytes
            t = op.memref.type
            dt = _dtype(t.element_type)
            return (np.full(int(np.prod(t.get_shape())) * dt.itemsize, 0xFF, np.uint8).view(dt)
                    .reshape(t.get_shape()),)
        if isinstance(op, memref.ReinterpretCastOp):  # a row-major view from an element offset
            src = vals[0].reshape(-1)
            dt = _dtype(op.result.type.element_type)
            if src.dtype != dt:  # the same bytes as another element type
                src = src.view(np.uint8).view(dt)
            dynamic = iter(vals[1:])
            offset = next(dynamic) if op.offsets else op.static_offsets.get_values()[0]
            shape = [next(dynamic) if d == memref.DYNAMIC_INDEX else d for d in op.static_sizes.get_values()]
            size = int(np.prod(shape))
            if offset < 0 or offset + size > src.size:
                raise KernelError(f"{op.name}: [{offset}, {offset + size}) is outside a buffer "
                                  f"of {src.size} elements")
            return (src[offset:offset + size].reshape(shape),)
        if isinstance(op, func.CallOp) and op.callee.string_value() in LIBM:
            return (_float(LIBM[op.callee.string_value()])(*vals),)
        if isinstance(op, func.CallOp) and op.callee.string_value() in KERNELS:
            KERNELS[op.callee.string_value()](*vals)
            return ()
        raise KernelError(f"the loop interpreter cannot run '{op.name}'")

    @staticmethod
    def _index(op: Operation, arr: np.ndarray, idx: list[int]) -> tuple[int, ...]:
        if len(idx) != arr.ndim or any(not 0 <= i < n for i, n in zip(idx, arr.shape)):
            raise KernelError(f"{op.name}: index {idx} out of bounds for shape {list(arr.shape)}")
        return tuple(idx)

    @staticmethod
    def _view(op: memref.ViewOp, arena: np.ndarray, offset: int, *sizes: int) -> np.ndarray:
        t = op.result.type
        sizes_it = iter(sizes)
        shape = [next(sizes_it) if d == nn.DYN else d for d in t.get_shape()]
        dt = _dtype(t.element_type)
        nbytes = int(np.prod(shape)) * dt.itemsize
        if offset < 0 or offset + nbytes > arena.size:
            raise KernelError(f"memref.view [{offset}, {offset + nbytes}) is outside the arena "
                              f"of {arena.size} bytes")
        return arena[offset:offset + nbytes].view(dt).reshape(shape)


def _sgemm(m, n, k, a, rs, cs, b, ldb, c, ldc, flags, workspace, threads, bias, residual) -> None:
    """ncc_sgemm's meaning (passes/lowering/gemm.py), in float64 numpy (one thread: the same result)."""
    i, j, kk = np.arange(m)[:, None], np.arange(n)[None, :], np.arange(k)
    if flags & gemm.PACKED_B:  # panels [ceil(n / PANEL), k, PANEL]
        b_at = (j // gemm.PANEL) * (k * gemm.PANEL) + kk[:, None] * gemm.PANEL + j % gemm.PANEL
    elif flags & gemm.TRANSPOSED_B:  # B^T [n, k], rows ldb apart
        b_at = j * ldb + kk[:, None]
    else:
        b_at = kk[:, None] * ldb + j
    for name, buf, idx in (("A", a, i * rs + kk[None, :] * cs), ("B", b, b_at), ("C", c, i * ldc + j)):
        if idx.size and (idx.min() < 0 or idx.max() >= buf.size):
            raise KernelError(f"{gemm.SYMBOL}: {name} reaches past its buffer of {buf.size} elements")
    product = a[i * rs + kk[None, :] * cs].astype(np.float64) @ b[b_at]
    at = i * ldc + j
    value = (c[at] + product) if flags & gemm.ACCUMULATE else product
    if flags & gemm.RESIDUAL:
        if at.size and at.max() >= residual.size:
            raise KernelError(f"{gemm.SYMBOL}: the residual reaches past its buffer of {residual.size} elements")
        value = value + residual[at]
    if flags & gemm.BIAS_ROWS:
        value = value + bias[:m].reshape(m, 1)
    if flags & gemm.BIAS_COLS:
        value = value + bias[:n].reshape(1, n)
    if flags & (gemm.RELU | gemm.RELU6):
        value = np.maximum(value, 0)
    c[at] = np.minimum(value, 6) if flags & gemm.RELU6 else value


def _transpose(rows, cols, src, lds, dst, ldd) -> None:
    """ncc_transpose32's meaning (passes/lowering/transpose.py): dst[j * ldd + i] = src[i * lds + j]."""
    i, j = np.arange(rows)[:, None], np.arange(cols)[None, :]
    for name, buf, idx in (("src", src, i * lds + j), ("dst", dst, j * ldd + i)):
        if idx.size and idx.max() >= buf.size:
            raise KernelError(f"{transpose.SYMBOL}: {name} reaches past its buffer of {buf.size} elements")
    dst[j * ldd + i] = src[i * lds + j]


def _qgemm(m, n, k, a, lda, bm, ldb, c, ldc, a_zero, b_zero, b_zeros, flags, workspace, threads, bias, scale,
           c_zero) -> None:
    """ncc_qgemm's meaning (passes/lowering/qgemm.py) in int64 numpy, its
    REQUANTIZE epilogue as nn.requantize's reference."""
    def matrix(buf, rows, cols, ld, signed):
        at = np.arange(rows)[:, None] * ld + np.arange(cols)
        if at.size and at.max() >= buf.size:
            raise KernelError(f"{qgemm.SYMBOL}: an operand reaches past its buffer of {buf.size} elements")
        return buf.view(np.int8 if signed else np.uint8)[at].astype(np.int64), at
    if flags & qgemm.PACKED_A:
        rows = a.view(np.uint8).view(np.int32).reshape(m, -1)
        x = unpack_rows(rows, k, bool(flags & qgemm.A_SIGNED)).astype(np.int64)
    else:
        x, _ = matrix(a, m, k, lda, flags & qgemm.A_SIGNED)
    if flags & qgemm.PACKED_B:
        panels = bm.view(np.uint8).view(np.int32).reshape(-(-n // qgemm.NR_MAX), -1)
        w = unpack_quads(panels, k, n, bool(flags & qgemm.B_UNSIGNED)).astype(np.int64)
    else:
        w, _ = matrix(bm, k, n, ldb, not flags & qgemm.B_UNSIGNED)
    zeros = np.asarray(b_zeros[:n], np.int64) if flags & qgemm.B_ZERO_COLUMNS else b_zero
    acc = (x - a_zero) @ (w - zeros)
    if not flags & qgemm.REQUANTIZE:  # C: i32, given as its bytes
        c = c.view(np.int32)
        _, at = matrix(c, m, n, ldc, True)
        c[at] = acc.astype(np.int32)
        return
    _, at = matrix(c, m, n, ldc, True)
    along = (slice(None, m), None) if flags & qgemm.BY_ROW else (None, slice(None, n))
    total = (acc + bias.view(np.int32)[along].astype(np.int64)).astype(np.int32)
    y = total.astype(np.float32) * scale.view(np.float32)[along]
    lo, hi = (0, 255) if flags & qgemm.C_UNSIGNED else (-128, 127)
    q = np.clip(np.rint(y) + c_zero, max(lo, c_zero) if flags & qgemm.RELU else lo, hi)
    c.view(np.uint8 if flags & qgemm.C_UNSIGNED else np.int8)[at] = q


def _spmm(rows, k, n, x, ldx, y, ldy, steps, blocks, lanes, slice_values, colptr, rowidx, column_values, flags,
          bias, workspace, threads) -> None:
    """ncc_spmm's meaning (passes/lowering/spmm.py) in float64 numpy, from the
    column form; the slice form must describe the same weight (one thread:
    the same result as a team's)."""
    w = np.zeros((k, n))
    w[rowidx, entry_columns(colptr, n)] = column_values
    from_slices = np.zeros((k, n))
    t = 0
    for s, count in enumerate(steps):
        for step in range(t, t + count):
            cols = s * spmm.SLICE + np.arange(spmm.SLICE)
            vals = slice_values[step * spmm.SLICE:(step + 1) * spmm.SLICE]
            live = (cols < n) & (vals != 0)
            from_slices[blocks[step] * spmm.BLOCK + lanes[step * spmm.SLICE:(step + 1) * spmm.SLICE][live],
                        cols[live]] += vals[live]
        t += count
    if not np.array_equal(from_slices, w):
        raise KernelError(f"{spmm.SYMBOL}: the slice form and the column form describe different weights")
    given = bool(flags & spmm.FEATURE_MAJOR)  # X^T and Y^T: K and N rows of `rows` values
    x_at = np.arange(k)[None, :] * ldx + np.arange(rows)[:, None] if given else \
        np.arange(rows)[:, None] * ldx + np.arange(k)
    y_at = np.arange(n)[None, :] * ldy + np.arange(rows)[:, None] if given else \
        np.arange(rows)[:, None] * ldy + np.arange(n)
    for name, buf, at in (("X", x, x_at), ("Y", y, y_at)):
        if at.size and at.max() >= buf.size:
            raise KernelError(f"{spmm.SYMBOL}: {name} reaches past its buffer of {buf.size} elements")
    product = x[x_at].astype(np.float64) @ w
    if flags & gemm.BIAS_COLS:
        product = product + bias[:n]
    if flags & (gemm.RELU | gemm.RELU6):
        product = np.maximum(product, 0)
    y[y_at] = np.minimum(product, 6) if flags & gemm.RELU6 else product


def _predicate(op, table) -> str:
    names = arith.CMPI_COMPARISON_OPERATIONS if table is CMPI else arith.CMPF_COMPARISON_OPERATIONS
    return names[op.predicate.value.data]


def kernels(module: ModuleOp) -> dict[str, func.FuncOp]:
    return {op.sym_name.data: op for op in module.ops
            if isinstance(op, func.FuncOp) and "ncc.arg_roles" in op.attributes}


def run_kernel(module: ModuleOp, inputs: Sequence[Any] | Mapping[str, Any], *,
               function: str | None = None, params: Mapping[str, Any] | None = None,
               fill: int = 0xFF) -> list[np.ndarray]:
    """Run a loop-level kernel of `module` on numpy inputs; returns its outputs."""
    found = kernels(module)
    if function is None and len(found) != 1:
        raise KernelError(f"pick a kernel: {', '.join(found) or 'none'}")
    fn = found[function] if function else next(iter(found.values()))
    abi = KernelABI.of(fn)
    types = fn.function_type.inputs.data
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    params = dict(params or {})
    in_roles = [r for r in abi.roles if r.kind == "input"]
    if isinstance(inputs, Mapping):
        arrays = {r.name: np.asarray(inputs[r.name]) for r in in_roles}
    else:
        arrays = {r.name: np.asarray(v) for r, v in zip(in_roles, inputs, strict=True)}
    batch = next((arrays[r.name].shape[0] for r, t in zip(abi.roles, types)
                  if r.kind == "input" and t.get_shape() and t.get_shape()[0] == nn.DYN), 0)
    args, outputs = [], []
    for role, t in zip(abi.roles, types):
        assert isinstance(t, MemRefType)
        shape = [batch if d == nn.DYN else d for d in t.get_shape()]
        dt = _dtype(t.element_type)
        if role.kind == "input":
            a = np.array(arrays[role.name], dtype=dt, order="C")
            if list(a.shape) != shape:
                raise KernelError(f"input {role.name}: shape {list(a.shape)}, expected {shape}")
        elif role.kind == "weight":
            w = params.get(role.name)
            w = weights[role.name].data if w is None else w
            a = np.array(w, dtype=dt).reshape(shape)  # a copy: kernels must not write weights
            a.flags.writeable = False
        elif role.kind == "output":
            a = np.full(int(np.prod(shape)) * dt.itemsize, fill, np.uint8).view(dt).reshape(shape)
            outputs.append(a)
        else:
            a = np.full(abi.arena_bytes(batch), fill, np.uint8)
        args.append(a)
    with np.errstate(over="ignore"):  # integer arithmetic wraps, as in native code
        _Interpreter().run_block(fn.body.block, args)
    return outputs


# The library kernels loop-level code calls, by symbol: their meaning in numpy.
KERNELS = {gemm.SYMBOL: _sgemm, spmm.SYMBOL: _spmm, qgemm.SYMBOL: _qgemm, transpose.SYMBOL: _transpose}
