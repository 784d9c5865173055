// RUN: ncc-opt %s --lower-to-llvm | FileCheck %s
// A loop-level kernel becomes an llvm.func of the kernel ABI (passes/lowering/abi.py): one
// noalias !llvm.ptr per memref, then the i64 batch; the ncc.* attributes stay.

// CHECK-LABEL: llvm.func @scale(%0: !llvm.ptr {llvm.noalias}, %1: !llvm.ptr {llvm.noalias}, %2: !llvm.ptr {llvm.noalias}, %3: i64)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "weight:w", "output:0"]
func.func @scale(%x: memref<?x4xf32>, %w: memref<4xf32>, %y: memref<?x4xf32>)
    attributes {ncc.arg_roles = ["input:x", "weight:w", "output:0"], ncc.arena_bytes = array<i64: 0, 0>} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  // memref.dim of the dynamic batch dimension is the trailing i64 argument.
  %n = memref.dim %x, %c0 : memref<?x4xf32>
  // CHECK:       llvm.br ^bb1(%[[ZERO:.*]] : i64)
  // CHECK:     ^bb1(%[[I:.*]]: i64):
  // CHECK-NEXT:  llvm.icmp "slt" %[[I]], %3 : i64
  scf.for %i = %c0 to %n step %c1 {
    scf.for %j = %c0 to %c4 step %c1 {
      // A load is one GEP on the element type with the row-major linear index i*4+j.
      // CHECK:       %[[ROW:.*]] = llvm.mul %[[I]], %{{.*}} : i64
      // CHECK-NEXT:  %[[LIN:.*]] = llvm.add %[[ROW]], %[[J:.*]] : i64
      // CHECK-NEXT:  %[[P:.*]] = llvm.getelementptr inbounds %0[%[[LIN]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
      // CHECK-NEXT:  llvm.load %[[P]] : !llvm.ptr -> f32
      %v = memref.load %x[%i, %j] : memref<?x4xf32>
      // CHECK:       llvm.getelementptr inbounds %1[%[[J]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
      %b = memref.load %w[%j] : memref<4xf32>
      // A product alone is one fmul (a product added is one llvm.fmuladd: fmuladd.mlir).
      // CHECK:       llvm.fmul %{{.*}}, %{{.*}} : f32
      %s = arith.mulf %v, %b : f32
      // CHECK:       llvm.call_intrinsic "llvm.maximum.f32"
      %z = arith.constant 0.0 : f32
      %r = arith.maximumf %s, %z : f32
      // CHECK:       llvm.getelementptr inbounds %2[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
      // CHECK-NEXT:  llvm.store %{{.*}}, %{{.*}} : f32, !llvm.ptr
      memref.store %r, %y[%i, %j] : memref<?x4xf32>
    }
  }
  // CHECK:       llvm.return
  func.return
}
// Addresses never go through integers: the loop vectorizer needs GEPs.
// CHECK-NOT: llvm.ptrtoint
// CHECK-NOT: llvm.inttoptr
