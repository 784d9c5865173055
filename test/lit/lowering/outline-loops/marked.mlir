// RUN: ncc-opt %s --outline-loops | FileCheck %s
// A loop marked `ncc.outline` becomes a function wherever it is, here inside a
// tile loop, whatever min-nests (the phases of the neuron backward kernel).
// Its free values (the tile loop's variable, the buffers) become arguments;
// an unmarked loop stays where it is.

// CHECK-LABEL: func.func @kernel(%x: memref<?x4xf32>, %y: memref<?x4xf32>)
// CHECK:         scf.for %t0 = %{{.*}} to %n step %{{.*}} {
// CHECK-NEXT:      func.call @kernel_nest0(%x, %t0, %y) : (memref<?x4xf32>, index, memref<?x4xf32>) -> ()
// CHECK-NEXT:      scf.for %j = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT:        memref.load %y[%t0, %j]
// CHECK:           }
// CHECK-NEXT:    }
// CHECK-NOT:     ncc.outline{{[^d]}}
// CHECK:       func.func @kernel_nest0(%{{.*}}: memref<?x4xf32>, %{{.*}}: index, %{{.*}}: memref<?x4xf32>) attributes {ncc.outlined} {
// CHECK:         scf.for
// CHECK:           math.exp
// CHECK-NOT:     ncc.outline{{[^d]}}
func.func @kernel(%x: memref<?x4xf32>, %y: memref<?x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %x, %c0 : memref<?x4xf32>
  scf.for %t0 = %c0 to %n step %c1 {
    scf.for %i = %c0 to %c4 step %c1 {
      %v = memref.load %x[%t0, %i] : memref<?x4xf32>
      %e = math.exp %v : f32
      memref.store %e, %y[%t0, %i] : memref<?x4xf32>
    } {ncc.outline}
    scf.for %j = %c0 to %c4 step %c1 {
      %v = memref.load %y[%t0, %j] : memref<?x4xf32>
      %d = arith.addf %v, %v : f32
      memref.store %d, %y[%t0, %j] : memref<?x4xf32>
    }
  }
  func.return
}
