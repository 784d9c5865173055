// RUN: %python %S/Inputs/make_models.py %t && ncc-translate --import-onnx %t/cnn.onnx --elide-weights-if-larger=1 | FileCheck %s
// Conv's bias is an add of the bias reshaped to 4x1x1 (the initializer `kb`
// keeps its name and its shape, 4); GlobalAveragePool is a keepdims mean;
// Flatten a reshape.

// CHECK:      nn.weight @kb : tensor<4xf32>

// CHECK:      %[[C:.*]] = nn.conv %x, %{{.*}} strides [2, 2] pads [1, 1, 1, 1] : tensor<?x2x8x8xf32>, tensor<4x2x3x3xf32> -> tensor<?x4x4x4xf32>
// CHECK-NEXT: %[[B:.*]] = nn.weight_ref @kb : tensor<4xf32>
// CHECK-NEXT: %[[RB:.*]] = nn.reshape %[[B]] : tensor<4xf32> -> tensor<4x1x1xf32>
// CHECK-NEXT: %[[A:.*]] = nn.add %[[C]], %[[RB]] : tensor<?x4x4x4xf32>, tensor<4x1x1xf32> -> tensor<?x4x4x4xf32>
// CHECK-NEXT: %[[P:.*]] = nn.max_pool %[[A]] kernel [2, 2] strides [2, 2] : tensor<?x4x4x4xf32> -> tensor<?x4x2x2xf32>
// CHECK-NEXT: %[[G:.*]] = nn.reduce_mean %[[P]] axes [2, 3] keepdims : tensor<?x4x2x2xf32> -> tensor<?x4x1x1xf32>
// CHECK-NEXT: %{{.*}} = nn.reshape %[[G]] : tensor<?x4x1x1xf32> -> tensor<?x4xf32>
