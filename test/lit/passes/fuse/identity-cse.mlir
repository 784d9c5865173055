// RUN: ncc-opt %s --fuse | FileCheck %s
// Before the patterns: common subexpressions once (two equal constants, two
// equal products), and ops that compute nothing gone (a reshape, cast or
// broadcast to the operand's own type, an identity transpose, nn.identity);
// a reshape of a reshape is one reshape.

// CHECK-LABEL: func.func @main(
// CHECK-NEXT:    %[[R:.*]] = nn.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_elementwise %x : tensor<2x3xf32> -> tensor<2x3xf32> {
// CHECK-NEXT:    ^bb0(%[[E:.*]]: tensor<f32>):
// CHECK-NEXT:      %[[H:.*]] = nn.constant dense<0.5> : tensor<f32>
// CHECK-NEXT:      %[[P:.*]] = nn.mul %[[E]], %[[H]] : tensor<f32>
// CHECK-NEXT:      %[[S:.*]] = nn.add %[[P]], %[[P]] : tensor<f32>
// CHECK-NEXT:      nn.yield %[[S]]
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[Y]], %[[R]]
func.func @main(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<6xf32>) {
  %0 = nn.reshape %x : tensor<2x3xf32> -> tensor<2x3xf32>
  %1 = nn.transpose %0 perm [0, 1] : tensor<2x3xf32>
  %2 = nn.cast %1 : tensor<2x3xf32> -> tensor<2x3xf32>
  %3 = nn.identity %2 : tensor<2x3xf32>
  %4 = nn.reshape %3 : tensor<2x3xf32> -> tensor<3x2xf32>
  %5 = nn.reshape %4 : tensor<3x2xf32> -> tensor<6xf32>
  %c = nn.constant dense<0.5> : tensor<f32>
  %d = nn.constant dense<0.5> : tensor<f32>
  %6 = nn.mul %3, %c : tensor<2x3xf32>, tensor<f32> -> tensor<2x3xf32>
  %7 = nn.mul %3, %d : tensor<2x3xf32>, tensor<f32> -> tensor<2x3xf32>
  %8 = nn.add %6, %7 : tensor<2x3xf32>
  func.return %8, %5 : tensor<2x3xf32>, tensor<6xf32>
}

// A reshape to another shape, a transpose that permutes and a cast that
// converts stay.
// CHECK-LABEL: func.func @kept(
// CHECK-NEXT:    nn.reshape
// CHECK-NEXT:    nn.transpose
// CHECK-NEXT:    nn.cast
func.func @kept(%x: tensor<2x3xf32>) -> tensor<2x3xf64> {
  %0 = nn.reshape %x : tensor<2x3xf32> -> tensor<3x2xf32>
  %1 = nn.transpose %0 perm [1, 0] : tensor<3x2xf32> -> tensor<2x3xf32>
  %2 = nn.cast %1 : tensor<2x3xf32> -> tensor<2x3xf64>
  func.return %2 : tensor<2x3xf64>
}
