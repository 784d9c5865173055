// RUN: ncc-opt %s --expand-math | FileCheck %s
// f32 exp becomes arith only: clamp, round(x * log2(e)) by adding 1.5 * 2^23,
// Cody-Waite reduction, a polynomial, and 2^n built in the exponent bits.
// f64 is left to LLVM's intrinsics.

// CHECK-LABEL: func.func @f(%x: f32, %d: f64) -> (f32, f64)
// CHECK-NOT:   math.exp %x
// CHECK:       arith.maximumf %x, %{{.*}} : f32
// CHECK:       arith.constant 0x4B400000 : f32
// CHECK:       arith.bitcast %{{.*}} : f32 to i32
// CHECK:       arith.shli %{{.*}}, %{{.*}} : i32
// CHECK:       arith.bitcast %{{.*}} : i32 to f32
// CHECK:       math.exp %d : f64
func.func @f(%x: f32, %d: f64) -> (f32, f64) {
  %e = math.exp %x : f32
  %g = math.exp %d : f64
  func.return %e, %g : f32, f64
}
