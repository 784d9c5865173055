"""The loop-IR builder of lower-to-loops: buffers (`Buf`), the `Builder` that appends ops
and builds loop nests, index maps, `map_nest`, `window` and the helpers every family's
lowering shares."""

from __future__ import annotations

import math as pymath
from dataclasses import dataclass
from typing import Callable, Sequence

from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, MemRefType, UnitAttr, f32, f64, i1, i8, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import activations, nn
from ncc.dialects.nn import DYN, ui8
from ncc.passes.lowering.parallelize_loops import SCRATCH, SCRATCH_PER_ITERATION
from ncc.passes.lowering.scalar import ArithScalar


SUPPORTED_ELEMENTS = (f32, f64, i8, ui8, i32, i64, i1)  # i1: one byte per element (numpy bool)
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
        self.scratch: "Buf | None" = None  # the arena scratch of the op being lowered (SCRATCH)
        self.threads = 1  # threads a kernel's GEMMs may use (lower-to-loops{threads=N})

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

    def max_of(self, values: Sequence[SSAValue]) -> SSAValue:
        """The maximum of float values, NaN if any is NaN, as x86 computes it
        cheaply: a tree of `a > c ? a : c` (vmaxps), one unordered compare
        per pair of values, then one blend. arith.maximumf per pair would also
        order -0 below +0, at three times the instructions in a chain; here
        the sign of a zero maximum is any operand's."""
        pairs = list(zip(values[::2], values[1::2])) + ([(values[-1],) * 2] if len(values) % 2 else [])
        nan = None
        for a, c in pairs:
            uno = self.cmpf("uno", a, c)
            nan = uno if nan is None else self(arith.OrIOp, nan, uno)
        level = list(values)
        while len(level) > 1:
            level = [self.select(self.cmpf("ogt", a, c), a, c) for a, c in zip(level[::2], level[1::2])] \
                + level[len(level) & ~1:]
        return self.select(nan, self.const(pymath.nan, level[0].type), level[0])

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


def if_else(b: Builder, cond: SSAValue, then: Callable[[], None], otherwise: Callable[[], None]) -> None:
    """scf.if cond { then() } else { otherwise() }, both emitting through b."""
    regions = []
    for body in (then, otherwise):
        block = Block()
        outer, b.block = b.block, block
        body()
        block.add_op(scf.YieldOp())
        b.block = outer
        regions.append(Region(block))
    b.emit(scf.IfOp(cond, [], regions[0], regions[1]))


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


def to_float(b: Builder, n: SSAValue, t: Attribute) -> SSAValue:
    """An index value as a float of type t."""
    return b(arith.SIToFPOp, b(arith.IndexCastOp, n, i64), t)


def element_count(b: Builder, dims: Sequence[int]) -> SSAValue | int:
    """The product of dims as an index value (or an int if static)."""
    static = pymath.prod(d for d in dims if d != DYN)
    return b.mul_i(b.batch, static) if DYN in dims else static  # only one dim can be the batch


def epilogue(b: Builder, op, bias: Buf | None, bias_index: list[SSAValue],
              value: SSAValue, residual: SSAValue | None = None) -> SSAValue:
    """act(value + bias [+ residual]) of a fused op (the residual's value given)."""
    if bias is not None:
        value = b(arith.AddfOp, value, b.load(bias, bias_index))
    if residual is not None:
        value = b(arith.AddfOp, value, residual)
    return UNARY_EMIT[op.params.activation](b, value)


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


def window_range(b: Builder, k: SSAValue, size_in: int, size_out: int, stride: int, dilation: int,
                 pad: int) -> tuple[SSAValue, SSAValue, SSAValue]:
    """For kernel offset k along one axis of a window (conv, pool: o * stride + t
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


LANES = 16  # partial results of a row's max or integer sum: one AVX-512 vector, two AVX2


def lanes_reduce(b: Builder, combine: str | Callable[[SSAValue, SSAValue], SSAValue], n: int | SSAValue,
                 term: Callable[[SSAValue], SSAValue], start: SSAValue) -> SSAValue:
    """combine(start, term(0), ..., term(n - 1)), `start` the identity of `combine`
    (an nn binary op's name, or a function of two scalars); n an int or an index value.
    A float sum is one chain of additions marked `reassoc`: LLVM's loop vectorizer
    sums it in vectors of the host's width, several partial sums interleaved, combined
    at the end (the order of the additions LLVM's for the host, the same for any
    thread count; LLVM's SLP vectorizer had made LANES scalar partials two-lane
    vectors). Any other combination over a row of at least 2 x LANES terms, or of a
    run-time length, carries LANES partial results (partial l takes the terms l,
    l + LANES, ...; a run-time length's last n % LANES terms go to partial 0)
    combined pairwise at the end, not one chain of n dependent steps."""
    if combine == "add" and isinstance(start.type, nn.FLOAT_TYPES):
        reassoc = arith.FastMathFlagsAttr(["reassoc"])
        return b.nest([n], lambda js, c: [b(arith.AddfOp, c[0], term(js[0]), reassoc)], [start])[0]
    if isinstance(combine, str):
        name = combine
        combine = lambda u, v: b.binary(name, u, v)  # noqa: E731
    static = isinstance(n, int) and n != DYN
    if static and n < 2 * LANES:
        return b.nest([n], lambda js, c: [combine(c[0], term(js[0]))], [start])[0]
    total = b.size(n)
    groups = n // LANES if static else b(arith.DivUIOp, total, b.idx(LANES))
    parts = b.nest([groups], lambda js, acc: [
        combine(acc[lane], term(b.add_i(b.mul_i(js[0], LANES), lane))) for lane in range(LANES)],
        [start] * LANES)
    if static:
        first = n - n % LANES
        parts = [combine(v, term(b.idx(first + lane))) if lane < n % LANES else v
                 for lane, v in enumerate(parts)]
    else:
        first = b.mul_i(groups, LANES)
        parts[0], = b.nest([b(arith.SubiOp, total, first)],
                           lambda js, acc: [combine(acc[0], term(b.add_i(first, js[0])))], [parts[0]])
    while len(parts) > 1:
        parts = [combine(u, v) for u, v in zip(parts[::2], parts[1::2])]
    return parts[0]


def blocks(b: Builder, n: int | SSAValue, size: int,
            body: Callable[[SSAValue, int], None]) -> None:
    """body(start, count) over [0, n) in blocks of `size`, then the rest one at
    a time (count 1); n may be the run-time batch (DYN) or an index value."""
    static = isinstance(n, int) and n != DYN
    if size == 1 or (static and n < size):
        b.nest([n], lambda ivs, _: body(ivs[0], 1))
        return
    if not static:
        total = b.size(n)
        full = b(arith.DivUIOp, total, b.idx(size))
        done = b.mul_i(full, size)
        b.nest([full], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
        b.nest([b(arith.SubiOp, total, done)], lambda ivs, _: body(b.add_i(ivs[0], done), 1))
        return
    b.nest([n // size], lambda ivs, _: body(b.mul_i(ivs[0], size), size))
    if n % size:
        b.nest([n % size], lambda ivs, _: body(b.add_i(ivs[0], n - n % size), 1))


def axis_split(shape: Sequence[int], axis: int):
    """Loops over all dims but `axis`; index(outer ivs, inner iv) rebuilds the full index."""
    outer = [d for i, d in enumerate(shape) if i != axis]

    def index_of(ivs, j):
        return [*ivs[:axis], j, *ivs[axis:]]

    return outer, index_of


def view(b: Builder, ref: SSAValue, offset: int | SSAValue, shape: Sequence[int], elt: Attribute | None = None
         ) -> Buf:
    """Elements of buffer `ref` from element `offset` as a row-major buffer of
    `shape` (static): a scratch part, one image of a batch, a flat plane; as
    `elt` (the same bytes, the offset in its elements) if given."""
    elt = elt or ref.type.element_type
    return Buf(b.emit(memref.ReinterpretCastOp.from_dynamic(
        ref, [offset], list(shape), row_major_strides(shape), MemRefType(elt, list(shape)))), tuple(shape), elt)


def row_major_strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides (dimension 0's is static: only it may be dynamic)."""
    return [pymath.prod(shape[i + 1:]) for i in range(len(shape))]


def linear_index(b: Builder, shape: Sequence[int], ivs: Sequence[SSAValue]) -> SSAValue:
    """The row-major element offset of index `ivs` in a buffer of `shape` (ivs a prefix of the
    dimensions: the rest are 0)."""
    total = b.idx(0)
    for d, iv in enumerate(ivs):
        total = b.add_i(b.mul_i(total, shape[d]), iv) if d else iv
    return b.mul_i(total, pymath.prod(shape[len(ivs):]))


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


# ---------------------------------------------------------------------------
# A 2-D window op (depthwise conv, max pool) over a padded copy of each plane

WIDE_ROW = 16  # output rows longer than half this are computed a multiple of it wide


def padded_plane(x_shape: Sequence[int], p) -> tuple[int, int, int]:
    """(rows, phases, columns per phase) of a plane with its padding: the
    columns split by phase of the last stride (one phase at stride 1), so that
    every tap reads a unit-stride run."""
    (h, wd), pads, s = x_shape[2:], p.pads, p.strides[1]
    return h + pads[0] + pads[2], s, -(-(wd + pads[1] + pads[3]) // s)


def wide_row(ow: int) -> int:
    return -(-ow // WIDE_ROW) * WIDE_ROW if ow > WIDE_ROW // 2 else ow


def padded_plane_floats(x_shape: Sequence[int], out_shape: Sequence[int], p) -> int:
    """The padded plane and the slack that rows computed wide may read past its end."""
    ow = out_shape[3]
    return pymath.prod(padded_plane(x_shape, p)) + wide_row(ow) - ow + WIDE_ROW


Fold = Callable[[SSAValue, int, int, SSAValue], SSAValue]


def by_padded_plane(b: Builder, x: Buf, out: Buf, scratch: Buf, p, kernel: Sequence[int], border: SSAValue,
                    per_plane: Callable[[SSAValue, SSAValue],
                                        tuple[SSAValue, Fold, Callable[[SSAValue], SSAValue]]] | None,
                    reduce_taps: Callable[[list[SSAValue]], SSAValue] | None = None) -> None:
    """out[n, c, i, j] = finish(fold(... fold(start, tap 0), ...)) over the
    kernel's taps (u, v) in order, each reading padded[i*s + u*d, j*s + v*d]:
    per plane (n, c) of a 2-D x, per_plane(n, c) gives (start, fold, finish).
    Or, with per_plane None, out[n, c, i, j] = reduce_taps(every tap's value).
    The plane is first copied into the middle of a plane bordered with
    `border` (a value of x's type; the scratch, padded_plane_floats of it, whose border is set
    once per call; its columns split by phase of the stride, filled all
    phases per loop: interleaved loads), then each output is computed in
    registers and stored once: no padding tests, and along a row the taps
    read unit-stride runs (it vectorizes). Every row but the last is
    computed a multiple of WIDE_ROW long (no scalar remainder loop): the
    values past its end land on the next row, which is computed after it."""
    (h, wd), (oh, ow) = x.shape[2:], out.shape[2:]
    _, phases, cols = padded_plane(x.shape, p)
    s, top, left, row_len = p.strides[1], p.pads[0], p.pads[1], phases * cols
    padded = view(b, scratch.ref, 0, (padded_plane_floats(x.shape, out.shape, p),), x.elt)
    padded.ref.owner.attributes[SCRATCH] = UnitAttr()
    b.nest([padded.shape[0]], lambda ij, _: b.store(border, padded, ij))
    # padded column jj * s + r (phase r, index jj) holds image column jj * s + r - left
    spans = [(max(0, -(-(left - r) // s)), -(-(wd + left - r) // s)) for r in range(phases)]
    lo, hi = max(f for f, _ in spans), min(e for _, e in spans)

    planes: list[Block] = []

    def plane(ivs, _):
        planes.append(b.block)
        ni, c = ivs

        def copy(i: SSAValue, jj: SSAValue, r: int) -> None:
            at = b.add_i(b.mul_i(b.add_i(i, top), row_len), r * cols)
            b.store(b.load(x, [ni, c, i, b.add_i(b.mul_i(jj, s), r - left)]), padded, [b.add_i(at, jj)])

        def all_phases(ij, _):  # where every phase has a column
            for r in range(phases):
                copy(ij[0], b.add_i(ij[1], lo), r)
        if hi > lo:
            b.nest([h, hi - lo], all_phases)
        for r, (first, last) in enumerate(spans):
            for a, e in ((first, min(lo, last)), (max(hi, first), last)):
                if e > a:
                    b.nest([h, e - a], lambda ij, _, r=r, a=a: copy(ij[0], b.add_i(ij[1], a), r))
        fold_plane = per_plane(ni, c) if per_plane is not None else None
        image_out = view(b, out.ref, b.mul_i(b.add_i(b.mul_i(ni, out.shape[1]), c), oh * ow), (oh * ow,))

        def point(i: SSAValue, j: SSAValue) -> None:
            row = b.mul_i(b.mul_i(i, p.strides[0]), row_len)
            taps = []
            for u in range(kernel[0]):
                for v in range(kernel[1]):
                    t = v * p.dilations[1]
                    at = b.add_i(b.add_i(row, j), u * p.dilations[0] * row_len + (t % s) * cols + t // s)
                    taps.append((u, v, b.load(padded, [at])))
            if per_plane is None:
                b.store(reduce_taps([t[2] for t in taps]), image_out, [b.add_i(b.mul_i(i, ow), j)])
                return
            start, fold, finish = fold_plane
            acc = start
            for tap in taps:
                acc = fold(acc, *tap)
            b.store(finish(acc), image_out, [b.add_i(b.mul_i(i, ow), j)])
        if oh > 1:
            b.nest([oh - 1, wide_row(ow)], lambda ij, _: point(*ij))
        b.nest([ow], lambda j, _: point(b.idx(oh - 1), j[0]))

    outside = b.block
    b.nest(out.shape[:2], plane)
    loop = planes[0].parent_op()
    while loop is not None and planes[0] is not outside:  # each plane writes the scratch it reads
        loop.attributes[SCRATCH_PER_ITERATION] = UnitAttr()
        loop = None if loop.parent_block() is outside else loop.parent_op()
