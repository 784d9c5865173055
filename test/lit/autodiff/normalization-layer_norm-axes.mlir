// RUN: ncc-opt %s --autodiff | FileCheck %s
// A layer norm over the last two axes of a 3-D input: the sums and means
// run over the matching axes.
func.func @ln2(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %s = nn.weight_ref @ln2_scale : tensor<3x4xf32>
  %b = nn.weight_ref @ln2_bias : tensor<3x4xf32>
  %y = nn.layer_norm %x, %s, %b axis 1 epsilon 0.001 : tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32> -> tensor<2x3x4xf32>
  func.return %y : tensor<2x3x4xf32>
}
nn.weight @ln2_scale : tensor<3x4xf32> = dense<1.5>
nn.weight @ln2_bias : tensor<3x4xf32> = dense<0.5>

// CHECK-LABEL: func.func @ln2_backward(
// CHECK:         nn.reduce_sum %1 axes [0] keepdims : tensor<2x3x4xf32> -> tensor<1x3x4xf32>
// CHECK:         nn.reduce_mean %0 axes [1, 2] keepdims : tensor<2x3x4xf32> -> tensor<2x1x1xf32>
// CHECK:         nn.constant dense<0.001> : tensor<f32>
// CHECK:         func.return %{{.*}}, %{{.*}}, %{{.*}} : tensor<3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>
