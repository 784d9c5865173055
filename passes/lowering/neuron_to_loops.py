"""neuron-to-loops: a neuron net lowered directly to one straight-line, batch-vectorized kernel.

    neuron.net @net -> (n03) {            nn.weight @net.params : tensor<5xf32> = dense<[...]>
      neuron.input n00                    func.func @net(%x: memref<?x2xf32>, %y: memref<?x1xf32>,
      neuron.input n01                                   %params: memref<5xf32>) {
      neuron.neuron n02 tanh(         ==>   scf.for %b = %c0 to %batch step %c1 {
          n00 * @w0002, n01 * @w0102)         %x0 = memref.load %x[%b, %c0]        (inputs of row b)
          + @b02                              %w = memref.load %params[%c0]        (one weight)
      neuron.neuron n03 ...                   %m = arith.mulf %x0, %w              (one multiply-add
    }                                         %z = arith.addf %bias, %m             per weight)
                                              %n2 = math.tanh %z                   (inlined activation)
                                              ...
                                              memref.store %n3, %y[%b, %c0]
                                            }
                                          }

The kernel follows passes/lowering/abi.py: arguments `input:x` (`memref<?xN_INxf32>`,
the input neurons in index order), `output:y` (`memref<?xN_OUTxf32>`, the
net's outputs in listed order) and `weight:<net>.params`, one flat
`memref<Pxf32>` whose element k is the parameter `ncc.param_names[k]`; an
arena only for a net split into chunks (below).
Parameter order: every distinct weight symbol in order of first use (neurons by
index, each neuron's terms in order), then every bias symbol not already listed
(neurons by index). A shared symbol is one parameter. The module keeps the
initial values as `nn.weight @<net>.params` (the values written in the IR, else
the seeded rule `neuron.initial_value`, biases 0 -- exactly what
`ncc.reference` computes); the runtime passes that buffer, so weights stay
writable and are never baked into code.

Every batch row is independent and the body is straight-line: LLVM's loop
vectorizer runs one row per vector lane (16 rows per AVX-512 vector; the
row-major input and output become interleaved vector loads and stores).
A large net is cut into chunks of about `chunk-edges` edges (default 256), each
its own straight-line loop over a tile of 64 rows; the tile, `[slots x 64]` in
the arena, holds the rows' inputs (copied in by a loop of their own), the values
crossing chunks and the outputs (copied out at the end); see CHUNK_EDGES. Weight
loads do not depend on the row (LLVM hoists them; the buffers are `noalias`).
(lower-to-llvm's `contract` option lets LLVM fuse each multiply-add into an FMA.)
Only neurons an output depends on are computed. Activations are inlined with
arith/math ops, with the semantics of dialects/activations.py; `expand-math`
turns exp/tanh into arith so that they vectorize.

Which lowering a net gets -- this kernel, or layerize (-> fuse -> lower-to-loops)
-- is `choose_neuron_lowering` below: option `mode=neuron|auto|layers`. Option
`vjp=true` adds, next to a straight-line kernel, its backward `@<net>_vjp`
(neuron_backward.py, which shares `KernelBuilder`, `RowCode` and the parameter order
with this file through straight_line.py); a net lowered as layers is
differentiated at the nn level instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import MemRefType, ModuleOp, f32, i8
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import nn
from ncc.dialects.neuron import NetOp, NeuronGraph
from ncc.passes.layerize import layerize_net, plan_layers
from ncc.passes.lowering.abi import ArgRole, KernelABI
from ncc.passes.lowering.neuron_backward import neuron_vjp_kernel
from ncc.passes.lowering.straight_line import CHUNK_EDGES, DYN, TILE_ROWS, KernelBuilder, RowCode, chunk_neurons
from ncc.passes.lowering.straight_line import needed_neurons, net_params, params_symbol


def neuron_kernel(net: NetOp, seed: int = 0, chunk_edges: int = CHUNK_EDGES,
                  ) -> tuple[nn.WeightOp, func.FuncOp]:
    """The parameter weight and the kernel computing `net` (see the module docstring)."""
    g = net.graph()
    name = net.sym_name.data
    names, values, slot = net_params(net, g, seed)
    inputs, outputs = g.input_indices, list(g.outputs or [])
    in_col = {i: c for c, i in enumerate(inputs)}
    out_cols: dict[int, int] = {j: c for c, j in enumerate(outputs)}
    computed = [j for j in needed_neurons(g) if g.activation[j] is not None]
    chunks = chunk_neurons(g, computed, chunk_edges)
    tiled = len(chunks) > 1
    tile_slot: dict[int, int] = {}
    if tiled:  # slots: the inputs, the values crossing chunks, the outputs
        chunk_of = {j: c for c, chunk in enumerate(chunks) for j in chunk}
        crossing = sorted({i for j in computed for i in g.inputs[j]
                           if i in chunk_of and chunk_of[i] < chunk_of[j]}, key=chunk_of.get)
        for j in [*inputs, *crossing, *outputs]:
            tile_slot.setdefault(j, len(tile_slot))

    types = [MemRefType(f32, [DYN, len(inputs)]), MemRefType(f32, [DYN, len(outputs)]),
             MemRefType(f32, [len(names)])]
    roles = [ArgRole("input", "x"), ArgRole("output", "y"), ArgRole("weight", params_symbol(name))]
    if tiled:
        types.append(MemRefType(i8, [DYN]))
        roles.append(ArgRole("arena", ""))
    fn = func.FuncOp(name, (types, ()))
    x, y, p = fn.body.block.args[:3]
    for arg, hint in zip(fn.body.block.args, ("x", "y", "params", "arena")):
        arg.name_hint = hint

    B = KernelBuilder()
    batch = memref.DimOp(x, B.index(0))
    B.pre.append(batch)
    if tiled:
        B.pre.append(view := memref.ViewOp(fn.body.block.args[3], B.index(0), [],
                                           MemRefType(f32, [len(tile_slot), TILE_ROWS])))
        tile = view.results[0]
        tile.name_hint = "tile"

    def chunk_body(chunk: list[int], read: Callable[[int], Operation],
                   write: Callable[[int, SSAValue], Operation | None]) -> None:
        RowCode(B, g, p, slot, read).forward(chunk, write)

    def x_at(row: SSAValue, i: int) -> Operation:
        return memref.LoadOp.get(x, [row, B.index(in_col[i])])

    def direct(b: SSAValue) -> None:  # one chunk: row b of x in, row b of y out
        chunk_body(chunks[0], lambda i: x_at(b, i),
                   lambda j, v: memref.StoreOp.get(v, y, [b, B.index(out_cols[j])])
                   if j in out_cols else None)
        for j in outputs:  # an input listed as an output
            if g.activation[j] is None:
                B.emit(memref.StoreOp.get(B.emit(x_at(b, j)), y, [b, B.index(out_cols[j])]))

    def tile_body(t0: SSAValue) -> None:
        # Rows in and out of the tile in loops of their own: whole rows of x and y
        # (interleaved vector loads and stores), unit-stride tile rows in the chunks.
        rows = B.emit(arith.MinSIOp(B.emit(arith.SubiOp(batch.result, t0)), B.index(TILE_ROWS)))

        def at(j: int, t: SSAValue) -> list[SSAValue]:
            return [B.index(tile_slot[j]), t]

        def copy_in(t: SSAValue) -> None:
            row = B.emit(arith.AddiOp(t0, t))
            for i in inputs:
                B.emit(memref.StoreOp.get(B.emit(x_at(row, i)), tile, at(i, t)))

        def copy_out(t: SSAValue) -> None:
            row = B.emit(arith.AddiOp(t0, t))
            for j in outputs:
                B.emit(memref.StoreOp.get(B.emit(memref.LoadOp.get(tile, at(j, t))), y,
                                          [row, B.index(out_cols[j])]))

        B.loop(B.index(0), rows, B.index(1), "t", copy_in)
        for chunk in chunks:
            B.loop(B.index(0), rows, B.index(1), "t", lambda t, chunk=chunk: chunk_body(
                chunk, lambda i: memref.LoadOp.get(tile, at(i, t)),
                lambda j, v: memref.StoreOp.get(v, tile, at(j, t)) if j in tile_slot else None))
        B.loop(B.index(0), rows, B.index(1), "t", copy_out)

    if tiled:
        B.loop(B.index(0), batch.result, B.index(TILE_ROWS), "t0", tile_body)
    else:
        B.loop(B.index(0), batch.result, B.index(1), "b", direct)
    fn.body.block.add_ops([*B.pre, *B.ops, func.ReturnOp()])
    tile_bytes = 4 * len(tile_slot) * TILE_ROWS
    KernelABI(name, tuple(roles), 0, tile_bytes, param_names=tuple(names)).attach(fn)
    return nn.WeightOp(params_symbol(name), values), fn


# ---------------------------------------------------------------------------
# The automatic choice.
#
# Straight-line code does exactly one multiply-add per edge and row, with no
# index tables, no copies between layers and no zeros. Measured (2 cores, random
# sparse nets, 4096 rows): 19 neurons run 13x faster than layerize ->
# lower-to-loops, 100 neurons / 312 edges 9x faster, and compile faster too
# (sparse layers unroll or loop over index tables). Its cost is compile time,
# about 5-10 ms of CPU per edge (activations included) through LLVM at O3;
# a dense layer's loop nest compiles in constant time (the 784-512-512-10 MLP,
# 670k edges, in 0.3 s). So: small nets always go straight-line; mid-size nets
# unless their layers are mostly full; huge nets go to layers.

SMALL_EDGES = 2_000  # at most this many edges: always straight-line (~10 s compile at most)
MAX_NEURON_EDGES = 20_000  # more: always layers (straight-line would take minutes to compile)
DENSE_LAYERS = 0.5  # in between: layers when the layers' matrices are at least this full
MODES = ("neuron", "auto", "layers")


def layer_density(g: NeuronGraph) -> float:
    """Edges / total size of the [sources x neurons] matrices of layerize's layers."""
    edges = sum(len(ins) for ins in g.inputs)
    cells = sum(len(layer.sources) * len(layer.neurons) for layer in plan_layers(g))
    return edges / cells if cells else 1.0


def choose_neuron_lowering(net: NetOp | NeuronGraph, mode: str = "auto") -> str:
    """'neuron' (this pass's straight-line kernel) or 'layers' (layerize, then
    lower-to-loops) for a net; `mode` other than 'auto' forces the choice."""
    if mode not in MODES:
        raise ValueError(f"neuron lowering mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode != "auto":
        return mode
    g = net.graph() if isinstance(net, NetOp) else net
    edges = sum(len(ins) for ins in g.inputs)
    if edges <= SMALL_EDGES:
        return "neuron"
    if edges > MAX_NEURON_EDGES:
        return "layers"
    return "layers" if layer_density(g) >= DENSE_LAYERS else "neuron"


@dataclass(frozen=True)
class NeuronToLoopsPass(ModulePass):
    """Lower every neuron.net to a straight-line batch kernel (mode=neuron, the
    default), or choose per net by size and density (mode=auto), or layerize it
    (mode=layers: the nn function that fuse and lower-to-loops then lower)."""

    name = "neuron-to-loops"
    mode: str = "neuron"  # neuron | auto | layers
    seed: int = 0  # seed of the initial-value rule for weights without values
    chunk_edges: int = CHUNK_EDGES  # edges per straight-line chunk (see CHUNK_EDGES)
    vjp: bool = False  # also the backward kernel @<net>_vjp of a straight-line net (neuron_backward.py)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.mode not in MODES:
            raise PassFailedException(
                f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.chunk_edges < 1:
            raise PassFailedException(f"chunk-edges must be at least 1, got {self.chunk_edges}")
        for net in [o for o in op.walk() if isinstance(o, NetOp)]:
            if choose_neuron_lowering(net, self.mode) == "neuron":
                new = list(neuron_kernel(net, self.seed, self.chunk_edges))
                if self.vjp:
                    new.append(neuron_vjp_kernel(net, self.seed, self.chunk_edges))
            else:
                weights, fn = layerize_net(net, self.seed)
                new = [*weights, fn]
            Rewriter.insert_op(new, InsertPoint.before(net))
            Rewriter.erase_op(net)
