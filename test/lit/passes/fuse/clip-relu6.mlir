// RUN: ncc-opt %s --fuse | FileCheck %s
// ONNX's Clip to [0, 6] (PyTorch's ReLU6: nn.max then nn.min with literal
// bounds, in either order) is nn.relu6, which FuseActivation then puts in the
// convolution's epilogue. Other bounds, or bounds that are weights, stay.

// CHECK-LABEL: func.func @depthwise(
// CHECK-NEXT:    nn.fused_conv %x, %w, %b activation relu6 pads [1, 1, 1, 1] group 4
// CHECK-NEXT:    func.return
func.func @depthwise(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>, %b: tensor<4xf32>) -> tensor<1x4x8x8xf32> {
  %0 = nn.fused_conv %x, %w, %b pads [1, 1, 1, 1] group 4 : tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
  %lo = nn.constant dense<0.0> : tensor<f32>
  %hi = nn.constant dense<6.0> : tensor<f32>
  %1 = nn.max %0, %lo : tensor<1x4x8x8xf32>, tensor<f32> -> tensor<1x4x8x8xf32>
  %2 = nn.min %1, %hi : tensor<1x4x8x8xf32>, tensor<f32> -> tensor<1x4x8x8xf32>
  func.return %2 : tensor<1x4x8x8xf32>
}

// CHECK-LABEL: func.func @min_first(
// CHECK-NEXT:    %[[Y:.*]] = nn.relu6 %x : tensor<?x3xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @min_first(%x: tensor<?x3xf32>) -> tensor<?x3xf32> {
  %hi = nn.constant dense<6.0> : tensor<3xf32>
  %lo = nn.constant dense<0.0> : tensor<f32>
  %0 = nn.min %x, %hi : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %1 = nn.max %0, %lo : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  func.return %1 : tensor<?x3xf32>
}

nn.weight @six : tensor<f32> = dense<6.0>

// CHECK-LABEL: func.func @kept(
// CHECK:         nn.max
// CHECK-NEXT:    nn.min
// CHECK:         nn.max
// CHECK-NEXT:    nn.min
// CHECK-NOT:     nn.relu6
func.func @kept(%x: tensor<?x3xf32>, %y: tensor<?x3xf32>) -> (tensor<?x3xf32>, tensor<?x3xf32>) {
  %lo = nn.constant dense<0.0> : tensor<f32>
  %five = nn.constant dense<5.0> : tensor<f32>
  %six = nn.weight_ref @six : tensor<f32>
  %0 = nn.max %x, %lo : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  %1 = nn.min %0, %five : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  %2 = nn.max %y, %lo : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  %3 = nn.min %2, %six : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  func.return %1, %3 : tensor<?x3xf32>, tensor<?x3xf32>
}
