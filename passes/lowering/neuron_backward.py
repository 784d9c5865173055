"""The backward of a neuron net as one native kernel, straight from the net.

    neuron_vjp_kernel(net, seed=0, chunk_edges=CHUNK_EDGES) -> func.FuncOp   (@<net>_vjp)

For inputs `x [batch, n_in]` and output cotangents `dy [batch, n_out]` the
kernel writes the outputs `y` (the forward kernel's), the gradient of the flat
parameter buffer summed over the rows (`ncc.param_names` order, the forward
kernel's) and the gradient `dx` of every row's inputs. Its arguments, in order
(passes/lowering/abi.py roles):

    input:x, input:cotangent:y, output:y, output:grad:<net>.params, output:grad:x,
    weight:<net>.params, arena

Each row does what `ncc-translate --emit-equations=backward` prints, with
dyJ the row's cotangent of output J: the forward (neuron_to_loops' code:
one multiply-add per edge, the activation inlined, z kept), then the neurons
in reverse order:

    dn_j = dy_j (j an output) + sum of dz_k * w_jk over the neurons k fed by j
    dz_j = dn_j * f_j'(z_j)                       (the activation table's vjp)
    dw_ij += dz_j * n_i,  db_j += dz_j            (a shared symbol: the sum of its uses)

and dx is the dn of the input neurons.

Layout. The batch runs in tiles of 64 rows (TILE_ROWS); the tile, `[slots x
64]` floats in the arena, holds per row the inputs, the outputs and every
neuron an edge reads, the cotangents, and dz of every computed neuron. Per
tile, each phase is one loop over the tile's rows, straight-line inside, with
unit-stride tile accesses (LLVM runs 16 rows per AVX-512 vector):

    copy in         x and dy rows into the tile
    forward         the chunks but the last (chunks of `chunk-edges` edges, as
                    in the forward kernel), keeping their values in the tile
    backward        per chunk, last first: the chunk's forward again (from the
                    tile: cheaper than keeping every z) and its backward; the dz
                    of a later chunk's neuron is read back from its slot
    gradients       after each chunk's backward: dparams[k] += sum over the
                    tile's rows of dz_j * n_i, GRAD_TERMS parameters per loop
    copy out        y, and dx (dy + the dz of the input neurons' consumers)

The parameter gradients are sums over the rows, i.e. reductions: the adds are
marked `reassoc`, so LLVM keeps each sum in a vector register through the loop
and adds its lanes at the end (in float, LLVM vectorizes no reduction without
reassociation). They are loops of their own because a row loop with
hundreds of sums, in registers or in memory, spills or makes LLVM's memory
dependence analysis quadratic. For the same reason, in a net of several
chunks each phase loop is marked `ncc.outline` and becomes a function of its
own (outline-loops): else LLVM's LICM weighs every memory access of the
whole tile loop against every other. The sums are in another order than the
equations': equal up to rounding.

Measured (2 cores, AVX-512, 10,000 rows): the ncp19 example's backward runs
in 1.9x its forward's time (150 us vs 79), a random 457-edge DAG's in 2.3x;
LLVM compiles it in 2.5x to 3.5x the forward's time (1,180 edges: 18 s vs 7 s).
"""

from __future__ import annotations

from typing import Callable

from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import MemRefType, UnitAttr, f32, i8
from xdsl.ir import Operation, SSAValue

from ncc.dialects import activations
from ncc.dialects.neuron import NetOp
from ncc.passes.lowering.straight_line import (
    CHUNK_EDGES, DYN, TILE_ROWS, KernelBuilder, RowCode, chunk_neurons,
    needed_neurons, net_params, params_symbol)
from ncc.passes.lowering.outline_loops import OUTLINE
from ncc.passes.lowering.abi import ArgRole, KernelABI


def vjp_name(net_name: str) -> str:
    """The backward kernel of a neuron net."""
    return f"{net_name}_vjp"


def _sum(B: KernelBuilder, terms: list[SSAValue]) -> SSAValue:
    if not terms:
        return B.const(0.0)
    total = terms[0]
    for t in terms[1:]:
        total = B.emit(arith.AddfOp(total, t))
    return total


def _backward(row: RowCode, chunk: list[int], consumers: list[list[tuple[int, str]]],
              dz_of: Callable[[int], SSAValue], dy_of: Callable[[int], SSAValue | None],
              keep_dz: Callable[[int, SSAValue], None]) -> None:
    """The backward of `chunk` (its forward already emitted in `row`), neurons in
    reverse order: dn_j = dy_j + sum of dz_k * w_jk over j's consumers k (those of
    this chunk in registers, the others' dz through `dz_of(k)`), then dz_j, kept
    by `keep_dz(j, dz)`. `dy_of(j)` is j's cotangent (None: not an output)."""
    B, g = row.B, row.g
    dz: dict[int, SSAValue] = {}  # this chunk's, and the later chunks' loaded once
    for j in reversed(chunk):  # every consumer of j comes after it (here or in a later chunk)
        terms = [] if (d := dy_of(j)) is None else [d]
        for k, w in consumers[j]:
            if k not in dz:
                dz[k] = dz_of(k)
            terms.append(B.emit(arith.MulfOp(dz[k], row.param(w))))
        dn = _sum(B, terms)  # dz = dn * f'(z), by the activation table (None: a zero derivative)
        dz[j] = activations.BY_NAME[g.activation[j]].vjp(B.scalar, row.z[j], row.value[j], dn) or B.const(0.0)
        keep_dz(j, dz[j])


# The sums over rows: adds marked `reassoc`, so that LLVM may reorder them (a
# vectorized reduction).
_REASSOC = arith.FastMathFlagsAttr((arith.FastMathFlag.REASSOC,))
GRAD_TERMS = 8  # gradient terms (accumulators) per loop


def neuron_vjp_kernel(net: NetOp, seed: int = 0, chunk_edges: int = CHUNK_EDGES) -> func.FuncOp:
    """The backward kernel `@<net>_vjp` of `net` (see the module docstring); it
    reads the forward kernel's parameter weight `<net>.params`."""
    g = net.graph()
    name = net.sym_name.data
    names, _, slot = net_params(net, g, seed)
    inputs, outputs = g.input_indices, list(g.outputs or [])
    in_col = {i: c for c, i in enumerate(inputs)}
    out_col = {j: c for c, j in enumerate(outputs)}
    computed = [j for j in needed_neurons(g) if g.activation[j] is not None]
    chunks = chunk_neurons(g, computed, chunk_edges)
    last = len(chunks) - 1
    # consumers[i]: the computed neurons k reading i, with the edge's weight symbol
    consumers: list[list[tuple[int, str]]] = [[] for _ in range(g.size)]
    for k in sorted(computed):
        for i, w in zip(g.inputs[k], g.weights[k]):
            consumers[i].append((k, w))

    # Tile slots (rows of TILE_ROWS floats): the inputs, the outputs and every
    # neuron an edge reads (its weight's gradient needs it), then the
    # cotangents, then dz of every computed neuron.
    value_slot: dict[int, int] = {}
    for j in [*inputs, *outputs, *computed]:
        if g.activation[j] is None or j in out_col or consumers[j]:
            value_slot.setdefault(j, len(value_slot))
    dy_slot = {c: len(value_slot) + c for c in range(len(outputs))}
    dz_slot = {j: len(value_slot) + len(dy_slot) + k for k, j in enumerate(computed)}
    n_slots = len(value_slot) + len(dy_slot) + len(dz_slot)

    n_in, n_out, n_params = len(inputs), len(outputs), len(names)
    types = [MemRefType(f32, [DYN, n_in]), MemRefType(f32, [DYN, n_out]),
             MemRefType(f32, [DYN, n_out]), MemRefType(f32, [n_params]),
             MemRefType(f32, [DYN, n_in]), MemRefType(f32, [n_params]), MemRefType(i8, [DYN])]
    psym = params_symbol(name)
    roles = [ArgRole("input", "x"), ArgRole("input", "cotangent:y"), ArgRole("output", "y"),
             ArgRole("output", f"grad:{psym}"), ArgRole("output", "grad:x"),
             ArgRole("weight", psym), ArgRole("arena", "")]
    fn = func.FuncOp(vjp_name(name), (types, ()))
    args = fn.body.block.args
    for arg, hint in zip(args, ("x", "dy", "y", "dparams", "dx", "params", "arena")):
        arg.name_hint = hint
    x, dy, y, dparams, dx, p, arena = args

    B = KernelBuilder()
    batch = memref.DimOp(x, B.index(0))
    B.pre.append(batch)
    B.pre.append(view := memref.ViewOp(arena, B.index(0), [], MemRefType(f32, [n_slots, TILE_ROWS])))
    tile = view.results[0]
    tile.name_hint = "tile"

    def load(buf: SSAValue, idx: list[SSAValue]) -> SSAValue:
        return B.emit(memref.LoadOp.get(buf, idx))

    def store(v: SSAValue, buf: SSAValue, idx: list[SSAValue]) -> None:
        B.emit(memref.StoreOp.get(v, buf, idx))

    def at(k: int, t: SSAValue) -> list[SSAValue]:
        return [B.index(k), t]

    def phase(rows: SSAValue, body: Callable[[SSAValue], None]) -> None:
        """A loop over the tile's rows; in a net of several chunks, marked to
        become a function of its own (outline-loops: keeps LLVM linear)."""
        B.loop(B.index(0), rows, B.index(1), "t", body)
        if len(chunks) > 1:
            B.ops[-1].attributes[OUTLINE] = UnitAttr()

    B.loop(B.index(0), B.index(n_params), B.index(1), "k",
           lambda k: store(B.const(0.0), dparams, [k]))

    def tile_body(t0: SSAValue) -> None:
        rows = B.emit(arith.MinSIOp(B.emit(arith.SubiOp(batch.result, t0)), B.index(TILE_ROWS)))

        def row_of(t: SSAValue) -> RowCode:
            return RowCode(B, g, p, slot, lambda i: memref.LoadOp.get(tile, at(value_slot[i], t)))

        def keep(t: SSAValue) -> Callable[[int, SSAValue], Operation | None]:
            return lambda j, v: memref.StoreOp.get(v, tile, at(value_slot[j], t)) \
                if j in value_slot else None

        def dy_of(t: SSAValue) -> Callable[[int], SSAValue | None]:
            return lambda j: load(tile, at(dy_slot[out_col[j]], t)) if j in out_col else None

        def copy_in(t: SSAValue) -> None:  # whole rows of x and dy into the tile
            r = B.emit(arith.AddiOp(t0, t))
            for i in inputs:
                store(load(x, [r, B.index(in_col[i])]), tile, at(value_slot[i], t))
            for c in range(n_out):
                store(load(dy, [r, B.index(c)]), tile, at(dy_slot[c], t))

        def backward(c: int, t: SSAValue) -> None:
            row = row_of(t)  # the chunk's forward again (its values are in slots unless last)
            row.forward(chunks[c], keep(t) if c == last else lambda j, v: None)
            _backward(row, chunks[c], consumers, lambda k: load(tile, at(dz_slot[k], t)),
                      dy_of(t), lambda j, dz: store(dz, tile, at(dz_slot[j], t)))

        def gradients(c: int) -> None:
            """Each parameter's sum over the rows of dz_j * n_i (dz_j for a bias),
            added into dparams row by row, GRAD_TERMS terms per loop: LLVM keeps
            each sum in a register over the loop (dparams is noalias) and, the adds
            being `reassoc`, vectorizes it as a reduction."""
            terms = [(slot[sym], j, i) for j in chunks[c]
                     for i, sym in [*zip(g.inputs[j], g.weights[j]), (None, g.bias[j])]
                     if sym is not None]
            for start in range(0, len(terms), GRAD_TERMS):
                def body(t: SSAValue, group=terms[start:start + GRAD_TERMS]) -> None:
                    loaded: dict[int, SSAValue] = {}

                    def get(s: int) -> SSAValue:
                        if s not in loaded:
                            loaded[s] = load(tile, at(s, t))
                        return loaded[s]

                    sums: dict[int, SSAValue] = {}  # a symbol used twice in the group: one sum
                    for k, j, i in group:
                        v = get(dz_slot[j])
                        if i is not None:
                            v = B.emit(arith.MulfOp(v, get(value_slot[i])))
                        sums[k] = v if k not in sums else B.emit(arith.AddfOp(sums[k], v))
                    for k, v in sums.items():
                        total = B.emit(arith.AddfOp(load(dparams, [B.index(k)]), v, _REASSOC))
                        store(total, dparams, [B.index(k)])

                phase(rows, body)

        def copy_out(t: SSAValue) -> None:  # y, and dx = dn of the inputs
            r = B.emit(arith.AddiOp(t0, t))
            row = row_of(t)
            for j in outputs:
                store(row.get(j), y, [r, B.index(out_col[j])])
            dz: dict[int, SSAValue] = {}
            for i in inputs:
                terms = [] if (d := dy_of(t)(i)) is None else [d]
                for k, w in consumers[i]:
                    if k not in dz:
                        dz[k] = load(tile, at(dz_slot[k], t))
                    terms.append(B.emit(arith.MulfOp(dz[k], row.param(w))))
                store(_sum(B, terms), dx, [r, B.index(in_col[i])])

        phase(rows, copy_in)
        for c in range(last):
            phase(rows, lambda t, c=c: row_of(t).forward(chunks[c], keep(t)))
        for c in reversed(range(len(chunks))):
            phase(rows, lambda t, c=c: backward(c, t))
            gradients(c)
        phase(rows, copy_out)

    B.loop(B.index(0), batch.result, B.index(TILE_ROWS), "t0", tile_body)
    fn.body.block.add_ops([*B.pre, *B.ops, func.ReturnOp()])
    KernelABI(fn.sym_name.data, tuple(roles), 0, 4 * n_slots * TILE_ROWS,
              param_names=tuple(names)).attach(fn)
    return fn
