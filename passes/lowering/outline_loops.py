"""outline-loops: each top-level loop nest of a big kernel becomes a function of its own.

A CNN's kernel is one function of thousands of loops (densenet121: ~2,400).
xDSL's scf-to-cf and LLVM's optimiser both grow faster than linearly with the
size of one function, so `lower-to-llvm` runs this pass first: every top-level
`scf.for` nest of a function with at least `min-nests` of them moves into
`@<kernel>_nest<k>`, called in its place. The new function takes the values the
nest uses from outside (buffers, the batch size, ...) as arguments, in order
of first use; constants are cloned into it instead. Outlined functions are
marked `ncc.outlined`: the engine keeps LLVM from inlining them back. Small
kernels gain too: LLVM optimises each nest alone, its buffers distinct
arguments (min-nests 2: the int8 CNN of bench_quant.py, eleven nests, ran
8 % faster outlined on znver4).

A loop marked `ncc.outline` (a unit attribute) is outlined wherever it is and
whatever `min-nests`: the phases of a kernel tiled by an outer loop (the neuron
backward kernel's chunks), each one loop in that loop's body; without it
LLVM's LICM weighs every memory access of the whole tile loop against every
other (quadratic: 30 s of a 1,200-edge net's backward).

A loop marked `ncc.parallel` (parallelize-loops) is outlined wherever it is,
as a function of its bounds: lower-to-llvm calls it through a launcher that
splits them over an OpenMP team.

    scf.for %c = %c0 to %c64 step %c1 { ... } {ncc.parallel = 2 : i64}                // before
    func.call @k_nest0(%c0, %c64, %x, %y) {ncc.parallel = [2 : i64, 1 : i64, 2 : i64]}   // after
    func.func @k_nest0(%lo: index, %hi: index, %a0: ..., %a1: ...) { scf.for %c = %lo to %hi ... }

    func.func @net(%x: memref<?x4xf32>, %y: memref<?x4xf32>) {      // before
      scf.for %i = %c0 to %n step %c1 { ... %x ... %y ... }
      scf.for %i = %c0 to %n step %c1 { ... }
    }
    func.func @net(%x, %y) { func.call @net_nest0(%x, %y, %n) ... }  // after
    func.func @net_nest0(%a0: memref<?x4xf32>, %a1: memref<?x4xf32>, %a2: index) attributes {ncc.outlined}
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import ArrayAttr, IndexType, IntegerAttr, ModuleOp, UnitAttr, i64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from ncc.passes.lowering.parallelize_loops import MIN_TRIPS, PARALLEL, constant, inside, privatized

OUTLINED = "ncc.outlined"
OUTLINE = "ncc.outline"  # on an scf.for: outline it wherever it is


def free_values(nest: Operation) -> list[SSAValue]:
    """Values used inside `nest` but defined outside it, in order of first use."""
    seen: dict[SSAValue, None] = {}
    for op in nest.walk():
        for v in op.operands:
            if v not in seen:
                owner = v.owner
                defined_inside = (inside(owner.parent_op(), nest) or owner.parent_op() is nest
                                  if isinstance(owner, Block) else inside(owner, nest))
                if not defined_inside:
                    seen[v] = None
    return list(seen)


def outline(fn: func.FuncOp, nest: scf.ForOp, name: str) -> func.FuncOp:
    """Move `nest` into a new function `name` called in its place. A loop marked
    `ncc.parallel` becomes a function of its bounds, `name(%lo, %hi, ...)`, whose
    call keeps the mark as [team, step, min trips]; buffers made by `ncc.scratch` ops are
    copied into the function's own (each thread of a team has one)."""
    values = free_values(nest)
    consts = [v for v in values if isinstance(v.owner, arith.ConstantOp)]
    args = [v for v in values if not isinstance(v.owner, arith.ConstantOp)]
    team = nest.attributes.get(PARALLEL)
    bounds = [IndexType(), IndexType()] if team is not None else []
    body = Block(arg_types=[*bounds, *[v.type for v in args]])
    mapping: dict[SSAValue, SSAValue] = dict(zip(args, body.args[len(bounds):]))
    for c in consts:
        clone = c.owner.clone()
        body.add_op(clone)
        mapping[c] = clone.results[0]
    private = []
    if team is not None:
        scratches = privatized(nest)
        for v in args:
            if v.owner in scratches:
                copy = memref.AllocOp([], [], v.type)
                body.add_ops([copy, memref.CopyOp(mapping[v], copy.memref)])
                mapping[v] = copy.memref
                private.append(copy.memref)
    loop = nest.clone(value_mapper=mapping)
    if team is not None:
        loop.operands = (body.args[0], body.args[1], *loop.operands[2:])
        for mark in (PARALLEL, MIN_TRIPS):
            loop.attributes.pop(mark, None)
    body.add_op(loop)
    body.add_ops([memref.DeallocOp.get(p) for p in private])
    body.add_op(func.ReturnOp())
    new = func.FuncOp(name, ([*bounds, *[v.type for v in args]], []), Region(body))
    new.attributes[OUTLINED] = UnitAttr()
    call = func.CallOp(name, [*([nest.lb, nest.ub] if team is not None else []), *args], [])
    if team is not None:
        min_trips = nest.attributes.get(MIN_TRIPS, IntegerAttr(2, i64))
        call.attributes[PARALLEL] = ArrayAttr([team, IntegerAttr(constant(nest.step), i64), min_trips])
    nest.parent_block().insert_op_before(call, nest)
    nest.detach()
    nest.erase()
    return new


@dataclass(frozen=True)
class OutlineLoopsPass(ModulePass):
    """Top-level loop nests of functions with at least `min_nests` of them, and loops
    marked `ncc.outline` wherever they are -> functions."""

    name = "outline-loops"

    min_nests: int = 2

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp) and f.body.blocks]:
            if len(fn.body.blocks) != 1:
                continue
            loops = [o for o in fn.walk() if isinstance(o, scf.ForOp)]
            # parallel loops first, innermost first: a loop marked ncc.outline, a top-level
            # nest or another parallel loop (over the batch) may hold them
            parallel = [o for o in reversed(loops) if PARALLEL in o.attributes and not o.results]
            marked = [o for o in loops if OUTLINE in o.attributes]
            for o in marked:
                del o.attributes[OUTLINE]
            marked = [o for o in marked if not any(inside(o.parent_op(), m) for m in marked)]
            nests = [o for o in fn.body.block.ops if isinstance(o, scf.ForOp) and not o.results]
            if len(nests) < self.min_nests:
                nests = []
            after: Operation = fn
            k = 0
            for group in (parallel, [m for m in marked if not m.results],
                          [n for n in nests if n not in marked and n not in parallel]):
                for nest in group:
                    new = outline(fn, nest, f"{fn.sym_name.data}_nest{k}")
                    op.body.block.insert_op_after(new, after)
                    after, k = new, k + 1
