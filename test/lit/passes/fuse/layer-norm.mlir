// RUN: ncc-opt %s --fuse | FileCheck %s
// RecognizeLayerNorm: LayerNormalization exported as its formula (PyTorch
// before ONNX opset 17) becomes one nn.layer_norm, its scale and bias taken
// from the Mul and Add after it (ones and zeros without them); epsilon is the
// float32 constant's value, as the formula added it. Means over
// different axes, or an inner value used elsewhere, leave the formula alone.

// CHECK-LABEL: func.func @opset16(
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @w
// CHECK-NEXT:    %[[B:.*]] = nn.weight_ref @b
// CHECK-NEXT:    %[[Y:.*]] = nn.layer_norm %x, %[[W]], %[[B]] epsilon 9.999999747378752e-06 : tensor<2x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x8xf32>
// CHECK-NEXT:    func.return %[[Y]]
nn.weight @w : tensor<8xf32> = dense<2.0>
nn.weight @b : tensor<8xf32> = dense<0.5>
func.func @opset16(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = nn.reduce_mean %x axes [-1] keepdims : tensor<2x8xf32> -> tensor<2x1xf32>
  %1 = nn.sub %x, %0 : tensor<2x8xf32>, tensor<2x1xf32> -> tensor<2x8xf32>
  %2 = nn.constant dense<2.0> : tensor<f32>
  %3 = nn.pow %1, %2 : tensor<2x8xf32>, tensor<f32> -> tensor<2x8xf32>
  %4 = nn.reduce_mean %3 axes [-1] keepdims : tensor<2x8xf32> -> tensor<2x1xf32>
  %5 = nn.constant dense<1.0e-05> : tensor<f32>
  %6 = nn.add %4, %5 : tensor<2x1xf32>, tensor<f32> -> tensor<2x1xf32>
  %7 = nn.sqrt %6 : tensor<2x1xf32>
  %8 = nn.div %1, %7 : tensor<2x8xf32>, tensor<2x1xf32> -> tensor<2x8xf32>
  %w = nn.weight_ref @w : tensor<8xf32>
  %9 = nn.mul %8, %w : tensor<2x8xf32>, tensor<8xf32> -> tensor<2x8xf32>
  %b = nn.weight_ref @b : tensor<8xf32>
  %10 = nn.add %9, %b : tensor<2x8xf32>, tensor<8xf32> -> tensor<2x8xf32>
  func.return %10 : tensor<2x8xf32>
}

// Over the last two axes, d * d for the square, eps first, no scale or bias.
// CHECK-LABEL: func.func @two_axes_no_affine(
// CHECK-NEXT:    %[[ONES:.*]] = nn.constant dense<1.0> : tensor<3x4xf32>
// CHECK-NEXT:    %[[ZEROS:.*]] = nn.constant dense<0.0> : tensor<3x4xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.layer_norm %x, %[[ONES]], %[[ZEROS]] axis -2 epsilon 0.0010000000474974513
// CHECK-NEXT:    func.return %[[Y]]
func.func @two_axes_no_affine(%x: tensor<?x3x4xf32>) -> tensor<?x3x4xf32> {
  %0 = nn.reduce_mean %x axes [1, 2] keepdims : tensor<?x3x4xf32> -> tensor<?x1x1xf32>
  %1 = nn.sub %x, %0 : tensor<?x3x4xf32>, tensor<?x1x1xf32> -> tensor<?x3x4xf32>
  %2 = nn.mul %1, %1 : tensor<?x3x4xf32>
  %3 = nn.reduce_mean %2 axes [1, 2] keepdims : tensor<?x3x4xf32> -> tensor<?x1x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %4 = nn.add %eps, %3 : tensor<f32>, tensor<?x1x1xf32> -> tensor<?x1x1xf32>
  %5 = nn.sqrt %4 : tensor<?x1x1xf32>
  %6 = nn.div %1, %5 : tensor<?x3x4xf32>, tensor<?x1x1xf32> -> tensor<?x3x4xf32>
  func.return %6 : tensor<?x3x4xf32>
}

// The variance over another axis than the mean: not a layer norm.
// CHECK-LABEL: func.func @other_axes(
// CHECK-NOT:     nn.layer_norm
// CHECK:         func.return
func.func @other_axes(%x: tensor<3x4xf32>) -> tensor<3x4xf32> {
  %0 = nn.reduce_mean %x axes [-1] keepdims : tensor<3x4xf32> -> tensor<3x1xf32>
  %1 = nn.sub %x, %0 : tensor<3x4xf32>, tensor<3x1xf32> -> tensor<3x4xf32>
  %2 = nn.mul %1, %1 : tensor<3x4xf32>
  %3 = nn.reduce_mean %2 axes [0, 1] keepdims : tensor<3x4xf32> -> tensor<1x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %4 = nn.add %3, %eps : tensor<1x1xf32>, tensor<f32> -> tensor<1x1xf32>
  %5 = nn.sqrt %4 : tensor<1x1xf32>
  %6 = nn.div %1, %5 : tensor<3x4xf32>, tensor<1x1xf32> -> tensor<3x4xf32>
  func.return %6 : tensor<3x4xf32>
}

// The centred values are returned too: the formula's ops stay.
// CHECK-LABEL: func.func @centred_returned(
// CHECK-NOT:     nn.layer_norm
// CHECK:         func.return
func.func @centred_returned(%x: tensor<3x4xf32>) -> (tensor<3x4xf32>, tensor<3x4xf32>) {
  %0 = nn.reduce_mean %x axes [-1] keepdims : tensor<3x4xf32> -> tensor<3x1xf32>
  %1 = nn.sub %x, %0 : tensor<3x4xf32>, tensor<3x1xf32> -> tensor<3x4xf32>
  %2 = nn.mul %1, %1 : tensor<3x4xf32>
  %3 = nn.reduce_mean %2 axes [-1] keepdims : tensor<3x4xf32> -> tensor<3x1xf32>
  %eps = nn.constant dense<0.001> : tensor<f32>
  %4 = nn.add %3, %eps : tensor<3x1xf32>, tensor<f32> -> tensor<3x1xf32>
  %5 = nn.sqrt %4 : tensor<3x1xf32>
  %6 = nn.div %1, %5 : tensor<3x4xf32>, tensor<3x1xf32> -> tensor<3x4xf32>
  func.return %6, %1 : tensor<3x4xf32>, tensor<3x4xf32>
}
