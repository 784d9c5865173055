// RUN: ncc-opt %s --outline-loops=min-nests=2 | FileCheck %s
// Each top-level loop nest of a kernel moves into a function of its own, called
// in its place: the buffers and sizes it uses from outside become arguments
// (in order of first use), constants are cloned in. Small kernels (fewer than
// min-nests nests; 2 by default, as lower-to-llvm runs it) are left alone.

// CHECK-LABEL: func.func @kernel(%x: memref<?x4xf32>, %y: memref<?x4xf32>)
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK:         %n = memref.dim %x, %c0 : memref<?x4xf32>
// CHECK-NEXT:    func.call @kernel_nest0(%n, %x, %y) : (index, memref<?x4xf32>, memref<?x4xf32>) -> ()
// CHECK-NEXT:    func.call @kernel_nest1(%n, %y) : (index, memref<?x4xf32>) -> ()
// CHECK-NEXT:    func.return
// CHECK:       func.func @kernel_nest0(%{{.*}}: index, %{{.*}}: memref<?x4xf32>, %{{.*}}: memref<?x4xf32>) attributes {ncc.outlined} {
// CHECK:         arith.constant 0 : index
// CHECK:         scf.for
// CHECK:         math.exp
// CHECK:       func.func @kernel_nest1(%{{.*}}: index, %{{.*}}: memref<?x4xf32>) attributes {ncc.outlined} {
// CHECK:         arith.mulf
func.func @kernel(%x: memref<?x4xf32>, %y: memref<?x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %x, %c0 : memref<?x4xf32>
  scf.for %i = %c0 to %n step %c1 {
    scf.for %j = %c0 to %c4 step %c1 {
      %v = memref.load %x[%i, %j] : memref<?x4xf32>
      %e = math.exp %v : f32
      memref.store %e, %y[%i, %j] : memref<?x4xf32>
    }
  }
  scf.for %i = %c0 to %n step %c1 {
    scf.for %j = %c0 to %c4 step %c1 {
      %v = memref.load %y[%i, %j] : memref<?x4xf32>
      %s = arith.mulf %v, %v : f32
      memref.store %s, %y[%i, %j] : memref<?x4xf32>
    }
  }
  func.return
}

// CHECK-LABEL: func.func @one_nest(
// CHECK-NOT:     func.call
func.func @one_nest(%x: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
    %v = memref.load %x[%i] : memref<4xf32>
    memref.store %v, %x[%i] : memref<4xf32>
  }
  func.return
}
