// RUN: ncc-opt %s --fuse | FileCheck %s
// matmul + bias add + activation become one nn.fused_matmul; so do the
// partial chains (matmul + bias, matmul + activation), and the add may have
// the bias on either side.

// CHECK-LABEL: func.func @full(
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_matmul %x, %w, %b activation relu : tensor<8x4xf32>, tensor<4x3xf32>, tensor<3xf32> -> tensor<8x3xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @full(%x: tensor<8x4xf32>, %w: tensor<4x3xf32>, %b: tensor<3xf32>) -> tensor<8x3xf32> {
  %0 = nn.matmul %x, %w : tensor<8x4xf32>, tensor<4x3xf32> -> tensor<8x3xf32>
  %1 = nn.add %0, %b : tensor<8x3xf32>, tensor<3xf32> -> tensor<8x3xf32>
  %2 = nn.relu %1 : tensor<8x3xf32>
  func.return %2 : tensor<8x3xf32>
}

// CHECK-LABEL: func.func @bias_first(
// CHECK-NEXT:    nn.fused_matmul %x, %w, %b : tensor<?x4xf32>, tensor<4x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
// CHECK-NEXT:    func.return
func.func @bias_first(%x: tensor<?x4xf32>, %w: tensor<4x3xf32>, %b: tensor<3xf32>) -> tensor<?x3xf32> {
  %0 = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %1 = nn.add %b, %0 : tensor<3xf32>, tensor<?x3xf32> -> tensor<?x3xf32>
  func.return %1 : tensor<?x3xf32>
}

// CHECK-LABEL: func.func @activation_only(
// CHECK-NEXT:    nn.fused_matmul %x, %w activation sigmoid : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
// CHECK-NEXT:    func.return
func.func @activation_only(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.sigmoid %0 : tensor<2x3xf32>
  func.return %1 : tensor<2x3xf32>
}

// A bias of shape [1, N] is reshaped to [N].
// CHECK-LABEL: func.func @row_bias(
// CHECK-NEXT:    %[[B:.*]] = nn.reshape %b : tensor<1x3xf32> -> tensor<3xf32>
// CHECK-NEXT:    nn.fused_matmul %x, %w, %[[B]] activation tanh
func.func @row_bias(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>, %b: tensor<1x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.add %0, %b : tensor<2x3xf32>, tensor<1x3xf32> -> tensor<2x3xf32>
  %2 = nn.tanh %1 : tensor<2x3xf32>
  func.return %2 : tensor<2x3xf32>
}
