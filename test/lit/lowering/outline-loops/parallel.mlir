// RUN: ncc-opt %s --outline-loops | FileCheck %s
// A loop marked `ncc.parallel` (parallelize-loops) becomes a function of its
// bounds, wherever it is: lower-to-llvm calls it through a launcher that
// gives each thread of the team a run of whole iterations. The call keeps
// the mark as [team, step, min trips]. A scratch buffer the loop's iterations each
// rewrite (`ncc.scratch`, read inside `ncc.scratch_per_iteration` loops) is
// copied into the function's own buffer: one per thread.

// CHECK-LABEL: func.func @planes(
// CHECK:         func.call @planes_nest0(%c0, %c64, %x, %pad, %y) {ncc.parallel = [2 : i64, 1 : i64, 2 : i64]} : (index, index, memref<64x32xf32>, memref<34xf32>, memref<64x32xf32>) -> ()
// CHECK-NEXT:    func.return
// CHECK:       func.func @planes_nest0(%[[LO:.*]]: index, %[[HI:.*]]: index, %[[X:.*]]: memref<64x32xf32>, %[[PAD:.*]]: memref<34xf32>, %[[Y:.*]]: memref<64x32xf32>) attributes {ncc.outlined} {
// CHECK:         %[[OWN:.*]] = memref.alloc() : memref<34xf32>
// CHECK-NEXT:    "memref.copy"(%[[PAD]], %[[OWN]])
// CHECK-NEXT:    scf.for %{{.*}} = %[[LO]] to %[[HI]] step
// CHECK:           memref.store %{{.*}}, %[[OWN]]
// CHECK:           memref.load %[[OWN]]
// CHECK:         } {ncc.scratch_per_iteration}
// CHECK-NEXT:    memref.dealloc %[[OWN]]
// CHECK-NEXT:    func.return
func.func @planes(%x: memref<64x32xf32>, %y: memref<64x32xf32>, %arena: memref<?xi8>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  %c64 = arith.constant 64 : index
  %raw = memref.view %arena[%c0][] : memref<?xi8> to memref<34xf32>
  %pad = memref.reinterpret_cast %raw to offset: [0], sizes: [34], strides: [1] {ncc.scratch} : memref<34xf32> to memref<34xf32>
  scf.for %c = %c0 to %c64 step %c1 {
    scf.for %j = %c0 to %c32 step %c1 {
      %v = memref.load %x[%c, %j] : memref<64x32xf32>
      %j1 = arith.addi %j, %c1 : index
      memref.store %v, %pad[%j1] : memref<34xf32>
    }
    scf.for %j = %c0 to %c32 step %c1 {
      %a = memref.load %pad[%j] : memref<34xf32>
      memref.store %a, %y[%c, %j] : memref<64x32xf32>
    }
  } {ncc.parallel = 2 : i64, ncc.scratch_per_iteration}
  func.return
}
