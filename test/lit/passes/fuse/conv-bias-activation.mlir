// RUN: ncc-opt %s --fuse | FileCheck %s
// conv + per-channel bias + activation become one nn.fused_conv, keeping the
// conv's strides, pads, dilations and group; a [1, C, 1, 1] bias becomes [C].

// CHECK-LABEL: func.func @conv(
// CHECK-NEXT:    %[[B:.*]] = nn.reshape %b : tensor<1x8x1x1xf32> -> tensor<8xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_conv %x, %w, %[[B]] activation relu strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x16x16xf32>, tensor<8x3x3x3xf32>, tensor<8xf32> -> tensor<1x8x8x8xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @conv(%x: tensor<1x3x16x16xf32>, %w: tensor<8x3x3x3xf32>, %b: tensor<1x8x1x1xf32>) -> tensor<1x8x8x8xf32> {
  %0 = nn.conv %x, %w strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x16x16xf32>, tensor<8x3x3x3xf32> -> tensor<1x8x8x8xf32>
  %1 = nn.add %0, %b : tensor<1x8x8x8xf32>, tensor<1x8x1x1xf32> -> tensor<1x8x8x8xf32>
  %2 = nn.relu %1 : tensor<1x8x8x8xf32>
  func.return %2 : tensor<1x8x8x8xf32>
}

// CHECK-LABEL: func.func @grouped(
// CHECK-NEXT:    nn.fused_conv %x, %w activation silu group 2 : tensor<1x4x5x5xf32>, tensor<4x2x3x3xf32> -> tensor<1x4x3x3xf32>
func.func @grouped(%x: tensor<1x4x5x5xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x4x3x3xf32> {
  %0 = nn.conv %x, %w group 2 : tensor<1x4x5x5xf32>, tensor<4x2x3x3xf32> -> tensor<1x4x3x3xf32>
  %1 = nn.silu %0 : tensor<1x4x3x3xf32>
  func.return %1 : tensor<1x4x3x3xf32>
}
