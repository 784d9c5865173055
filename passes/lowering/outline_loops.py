"""outline-loops: each top-level loop nest of a big kernel becomes a function of its own.

A CNN's kernel is one function of thousands of loops (densenet121: ~2,400).
xDSL's scf-to-cf and LLVM's optimiser both grow faster than linearly with the
size of one function, so `lower-to-llvm` runs this pass first: every top-level
`scf.for` nest of a function with at least `min-nests` of them moves into
`@<kernel>_nest<k>`, called in its place. The new function takes the values the
nest uses from outside (buffers, the batch size, ...) as arguments, in order
of first use; constants are cloned into it instead. Outlined functions are
marked `ncc.outlined`: the engine keeps LLVM from inlining them back.

A loop marked `ncc.outline` (a unit attribute) is outlined wherever it is and
whatever `min-nests`: the phases of a kernel tiled by an outer loop (the neuron
backward kernel's chunks), each one loop in that loop's body; without it
LLVM's LICM weighs every memory access of the whole tile loop against every
other (quadratic: 30 s of a 1,200-edge net's backward).

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
from xdsl.dialects import arith, func, scf
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

OUTLINED = "ncc.outlined"
OUTLINE = "ncc.outline"  # on an scf.for: outline it wherever it is


def _inside(op: Operation | None, root: Operation) -> bool:
    while op is not None:
        if op is root:
            return True
        op = op.parent_op()
    return False


def _owner_op(v: SSAValue) -> Operation | None:
    owner = v.owner
    return owner.parent_op() if isinstance(owner, Block) else owner


def free_values(nest: Operation) -> list[SSAValue]:
    """Values used inside `nest` but defined outside it, in order of first use."""
    seen: dict[SSAValue, None] = {}
    for op in nest.walk():
        for v in op.operands:
            if v not in seen:
                owner = v.owner
                defined_inside = (_inside(owner.parent_op(), nest) or owner.parent_op() is nest
                                  if isinstance(owner, Block) else _inside(owner, nest))
                if not defined_inside:
                    seen[v] = None
    return list(seen)


def outline(fn: func.FuncOp, nest: scf.ForOp, name: str) -> func.FuncOp:
    values = free_values(nest)
    consts = [v for v in values if isinstance(v.owner, arith.ConstantOp)]
    args = [v for v in values if not isinstance(v.owner, arith.ConstantOp)]
    body = Block(arg_types=[v.type for v in args])
    mapping: dict[SSAValue, SSAValue] = dict(zip(args, body.args))
    for c in consts:
        clone = c.owner.clone()
        body.add_op(clone)
        mapping[c] = clone.results[0]
    body.add_op(nest.clone(value_mapper=mapping))
    body.add_op(func.ReturnOp())
    new = func.FuncOp(name, ([v.type for v in args], []), Region(body))
    new.attributes[OUTLINED] = UnitAttr()
    call = func.CallOp(name, args, [])
    nest.parent_block().insert_op_before(call, nest)
    nest.detach()
    nest.erase()
    return new


@dataclass(frozen=True)
class OutlineLoopsPass(ModulePass):
    """Top-level loop nests of functions with at least `min_nests` of them, and loops
    marked `ncc.outline` wherever they are -> functions."""

    name = "outline-loops"

    min_nests: int = 16

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp) and f.body.blocks]:
            if len(fn.body.blocks) != 1:
                continue
            marked = [o for o in fn.walk() if isinstance(o, scf.ForOp) and OUTLINE in o.attributes]
            for o in marked:
                del o.attributes[OUTLINE]
            marked = [o for o in marked if not any(_inside(o.parent_op(), m) for m in marked)]
            nests = [o for o in fn.body.block.ops if isinstance(o, scf.ForOp) and not o.results]
            if len(nests) < self.min_nests:
                nests = []
            after: Operation = fn
            for k, nest in enumerate([*[m for m in marked if not m.results],
                                      *[n for n in nests if n not in marked]]):
                new = outline(fn, nest, f"{fn.sym_name.data}_nest{k}")
                op.body.block.insert_op_after(new, after)
                after = new
