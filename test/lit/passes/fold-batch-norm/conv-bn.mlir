// RUN: ncc-opt %s --fold-batch-norm | FileCheck %s
// RUN: ncc-opt %s --fold-batch-norm --fuse | FileCheck %s --check-prefix=FUSED
// fold-batch-norm: bn(conv(x, w)) = conv(x, w * s) + (bias - mean * s), with
// s = scale / sqrt(var + eps): ops on weights only (fold-weights makes them
// derived weights); fuse then makes conv + bias + relu one fused_conv.

nn.weight @w : tensor<8x3x3x3xf32>
nn.weight @scale : tensor<8xf32>
nn.weight @bias : tensor<8xf32>
nn.weight @mean : tensor<8xf32>
nn.weight @var : tensor<8xf32>

// CHECK-LABEL: func.func @conv_bn
// CHECK:         %[[EPS:.*]] = nn.constant dense<0.001> : tensor<f32>
// CHECK-NEXT:    %[[VE:.*]] = nn.add %var, %[[EPS]]
// CHECK-NEXT:    %[[SD:.*]] = nn.sqrt %[[VE]]
// CHECK-NEXT:    %[[S:.*]] = nn.div %scale, %[[SD]]
// CHECK-NEXT:    %[[S4:.*]] = nn.reshape %[[S]] : tensor<8xf32> -> tensor<8x1x1x1xf32>
// CHECK-NEXT:    %[[W2:.*]] = nn.mul %w, %[[S4]]
// CHECK-NEXT:    %[[MS:.*]] = nn.mul %mean, %[[S]]
// CHECK-NEXT:    %[[SHIFT:.*]] = nn.sub %bias, %[[MS]]
// CHECK-NEXT:    %[[Y:.*]] = nn.conv %x, %[[W2]] pads [1, 1, 1, 1]
// CHECK-NEXT:    %[[B3:.*]] = nn.reshape %[[SHIFT]] : tensor<8xf32> -> tensor<8x1x1xf32>
// CHECK-NEXT:    %[[Z:.*]] = nn.add %[[Y]], %[[B3]]
// CHECK-NEXT:    %{{.*}} = nn.relu %[[Z]]
// CHECK-NOT:     nn.batch_norm
// FUSED:         nn.fused_conv %x, %{{.*}}, %{{.*}} activation relu pads [1, 1, 1, 1]
// FUSED-NOT:     nn.relu
func.func @conv_bn(%x: tensor<?x3x8x8xf32>) -> tensor<?x8x8x8xf32> {
  %w = nn.weight_ref @w : tensor<8x3x3x3xf32>
  %scale = nn.weight_ref @scale : tensor<8xf32>
  %bias = nn.weight_ref @bias : tensor<8xf32>
  %mean = nn.weight_ref @mean : tensor<8xf32>
  %var = nn.weight_ref @var : tensor<8xf32>
  %0 = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x3x8x8xf32>, tensor<8x3x3x3xf32> -> tensor<?x8x8x8xf32>
  %1 = nn.batch_norm %0, %scale, %bias, %mean, %var epsilon 1.0e-03 : tensor<?x8x8x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8x8x8xf32>
  %2 = nn.relu %1 : tensor<?x8x8x8xf32>
  func.return %2 : tensor<?x8x8x8xf32>
}
