// RUN: ncc-opt %s --lower-to-llvm | FileCheck %s
// An intermediate buffer is a memref.view of the arena: a GEP on i8 by the byte offset
// (per_batch * batch + constant); its dynamic size is the size given to the view.

// CHECK-LABEL: llvm.func @two_views(%0: !llvm.ptr {llvm.noalias}, %1: !llvm.ptr {llvm.noalias}, %2: i64)
func.func @two_views(%x: memref<?x2xf32>, %arena: memref<?xi8>)
    attributes {ncc.arg_roles = ["input:x", "arena"], ncc.arena_bytes = array<i64: 16, 64>} {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c64 = arith.constant 64 : index
  %n = memref.dim %x, %c0 : memref<?x2xf32>
  // CHECK:      %[[PB:.*]] = llvm.mul %2, %{{.*}} : i64
  // CHECK-NEXT: %[[OFF:.*]] = llvm.add %[[PB]], %{{.*}} : i64
  %pb = arith.muli %n, %c8 : index
  %off = arith.addi %pb, %c64 : index
  // CHECK-NEXT: %[[V0:.*]] = llvm.getelementptr inbounds %1[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i8
  %a = memref.view %arena[%c64][%n] : memref<?xi8> to memref<?x2xf32>
  // CHECK-NEXT: %[[V1:.*]] = llvm.getelementptr inbounds %1[%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
  %b = memref.view %arena[%off][%n] : memref<?xi8> to memref<?x2xf32>
  %v = memref.load %x[%c0, %c0] : memref<?x2xf32>
  // CHECK:      llvm.getelementptr inbounds %[[V0]][%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
  memref.store %v, %a[%c0, %c0] : memref<?x2xf32>
  // CHECK:      llvm.getelementptr inbounds %[[V1]][%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
  memref.store %v, %b[%c0, %c0] : memref<?x2xf32>
  func.return
}
