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

One module per op family, as in dialects/nn/: `builder` (buffers, the Builder,
loop nests, index maps, the scalar tables), then `elementwise`, `matmul`,
`conv`, `sparse`, `pool`, `reduce`, `softmax`, `normalization`, `shape`,
`gather_scatter`, `resize`, `quant`, `attention`, `fusion`, each with its `LOWER` table; `function` holds the
pass and gathers the tables.
"""

from ncc.passes.lowering.nn_to_loops.builder import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.elementwise import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.matmul import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.conv import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.sparse import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.pool import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.reduce import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.softmax import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.normalization import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.shape import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.gather_scatter import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.resize import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.function import *  # noqa: F401,F403
from ncc.passes.lowering.nn_to_loops.function import LOWER, TABLES  # noqa: F401,E402
