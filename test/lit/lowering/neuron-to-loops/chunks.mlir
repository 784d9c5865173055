// RUN: ncc-opt %s --neuron-to-loops="chunk-edges=2" | FileCheck %s
// A net larger than one chunk (here forced: 2 edges per chunk) becomes, per tile
// of 64 rows, a loop copying the rows' inputs into the tile, one straight-line
// loop per chunk reading and writing tile rows `tile[slot][t]` (unit stride
// along the batch), and a loop copying the outputs out. The tile is a view of
// the arena.

// CHECK-LABEL: func.func @net(%x: memref<?x1xf32>, %y: memref<?x1xf32>, %params: memref<4xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:y", "weight:net.params", "arena"]
// Three slots (n00 the input, n02 crossing chunks, n03 the output) x 64 rows x 4 bytes:
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 768>
// CHECK:         %[[TILE:.*]] = memref.view %arena[%{{.*}}][] : memref<?xi8> to memref<3x64xf32>
// CHECK:         scf.for %t0 = %{{.*}} to %[[BATCH:.*]] step %[[C64:.*]] {
// CHECK-NEXT:      %[[LEFT:.*]] = arith.subi %[[BATCH]], %t0 : index
// CHECK-NEXT:      %[[ROWS:.*]] = arith.minsi %[[LEFT]], %[[C64]] : index
// Rows in:
// CHECK-NEXT:      scf.for %[[T0:.*]] = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        %[[ROW:.*]] = arith.addi %t0, %[[T0]] : index
// CHECK-NEXT:        %[[X:.*]] = memref.load %x[%[[ROW]], %{{.*}}] : memref<?x1xf32>
// CHECK-NEXT:        memref.store %[[X]], %[[TILE]][%{{.*}}, %[[T0]]] : memref<3x64xf32>
// CHECK-NEXT:      }
// First chunk: n01, n02 (2 edges); n02 goes to its slot.
// CHECK-NEXT:      scf.for %[[T1:.*]] = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        memref.load %[[TILE]][%{{.*}}, %[[T1]]] : memref<3x64xf32>
// CHECK:             arith.maximumf
// CHECK:             %[[N02:.*]] = arith.maximumf
// CHECK-NEXT:        memref.store %[[N02]], %[[TILE]][%[[S2:.*]], %[[T1]]] : memref<3x64xf32>
// CHECK-NEXT:      }
// Second chunk: n03 reads n02 back; the output goes to its slot.
// CHECK-NEXT:      scf.for %[[T2:.*]] = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK:             memref.load %[[TILE]][%[[S2]], %[[T2]]] : memref<3x64xf32>
// CHECK:             %[[N03:.*]] = math.tanh
// CHECK-NEXT:        memref.store %[[N03]], %[[TILE]][%[[S3:.*]], %[[T2]]] : memref<3x64xf32>
// CHECK-NEXT:      }
// Rows out:
// CHECK-NEXT:      scf.for %[[T3:.*]] = %{{.*}} to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        %[[ROW3:.*]] = arith.addi %t0, %[[T3]] : index
// CHECK-NEXT:        %[[OUT:.*]] = memref.load %[[TILE]][%[[S3]], %[[T3]]] : memref<3x64xf32>
// CHECK-NEXT:        memref.store %[[OUT]], %y[%[[ROW3]], %{{.*}}] : memref<?x1xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:    }
neuron.net @net -> (n03) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001 = 1.0)
  neuron.neuron n02 relu(n01 * @w0102 = 2.0)
  neuron.neuron n03 tanh(n02 * @w0203 = 3.0) + @b03 = 0.5
}
