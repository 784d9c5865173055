"""lower-to-loops: nn functions on tensors -> loop-level kernels on memrefs.

    func.func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
      %0 = nn.relu %x : tensor<?x4xf32>
      %1 = nn.tanh %0 : tensor<?x4xf32>
      func.return %1 : tensor<?x4xf32>
    }
        ==>
    func.func @f(%x: memref<?x4xf32>, %out: memref<?x4xf32>, %arena: memref<?xi8>)
        attributes {ncc.arg_roles = ["input:arg0", "output:0", "arena"],
                    ncc.arena_bytes = array<i64: 64, 0>} {
      %batch = memref.dim %x, %c0 : memref<?x4xf32>
      %v0 = memref.view %arena[%c0][%batch] : memref<?xi8> to memref<?x4xf32>
      scf.for %i = %c0 to %batch step %c1 {
        scf.for %j = %c0 to %c4 step %c1 {
          %a = memref.load %x[%i, %j] ...  %r = arith.maximumf %a, %zero ... memref.store %r, %v0[%i, %j]
      ...  (the tanh loop nest writes %out directly)

The kernel follows passes/lowering/abi.py. Bufferization:
  * each tensor argument -> a memref argument `input:<name>` (its `ncc.name`
    argument attribute, else `arg<i>`, as in ncc.reference);
  * each returned tensor -> an output memref argument `output:<i>` (or the
    result's `ncc.name`); the op defining it writes there directly, and a
    returned input, weight or repeated value is copied;
  * each `nn.weight_ref` -> one `weight:<symbol>` argument per weight; each
    `nn.constant` becomes a module-level `nn.weight` (marked `ncc.constant`)
    with a fresh symbol and is passed the same way;
  * every other value -> a `memref.view` of the `arena` argument at the
    offset chosen by the static memory plan (memory_plan.py): buffers reuse
    arena bytes once their last user has run. A reshape of an arena value is a
    view of the same bytes (no copy). Offsets are `a * batch + b` with batch =
    `memref.dim` 0 of the first input whose dimension 0 is dynamic: the only
    dynamic dimension a kernel may have is dimension 0, the batch.

Every op becomes scf.for loop nests of memref.load/store, arith and math, from
a few mechanisms: `map_nest` (elementwise, broadcasting, data movement: an
index map per operand), `window` (conv and pools: input positions with bounds
checks for padding) and loop nests carrying accumulators (`nest(..., inits)`).
Activations are the activation table's own code (dialects/activations.py,
through UNARY_EMIT), shared by nn.relu etc. and the fused ops. Matmul loops
run i, k, j so that the inner loop is unit-stride.

sparse_matmul: up to `sparse-unroll-limit` nonzeros (default 256) the edges
are straight-line code (row and column indices are constants); above it the
indices become two i64 weights (`<fn>_sparse<k>_rows/_cols`, `ncc.constant`)
read by a loop over the edges. gather, gather_elements and the scatters clamp
an out-of-range index into range (native code cannot raise; a negative index
counts from the end, as in ONNX). resize reads its taps (input indices and
weights per resized axis) from tables computed at compile time: weights
`<fn>_resize_<table><axis>` marked `ncc.constant` (`TABLES`).
conv_weight_grad sums its products in rows of a buffer of its own, on the
stack (`memref.alloca`, at most WG_SCRATCH elements), so that its inner loop
stores instead of carrying a scalar sum.
"""

from __future__ import annotations

import math as pymath
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import (
    FloatAttr,
    IndexType,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i1,
    i8,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import activations, nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import memory_plan
from ncc.passes.lowering.scalar import ArithScalar
from ncc.reference import arg_names, result_names
from ncc.passes.lowering.abi import ArgRole, KernelABI

SUPPORTED_ELEMENTS = (f32, f64, i8, i32, i64, i1)  # i1: one byte per element (numpy bool)
index = IndexType()
Index = Callable[[Sequence[SSAValue]], list[SSAValue]]  # loop ivs -> memref indices


def fail(op: Operation, message: str) -> PassFailedException:
    e = PassFailedException(f"{op.name}: {message}")
    e.op = op  # ncc-opt reports the op's location
    return e


@dataclass
class Buf:
    """A tensor's buffer: the memref value, its shape (DYN = the batch) and element type."""

    ref: SSAValue
    shape: tuple[int, ...]
    elt: Attribute

    @property
    def is_float(self) -> bool:
        return isinstance(self.elt, nn.FLOAT_TYPES)


# ---------------------------------------------------------------------------
# The builder: appends ops to the current block, builds loop nests.


class Builder:
    def __init__(self, entry: Block):
        self.entry = entry
        self.block = entry
        self.batch: SSAValue | None = None
        self._consts: dict[tuple, SSAValue] = {}
        self.externals: dict[str, tuple[list[Attribute], list[Attribute]]] = {}

    def __call__(self, cls: type, *operands) -> SSAValue:
        return self.emit(cls(*operands))

    def emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def const(self, value: float | int, t: Attribute) -> SSAValue:
        """A constant, created once per kernel at the top of the entry block."""
        value = float(value) if isinstance(t, nn.FLOAT_TYPES) else int(value)
        key = (repr(value), t)  # repr: -0.0 and 0.0 are different constants
        if key not in self._consts:
            attr = FloatAttr(value, t) if isinstance(t, nn.FLOAT_TYPES) else IntegerAttr(value, t)
            op = arith.ConstantOp(attr)
            last = next(reversed(self._consts.values()), None)
            if last is not None:
                self.entry.insert_op_after(op, last.owner)
            elif self.entry.first_op is not None:
                self.entry.insert_op_before(op, self.entry.first_op)
            else:
                self.entry.add_op(op)
            self._consts[key] = op.result
        return self._consts[key]

    def idx(self, n: int) -> SSAValue:
        return self.const(int(n), index)

    def like(self, value: float, x: SSAValue) -> SSAValue:
        return self.const(value, x.type)

    def size(self, d: int | SSAValue) -> SSAValue:
        """A dimension as an index value: DYN is the batch."""
        if isinstance(d, SSAValue):
            return d
        return self.batch if d == DYN else self.idx(d)  # type: ignore[return-value]

    def load(self, buf: Buf, indices: Sequence[SSAValue]) -> SSAValue:
        return self.emit(memref.LoadOp.get(buf.ref, list(indices)))

    def store(self, value: SSAValue, buf: Buf, indices: Sequence[SSAValue]) -> None:
        self.emit(memref.StoreOp.get(value, buf.ref, list(indices)))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self(arith.SelectOp, cond, a, b)

    def libm(self, name: str, *args: SSAValue) -> SSAValue:
        """A call to the C math library for what no arith/math op computes
        (`fmod`; `fmodf` on f32), declared in the module by the pass."""
        t = args[0].type
        name += "f" if t == f32 else ""
        self.externals[name] = ([a.type for a in args], [t])
        return self.emit(func.CallOp(name, list(args), [t]))

    def cmpf(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self(arith.CmpfOp, a, b, pred)

    def cmpi(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self(arith.CmpiOp, a, b, pred)

    def binary(self, name: str, a: SSAValue, b: SSAValue) -> SSAValue:
        """An nn binary op on scalars (float or integer by the operand type)."""
        fop, iop = BINARY_EMIT[name]
        emit = fop if isinstance(a.type, nn.FLOAT_TYPES) else iop
        return self(emit, a, b) if isinstance(emit, type) else emit(self, a, b)

    # index arithmetic, folding the trivial cases so the IR stays readable
    def add_i(self, a: SSAValue, n: int | SSAValue) -> SSAValue:
        if isinstance(n, int) and n == 0:
            return a
        return self.size(n) if a is self.idx(0) else self(arith.AddiOp, a, self.size(n))

    def mul_i(self, a: SSAValue, n: int) -> SSAValue:
        return a if n == 1 or a is self.idx(0) else self(arith.MuliOp, a, self.idx(n))

    def nest(self, bounds: Sequence[int | SSAValue], body: Callable[[list[SSAValue], list[SSAValue]],
             Sequence[SSAValue] | None], inits: Sequence[SSAValue] = ()) -> list[SSAValue]:
        """Loops 0..bound (step 1) nested in order, carrying `inits` through
        every level; body(ivs, carried) returns the next carried values. A
        static bound of 1 is no loop (its iv is 0)."""

        def build(k: int, ivs: list[SSAValue], carried: list[SSAValue]) -> list[SSAValue]:
            if k == len(bounds):
                return list(body(ivs, carried) or [])
            if isinstance(bounds[k], int) and bounds[k] == 1:
                return build(k + 1, [*ivs, self.idx(0)], carried)
            ub = self.size(bounds[k])
            block = Block(arg_types=[index, *(c.type for c in carried)])
            outer, self.block = self.block, block
            results = build(k + 1, [*ivs, block.args[0]], list(block.args[1:]))
            block.add_op(scf.YieldOp(*results))
            self.block = outer
            loop = scf.ForOp(self.idx(0), ub, self.idx(1), carried, block)
            self.block.add_op(loop)
            return list(loop.results)

        return build(0, [], list(inits))


def identity_map(ivs: Sequence[SSAValue]) -> list[SSAValue]:
    return list(ivs)


def broadcast_map(b: Builder, out_shape: Sequence[int], shape: Sequence[int]) -> Index:
    """numpy broadcasting: operand dims align right; a dim of 1 reads index 0."""
    off = len(out_shape) - len(shape)

    def index_of(ivs: Sequence[SSAValue]) -> list[SSAValue]:
        return [b.idx(0) if d == 1 else ivs[off + i] for i, d in enumerate(shape)]

    return index_of


def map_nest(b: Builder, space: Sequence[int | SSAValue], out: Buf, out_map: Index,
             reads: Sequence[tuple[Buf, Index]], fn: Callable[..., SSAValue]) -> None:
    """for ivs in space: out[out_map(ivs)] = fn(*(buf[map(ivs)] for buf, map in reads))."""

    def body(ivs, _):
        b.store(fn(*(b.load(buf, m(ivs)) for buf, m in reads)), out, out_map(ivs))

    b.nest(space, body)


# ---------------------------------------------------------------------------
# Scalar tables: activations and unary ops, binary ops, reductions.


def _m(cls: type) -> Callable[[Builder, SSAValue], SSAValue]:
    return lambda b, x: b(cls, x)


def scalar(b: Builder, like: SSAValue) -> ArithScalar:
    """The activation table's Scalar for values of `like`'s float type."""
    return ArithScalar(b.emit, lambda v: b.like(v, like))


def _table(f: Callable[[ArithScalar, SSAValue], SSAValue]) -> Callable[[Builder, SSAValue], SSAValue]:
    return lambda b, x: f(scalar(b, x), x)


UNARY_EMIT: dict[str, Callable[[Builder, SSAValue], SSAValue]] = {
    **{a.name: _table(a.emit) for a in activations.ACTIVATIONS},  # the activation table's own code
    "exp": _m(math.ExpOp), "log": _m(math.LogOp), "neg": _m(arith.NegfOp),
    "sqrt": _m(math.SqrtOp), "reciprocal": lambda b, x: b(arith.DivfOp, b.like(1.0, x), x),
    "erf": _m(math.ErfOp), "floor": _m(math.FloorOp), "ceil": _m(math.CeilOp),
    "cos": _m(math.CosOp),
    "acos": _m(math.AcosOp), "asin": _m(math.AsinOp), "atan": _m(math.AtanOp),
    "sinh": _m(math.SinhOp), "cosh": _m(math.CoshOp), "asinh": _m(math.AsinhOp),
    "acosh": _m(math.AcoshOp), "atanh": _m(math.AtanhOp), "round": _m(math.RoundEvenOp),
    "sign": _table(activations.emit_sign),
}


def _safe_divisor(b: Builder, y: SSAValue) -> tuple[SSAValue, SSAValue, SSAValue]:
    """(y, or 1 where y is 0 or -1; y == 0; y == -1): integer division by 0
    and INT_MIN / -1 trap on the CPU, so kernels never divide by them."""
    zero, minus1 = b.like(0, y), b.like(-1, y)
    is0, ism1 = b.cmpi("eq", y, zero), b.cmpi("eq", y, minus1)
    return b.select(b(arith.OrIOp, is0, ism1), b.like(1, y), y), is0, ism1


def _idiv(b: Builder, x: SSAValue, y: SSAValue) -> SSAValue:
    """Integer division truncated toward zero; x / 0 = 0, x / -1 = -x (wrapping)."""
    safe, is0, ism1 = _safe_divisor(b, y)
    q = b.select(ism1, b(arith.SubiOp, b.like(0, x), x), b(arith.DivSIOp, x, safe))
    return b.select(is0, b.like(0, x), q)


def _irem(b: Builder, x: SSAValue, y: SSAValue) -> SSAValue:
    """The remainder with the dividend's sign (C's %); 0 when y is 0 or -1."""
    return b(arith.RemSIOp, x, _safe_divisor(b, y)[0])


def _floor_mod(b: Builder, r: SSAValue, y: SSAValue, float_: bool) -> SSAValue:
    """A remainder r with the dividend's sign -> the one with the divisor's: r + y
    where r is nonzero and the signs of r and y differ."""
    if float_:
        zero = b.like(0.0, r)
        nonzero, rneg, yneg = b.cmpf("une", r, zero), b.cmpf("olt", r, zero), b.cmpf("olt", y, zero)
        plus = b(arith.AddfOp, r, y)
    else:
        zero = b.like(0, r)
        nonzero, rneg, yneg = b.cmpi("ne", r, zero), b.cmpi("slt", r, zero), b.cmpi("slt", y, zero)
        plus = b(arith.AddiOp, r, y)
    return b.select(b(arith.AndIOp, nonzero, b(arith.XOrIOp, rneg, yneg)), plus, r)
# name -> (float op, integer op)
BINARY_EMIT: dict[str, tuple[type, type | None]] = {
    "add": (arith.AddfOp, arith.AddiOp), "sub": (arith.SubfOp, arith.SubiOp),
    "mul": (arith.MulfOp, arith.MuliOp), "div": (arith.DivfOp, _idiv),
    "max": (arith.MaximumfOp, arith.MaxSIOp), "min": (arith.MinimumfOp, arith.MinSIOp),
    "pow": (math.PowFOp, None),
    "mod": (lambda b, x, y: _floor_mod(b, b.libm("fmod", x, y), y, True),
            lambda b, x, y: _floor_mod(b, _irem(b, x, y), y, False)),
    "fmod": (lambda b, x, y: b.libm("fmod", x, y), _irem),
}
# name -> (float predicate, integer predicate): ordered, so NaN compares false
COMPARE_EMIT: dict[str, tuple[str, str]] = {
    "equal": ("oeq", "eq"), "less": ("olt", "slt"), "less_equal": ("ole", "sle"),
    "greater": ("ogt", "sgt"), "greater_equal": ("oge", "sge"),
}
LOGICAL_EMIT: dict[str, type] = {"and": arith.AndIOp, "or": arith.OrIOp, "xor": arith.XOrIOp}
# name -> (combining binary op, initial value given the element type)
REDUCE_EMIT: dict[str, tuple[str, Callable[[Attribute], float | int]]] = {
    "reduce_sum": ("add", lambda t: 0), "reduce_mean": ("add", lambda t: 0),
    "reduce_prod": ("mul", lambda t: 1),
    "reduce_max": ("max", lambda t: -pymath.inf if isinstance(t, nn.FLOAT_TYPES)
                   else -(1 << (t.width.data - 1))),
    "reduce_min": ("min", lambda t: pymath.inf if isinstance(t, nn.FLOAT_TYPES)
                   else (1 << (t.width.data - 1)) - 1),
}
assert set(UNARY_EMIT) == set(nn.UNARY) and set(BINARY_EMIT) == set(nn.BINARY)
assert set(REDUCE_EMIT) == set(nn.REDUCE)
assert set(COMPARE_EMIT) == set(nn.COMPARE) and set(LOGICAL_EMIT) == set(nn.LOGICAL)


def _to_float(b: Builder, n: SSAValue, t: Attribute) -> SSAValue:
    """An index value as a float of type t."""
    return b(arith.SIToFPOp, b(arith.IndexCastOp, n, i64), t)


def _count(b: Builder, dims: Sequence[int]) -> SSAValue | int:
    """The product of dims as an index value (or an int if static)."""
    static = pymath.prod(d for d in dims if d != DYN)
    return b.mul_i(b.batch, static) if DYN in dims else static  # only one dim can be the batch


# ---------------------------------------------------------------------------
# Op lowerings: lower(b, op, out, ins) writes op's result into `out`.


def lower_unary(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    emit = UNARY_EMIT[op.name[3:]]
    map_nest(b, out.shape, out, identity_map, [(ins[0], identity_map)], lambda x: emit(b, x))


def lower_binary(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    name = op.name[3:]
    reads = [(x, broadcast_map(b, out.shape, x.shape)) for x in ins]
    map_nest(b, out.shape, out, identity_map, reads, lambda x, y: b.binary(name, x, y))


def _elementwise(b: Builder, out: Buf, ins: list[Buf], fn: Callable[..., SSAValue]) -> None:
    """out = fn(*ins) elementwise, the inputs broadcast to the output's shape."""
    reads = [(x, broadcast_map(b, out.shape, x.shape)) for x in ins]
    map_nest(b, out.shape, out, identity_map, reads, fn)


def lower_compare(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    fpred, ipred = COMPARE_EMIT[op.name[3:]]
    cmp = (lambda x, y: b.cmpf(fpred, x, y)) if ins[0].is_float else (lambda x, y: b.cmpi(ipred, x, y))
    _elementwise(b, out, ins, cmp)


def lower_logical(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    cls = LOGICAL_EMIT[op.name[3:]]
    _elementwise(b, out, ins, lambda x, y: b(cls, x, y))


def lower_not(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, lambda x: b(arith.XOrIOp, x, b.const(1, i1)))


def lower_select(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, b.select)


def lower_is_nan(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    _elementwise(b, out, ins, lambda x: b.cmpf("uno", x, x))


def lower_is_inf(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    pos, neg = op.params.detect_positive, op.params.detect_negative

    def fn(x: SSAValue) -> SSAValue:
        if pos and neg:
            return b.cmpf("oeq", b(math.AbsFOp, x), b.like(pymath.inf, x))
        if pos or neg:
            return b.cmpf("oeq", x, b.like(pymath.inf if pos else -pymath.inf, x))
        return b.const(0, i1)

    _elementwise(b, out, ins, fn)


def _epilogue(b: Builder, op, bias: Buf | None, bias_index: list[SSAValue],
              value: SSAValue) -> SSAValue:
    """act(value + bias) of a fused op."""
    if bias is not None:
        value = b(arith.AddfOp, value, b.load(bias, bias_index))
    return UNARY_EMIT[op.params.activation](b, value)


K_UNROLL = 8  # matmul: products per load/store of the output in the inner loop
ROW_BLOCK = 4  # matmul: output rows computed together (each load of w feeds ROW_BLOCK of them)


def _blocks(b: Builder, n: int | SSAValue, size: int,
            body: Callable[[SSAValue, int], None]) -> None:
    """body(start, count) over [0, n) in blocks of `size`, then the rest one at
    a time (count 1); n may be the run-time batch (DYN)."""
    if size == 1 or (n != DYN and n < size):
        b.nest([n], lambda ivs, _: body(ivs[0], 1))
        return
    if n == DYN:
        full = b(arith.DivUIOp, b.batch, b.idx(size))
        done = b.mul_i(full, size)
        b.nest([full], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
        b.nest([b(arith.SubiOp, b.batch, done)], lambda ivs, _: body(b.add_i(ivs[0], done), 1))
        return
    b.nest([n // size], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
    if n % size:
        b.nest([n % size], lambda ivs, _: body(b.add_i(ivs[0], n - n % size), 1))


def lower_matmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """numpy.matmul, loops (batch..., row blocks, k blocks, j): ROW_BLOCK rows
    of the output at a time, k unrolled by K_UNROLL, and an inner loop over j
    that is unit-stride in the right operand and the output (it vectorizes):
    each vector of w loaded feeds ROW_BLOCK rows, and each output vector is
    loaded and stored once per K_UNROLL products. Fused: bias + activation
    per row. nn.matmul_transpose_a reads its [k, m] lhs transposed."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    rows, cols = len(x.shape) > 1, len(w.shape) > 1
    x2 = (1, *x.shape) if not rows else x.shape
    w2 = (*w.shape, 1) if not cols else w.shape
    m, k, n = x2[-2], x2[-1], w2[-1]
    lhs_t = isinstance(op, nn.MatmulTransposeAOp)  # x is [k, m]: read x[kq, i]
    if lhs_t:
        m, k = k, m
    nb = len(out.shape) - rows - cols
    zero = b.const(0, out.elt)

    def row_block(bt: list[SSAValue], i0: SSAValue, count: int) -> None:
        irows = [b.add_i(i0, r) for r in range(count)]

        def oidx(i, j):
            return [*bt, *([i] if rows else []), *([j] if cols else [])]

        def xload(i, kq):
            return b.load(x, [kq, i] if lhs_t else [*xb, *([i] if rows else []), kq])

        def clear(js, _):
            for i in irows:
                b.store(zero, out, oidx(i, js[0]))

        b.nest([n], clear)
        xb = broadcast_map(b, out.shape[:nb], x2[:-2])(bt)
        wb = broadcast_map(b, out.shape[:nb], w2[:-2])(bt)

        def kstep(kk: list[SSAValue]) -> None:
            """out[rows, :] += x[rows, kk] @ w[kk, :]: each w load feeds every row."""
            xv = [[xload(i, kq) for kq in kk] for i in irows]

            def jloop(js, _):
                wv = [b.load(w, [*wb, kq, *([js[0]] if cols else [])]) for kq in kk]
                for i, xr in zip(irows, xv):
                    o = oidx(i, js[0])
                    acc = b.load(out, o)
                    for xq, wq in zip(xr, wv):  # same order of additions as one k at a time
                        acc = b.binary("add", acc, b.binary("mul", xq, wq))
                    b.store(acc, out, o)

            b.nest([n], jloop)

        _blocks(b, k, K_UNROLL, lambda k0, c: kstep([b.add_i(k0, u) for u in range(c)]))
        if isinstance(op, nn.FusedMatmulOp) and (bias is not None or op.params.activation != "identity"):
            def fin(js, _):
                for i in irows:
                    o = oidx(i, js[0])
                    bi = bias and broadcast_map(b, out.shape, bias.shape)(o)
                    b.store(_epilogue(b, op, bias, bi, b.load(out, o)), out, o)
            b.nest([n], fin)

    def batch_body(bt, _):
        _blocks(b, m, ROW_BLOCK if rows else 1, lambda i0, c: row_block(bt, i0, c))

    b.nest(list(out.shape[:nb]), batch_body)


def window(b: Builder, sizes: Sequence[int], outs: Sequence[SSAValue], offs: Sequence[SSAValue],
           strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
           ) -> tuple[list[SSAValue], SSAValue | None]:
    """Input positions out*stride + off*dilation - pad_begin of a sliding
    window, clamped into range where padding can reach outside, and the
    validity flag (None when every position is inside)."""
    k = len(sizes)
    positions, valid = [], None
    for d in range(k):
        pos = b.add_i(b.mul_i(outs[d], strides[d]), b.mul_i(offs[d], dilations[d]))
        if pads[d] == 0 and pads[d + k] == 0:
            positions.append(pos)
            continue
        if pads[d]:
            pos = b(arith.SubiOp, pos, b.idx(pads[d]))
        ok = b(arith.AndIOp, b.cmpi("sge", pos, b.idx(0)), b.cmpi("slt", pos, b.size(sizes[d])))
        valid = ok if valid is None else b(arith.AndIOp, valid, ok)
        positions.append(b.select(ok, pos, b.idx(0)))
    return positions, valid


C_UNROLL = 4  # conv: input channels per load/store of the output in the inner loop
M_BLOCK = 4  # conv: output channels computed together (each input load feeds M_BLOCK of them)


def lower_conv(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Direct convolution, vectorized along the last output dimension. Per
    image and block of M_BLOCK output channels, the output planes start at the
    bias (fused) or 0; then for each kernel offset and block of C_UNROLL input
    channels c:
        out[m, o] += sum_c w[m, c, k] * x[n, c, o*stride + k*dilation - pad]
    over just the output positions whose input is inside the image (the loop
    bounds are computed per offset, so the inner loop has no padding tests and
    its loads are unit-stride at stride 1). Each input value loaded feeds
    M_BLOCK accumulations, each output is loaded and stored once per C_UNROLL
    channels. Fused: activation last."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    p = op.params
    m, cg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    per_group = m // p.group
    nd = len(kernel)
    fused = isinstance(op, nn.FusedConvOp)
    unroll = C_UNROLL if cg >= C_UNROLL else 1
    mb = next(k for k in (M_BLOCK, 2, 1) if per_group % k == 0)

    def planes(ivs, _):
        ni = ivs[0]
        ms = [b.add_i(b.mul_i(ivs[1], mb), j) for j in range(mb)]
        for mi in ms:
            start = b.load(bias, [mi]) if fused and bias is not None else b.const(0, out.elt)
            b.nest(out.shape[2:], lambda o, _: b.store(start, out, [ni, mi, *o]))
        cbase = b.mul_i(b(arith.DivUIOp, ms[0], b.idx(per_group)), cg) if p.group > 1 else None

        def offset(ks, _):
            # input position o*s + t, t = k*dilation - pad: inside for o in [lo, hi)
            shift, lo, hi = [], [], []
            for d in range(nd):
                t = b.mul_i(ks[d], p.dilations[d])
                t = b(arith.SubiOp, t, b.idx(p.pads[d])) if p.pads[d] else t
                # lo = max(0, ceil(-t / s)), hi = min(out, ceil((in - t) / s)); ceil(a/s) = -floor(-a/s)
                ceil = (lambda a, s_: b(arith.SubiOp, b.idx(0), b(arith.FloorDivSIOp, b(arith.SubiOp, b.idx(0), a),
                                                                    b.idx(s_))) if s_ > 1 else a)
                shift.append(t)
                lo.append(b(arith.MaxSIOp, b.idx(0), ceil(b(arith.SubiOp, b.idx(0), t), p.strides[d])))
                hi.append(b(arith.MinSIOp, b.idx(out.shape[2 + d]),
                            ceil(b(arith.SubiOp, b.idx(x.shape[2 + d]), t), p.strides[d])))

            def channels(chans: list[SSAValue]) -> None:
                xcs = [c if cbase is None else b.add_i(cbase, c) for c in chans]
                wv = [[b.load(w, [mi, c, *ks]) for c in chans] for mi in ms]

                def point(o: list[SSAValue]) -> None:
                    pos = [b.add_i(b.mul_i(o[d], p.strides[d]), shift[d]) for d in range(nd)]
                    xv = [b.load(x, [ni, xc, *pos]) for xc in xcs]
                    for mi, wm in zip(ms, wv):
                        acc = b.load(out, [ni, mi, *o])
                        for wq, xq in zip(wm, xv):  # same order of additions as one channel at a time
                            acc = b(arith.AddfOp, acc, b(arith.MulfOp, wq, xq))
                        b.store(acc, out, [ni, mi, *o])

                ranges(b, lo, hi, point)

            b.nest([cg // unroll], lambda cs, _: channels([b.add_i(b.mul_i(cs[0], unroll), u)
                                                            for u in range(unroll)]))
            for r in range(cg - cg % unroll, cg):
                channels([b.idx(r)])

        b.nest(kernel, offset)
        if fused and op.params.activation != "identity":
            for mi in ms:
                b.nest(out.shape[2:], lambda o, _: b.store(
                    _epilogue(b, op, None, [], b.load(out, [ni, mi, *o])), out, [ni, mi, *o]))

    b.nest([out.shape[0], m // mb], planes)


def ranges(b: Builder, lo: Sequence[SSAValue], hi: Sequence[SSAValue],
           body: Callable[[list[SSAValue]], None]) -> None:
    """Loops lo[d] <= iv[d] < hi[d] nested in order (none run if hi <= lo)."""

    def build(d: int, ivs: list[SSAValue]) -> None:
        if d == len(lo):
            body(ivs)
            return
        block = Block(arg_types=[index])
        outer, b.block = b.block, block
        build(d + 1, [*ivs, block.args[0]])
        block.add_op(scf.YieldOp())
        b.block = outer
        b.emit(scf.ForOp(lo[d], hi[d], b.idx(1), [], block))

    build(0, [])


def lower_pool(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Max (padding is -inf) or average (padding counts only with count_include_pad)."""
    x = ins[0]
    p = op.params
    is_max = isinstance(op, nn.MaxPoolOp)
    fill = b.const(-pymath.inf if is_max else 0.0, out.elt)
    counted = not is_max and not p.count_include_pad and any(p.pads)
    ones = [b.const(1.0, out.elt), b.const(0.0, out.elt)]

    def point(ivs, _):
        o = ivs[2:]

        def acc(ks, carried):
            pos, valid = window(b, x.shape[2:], o, ks, p.strides, p.pads, p.dilations)
            v = b.load(x, [ivs[0], ivs[1], *pos])
            if valid is not None:
                v = b.select(valid, v, fill)
            new = [b.binary("max" if is_max else "add", carried[0], v)]
            if counted:
                new.append(b(arith.AddfOp, carried[1], b.select(valid, *ones)))
            return new

        res = b.nest(p.kernel, acc, [fill, *([ones[1]] if counted else [])])
        if not is_max:
            count = res[1] if counted else b.const(float(pymath.prod(p.kernel)), out.elt)
            res[0] = b(arith.DivfOp, res[0], count)
        b.store(res[0], out, ivs)

    b.nest(out.shape, point)


def lower_max_pool_indices(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """As max_pool, carrying the flat index of the maximum with it: a valid
    cell takes over when it is greater, or when no cell was valid yet (-1)."""
    x = ins[0]
    p = op.params
    c, spatial = x.shape[1], x.shape[2:]
    order = range(len(spatial)) if p.column_major else reversed(range(len(spatial)))
    step, steps = 1, [0] * len(spatial)
    for i in order:
        steps[i], step = step, step * spatial[i]

    def point(ivs, _):
        base = b.mul_i(b.add_i(b.mul_i(ivs[0], c), ivs[1]), step)  # (n * C + c) * plane

        def acc(ks, carried):
            pos, valid = window(b, spatial, ivs[2:], ks, p.strides, p.pads, p.dilations)
            v = b.load(x, [ivs[0], ivs[1], *pos])
            lin = base
            for q, st in zip(pos, steps):
                lin = b.add_i(lin, b.mul_i(q, st))
            take = b(arith.OrIOp, b.cmpf("ogt", v, carried[0]), b.cmpi("eq", carried[1], b.idx(-1)))
            if valid is not None:
                take = b(arith.AndIOp, valid, take)
            return [b.select(take, v, carried[0]), b.select(take, lin, carried[1])]

        _, best = b.nest(p.kernel, acc, [b.const(-pymath.inf, x.elt), b.idx(-1)])
        b.store(b(arith.IndexCastOp, best, i64), out, ivs)

    b.nest(out.shape, point)


def lower_reduce(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out = init; for every input element (row-major, unit-stride reads):
    out[projection] = combine(out[projection], x); mean then divides."""
    x = ins[0]
    p = op.params
    axes = nn.normalize_axes(p.axes, len(x.shape))
    combine, init = REDUCE_EMIT[op.name[3:]]

    def project(ivs):
        return [b.idx(0) if i in axes else ivs[i] for i in range(len(x.shape))
                if p.keepdims or i not in axes]

    start = b.const(init(out.elt), out.elt)
    b.nest(out.shape, lambda ivs, _: b.store(start, out, ivs))

    def body(ivs, _):
        o = project(ivs)
        b.store(b.binary(combine, b.load(out, o), b.load(x, ivs)), out, o)

    b.nest(x.shape, body)
    if isinstance(op, nn.ReduceMeanOp):
        count = _count(b, [x.shape[a] for a in axes])
        n = b.const(float(count), out.elt) if isinstance(count, int) else _to_float(b, count, out.elt)
        map_nest(b, out.shape, out, identity_map, [(out, identity_map)],
                 lambda v: b(arith.DivfOp, v, n))


def _axis_split(shape: Sequence[int], axis: int):
    """Loops over all dims but `axis`; index(outer ivs, inner iv) rebuilds the full index."""
    outer = [d for i, d in enumerate(shape) if i != axis]

    def index_of(ivs, j):
        return [*ivs[:axis], j, *ivs[axis:]]

    return outer, index_of


def lower_softmax(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis`: the max, then exp(x - max) and its sum, then
    divide (softmax) or x - max - log(sum) (log_softmax)."""
    x = ins[0]
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    outer, at = _axis_split(x.shape, axis)
    n = x.shape[axis]
    log = isinstance(op, nn.LogSoftmaxOp)

    def row(ivs, _):
        mx, = b.nest([n], lambda j, c: [b(arith.MaximumfOp, c[0], b.load(x, at(ivs, j[0])))],
                     [b.const(-pymath.inf, x.elt)])

        def expsum(j, c):
            e = b(math.ExpOp, b(arith.SubfOp, b.load(x, at(ivs, j[0])), mx))
            if not log:
                b.store(e, out, at(ivs, j[0]))
            return [b(arith.AddfOp, c[0], e)]

        total, = b.nest([n], expsum, [b.const(0.0, x.elt)])
        if log:
            lt = b(math.LogOp, total)
            fn, src = (lambda v: b(arith.SubfOp, b(arith.SubfOp, v, mx), lt)), x
        else:
            fn, src = (lambda v: b(arith.DivfOp, v, total)), out
        b.nest([n], lambda j, _: b.store(fn(b.load(src, at(ivs, j[0]))), out, at(ivs, j[0])))

    b.nest(outer, row)


def lower_batch_norm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x, scale, bias, mean, var = ins
    eps = b.const(op.params.epsilon, x.elt)

    def channel(ivs):
        return [ivs[1]]

    def fn(v, s, bb, mu, var_):
        norm = b(arith.DivfOp, b(arith.SubfOp, v, mu), b(math.SqrtOp, b(arith.AddfOp, var_, eps)))
        return b(arith.AddfOp, b(arith.MulfOp, norm, s), bb)

    map_nest(b, out.shape, out, identity_map,
             [(x, identity_map), *((t, channel) for t in (scale, bias, mean, var))], fn)


def lower_layer_norm(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per leading index: the mean and variance over dims [axis:], then normalize."""
    x, scale, bias = ins
    axis = nn.normalize_axis(op.params.axis, len(x.shape))
    lead, inner = x.shape[:axis], x.shape[axis:]
    eps = b.const(op.params.epsilon, x.elt)
    zero = b.const(0.0, x.elt)

    def row(ivs, _):
        count = _count(b, inner)
        n = b.const(float(count), x.elt) if isinstance(count, int) else _to_float(b, count, x.elt)

        def total(term):
            s, = b.nest(inner, lambda js, c: [b(arith.AddfOp, c[0], term(b.load(x, [*ivs, *js])))],
                        [zero])
            return b(arith.DivfOp, s, n)

        mu = total(lambda v: v)
        var = total(lambda v: (lambda d: b(arith.MulfOp, d, d))(b(arith.SubfOp, v, mu)))
        denom = b(math.SqrtOp, b(arith.AddfOp, var, eps))
        map_nest(b, inner, out, lambda js: [*ivs, *js],
                 [(x, lambda js: [*ivs, *js]), (scale, identity_map), (bias, identity_map)],
                 lambda v, s, bb: b(arith.AddfOp, b(arith.MulfOp, b(arith.DivfOp, b(
                     arith.SubfOp, v, mu), denom), s), bb))

    b.nest(lead, row)


def _strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides (dimension 0's is static: only it may be dynamic)."""
    return [pymath.prod(shape[i + 1:]) for i in range(len(shape))]


def lower_reshape(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """A copy through the linear index (a reshape of an arena value is a view instead)."""
    x = ins[0]

    def src(ivs):
        lin = None
        for iv, st in zip(ivs, _strides(out.shape)):
            term = b.mul_i(iv, st)
            lin = term if lin is None else b(arith.AddiOp, lin, term)
        lin = lin if lin is not None else b.idx(0)
        idx = []
        for i, (d, st) in enumerate(zip(x.shape, _strides(x.shape))):
            q = lin if st == 1 else b(arith.DivUIOp, lin, b.idx(st))
            idx.append(b.idx(0) if d == 1 else q if i == 0 else b(arith.RemUIOp, q, b.idx(d)))
        return idx

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def lower_broadcast(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    map_nest(b, out.shape, out, identity_map, [(ins[0], broadcast_map(b, out.shape, ins[0].shape))],
             lambda v: v)


def lower_transpose(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    perm = op.params.perm

    def src(ivs):
        idx = [None] * len(perm)
        for i, d in enumerate(perm):
            idx[d] = ivs[i]
        return idx

    map_nest(b, out.shape, out, identity_map, [(ins[0], src)], lambda v: v)


def lower_concat(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    axis = nn.normalize_axis(op.params.axis, len(out.shape))
    offset = 0
    for x in ins:
        def dst(ivs, off=offset):
            return [b.add_i(iv, off) if i == axis else iv for i, iv in enumerate(ivs)]
        map_nest(b, x.shape, out, dst, [(x, identity_map)], lambda v: v)
        offset += x.shape[axis]


def lower_slice(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x = ins[0]
    p = op.params
    first = [0] * len(x.shape)
    step = [1] * len(x.shape)
    for a, s, e, st in zip(nn.normalize_axes(p.axes, len(x.shape)), p.starts, p.ends, p.steps):
        r = range(x.shape[a])[nn.onnx_slice(x.shape[a], s, e, st)] if x.shape[a] != DYN else range(0)
        first[a], step[a] = (r.start if len(r) else 0), st

    def src(ivs):
        out_idx = []
        for iv, f, st in zip(ivs, first, step):
            if st >= 0:
                out_idx.append(b.add_i(b.mul_i(iv, st), f))
            else:  # first - iv * |step|
                out_idx.append(b(arith.SubiOp, b.idx(f), b.mul_i(iv, -st)))
        return out_idx

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def _clamped_index(b: Builder, raw: SSAValue, dim: SSAValue) -> SSAValue:
    """An integer index loaded from a tensor as an index value: a negative one
    counts from the end, an out-of-range one is clamped (kernels cannot raise)."""
    i = b(arith.IndexCastOp, raw, index)
    i = b.select(b.cmpi("slt", i, b.idx(0)), b(arith.AddiOp, i, dim), i)
    return b(arith.MaxSIOp, b(arith.MinSIOp, i, b(arith.SubiOp, dim, b.idx(1))), b.idx(0))


def lower_gather(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[pre, j..., post] = x[pre, indices[j...], post]; a negative index
    counts from the end, an out-of-range one is clamped (kernels cannot raise)."""
    x, ind = ins
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    ri = len(ind.shape)
    dim = b.size(x.shape[a])

    def src(ivs):
        return [*ivs[:a], _clamped_index(b, b.load(ind, ivs[a:a + ri]), dim), *ivs[a + ri:]]

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def lower_pad(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    x = ins[0]
    p = op.params
    r = len(x.shape)
    value = b.const(p.value, out.elt)

    def body(ivs, _):
        idx, valid = [], None
        for d in range(r):
            lo, hi, size = p.pads[d], p.pads[d + r], x.shape[d]
            if lo == 0 and hi == 0:
                idx.append(ivs[d])
                continue
            s = b(arith.SubiOp, ivs[d], b.idx(lo)) if lo else ivs[d]
            last = b.idx(size - 1)
            if p.mode == "edge":
                s = b(arith.MaxSIOp, b(arith.MinSIOp, s, last), b.idx(0))
            elif p.mode == "reflect":  # pads < size: one reflection at each end suffices
                s = b(arith.MaxSIOp, s, b(arith.SubiOp, b.idx(0), s)) if lo else s
                s = b(arith.MinSIOp, s, b(arith.SubiOp, b.idx(2 * (size - 1)), s)) if hi else s
            else:
                ok = b(arith.AndIOp, b.cmpi("sge", s, b.idx(0)), b.cmpi("sle", s, last))
                valid = ok if valid is None else b(arith.AndIOp, valid, ok)
                s = b.select(ok, s, b.idx(0))
            idx.append(s)
        v = b.load(x, idx)
        b.store(v if valid is None else b.select(valid, v, value), out, ivs)

    b.nest(out.shape, body)


def lower_sparse_matmul(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per leading index: zero the output row, then y[c] += x[r] * v[e] per edge:
    straight-line with constant indices, or a loop over i64 index tables."""
    x, vals, *tables = ins
    p = op.params
    lead = out.shape[:-1]
    zero = b.const(0.0, out.elt)

    def row(ivs, _):
        b.nest([p.out_features], lambda js, _: b.store(zero, out, [*ivs, js[0]]))

        def edge(e, r, c):
            o = [*ivs, c]
            prod = b(arith.MulfOp, b.load(x, [*ivs, r]), b.load(vals, [e]))
            b.store(b(arith.AddfOp, b.load(out, o), prod), out, o)

        if tables:
            rows, cols = tables

            def loop(es, _):
                e = es[0]
                edge(e, *(b(arith.IndexCastOp, b.load(t, [e]), index) for t in (rows, cols)))

            b.nest([len(p.rows)], loop)
        else:
            for e, (r, c) in enumerate(zip(p.rows, p.cols)):
                edge(b.idx(e), b.idx(r), b.idx(c))

    b.nest(lead, row)


def lower_cast(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Float to float: fpext to a wider type, fptrunc (round to nearest even) to a
    narrower; integer to integer: sign-extend or truncate (wrap); integer to
    float: sitofp; float to integer: fptosi (toward zero; saturating, see loops_to_llvm)."""
    src, dst = ins[0].elt, out.elt
    wider, narrower = dst.bitwidth > src.bitwidth, dst.bitwidth < src.bitwidth
    if ins[0].is_float and out.is_float:
        convert = ((lambda x: b(arith.ExtFOp, x, dst)) if wider else
                   (lambda x: b(arith.TruncFOp, x, dst)) if narrower else (lambda x: x))
    elif ins[0].is_float:
        convert = lambda x: b(arith.FPToSIOp, x, dst)  # noqa: E731
    elif out.is_float:
        convert = lambda x: b(arith.SIToFPOp, x, dst)  # noqa: E731
    else:
        convert = ((lambda x: b(arith.ExtSIOp, x, dst)) if wider else
                   (lambda x: b(arith.TruncIOp, x, dst)) if narrower else (lambda x: x))
    map_nest(b, out.shape, out, identity_map, [(ins[0], identity_map)], convert)


# ---------------------------------------------------------------------------
# Index reductions, scans, element gathers and scatters, triangles,
# transposed convolution, resize


def lower_arg_reduce(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis`: carry (best value, its index); a strictly better
    value (or, with select_last_index, an equal one) takes over. NaN counts as
    the extreme, as in numpy: the first NaN (the last with select_last_index)."""
    x = ins[0]
    p = op.params
    axis = nn.normalize_axis(p.axis, len(x.shape))
    outer, at = _axis_split(x.shape, axis)
    rel = ("g" if isinstance(op, nn.ArgmaxOp) else "l") + ("e" if p.select_last_index else "t")

    def better(v: SSAValue, best: SSAValue) -> SSAValue:
        if not x.is_float:
            return b.cmpi("s" + rel, v, best)
        nan = b.cmpf("uno", v, v)
        if not p.select_last_index:  # a NaN only replaces a number
            nan = b(arith.AndIOp, nan, b.cmpf("ord", best, best))
        return b(arith.OrIOp, b.cmpf("o" + rel, v, best), nan)

    def row(ivs, _):
        def step(js, c):
            v = b.load(x, at(ivs, js[0]))
            take = better(v, c[0])
            return [b.select(take, v, c[0]), b.select(take, js[0], c[1])]

        _, best = b.nest([x.shape[axis]], step, [b.load(x, at(ivs, b.idx(0))), b.idx(0)])
        o = at(ivs, b.idx(0)) if p.keepdims else ivs
        b.store(b(arith.IndexCastOp, best, i64), out, o)

    b.nest(outer, row)


def lower_cumsum(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per row along `axis` (backwards with `reverse`): carry the running sum;
    store it after (inclusive) or before (exclusive) adding the element."""
    x = ins[0]
    p = op.params
    axis = nn.normalize_axis(p.axis, len(x.shape))
    outer, at = _axis_split(x.shape, axis)
    n = x.shape[axis]

    def row(ivs, _):
        last = b(arith.SubiOp, b.size(n), b.idx(1)) if p.reverse else None

        def step(js, c):
            j = b(arith.SubiOp, last, js[0]) if p.reverse else js[0]
            total = b.binary("add", c[0], b.load(x, at(ivs, j)))
            b.store(c[0] if p.exclusive else total, out, at(ivs, j))
            return [total]

        b.nest([n], step, [b.const(0, out.elt)])

    b.nest(outer, row)


def lower_gather_elements(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """out[i] = x[i with i[axis] = indices[i]] (negative from the end, clamped)."""
    x, ind = ins
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    dim = b.size(x.shape[a])

    def src(ivs):
        return [*ivs[:a], _clamped_index(b, b.load(ind, ivs), dim), *ivs[a + 1:]]

    map_nest(b, out.shape, out, identity_map, [(x, src)], lambda v: v)


def _scatter_store(b: Builder, op, out: Buf, pos: list[SSAValue], value: SSAValue) -> None:
    r = op.params.reduction
    if r != "none":
        value = b.binary(r, b.load(out, pos), value)
    b.store(value, out, pos)


def lower_scatter_elements(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Copy x, then for each index position in row-major order: out[i with
    i[axis] = indices[i]] = updates[i] (or combined by the reduction)."""
    x, ind, upd = ins
    map_nest(b, out.shape, out, identity_map, [(x, identity_map)], lambda v: v)
    a = nn.normalize_axis(op.params.axis, len(x.shape))
    dim = b.size(x.shape[a])

    def body(ivs, _):
        pos = [*ivs[:a], _clamped_index(b, b.load(ind, ivs), dim), *ivs[a + 1:]]
        _scatter_store(b, op, out, pos, b.load(upd, ivs))

    b.nest(ind.shape, body)


def lower_scatter_nd(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Copy x, then for each index tuple t = indices[j, :] (in order): the
    slice out[t, ...] = updates[j, ...] (or combined by the reduction)."""
    x, ind, upd = ins
    map_nest(b, out.shape, out, identity_map, [(x, identity_map)], lambda v: v)
    k = ind.shape[-1]

    def tuple_(js, _):
        t = [_clamped_index(b, b.load(ind, [*js, b.idx(d)]), b.size(x.shape[d])) for d in range(k)]
        b.nest(x.shape[k:], lambda rs, _: _scatter_store(b, op, out, [*t, *rs],
                                                          b.load(upd, [*js, *rs])))

    b.nest(ind.shape[:-1], tuple_)


def lower_triangle(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Keep x[..., i, j] where j - i >= k (triu) or <= k (tril), else 0."""
    x = ins[0]
    zero = b.const(0, out.elt)
    pred = "sge" if isinstance(op, nn.TriuOp) else "sle"

    def body(ivs, _):
        keep = b.cmpi(pred, b(arith.SubiOp, ivs[-1], ivs[-2]), b.idx(op.params.k))
        b.store(b.select(keep, b.load(x, ivs), zero), out, ivs)

    b.nest(out.shape, body)


def lower_conv_transpose(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Scatter form, vectorized along the last input dimension (lower_conv with
    the roles of input and output swapped). Per image and block of M_BLOCK
    output channels of one group, the output planes start at 0; then for each
    kernel offset and block of C_UNROLL input channels c of the group:
        out[m, i*stride + k*dilation - pad] += sum_c w[c, m, k] * x[n, c, i]
    over just the input points i that land inside the output (loop bounds per
    offset: no tests in the inner loop, whose loads are unit-stride in x, and in
    the output at stride 1). Each input value loaded feeds M_BLOCK outputs;
    each output is loaded and stored once per C_UNROLL channels."""
    x, w = ins
    p = op.params
    cw, mg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    cg = cw // p.group
    nd = len(kernel)
    unroll = C_UNROLL if cg >= C_UNROLL else 1
    mb = next(k for k in (M_BLOCK, 2, 1) if mg % k == 0)
    zero = b.const(0, out.elt)

    def planes(ivs, _):
        ni = ivs[0]
        ms = [b.add_i(b.mul_i(ivs[1], mb), j) for j in range(mb)]
        for mi in ms:
            b.nest(out.shape[2:], lambda o, _: b.store(zero, out, [ni, mi, *o]))
        if p.group > 1:  # the group's input channels; each m's column of the weight
            cbase = b.mul_i(b(arith.DivUIOp, ms[0], b.idx(mg)), cg)
            js = [b(arith.RemUIOp, mi, b.idx(mg)) for mi in ms]
        else:
            cbase, js = None, ms

        def offset(ks, _):
            # input point i lands at i*s + t, t = k*dilation - pad: inside for i in [lo, hi)
            win = [_inside(b, ks[d], out.shape[2 + d], x.shape[2 + d], p.strides[d], p.dilations[d],
                           p.pads[d]) for d in range(nd)]

            def channels(chans: list[SSAValue]) -> None:
                xcs = [c if cbase is None else b.add_i(cbase, c) for c in chans]
                wv = [[b.load(w, [xc, j, *ks]) for xc in xcs] for j in js]

                def point(i: list[SSAValue]) -> None:
                    pos = [b.add_i(b.mul_i(i[d], p.strides[d]), win[d][0]) for d in range(nd)]
                    xv = [b.load(x, [ni, xc, *i]) for xc in xcs]
                    for mi, wm in zip(ms, wv):
                        acc = b.load(out, [ni, mi, *pos])
                        for wq, xq in zip(wm, xv):  # same order of additions as one channel at a time
                            acc = b(arith.AddfOp, acc, b(arith.MulfOp, wq, xq))
                        b.store(acc, out, [ni, mi, *pos])

                ranges(b, [v[1] for v in win], [v[2] for v in win], point)

            b.nest([cg // unroll], lambda cs, _: channels([b.add_i(b.mul_i(cs[0], unroll), u)
                                                            for u in range(unroll)]))
            for r in range(cg - cg % unroll, cg):
                channels([b.idx(r)])

        b.nest(kernel, offset)

    b.nest([out.shape[0], out.shape[1] // mb], planes)


WG_SCRATCH = 16384  # conv_weight_grad: elements of its accumulator rows (a buffer on the stack)
N_UNROLL = 2  # conv_weight_grad: images per load/store of the accumulators in the inner loop
#   (2 ran fastest on 3x3 convs of 32x32 images: with 3 or 4 more planes are read at once)


def _scratch(b: Builder, shape: Sequence[int], elt: Attribute) -> Buf:
    """A buffer of the kernel's own, of static size: a memref.alloca at the top
    of the kernel (a fixed stack slot, never inside a loop)."""
    op = memref.AllocaOp.get(elt, shape=list(shape))
    if b.entry.first_op is not None:
        b.entry.insert_op_before(op, b.entry.first_op)
    else:
        b.entry.add_op(op)
    return Buf(op.memref, tuple(shape), elt)


def _inside(b: Builder, k: SSAValue, size_in: int, size_out: int, stride: int, dilation: int,
            pad: int) -> tuple[SSAValue, SSAValue, SSAValue]:
    """For kernel offset k along one axis of a window (conv: o * stride + t
    reads input o; conv_transpose: input i lands at i * stride + t): t = k *
    dilation - pad and the positions o in [lo, hi) whose o * stride + t is in
    [0, size_in): lo = max(0, ceil(-t / s)), hi = min(size_out, ceil((size_in - t) / s))."""
    t = b.mul_i(k, dilation)
    t = b(arith.SubiOp, t, b.idx(pad)) if pad else t

    def neg_floor(a: SSAValue) -> SSAValue:  # -floor(a / s) = ceil(-a / s)
        return b(arith.SubiOp, b.idx(0), a if stride == 1 else b(arith.FloorDivSIOp, a, b.idx(stride)))

    lo = b(arith.MaxSIOp, b.idx(0), neg_floor(t))
    hi = b(arith.MinSIOp, b.idx(size_out), neg_floor(b(arith.SubiOp, t, b.idx(size_in))))
    return t, lo, hi


def lower_conv_weight_grad(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """dw[m, c, k] = sum over n, o of dy[n, m, o] * x[n, c', o * stride + k * dilation - pad].
    A sum along o would be a loop-carried scalar (float additions are not
    reassociated, so it does not vectorize); instead, per block of M_BLOCK
    output channels m_j and input channel c, accumulator rows along the last
    output dimension (a stack buffer acc[kernel offset, j, o_last]) gather
    the whole batch, N_UNROLL images n_u at a time:
        for k, for o in range:  acc[k, j, o_last] += sum_u dy[n_u, m_j, o] * x[n_u, c', pos(o, k)]
    The inner loop (o_last) is unit-stride in dy and acc (and in x at stride
    1), with no dependence between iterations: it vectorizes. Each x load feeds
    the block's M_BLOCK rows, each row is loaded and stored once per N_UNROLL
    images; the images' dy planes of the block and x channel are read for
    every kernel offset in turn while they are in cache; the
    output positions whose input is inside the image are loop bounds (no
    padding tests), as in lower_conv. Last, each row is summed into dw. When
    the rows of every offset would exceed WG_SCRATCH elements, the last output
    dimension is taken in chunks of the rows' length."""
    x, dy = ins
    p = op.params
    m, cg, kernel = out.shape[0], out.shape[1], tuple(p.kernel)
    nd = len(kernel)
    per_group = m // p.group
    kn = pymath.prod(kernel)
    last = dy.shape[-1]
    mb = next(k for k in (M_BLOCK, 2, 1) if per_group % k == 0)
    if kn * mb * min(last, 64) > WG_SCRATCH:  # big kernels: rows of one channel, longer
        mb = 1
    t = max(1, min(last, WG_SCRATCH // (kn * mb)))
    chunks = -(-last // t)
    acc = _scratch(b, (kn, mb, t), out.elt)
    zero = b.const(0, out.elt)
    kstrides = _strides(kernel)
    batch = x.shape[0] if x.shape[0] != DYN else dy.shape[0]

    def flat(ks: Sequence[SSAValue]) -> SSAValue:
        f = b.idx(0)
        for k, st in zip(ks, kstrides):
            f = b.add_i(f, b.mul_i(k, st))
        return f

    def block(ivs, _):
        ms = [b.add_i(b.mul_i(ivs[0], mb), j) for j in range(mb)]
        ci = ivs[1]
        xc = ci if p.group == 1 else b.add_i(b.mul_i(b(arith.DivUIOp, ms[0], b.idx(per_group)), cg), ci)
        b.nest([kn, mb, t], lambda z, _: b.store(zero, acc, z))

        def images(nis: list[SSAValue]) -> None:
            def offset(ks, _):
                kf = flat(ks)
                win = [_inside(b, ks[d], x.shape[2 + d], dy.shape[2 + d], p.strides[d], p.dilations[d],
                               p.pads[d]) for d in range(nd)]
                shift = [w[0] for w in win]

                def rows(outer: list[SSAValue]) -> None:
                    def run(lo: SSAValue, hi: SSAValue, start: SSAValue | None) -> None:
                        def point(o: list[SSAValue]) -> None:
                            oo = [*outer, o[0]]
                            pos = [b.add_i(b.mul_i(oo[d], p.strides[d]), shift[d]) for d in range(nd)]
                            xv = [b.load(x, [ni, xc, *pos]) for ni in nis]
                            a_i = o[0] if start is None else b(arith.SubiOp, o[0], start)
                            for j, mj in enumerate(ms):
                                at = [kf, b.idx(j), a_i]
                                a = b.load(acc, at)
                                for ni, xq in zip(nis, xv):
                                    a = b(arith.AddfOp, a, b(arith.MulfOp, b.load(dy, [ni, mj, *oo]), xq))
                                b.store(a, acc, at)

                        ranges(b, [lo], [hi], point)

                    lo, hi = win[-1][1], win[-1][2]
                    if chunks == 1:
                        run(lo, hi, None)
                        return

                    def chunk(cs, _):
                        start = b.mul_i(cs[0], t)
                        run(b(arith.MaxSIOp, lo, start), b(arith.MinSIOp, hi, b.add_i(start, t)), start)

                    b.nest([chunks], chunk)

                ranges(b, [w[1] for w in win[:-1]], [w[2] for w in win[:-1]], rows)

            b.nest(kernel, offset)

        # whole blocks of N_UNROLL images, then the rest one by one
        u = N_UNROLL
        blocks = b(arith.DivUIOp, b.batch, b.idx(u)) if batch == DYN else batch // u
        done = b.mul_i(blocks, u) if batch == DYN else b.idx(blocks * u)
        rest = b(arith.SubiOp, b.batch, done) if batch == DYN else batch % u
        if blocks != 0:
            b.nest([blocks], lambda ns, _: images([b.add_i(b.mul_i(ns[0], u), v) for v in range(u)]))
        if rest != 0:
            b.nest([rest], lambda ns, _: images([b.add_i(ns[0], done)]))

        def total(ks, _):
            kf = flat(ks)
            for j, mj in enumerate(ms):
                s, = b.nest([t], lambda i, c: [b(arith.AddfOp, c[0], b.load(acc, [kf, b.idx(j), i[0]]))],
                            [zero])
                b.store(s, out, [mj, ci, *ks])

        b.nest(kernel, total)

    b.nest([m // mb, cg], block)


def resize_tables(op) -> list[tuple[str, np.ndarray]]:
    """Per resized axis (nn.ResizeOp.taps): its tap indices (out, taps) i64,
    their weights (out, taps) in the element type unless nearest, and where
    some position is outside the input (tf_crop_and_resize) a 0/1 i64 flag
    per output position."""
    dtype = nn.numpy_dtype(op.result.type.element_type)
    tables = []
    for t in op.taps():
        tables.append((f"index{t.axis}", t.index))
        if op.params.mode != "nearest":
            tables.append((f"weights{t.axis}", t.weights.astype(dtype)))
        if t.outside is not None:
            tables.append((f"outside{t.axis}", t.outside.astype(np.int64)))
    return tables


def lower_resize(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    """Per output point: the sum over the taps of every resized axis (their
    indices and weights are tables computed at compile time) of the product of
    the weights times the input there; nearest reads its one tap; the
    extrapolation value where some axis is outside the input."""
    x, *tables = ins
    nearest = op.params.mode == "nearest"
    it = iter(tables)
    axes = [(t.axis, t.index.shape[1], next(it), None if nearest else next(it),
             None if t.outside is None else next(it)) for t in op.taps()]

    def point(ivs, _):
        def read(taps):
            pos, weight = list(ivs), None
            for (axis, _, index_t, weight_t, _), tv in zip(axes, taps):
                pos[axis] = b(arith.IndexCastOp, b.load(index_t, [ivs[axis], tv]), index)
                if weight_t is not None:
                    w = b.load(weight_t, [ivs[axis], tv])
                    weight = w if weight is None else b(arith.MulfOp, weight, w)
            return b.load(x, pos), weight

        if nearest:
            v, _ = read([b.idx(0)] * len(axes))
        else:
            def acc(taps, c):
                v, w = read(taps)
                return [b(arith.AddfOp, c[0], b(arith.MulfOp, w, v))]

            v, = b.nest([n for _, n, *_ in axes], acc, [b.const(0.0, out.elt)])
        outside = None
        for axis, _, _, _, flag_t in axes:
            if flag_t is not None:
                o = b.cmpi("ne", b.load(flag_t, [ivs[axis]]), b.const(0, i64))
                outside = o if outside is None else b(arith.OrIOp, outside, o)
        if outside is not None:
            v = b.select(outside, b.const(op.params.extrapolation_value, out.elt), v)
        b.store(v, out, ivs)

    b.nest(out.shape, point)


# Ops that read tables computed at compile time (extra weights after their operands).
TABLES: dict[type, Callable[[Operation], list[tuple[str, np.ndarray]]]] = {
    nn.ResizeOp: resize_tables,
}


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    **{cls: lower_unary for cls in nn.UNARY_OPS.values()},
    **{cls: lower_binary for cls in nn.BINARY_OPS.values()},
    **{cls: lower_reduce for cls in nn.REDUCE_OPS.values()},
    **{cls: lower_compare for cls in nn.COMPARE_OPS.values()},
    **{cls: lower_logical for cls in nn.LOGICAL_OPS.values()},
    nn.NotOp: lower_not, nn.SelectOp: lower_select, nn.IsNanOp: lower_is_nan, nn.IsInfOp: lower_is_inf,
    nn.MatmulOp: lower_matmul, nn.MatmulTransposeAOp: lower_matmul, nn.FusedMatmulOp: lower_matmul,
    nn.ConvOp: lower_conv, nn.FusedConvOp: lower_conv,
    nn.MaxPoolOp: lower_pool, nn.AvgPoolOp: lower_pool,
    nn.SoftmaxOp: lower_softmax, nn.LogSoftmaxOp: lower_softmax,
    nn.BatchNormOp: lower_batch_norm, nn.LayerNormOp: lower_layer_norm,
    nn.ReshapeOp: lower_reshape, nn.BroadcastOp: lower_broadcast, nn.TransposeOp: lower_transpose, nn.ConcatOp: lower_concat,
    nn.SliceOp: lower_slice, nn.GatherOp: lower_gather, nn.PadOp: lower_pad,
    nn.SparseMatmulOp: lower_sparse_matmul,
    nn.CastOp: lower_cast,
    **{cls: lower_arg_reduce for cls in nn.ARG_REDUCE_OPS.values()},
    **{cls: lower_triangle for cls in nn.TRIANGLE_OPS.values()},
    nn.CumSumOp: lower_cumsum, nn.GatherElementsOp: lower_gather_elements,
    nn.ScatterElementsOp: lower_scatter_elements, nn.ScatterNDOp: lower_scatter_nd,
    nn.ConvTransposeOp: lower_conv_transpose, nn.ResizeOp: lower_resize,
    nn.MaxPoolIndicesOp: lower_max_pool_indices,
    nn.ConvWeightGradOp: lower_conv_weight_grad,
}


# ---------------------------------------------------------------------------
# Checks that every dynamic dimension is the batch.

BIG_END = 1 << 31  # a slice end at least this large means "to the end"


def _check_batch(op: Operation) -> None:
    """Ops that could turn the batch into another dynamic size are refused."""
    ins = [nn.shape_of(o.type) for o in op.operands]
    dyn0 = bool(ins) and bool(ins[0]) and ins[0][0] == DYN
    if isinstance(op, nn.ReshapeOp):
        src, dst = ins[0], nn.shape_of(op.result.type)
        same_rows = (src[:1] == (DYN,)) == (dst[:1] == (DYN,)) and (
            src[:1] != (DYN,) or pymath.prod(src[1:]) == pymath.prod(dst[1:]))
        if not same_rows:
            raise fail(op, f"reshape {nn.fmt_shape(src)} -> {nn.fmt_shape(dst)} does not keep "
                           "dimension 0 as the batch (only the batch may be dynamic)")
    elif isinstance(op, nn.ConcatOp) and nn.normalize_axis(op.params.axis, len(ins[0])) == 0 and any(
            s[0] == DYN for s in ins):
        raise fail(op, "concatenating along the dynamic batch dimension is not supported")
    elif isinstance(op, nn.SliceOp) and dyn0:
        p = op.params
        for a, s, e, st in zip(nn.normalize_axes(p.axes, len(ins[0])), p.starts, p.ends, p.steps):
            if a == 0 and not (s == 0 and e >= BIG_END and st == 1):
                raise fail(op, "slicing the dynamic batch dimension is not supported")
    elif isinstance(op, nn.PadOp) and dyn0 and (op.params.pads[0] or op.params.pads[len(ins[0])]):
        raise fail(op, "padding the dynamic batch dimension is not supported")


def _check_type(op: Operation, t: Attribute, what: str) -> None:
    if not isinstance(t, TensorType):
        raise fail(op, f"{what} has type {t}: lower-to-loops takes ranked tensors")
    if t.element_type not in SUPPORTED_ELEMENTS:
        raise fail(op, f"{what} has element type {t.element_type}; lower-to-loops supports "
                       + ", ".join(map(str, SUPPORTED_ELEMENTS)))
    if DYN in nn.shape_of(t)[1:]:
        raise fail(op, f"{what} has type {t}: only dimension 0 (the batch) may be dynamic")


# ---------------------------------------------------------------------------
# The function lowering: storage decisions, the memory plan, emission.


def _memref(t: TensorType) -> MemRefType:
    return MemRefType(t.element_type, t.get_shape())


def _nbytes(t: TensorType) -> tuple[int, int]:
    """(per-batch, constant) byte size."""
    shape = nn.shape_of(t)
    width = nn.numpy_dtype(t.element_type).itemsize
    if shape and shape[0] == DYN:
        return pymath.prod(shape[1:]) * width, 0
    return 0, pymath.prod(shape) * width


class FunctionLowering:
    def __init__(self, module: ModuleOp, fn: func.FuncOp, symbols: set[str], unroll_limit: int):
        self.module, self.fn, self.symbols = module, fn, symbols
        self.unroll_limit = unroll_limit
        self.new_weights: list[nn.WeightOp] = []
        self.weight_types: dict[str, TensorType] = {}
        self.storage: dict[SSAValue, tuple] = {}  # value -> ("input"|"output"|"weight"|"arena", key)
        self.tables: dict[Operation, list[str]] = {}  # sparse_matmul -> its index-table weights

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.symbols:
            k += 1
            name = f"{base}_{k}"
        self.symbols.add(name)
        return name

    def add_weight(self, name: str, data: np.ndarray) -> str:
        sym = self.fresh(name)
        w = nn.WeightOp(sym, np.require(data, requirements="C"))  # keeps rank 0 (ascontiguousarray does not)
        w.attributes[nn.CONSTANT_MARK] = UnitAttr()
        self.new_weights.append(w)
        self.weight_types[sym] = w.type
        return sym

    def analyse(self) -> tuple[list, memory_plan.Plan]:
        fn = self.fn
        ops = list(fn.body.block.ops)
        ret = ops[-1]
        if not isinstance(ret, func.ReturnOp):
            raise fail(fn, "the function does not end with func.return")
        for i, (a, t) in enumerate(zip(fn.body.block.args, fn.function_type.inputs.data)):
            _check_type(fn, t, f"argument {i}")
            self.storage[a] = ("input", i)
        returned: dict[SSAValue, int] = {}
        for i, v in enumerate(ret.arguments):
            returned.setdefault(v, i)
        last_use: dict[SSAValue, int] = {}
        root: dict[SSAValue, SSAValue] = {}  # arena value -> the value whose bytes it shares
        position = {op: k for k, op in enumerate(ops)}
        for k, op in enumerate(ops[:-1]):
            for v in op.operands:
                last_use[root.get(v, v)] = k
            if isinstance(op, nn.WeightRefOp):
                w = op.resolve()
                self.weight_types[op.sym] = w.type
                _check_type(op, w.type, f"weight @{op.sym}")
                self.storage[op.result] = ("weight", op.sym)
                continue
            if isinstance(op, nn.ConstantOp):
                _check_type(op, op.result.type, "the constant")
                self.storage[op.result] = ("weight", self.add_weight(f"{fn.sym_name.data}_const",
                                                                     op.data))
                continue
            if type(op) not in LOWER:
                raise fail(op, "lower-to-loops lowers nn ops only (inline calls first)"
                           if isinstance(op, func.CallOp) else "no lowering for this op")
            for v in op.operands:
                _check_type(op, v.type, "an operand")
            _check_type(op, op.results[0].type, "the result")
            _check_batch(op)
            if isinstance(op, nn.SparseMatmulOp) and len(op.params.rows) > self.unroll_limit:
                base = f"{fn.sym_name.data}_sparse"
                self.tables[op] = [self.add_weight(f"{base}_{what}", np.array(idx, np.int64))
                                   for what, idx in (("rows", op.params.rows), ("cols", op.params.cols))]
            elif type(op) in TABLES:
                base = f"{fn.sym_name.data}_{op.name[3:]}"
                self.tables[op] = [self.add_weight(f"{base}_{what}", data)
                                   for what, data in TABLES[type(op)](op)]
            res = op.results[0]
            src = op.operands[0] if isinstance(op, nn.ReshapeOp) else None
            if res in returned:
                self.storage[res] = ("output", returned[res])
            elif src is not None and self.storage[src][0] == "arena":
                root[res] = root.get(src, src)
                self.storage[res] = self.storage[root[res]]
            else:
                self.storage[res] = ("arena", res)
                root[res] = res
            last_use.setdefault(root.get(res, res), k)
        n = len(ops) - 1
        for i, v in enumerate(ret.arguments):
            _check_type(fn, v.type, f"result {i}")
            last_use[root.get(v, v)] = n
        buffers = []
        for v, (kind, key) in self.storage.items():
            if kind == "arena" and key is v:
                per_batch, constant = _nbytes(v.type)
                start = position[v.owner]
                buffers.append(memory_plan.Buffer(v, per_batch, constant, start, last_use[v]))
        return ops, memory_plan.plan(buffers)

    def run(self) -> func.FuncOp:
        fn = self.fn
        ops, plan = self.analyse()
        ret = ops[-1]
        in_types = list(fn.function_type.inputs.data)
        out_types = [v.type for v in ret.arguments]
        weights: list[str] = []
        for op in ops:
            syms = ([op.sym] if isinstance(op, nn.WeightRefOp) else
                    [self.storage[op.result][1]] if isinstance(op, nn.ConstantOp) else
                    self.tables.get(op, []))
            weights += [s for s in syms if s not in weights]
        use_arena = bool(plan.offsets)
        roles = ([ArgRole("input", n) for n in arg_names(fn)]
                 + [ArgRole("output", n) for n in self._output_names(len(out_types))]
                 + [ArgRole("weight", s) for s in weights] + ([ArgRole("arena", "")] if use_arena else []))
        arg_types = ([_memref(t) for t in in_types] + [_memref(t) for t in out_types]
                     + [_memref(self.weight_types[s]) for s in weights]
                     + ([MemRefType(i8, [DYN])] if use_arena else []))
        kernel = func.FuncOp(fn.sym_name.data, (arg_types, []))
        args = kernel.body.block.args
        ins, outs = args[:len(in_types)], args[len(in_types):len(in_types) + len(out_types)]
        wargs = dict(zip(weights, args[len(in_types) + len(out_types):]))
        arena = args[-1] if use_arena else None
        for a, role in zip(args, roles):
            hint = {"output": "out", "arena": "arena"}.get(role.kind, role.name)
            if re.fullmatch(r"[A-Za-z_][\w]*", hint):
                a.name_hint = hint
        b = Builder(kernel.body.block)
        batch_arg = next((a for a, t in zip(ins, in_types) if nn.shape_of(t)[:1] == (DYN,)), None)
        needs_batch = any(DYN in nn.shape_of(t) for t in [*in_types, *out_types]) or any(
            DYN in nn.shape_of(r.type) for op in ops for r in op.results)
        if needs_batch:
            if batch_arg is None:
                raise fail(fn, "a dynamic dimension that no input carries (the batch must "
                               "come from an input's dimension 0)")
            b.batch = b.emit(memref.DimOp(batch_arg, b.idx(0)))
            b.batch.name_hint = "batch"

        bufs: dict[SSAValue, Buf] = {}

        def buf(v: SSAValue, ref: SSAValue) -> Buf:
            return Buf(ref, nn.shape_of(v.type), v.type.element_type)

        for a, t in zip(fn.body.block.args, ins):
            bufs[a] = buf(a, t)
        for op in ops[:-1]:
            v = op.results[0]
            kind, key = self.storage[v]
            if kind == "weight":
                bufs[v] = buf(v, wargs[key])
                continue
            if kind == "output":
                bufs[v] = buf(v, outs[key])
            else:
                a, c = plan.offsets[key]
                off = b.add_i(b.mul_i(b.batch, a), c) if a else b.idx(c)
                sizes = [b.batch] if nn.shape_of(v.type)[:1] == (DYN,) else []
                bufs[v] = buf(v, b.emit(memref.ViewOp(arena, off, sizes, _memref(v.type))))
            if isinstance(op, nn.ReshapeOp) and kind == "arena" and key is not v:
                continue  # a view of its input's bytes: nothing to compute
            tables = [Buf(wargs[s], nn.shape_of(self.weight_types[s]), self.weight_types[s].element_type)
                      for s in self.tables.get(op, [])]
            LOWER[type(op)](b, op, bufs[v], [bufs[o] for o in op.operands] + tables)
        for i, v in enumerate(ret.arguments):
            if self.storage.get(v) != ("output", i):
                dst = buf(v, outs[i])
                map_nest(b, dst.shape, dst, identity_map, [(bufs[v], identity_map)], lambda x: x)
        b.emit(func.ReturnOp())
        KernelABI(fn.sym_name.data, tuple(roles), plan.per_batch, plan.constant).attach(kernel)
        self.externals = b.externals
        return kernel

    def _output_names(self, n: int) -> list[str]:
        return result_names(self.fn, "")


def is_nn_function(op: Operation) -> bool:
    if not isinstance(op, func.FuncOp) or not op.body.blocks:
        return False
    types = [*op.function_type.inputs.data, *op.function_type.outputs.data]
    return any(isinstance(t, TensorType) for t in types) or any(
        o.dialect_name() == "nn" for o in op.body.block.ops)


@dataclass(frozen=True)
class LowerToLoopsPass(ModulePass):
    """Lower nn functions to loop-level kernels (memref, scf, arith, math) with an arena plan."""

    name = "lower-to-loops"
    sparse_unroll_limit: int = 256  # sparse_matmul with more nonzeros loops over index tables

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from ncc.ir import verify_module

        symbols = {o.sym_name.data for o in op.ops if hasattr(o, "sym_name")}
        functions = {o.sym_name.data: o for o in op.ops if isinstance(o, func.FuncOp)}
        for fn in [f for f in op.ops if is_nn_function(f)]:
            lowering = FunctionLowering(op, fn, symbols, self.sparse_unroll_limit)
            kernel = lowering.run()
            declarations = []
            for name, (ins, outs) in lowering.externals.items():
                decl = func.FuncOp.external(name, ins, outs)
                if name not in functions:
                    functions[name] = decl
                    symbols.add(name)
                    declarations.append(decl)
                elif functions[name].body.blocks or functions[name].function_type != decl.function_type:
                    raise fail(functions[name], f"@{name} is a C math library function the "
                               "kernels call: the module may not define it otherwise")
            Rewriter.insert_op([*declarations, *lowering.new_weights, kernel], InsertPoint.before(fn))
            Rewriter.erase_op(fn)
        verify_module(op)
