// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// nn.fused_elementwise: operands, their types -> the result type, then the body
// on rank-0 tensors (one element of each operand), ending in nn.yield.

// CHECK-LABEL: func.func @gelu_erf(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
// CHECK-NEXT:    %0 = nn.fused_elementwise %x : tensor<?x8xf32> -> tensor<?x8xf32> {
// CHECK-NEXT:    ^bb0(%e: tensor<f32>):
// CHECK-NEXT:      %root2 = nn.constant dense<1.4142135> : tensor<f32>
// CHECK-NEXT:      %half = nn.constant dense<0.5> : tensor<f32>
// CHECK-NEXT:      %one = nn.constant dense<1.0> : tensor<f32>
// CHECK-NEXT:      %1 = nn.div %e, %root2 : tensor<f32>
// CHECK-NEXT:      %2 = nn.erf %1 : tensor<f32>
// CHECK-NEXT:      %3 = nn.add %2, %one : tensor<f32>
// CHECK-NEXT:      %4 = nn.mul %e, %3 : tensor<f32>
// CHECK-NEXT:      %5 = nn.mul %4, %half : tensor<f32>
// CHECK-NEXT:      nn.yield %5 : tensor<f32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %0 : tensor<?x8xf32>
func.func @gelu_erf(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %0 = nn.fused_elementwise %x : tensor<?x8xf32> -> tensor<?x8xf32> {
  ^bb0(%e: tensor<f32>):
    %root2 = nn.constant dense<1.4142135> : tensor<f32>
    %half = nn.constant dense<0.5> : tensor<f32>
    %one = nn.constant dense<1.0> : tensor<f32>
    %1 = nn.div %e, %root2 : tensor<f32>
    %2 = nn.erf %1 : tensor<f32>
    %3 = nn.add %2, %one : tensor<f32>
    %4 = nn.mul %e, %3 : tensor<f32>
    %5 = nn.mul %4, %half : tensor<f32>
    nn.yield %5 : tensor<f32>
  }
  func.return %0 : tensor<?x8xf32>
}

// Mixed element types: a comparison's i1, a select, a cast.
// CHECK-LABEL: func.func @mixed(
// CHECK-NEXT:    nn.fused_elementwise %a, %b : tensor<2x3xi64>, tensor<3xi64> -> tensor<2x3xf32> {
// CHECK-NEXT:    ^bb0(%x: tensor<i64>, %y: tensor<i64>):
// CHECK-NEXT:      %1 = nn.less %x, %y : tensor<i64>, tensor<i64> -> tensor<i1>
// CHECK-NEXT:      %2 = nn.select %1, %x, %y : tensor<i1>, tensor<i64>, tensor<i64> -> tensor<i64>
// CHECK-NEXT:      %3 = nn.cast %2 : tensor<i64> -> tensor<f32>
// CHECK-NEXT:      nn.yield %3 : tensor<f32>
func.func @mixed(%a: tensor<2x3xi64>, %b: tensor<3xi64>) -> tensor<2x3xf32> {
  %0 = nn.fused_elementwise %a, %b : tensor<2x3xi64>, tensor<3xi64> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<i64>, %y: tensor<i64>):
    %1 = nn.less %x, %y : tensor<i64>, tensor<i64> -> tensor<i1>
    %2 = nn.select %1, %x, %y : tensor<i1>, tensor<i64>, tensor<i64> -> tensor<i64>
    %3 = nn.cast %2 : tensor<i64> -> tensor<f32>
    nn.yield %3 : tensor<f32>
  }
  func.return %0 : tensor<2x3xf32>
}
