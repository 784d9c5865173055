"""parallelize-loops: loops whose iterations touch disjoint memory run on an OpenMP team.

`lower-to-loops{threads=N}` with N > 1 runs it last: in every kernel, the
outermost `scf.for` of each loop nest that is proven parallel and does enough
work per launch gets `ncc.parallel = N`. `outline-loops` then makes that loop a
function of its bounds, `@<kernel>_nest<k>(%lo, %hi, ...)`, called with the
same attribute; `lower-to-llvm` calls its launcher instead, which splits
[lo, hi) into one run of whole iterations per thread of an OpenMP team
(libgomp's `GOMP_parallel`, as the GEMM's columns are split) and returns when
all have run. Each iteration runs exactly the operations it runs serially, so
results are identical for any team size.

    scf.for %c = %c0 to %c64 step %c1 {          // before (threads=2)
      ... memref.store %v, %out[%c0, %c, %i, %j] ...
    }
    scf.for %c = %c0 to %c64 step %c1 { ... } {ncc.parallel = 2 : i64}   // after

Proof of independence (the loop's induction variable is `iv`; accesses are
in bounds, as the lowerings emit them): every buffer is traced through its
views to its root (a kernel argument or an allocation) and a byte offset
linear in `iv`, the batch and loop-invariant values. A loop is parallel when
it has no results, calls nothing, and every root it writes is written and
read only

- through memrefs of one type at one offset that does not depend on `iv`,
  each access indexing the same dimension by `A * iv + c`, c a constant or
  ranging over inner loops' variables, within one block [A * b, A * b + A)
  the same for all (each iteration owns block iv + b of A slices; mostly
  A = 1, c = 0), or
- through views at `A * iv + C` of a static size <= |A| bytes (each
  iteration owns one slab),

and no other memref of that root read in the loop can overlap those bytes.
Buffers made inside the loop are private to an iteration. A buffer made by an
op marked `ncc.scratch` (the padded plane of pooling and depthwise
convolution) and used only inside loops marked `ncc.scratch_per_iteration`
(each of whose iterations writes the part it reads before reading it: the
loop over planes) is private to a thread: the outlined function copies it
into a buffer of its own first (`privatized`).

Which loop: the outermost proven loop whose iterations split evenly enough
over the team and whose launch does at least MIN_WORK operations (waking the
team costs about a microsecond); else the search goes into the loop's body,
as long as at most MAX_LAUNCHES launches would result. A loop over the batch
(a size known only at run time) is split and also looked into: its launcher
runs it alone when the batch is below `ncc.parallel_min_trips` (MIN_WORK
over the work of one iteration), and the loops inside then split; when the
batch splits, the loops inside run on one thread each (by default libgomp
does not nest teams: a team started inside a team's thread has one thread;
the launchers read the team they got, so results do not change either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from ncc.passes.lowering.abi import element_bytes


PARALLEL = "ncc.parallel"  # scf.for: the team size; its outlined call and launcher: [team, step, min trips]
PARALLEL_LOOP = "ncc.parallel_loop"  # on a launcher's declaration: the outlined loop it runs
MIN_TRIPS = "ncc.parallel_min_trips"  # on a loop of run-time trip count: below it, one thread runs it
SCRATCH = "ncc.scratch"  # on the op making a scratch buffer
SCRATCH_PER_ITERATION = "ncc.scratch_per_iteration"  # on a loop: each iteration writes the scratch it reads
MIN_WORK = 1 << 16  # operations a launch must run (each op counted once per iteration)
MAX_LAUNCHES = 64  # launches of one parallel loop per kernel call (it sits inside other loops)

_VIEWS = (memref.ViewOp, memref.ReinterpretCastOp, memref.CastOp, memref.CollapseShapeOp,
          memref.ExpandShapeOp)
_PURE_DIALECTS = {"arith", "math", "scf"}
_BATCH = "batch"  # the run-time batch: every dynamic dimension (passes/lowering/abi.py), >= 1

Linear = dict  # symbol -> coefficient: None the constant, "iv", _BATCH or an opaque SSA value


def inside(op: Operation | None, root: Operation) -> bool:
    """`op` is `root` or nested in it."""
    while op is not None:
        if op is root:
            return True
        op = op.parent_op()
    return False


def _defining_op(v: SSAValue) -> Operation | None:
    owner = v.owner
    return owner.parent_op() if isinstance(owner, Block) else owner


def _extent(op: memref.DimOp) -> int | None:
    """The static extent a memref.dim reads (-1: the batch), if its index is known."""
    d, shape = constant(op.index), op.source.type.get_shape()
    return shape[d] if d is not None and 0 <= d < len(shape) else None


def constant(v: SSAValue) -> int | None:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return op.value.value.data
    return None


class _Loop:
    """Linear forms of index values and the byte offsets of memrefs, relative to one loop."""

    def __init__(self, loop: scf.ForOp, inner_ivs: bool = False):
        self.loop, self.iv = loop, loop.body.block.args[0]
        self.memo: dict[SSAValue, Linear | None] = {}
        # with inner_ivs, the variables of loops inside with known bounds are symbols too
        self.inner_ivs = inner_ivs
        self.ranges: dict[SSAValue, tuple[int, int]] = {}  # inner loop variable -> [min, max]

    def linear(self, v: SSAValue) -> Linear | None:
        if v not in self.memo:
            self.memo[v] = self._linear(v)
        return self.memo[v]

    def _linear(self, v: SSAValue) -> Linear | None:
        if v is self.iv:
            return {"iv": 1}
        c = constant(v)
        if c is not None:
            return {None: c}
        op = v.owner
        if isinstance(op, memref.DimOp) and _extent(op) is not None:
            return {None: _extent(op)} if _extent(op) >= 0 else {_BATCH: 1}
        if isinstance(op, (arith.AddiOp, arith.SubiOp)):
            a, b = self.linear(op.lhs), self.linear(op.rhs)
            if a is None or b is None:
                return None
            sign = 1 if isinstance(op, arith.AddiOp) else -1
            return _combine(a, b, sign)
        if isinstance(op, arith.MuliOp):
            a, b = self.linear(op.lhs), self.linear(op.rhs)
            if a is not None and b is not None:
                for x, y in ((a, b), (b, a)):
                    if set(y) <= {None}:
                        return {k: c * y.get(None, 0) for k, c in x.items()}
        defined = _defining_op(v)
        if not inside(defined, self.loop):
            return {v: 1}  # loop-invariant, of unknown value
        if self.inner_ivs and isinstance(defined, scf.ForOp) and v is defined.body.block.args[0]:
            lo, hi = constant(defined.lb), _upper_bound(defined.ub)
            if lo is not None and hi is not None and hi > lo:
                self.ranges[v] = (lo, hi - 1)
                return {v: 1}
        return None  # depends on a value computed in the loop: not linear in iv

    def offset(self, m: SSAValue) -> tuple[SSAValue, Linear | None]:
        """(root, offset): the buffer `m` views and the byte offset of `m` in it.
        A buffer made by a scratch-marked op is the root (it gets privatized)
        when `m` reaches it through views made in the loop only; else the
        scratch's own root is, with no known offset."""
        offset: Linear | None = {}
        through_loop = True
        while True:
            op = m.owner
            if isinstance(op, Operation) and SCRATCH in op.attributes and not inside(op, self.loop):
                if through_loop:
                    return m, offset
                offset = None
            if not isinstance(op, _VIEWS):
                return m, offset
            through_loop &= inside(op, self.loop)
            shift: Linear | None = {None: 0}
            if isinstance(op, memref.ViewOp):
                shift = self.linear(op.byte_shift)
            elif isinstance(op, memref.ReinterpretCastOp):
                elements = (self.linear(op.offsets[0]) if op.offsets
                            else {None: op.static_offsets.get_values()[0]})
                size = element_bytes(op.result.type.element_type)  # the offset counts the view's elements
                shift = None if elements is None else {k: c * size for k, c in elements.items()}
            offset = None if offset is None or shift is None else _combine(offset, shift, 1)
            m = op.operands[0]

    def size(self, m: SSAValue) -> Linear | None:
        """Bytes of memref `m`: static, or the batch times the rest."""
        t: MemRefType = m.type
        rest = element_bytes(t.element_type)
        shape = t.get_shape()
        for d in shape[1:]:
            rest *= d
        if not shape or shape[0] >= 0:
            return {None: rest * (shape[0] if shape else 1)}
        op = m.owner
        sizes = getattr(op, "sizes", None) or getattr(op, "dynamic_sizes", None)
        if isinstance(op, (memref.ViewOp, memref.ReinterpretCastOp, memref.AllocOp, memref.AllocaOp)):
            rows = self.linear(sizes[0]) if sizes else None
        else:
            rows = {_BATCH: 1}  # an argument's (or a reshape's) dynamic rows: the batch
        return None if rows is None else {k: c * rest for k, c in rows.items()}


def _combine(a: Linear, b: Linear, sign: int) -> Linear:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0) + sign * c
    return {k: c for k, c in out.items() if c or k is None}


def _never_negative(form: Linear) -> bool:
    """form >= 0 for every batch >= 1 (other symbols must cancel out)."""
    if any(k not in (None, _BATCH) and c for k, c in form.items()):
        return False
    b = form.get(_BATCH, 0)
    return b >= 0 and form.get(None, 0) + b >= 0


def _disjoint(x: tuple[Linear, Linear], y: tuple[Linear, Linear]) -> bool:
    (lo1, hi1), (lo2, hi2) = x, y
    return _never_negative(_combine(lo2, hi1, -1)) or _never_negative(_combine(lo1, hi2, -1))


@dataclass
class _Region:
    """The bytes of a root that a loop reaches through one kind of access."""

    kind: str  # "slice": one memref, a dimension indexed by iv; "slab": views at A*iv + C; "unknown"
    bounds: tuple[Linear, Linear] | None  # [lo, hi) over all iterations, when known
    dims: dict[int, tuple] | None = None  # slices: dimension -> (A, b), every access so far in block iv + b
    writes: bool = False

    def owned_per_iteration(self) -> bool:
        return self.kind == "slab" or (self.kind == "slice" and bool(self.dims))


def _accesses(op: Operation) -> Iterator[tuple[SSAValue, list[SSAValue] | None, bool]]:
    """(memref, indices or None for the whole, writes) of a memory op."""
    if isinstance(op, memref.LoadOp):
        yield op.memref, list(op.indices), False
    elif isinstance(op, memref.StoreOp):
        yield op.memref, list(op.indices), True
    elif isinstance(op, memref.CopyOp):
        yield op.source, None, False
        yield op.destination, None, True


_MEMORY_OPS = (memref.LoadOp, memref.StoreOp, memref.CopyOp, memref.DimOp, memref.AllocOp,
               memref.AllocaOp, memref.DeallocOp, *_VIEWS)


def _region(L: _Loop, m: SSAValue, offset: Linear | None) -> tuple[tuple, _Region]:
    """The region of its root that memref `m` (at byte `offset`) is, and its key."""
    loop, size = L.loop, L.size(m)
    a = (offset or {}).get("iv", 0)
    if offset is None or size is None:
        return ("unknown", m), _Region("unknown", None)
    if not a:
        return (("slice", tuple(sorted(offset.items(), key=repr)), str(m.type)),
                _Region("slice", (offset, _combine(offset, size, 1))))
    lb, ub = L.linear(loop.lb), L.linear(loop.ub)
    if set(size) != {None} or size[None] > abs(a) or lb is None or ub is None or "iv" in lb or "iv" in ub:
        return ("unknown", m), _Region("unknown", None)
    c = {k: v for k, v in offset.items() if k != "iv"}
    last = _combine(ub, {None: 1}, -1)  # >= the last iteration's iv
    first_iv, last_iv = (lb, last) if a > 0 else (last, lb)
    lo = _combine(c, {k: v * a for k, v in first_iv.items()}, 1)
    hi = _combine(_combine(c, {k: v * a for k, v in last_iv.items()}, 1), {None: size[None]}, 1)
    return ("slab", a, tuple(sorted(c.items(), key=repr)), size[None]), _Region("slab", (lo, hi))


def _per_iteration(op: Operation, loop: scf.ForOp) -> bool:
    """`op` is in a loop, `loop` or one in it, each of whose iterations writes
    the scratch it reads before reading it (the lowering marks such loops)."""
    p = op.parent_op()
    while p is not None and inside(p, loop):
        if SCRATCH_PER_ITERATION in p.attributes:
            return True
        p = p.parent_op()
    return False


def _upper_bound(v: SSAValue) -> int | None:
    """A constant >= index `v`: a constant, the min of one, or one times a constant >= 0."""
    c, op = constant(v), v.owner
    if c is None and isinstance(op, arith.MinSIOp):
        bounds = [b for b in map(_upper_bound, op.operands) if b is not None]
        c = min(bounds) if bounds else None
    elif c is None and isinstance(op, arith.MuliOp):
        for x, y in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            k, bound = constant(y), _upper_bound(x)
            if k is not None and k >= 0 and bound is not None:
                return k * bound
    return c


def _blocks(L: _Loop, indices: list[SSAValue]) -> dict[int, tuple[int, int]]:
    """Dimension -> (A, b) for the indices A * iv + c, with c a constant or
    ranging over inner loops' variables within [A * b, A * b + A): the access
    reaches block iv + b (of A) along that dimension. `L` has inner_ivs."""
    out = {}
    for d, index in enumerate(indices):
        form = L.linear(index)
        if form is None or form.get("iv", 0) <= 0 or not set(form) <= {"iv", None, *L.ranges}:
            continue
        a = form["iv"]
        low = high = form.get(None, 0)
        for v, (lo, hi) in L.ranges.items():
            k = form.get(v, 0)
            low, high = low + min(k * lo, k * hi), high + max(k * lo, k * hi)
        if low // a == high // a:
            out[d] = (a, low // a)
    return out


def independent(loop: scf.ForOp) -> bool:
    """Whether the iterations of `loop` touch disjoint memory (see the module's
    docstring), the buffers of `privatized(loop)` copied per thread."""
    if loop.results or constant(loop.step) is None:
        return False
    L, blocks = _Loop(loop), _Loop(loop, inner_ivs=True)
    accesses = []
    for op in loop.body.walk():
        if not (isinstance(op, _MEMORY_OPS) or op.dialect_name() in _PURE_DIALECTS):
            return False  # a call, or an op whose effects are not known here
        if isinstance(op, memref.DeallocOp) and not inside(_defining_op(op.memref), loop):
            return False
        for m, indices, writes in _accesses(op):
            root, offset = L.offset(m)
            if not inside(_defining_op(root), loop):  # else made in the loop: private to an iteration
                accesses.append((m, indices, writes, root, offset))
    scratches = privatized(loop)
    regions: dict[SSAValue, dict[tuple, _Region]] = {}
    for m, indices, writes, root, offset in accesses:
        if isinstance(root.owner, Operation) and root.owner in scratches:
            continue
        key, new = _region(L, m, offset)
        region = regions.setdefault(root, {}).setdefault(key, new)
        region.writes |= writes
        if region.kind == "slice":
            here = _blocks(blocks, indices or [])
            region.dims = here if region.dims is None else {
                d: a for d, a in region.dims.items() if here.get(d) == a}
    for by_key in regions.values():
        if not any(r.writes for r in by_key.values()):
            continue
        if any(r.writes and not r.owned_per_iteration() for r in by_key.values()):
            return False
        items = list(by_key.values())
        for i, r in enumerate(items):
            for s in items[i + 1:]:
                if (r.writes or s.writes) and not (r.bounds and s.bounds and _disjoint(r.bounds, s.bounds)):
                    return False
    return True


def privatized(loop: scf.ForOp) -> list[Operation]:
    """The scratch-marked ops, made outside `loop`, whose buffers each thread
    running `loop` gets a copy of: those `loop` reads or writes only inside
    loops (it or in it) each iteration of which writes what it reads, and
    only directly or through views made in those loops."""
    uses: dict[Operation, bool] = {}
    for op in loop.body.walk():
        for v in op.operands:
            maker = v.owner
            if isinstance(maker, Operation) and SCRATCH in maker.attributes and not inside(maker, loop):
                ok = _per_iteration(op, loop) and isinstance(v.type, MemRefType) and v.type.has_static_shape()
                uses[maker] = uses.get(maker, True) and ok
    return [maker for maker, ok in uses.items() if ok]


# -- choosing the loops ---------------------------------------------------------------------

def _evaluate(v: SSAValue, env: dict[SSAValue, int]) -> int | None:
    """The value of index `v` with the enclosing loops' ivs at their first
    iteration (an estimate of trip counts), if computable: not if it depends
    on the batch."""
    if v in env:
        return env[v]
    c = constant(v)
    if c is not None:
        return c
    op = v.owner
    if isinstance(op, memref.DimOp):
        extent = _extent(op)
        return None if extent is None or extent < 0 else extent
    binary = {arith.AddiOp: lambda a, b: a + b, arith.SubiOp: lambda a, b: a - b,
              arith.MuliOp: lambda a, b: a * b, arith.MaxSIOp: max, arith.MinSIOp: min,
              arith.DivUIOp: lambda a, b: a // b if b > 0 and a >= 0 else None,
              arith.FloorDivSIOp: lambda a, b: a // b if b else None,
              arith.CeilDivSIOp: lambda a, b: -(-a // b) if b else None}
    f = binary.get(type(op))
    if f is None:
        return None
    a, b = _evaluate(op.lhs, env), _evaluate(op.rhs, env)
    return None if a is None or b is None else f(a, b)


def trip_count(loop: scf.ForOp, env: dict[SSAValue, int]) -> int | None:
    lb, ub, step = (_evaluate(v, env) for v in (loop.lb, loop.ub, loop.step))
    if lb is None or ub is None or not step or step < 0:
        return None
    return max(0, -(-(ub - lb) // step))


def work(ops, env: dict[SSAValue, int]) -> int:
    """Operations run by `ops` (loops of unknown trip count counted once)."""
    total = 0
    for op in ops:
        total += 1
        if isinstance(op, scf.ForOp):
            trips = trip_count(op, env)
            inner = {**env, op.body.block.args[0]: _evaluate(op.lb, env) or 0}
            total += (trips if trips is not None else 1) * work(op.body.block.ops, inner)
        else:
            for region in op.regions:
                for block in region.blocks:
                    total += work(block.ops, env)
    return total


def _balanced(trips: int, team: int) -> bool:
    """The team's runs are even enough: the longest at most 4/3 of the mean."""
    return trips >= team and 3 * team * -(-trips // team) <= 4 * trips


def mark(ops, team: int, launches: int, env: dict[SSAValue, int]) -> int:
    """Mark the outermost parallel loops in `ops` (run `launches` times per
    kernel call) worth splitting over `team` threads; returns how many."""
    marked = 0
    for op in list(ops):
        if isinstance(op, scf.ForOp):
            trips = trip_count(op, env)
            inner = {**env, op.body.block.args[0]: _evaluate(op.lb, env) or 0}
            if trips is None:  # the batch: split when it is large enough, and look inside for batch 1
                if launches <= MAX_LAUNCHES and independent(op):
                    op.attributes[PARALLEL] = IntegerAttr(team, i64)
                    per_iteration = max(1, work(op.body.block.ops, inner))
                    op.attributes[MIN_TRIPS] = IntegerAttr(max(2, -(-MIN_WORK // per_iteration)), i64)
                    marked += 1
                marked += mark(op.body.block.ops, team, launches, inner)
                continue
            splits = (trips >= team and launches <= MAX_LAUNCHES
                      and work([op], env) >= MIN_WORK and independent(op))
            if splits and _balanced(trips, team):
                op.attributes[PARALLEL] = IntegerAttr(team, i64)
                marked += 1
                continue
            found = mark(op.body.block.ops, team, launches * trips, inner)
            if not found and splits:  # uneven, but nothing inside splits better
                op.attributes[PARALLEL] = IntegerAttr(team, i64)
                found = 1
            marked += found
        else:
            for region in op.regions:
                for block in region.blocks:
                    marked += mark(block.ops, team, launches, env)
    return marked


@dataclass(frozen=True)
class ParallelizeLoopsPass(ModulePass):
    """Marks the loops of every function that a team of `threads` threads runs
    (`ncc.parallel`); outline-loops and lower-to-llvm do the rest."""

    name = "parallelize-loops"

    threads: int = 2

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.threads < 1:
            raise PassFailedException(f"parallelize-loops: threads must be >= 1, got {self.threads}")
        if self.threads == 1:
            return
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and len(fn.body.blocks) == 1:
                parallelize(fn, self.threads)


def parallelize(kernel: func.FuncOp, team: int) -> int:
    """Mark the loops of `kernel` that a team of `team` threads runs; returns how many."""
    return mark(kernel.body.block.ops, team, 1, {}) if team > 1 else 0
