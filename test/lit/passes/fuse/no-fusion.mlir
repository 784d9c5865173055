// RUN: ncc-opt %s --fuse | FileCheck %s
// What fuse must leave alone: a matmul whose result has another user (fusing
// would compute it twice: its relu and add fuse with each other instead), an
// add that is not a bias along the features, and an activation that is not in
// the activation table (exp).

// CHECK-LABEL: func.func @shared(
// CHECK-NEXT:    %[[M:.*]] = nn.matmul %x, %w
// CHECK-NEXT:    nn.fused_elementwise %[[M]] : tensor<2x3xf32> -> tensor<2x3xf32> {
// CHECK-NEXT:    ^bb0(%[[E:.*]]: tensor<f32>):
// CHECK-NEXT:      %[[R:.*]] = nn.relu %[[E]]
// CHECK-NEXT:      nn.add %[[E]], %[[R]]
func.func @shared(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.relu %0 : tensor<2x3xf32>
  %2 = nn.add %0, %1 : tensor<2x3xf32>
  func.return %2 : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @not_a_bias(
// CHECK-NEXT:    nn.matmul
// CHECK-NEXT:    nn.add
func.func @not_a_bias(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>, %c: tensor<2x1xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.add %0, %c : tensor<2x3xf32>, tensor<2x1xf32> -> tensor<2x3xf32>
  func.return %1 : tensor<2x3xf32>
}

// A [C] vector added to a conv's [N, C, H, W] result adds along W (numpy's
// broadcasting), not along the channels, even where W = C: not a bias.
// CHECK-LABEL: func.func @along_the_width(
// CHECK-NEXT:    nn.conv
// CHECK-NEXT:    nn.add
func.func @along_the_width(%x: tensor<1x2x4x4xf32>, %w: tensor<4x2x1x1xf32>, %b: tensor<4xf32>) -> tensor<1x4x4x4xf32> {
  %0 = nn.conv %x, %w : tensor<1x2x4x4xf32>, tensor<4x2x1x1xf32> -> tensor<1x4x4x4xf32>
  %1 = nn.add %0, %b : tensor<1x4x4x4xf32>, tensor<4xf32> -> tensor<1x4x4x4xf32>
  func.return %1 : tensor<1x4x4x4xf32>
}

// CHECK-LABEL: func.func @not_an_activation(
// CHECK-NEXT:    nn.matmul
// CHECK-NEXT:    nn.exp
func.func @not_an_activation(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.exp %0 : tensor<2x3xf32>
  func.return %1 : tensor<2x3xf32>
}
