// RUN: ncc-opt %s --lower-to-llvm | FileCheck %s
// RUN: ncc-opt %s --lower-to-llvm="contract=false" | FileCheck %s --check-prefix=PLAIN
// Multiply-adds fuse explicitly: an add or subtract of a product used
// nowhere else is one llvm.fmuladd (an FMA where the CPU has one). A
// subtracted term is negated first (exact). A product with another use
// stays a product (a fused product's own fmul is left for LLVM to drop).
// No fast-math flag is set: LLVM's vectorizers cannot make
// one copy of a loop round differently from another (a loop split over
// threads gives the one-thread bits). contract=false keeps every rounding.

// CHECK-LABEL: llvm.func @axpy(
// CHECK:         %[[P:.*]] = llvm.fmul %[[A:.*]], %[[B:.*]] : f32
// CHECK-NEXT:    %[[S:.*]] = llvm.call_intrinsic "llvm.fmuladd.f32"(%[[A]], %[[B]], %[[C:.*]]) : (f32, f32, f32) -> f32
// CHECK:         %[[N:.*]] = llvm.fneg %[[C]] : f32
// CHECK-NEXT:    llvm.call_intrinsic "llvm.fmuladd.f32"(%[[A]], %[[B]], %[[N]]) : (f32, f32, f32) -> f32
// CHECK:         %[[M:.*]] = llvm.fneg %[[A]] : f32
// CHECK-NEXT:    llvm.call_intrinsic "llvm.fmuladd.f32"(%[[M]], %[[B]], %[[C]]) : (f32, f32, f32) -> f32
// CHECK:         %[[Q:.*]] = llvm.fmul %[[A]], %[[B]] : f32
// CHECK-NEXT:    llvm.fadd %[[Q]], %[[C]] : f32
// CHECK-NOT:     fastmath
// PLAIN-LABEL: llvm.func @axpy(
// PLAIN-NOT:     fmuladd
func.func @axpy(%x: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %a = memref.load %x[%c0] : memref<4xf32>
  %b = memref.load %x[%c1] : memref<4xf32>
  %c = memref.load %x[%c2] : memref<4xf32>
  %p = arith.mulf %a, %b : f32
  %s = arith.addf %p, %c : f32
  %p2 = arith.mulf %a, %b : f32
  %d = arith.subf %p2, %c : f32
  %p3 = arith.mulf %a, %b : f32
  %e = arith.subf %c, %p3 : f32
  %q = arith.mulf %a, %b : f32
  %f = arith.addf %q, %c : f32
  %g = arith.addf %f, %q : f32
  memref.store %s, %x[%c0] : memref<4xf32>
  memref.store %d, %x[%c1] : memref<4xf32>
  memref.store %e, %x[%c2] : memref<4xf32>
  memref.store %g, %x[%c0] : memref<4xf32>
  func.return
}
