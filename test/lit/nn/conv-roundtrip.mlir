// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// conv and fused_conv: NCHW, N-d; parameters at their default are not printed.

// CHECK-LABEL: func.func @conv2d(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %g: tensor<6x1x3x3xf32>, %x6: tensor<?x6x9x9xf32>) -> tensor<1x4x4x4xf32> {
// CHECK-NEXT: %0 = nn.conv %x, %w strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
// CHECK-NEXT: %1 = nn.conv %x, %w : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x6x6xf32>
// CHECK-NEXT: %2 = nn.conv %x, %w dilations [2, 2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
// CHECK-NEXT: %3 = nn.conv %x6, %g pads [0, 1, 2, 1] group 6 : tensor<?x6x9x9xf32>, tensor<6x1x3x3xf32> -> tensor<?x6x9x9xf32>
// CHECK-NEXT: func.return %0 : tensor<1x4x4x4xf32>
// CHECK-NEXT: }
func.func @conv2d(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %g: tensor<6x1x3x3xf32>, %x6: tensor<?x6x9x9xf32>) -> tensor<1x4x4x4xf32> {
  %0 = nn.conv %x, %w strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %1 = nn.conv %x, %w : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x6x6xf32>
  %2 = nn.conv %x, %w dilations [2, 2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %3 = nn.conv %x6, %g pads [0, 1, 2, 1] group 6 : tensor<?x6x9x9xf32>, tensor<6x1x3x3xf32> -> tensor<?x6x9x9xf32>
  func.return %0 : tensor<1x4x4x4xf32>
}

// CHECK-LABEL: func.func @conv1d_3d(%x: tensor<2x4x16xf32>, %w: tensor<8x4x5xf32>, %v: tensor<1x2x4x4x4xf64>, %k: tensor<3x2x2x2x2xf64>) -> tensor<2x8x7xf32> {
// CHECK-NEXT: %0 = nn.conv %x, %w strides [2] pads [0, 1] : tensor<2x4x16xf32>, tensor<8x4x5xf32> -> tensor<2x8x7xf32>
// CHECK-NEXT: %1 = nn.conv %v, %k : tensor<1x2x4x4x4xf64>, tensor<3x2x2x2x2xf64> -> tensor<1x3x3x3x3xf64>
// CHECK-NEXT: func.return %0 : tensor<2x8x7xf32>
// CHECK-NEXT: }
func.func @conv1d_3d(%x: tensor<2x4x16xf32>, %w: tensor<8x4x5xf32>, %v: tensor<1x2x4x4x4xf64>, %k: tensor<3x2x2x2x2xf64>) -> tensor<2x8x7xf32> {
  %0 = nn.conv %x, %w strides [2] pads [0, 1] : tensor<2x4x16xf32>, tensor<8x4x5xf32> -> tensor<2x8x7xf32>
  %1 = nn.conv %v, %k : tensor<1x2x4x4x4xf64>, tensor<3x2x2x2x2xf64> -> tensor<1x3x3x3x3xf64>
  func.return %0 : tensor<2x8x7xf32>
}

// CHECK-LABEL: func.func @fused(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>) -> tensor<1x4x8x8xf32> {
// CHECK-NEXT: %0 = nn.fused_conv %x, %w, %b activation relu pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
// CHECK-NEXT: %1 = nn.fused_conv %x, %w activation silu strides [2, 2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x3x3xf32>
// CHECK-NEXT: func.return %0 : tensor<1x4x8x8xf32>
// CHECK-NEXT: }
func.func @fused(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>) -> tensor<1x4x8x8xf32> {
  %0 = nn.fused_conv %x, %w, %b activation relu pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
  %1 = nn.fused_conv %x, %w activation silu strides [2, 2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x3x3xf32>
  func.return %0 : tensor<1x4x8x8xf32>
}

// The generic form reads too, and prints in the custom form.
// CHECK-LABEL: func.func @generic(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x3x3xf32> {
// CHECK-NEXT: %0 = nn.conv %x, %w strides [2, 2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x3x3xf32>
// CHECK-NEXT: func.return %0 : tensor<1x4x3x3xf32>
// CHECK-NEXT: }
func.func @generic(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x3x3xf32> {
  %0 = "nn.conv"(%x, %w) <{strides = array<i64: 2, 2>}> : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x3x3xf32>
  func.return %0 : tensor<1x4x3x3xf32>
}

// CHECK-LABEL: func.func @conv_transpose(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<?x6x16x17xf32> {
// CHECK-NEXT: %0 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 0, 0] group 2 output_padding [0, 1] : tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x6x16x17xf32>
// CHECK-NEXT: func.return %0 : tensor<?x6x16x17xf32>
func.func @conv_transpose(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<?x6x16x17xf32> {
  %0 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 0, 0] group 2 output_padding [0, 1] : tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x6x16x17xf32>
  func.return %0 : tensor<?x6x16x17xf32>
}
