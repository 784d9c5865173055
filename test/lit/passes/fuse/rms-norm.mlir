// RUN: ncc-opt %s --fuse | FileCheck %s
// RecognizeRMSNorm: RMSNorm written out (LLaMA's as PyTorch exports it:
// x * rsqrt(mean(x^2) + eps) * weight, rsqrt as Reciprocal(Sqrt); or
// x / sqrt(...)) becomes one nn.rms_norm, its scale taken from the Mul after
// it (ones without one). A square of another value than the one normalized,
// or an inner value used elsewhere, leaves the formula alone.

// CHECK-LABEL: func.func @llama(
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @w
// CHECK-NEXT:    %[[Y:.*]] = nn.rms_norm %x, %[[W]] epsilon 9.999999974752427e-07 : tensor<2x8xf32>, tensor<8xf32> -> tensor<2x8xf32>
// CHECK-NEXT:    func.return %[[Y]]
nn.weight @w : tensor<8xf32> = dense<1.5>
func.func @llama(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %two = nn.constant dense<2.0> : tensor<f32>
  %0 = nn.pow %x, %two : tensor<2x8xf32>, tensor<f32> -> tensor<2x8xf32>
  %1 = nn.reduce_mean %0 axes [-1] keepdims : tensor<2x8xf32> -> tensor<2x1xf32>
  %eps = nn.constant dense<1.0e-06> : tensor<f32>
  %2 = nn.add %1, %eps : tensor<2x1xf32>, tensor<f32> -> tensor<2x1xf32>
  %3 = nn.sqrt %2 : tensor<2x1xf32>
  %4 = nn.reciprocal %3 : tensor<2x1xf32>
  %5 = nn.mul %x, %4 : tensor<2x8xf32>, tensor<2x1xf32> -> tensor<2x8xf32>
  %w = nn.weight_ref @w : tensor<8xf32>
  %6 = nn.mul %w, %5 : tensor<8xf32>, tensor<2x8xf32> -> tensor<2x8xf32>
  func.return %6 : tensor<2x8xf32>
}

// 1 / sqrt written as a division, the rsqrt first in the product, over the
// last two axes, without a scale.
// CHECK-LABEL: func.func @one_over_two_axes(
// CHECK-NEXT:    %[[ONES:.*]] = nn.constant dense<1.0> : tensor<3x4xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.rms_norm %x, %[[ONES]] axis -2 epsilon 0.0010000000474974513
// CHECK-NEXT:    func.return %[[Y]]
func.func @one_over_two_axes(%x: tensor<?x3x4xf32>) -> tensor<?x3x4xf32> {
  %0 = nn.mul %x, %x : tensor<?x3x4xf32>
  %1 = nn.reduce_mean %0 axes [1, 2] keepdims : tensor<?x3x4xf32> -> tensor<?x1x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %2 = nn.add %eps, %1 : tensor<f32>, tensor<?x1x1xf32> -> tensor<?x1x1xf32>
  %3 = nn.sqrt %2 : tensor<?x1x1xf32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %4 = nn.div %one, %3 : tensor<f32>, tensor<?x1x1xf32> -> tensor<?x1x1xf32>
  %5 = nn.mul %4, %x : tensor<?x1x1xf32>, tensor<?x3x4xf32> -> tensor<?x3x4xf32>
  func.return %5 : tensor<?x3x4xf32>
}

// x / sqrt(mean(x * x) + eps) * scale: the formula ONNX's RMSNormalization
// stands for.
// CHECK-LABEL: func.func @divided(
// CHECK-NEXT:    %[[Y:.*]] = nn.rms_norm %x, %s epsilon 9.999999747378752e-06 : tensor<4x6xf32>, tensor<6xf32> -> tensor<4x6xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @divided(%x: tensor<4x6xf32>, %s: tensor<6xf32>) -> tensor<4x6xf32> {
  %0 = nn.mul %x, %x : tensor<4x6xf32>
  %1 = nn.reduce_mean %0 axes [1] keepdims : tensor<4x6xf32> -> tensor<4x1xf32>
  %eps = nn.constant dense<1.0e-05> : tensor<f32>
  %2 = nn.add %1, %eps : tensor<4x1xf32>, tensor<f32> -> tensor<4x1xf32>
  %3 = nn.sqrt %2 : tensor<4x1xf32>
  %4 = nn.div %x, %3 : tensor<4x6xf32>, tensor<4x1xf32> -> tensor<4x6xf32>
  %5 = nn.mul %4, %s : tensor<4x6xf32>, tensor<6xf32> -> tensor<4x6xf32>
  func.return %5 : tensor<4x6xf32>
}

// The mean of another value's squares: not an RMSNorm of x.
// CHECK-LABEL: func.func @other_square(
// CHECK-NOT:     nn.rms_norm
// CHECK:         func.return
func.func @other_square(%x: tensor<3x4xf32>, %z: tensor<3x4xf32>) -> tensor<3x4xf32> {
  %0 = nn.mul %z, %z : tensor<3x4xf32>
  %1 = nn.reduce_mean %0 axes [-1] keepdims : tensor<3x4xf32> -> tensor<3x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %2 = nn.add %1, %eps : tensor<3x1xf32>, tensor<f32> -> tensor<3x1xf32>
  %3 = nn.sqrt %2 : tensor<3x1xf32>
  %4 = nn.div %x, %3 : tensor<3x4xf32>, tensor<3x1xf32> -> tensor<3x4xf32>
  func.return %4 : tensor<3x4xf32>
}

// The mean square is returned too: the formula's ops stay.
// CHECK-LABEL: func.func @mean_square_returned(
// CHECK-NOT:     nn.rms_norm
// CHECK:         func.return
func.func @mean_square_returned(%x: tensor<3x4xf32>) -> (tensor<3x4xf32>, tensor<3x1xf32>) {
  %0 = nn.mul %x, %x : tensor<3x4xf32>
  %1 = nn.reduce_mean %0 axes [-1] keepdims : tensor<3x4xf32> -> tensor<3x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %2 = nn.add %1, %eps : tensor<3x1xf32>, tensor<f32> -> tensor<3x1xf32>
  %3 = nn.sqrt %2 : tensor<3x1xf32>
  %4 = nn.div %x, %3 : tensor<3x4xf32>, tensor<3x1xf32> -> tensor<3x4xf32>
  func.return %4, %1 : tensor<3x4xf32>, tensor<3x1xf32>
}
