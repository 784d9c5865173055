// RUN: ncc-opt %s --expand-math | FileCheck %s
// tanh: an odd polynomial for |x| < 0.625, else 1 - 2/(exp(2|x|) + 1) with x's sign.
// log: exponent and mantissa taken apart with bit operations, then a polynomial.

// CHECK-LABEL: func.func @tanh
// CHECK:       math.absf %x : f32
// CHECK:       arith.divf
// CHECK:       math.copysign
// CHECK:       arith.cmpf olt, %{{.*}}, %{{.*}} : f32
// CHECK:       arith.select
// CHECK-NOT:   math.tanh
func.func @tanh(%x: f32) -> f32 {
  %t = math.tanh %x : f32
  func.return %t : f32
}

// CHECK-LABEL: func.func @log
// CHECK:       arith.bitcast %{{.*}} : f32 to i32
// CHECK:       arith.shrui
// CHECK:       arith.andi
// CHECK:       arith.ori
// CHECK:       arith.sitofp %{{.*}} : i32 to f32
// CHECK-NOT:   math.log
func.func @log(%x: f32) -> f32 {
  %l = math.log %x : f32
  func.return %l : f32
}
