// RUN: ncc-opt %s --expand-math | FileCheck %s
// f32 exp becomes arith only: clamp, round(x * log2(e)) by adding 1.5 * 2^23,
// Cody-Waite reduction, a polynomial, and 2^n built in the exponent bits.
// f64 is left to LLVM's intrinsics.

// CHECK-LABEL: func.func @f(%x: f32, %d: f64) -> (f32, f64)
// The constants come first, shared by every expansion in the function.
// CHECK-NEXT:  %[[LO:.*]] = arith.constant -1.040000e+02 : f32
// CHECK-NEXT:  %[[HI:.*]] = arith.constant 8.900000e+01 : f32
// CHECK-NEXT:  %[[LOG2E:.*]] = arith.constant 1.44269502 : f32
// CHECK-NEXT:  %[[MAGIC:.*]] = arith.constant 0x4B400000 : f32
// CHECK-NOT:   math.exp %x
// CHECK:       %[[C:.*]] = arith.maximumf %x, %[[LO]] : f32
// CHECK-NEXT:  %[[X:.*]] = arith.minimumf %[[C]], %[[HI]] : f32
// CHECK-NEXT:  %[[T:.*]] = arith.mulf %[[X]], %[[LOG2E]] : f32
// CHECK-NEXT:  %[[K:.*]] = arith.addf %[[T]], %[[MAGIC]] : f32
// CHECK-NEXT:  %{{.*}} = arith.subf %[[K]], %[[MAGIC]] : f32
// CHECK-NEXT:  %{{.*}} = arith.bitcast %[[K]] : f32 to i32
// CHECK:       arith.shli %{{.*}}, %{{.*}} : i32
// CHECK:       arith.bitcast %{{.*}} : i32 to f32
// CHECK:       math.exp %d : f64
func.func @f(%x: f32, %d: f64) -> (f32, f64) {
  %e = math.exp %x : f32
  %g = math.exp %d : f64
  func.return %e, %g : f32, f64
}
