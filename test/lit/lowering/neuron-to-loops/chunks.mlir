// RUN: ncc-opt %s --neuron-to-loops="chunk-edges=2" | FileCheck %s
// A net larger than one chunk (here forced: 2 edges per chunk) becomes one
// straight-line loop per chunk over a tile of 64 rows; a value a later chunk
// reads goes through the tile, `tile[slot][row]`, a view of the arena.

// CHECK-LABEL: func.func @net(%x: memref<?x1xf32>, %y: memref<?x1xf32>, %params: memref<4xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:y", "weight:net.params", "arena"]
// One slot (n02, read by the second chunk) x 64 rows x 4 bytes:
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 256>
// CHECK:         %[[TILE:.*]] = memref.view %arena[%{{.*}}][] : memref<?xi8> to memref<1x64xf32>
// CHECK:         scf.for %t0 = %{{.*}} to %[[BATCH:.*]] step %[[C64:.*]] {
// CHECK-NEXT:      %[[LEFT:.*]] = arith.subi %[[BATCH]], %t0 : index
// CHECK-NEXT:      %[[ROWS:.*]] = arith.minsi %[[LEFT]], %[[C64]] : index
// First chunk: n01, n02 (2 edges); n02 is stored to its tile slot.
// CHECK-NEXT:      scf.for %t = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        %[[ROW:.*]] = arith.addi %t0, %t : index
// CHECK:             arith.maximumf
// CHECK:             %[[N02:.*]] = arith.maximumf
// CHECK-NEXT:        memref.store %[[N02]], %[[TILE]][%{{.*}}, %t] : memref<1x64xf32>
// CHECK-NEXT:      }
// Second chunk: n03 reads n02 back from the tile and writes the output row.
// CHECK-NEXT:      scf.for %[[T:.*]] = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        %[[ROW2:.*]] = arith.addi %t0, %[[T]] : index
// CHECK:             %[[BACK:.*]] = memref.load %[[TILE]][%{{.*}}, %[[T]]] : memref<1x64xf32>
// CHECK:             memref.store %{{.*}}, %y[%[[ROW2]], %{{.*}}] : memref<?x1xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:    }
neuron.net @net -> (n03) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001 = 1.0)
  neuron.neuron n02 relu(n01 * @w0102 = 2.0)
  neuron.neuron n03 tanh(n02 * @w0203 = 3.0) + @b03 = 0.5
}
