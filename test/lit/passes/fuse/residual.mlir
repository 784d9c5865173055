// RUN: ncc-opt %s --fuse | FileCheck %s
// FuseResidual: a residual connection's add after a matmul or convolution (and
// its bias) becomes the fused op's residual operand, added in the GEMM's tile
// before the activation: act(x @ w + bias + r). ResNet's block end,
// relu(bn(conv(x)) + shortcut), is one nn.fused_conv; a transformer's
// x + dense(h) one nn.fused_matmul.

// CHECK-LABEL: func.func @matmul_in_the_tile(
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @w
// CHECK-NEXT:    %[[B:.*]] = nn.weight_ref @b
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_matmul %x, %[[W]], %[[B]], %r activation relu : tensor<8x96xf32>, tensor<96x80xf32>, tensor<80xf32>, tensor<8x80xf32> -> tensor<8x80xf32>
// CHECK-NEXT:    func.return %[[Y]]
nn.weight @w : tensor<96x80xf32> = dense<0.01>
nn.weight @b : tensor<80xf32> = dense<-0.5>
func.func @matmul_in_the_tile(%x: tensor<8x96xf32>, %r: tensor<8x80xf32>) -> tensor<8x80xf32> {
  %w = nn.weight_ref @w : tensor<96x80xf32>
  %b = nn.weight_ref @b : tensor<80xf32>
  %0 = nn.matmul %x, %w : tensor<8x96xf32>, tensor<96x80xf32> -> tensor<8x80xf32>
  %1 = nn.add %0, %b : tensor<8x80xf32>, tensor<80xf32> -> tensor<8x80xf32>
  %2 = nn.add %1, %r : tensor<8x80xf32>, tensor<8x80xf32> -> tensor<8x80xf32>
  %3 = nn.relu %2 : tensor<8x80xf32>
  func.return %3 : tensor<8x80xf32>
}

// The residual first, no bias (a zero one is made), an activation the tile
// cannot apply (a pass over the output), and a product small enough for loops.
// CHECK-LABEL: func.func @no_bias_gelu_small(
// CHECK:         %[[Z:.*]] = nn.constant dense<0.0> : tensor<80xf32>
// CHECK-NEXT:    %[[G:.*]] = nn.fused_matmul %x, %{{.*}}, %[[Z]], %r activation gelu
// CHECK:         %[[S:.*]] = nn.fused_matmul %s, %v, %{{.*}}, %t :
// CHECK-NEXT:    func.return %[[G]], %[[S]]
func.func @no_bias_gelu_small(%x: tensor<8x96xf32>, %r: tensor<8x80xf32>, %s: tensor<3x5xf32>, %v: tensor<5x4xf32>, %t: tensor<3x4xf32>) -> (tensor<8x80xf32>, tensor<3x4xf32>) {
  %w = nn.weight_ref @w : tensor<96x80xf32>
  %0 = nn.matmul %x, %w : tensor<8x96xf32>, tensor<96x80xf32> -> tensor<8x80xf32>
  %1 = nn.add %r, %0 : tensor<8x80xf32>, tensor<8x80xf32> -> tensor<8x80xf32>
  %2 = nn.gelu %1 : tensor<8x80xf32>
  %3 = nn.matmul %s, %v : tensor<3x5xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  %4 = nn.add %3, %t : tensor<3x4xf32>, tensor<3x4xf32> -> tensor<3x4xf32>
  func.return %2, %4 : tensor<8x80xf32>, tensor<3x4xf32>
}

// Convolutions: one the GEMM computes per image, one packed (more channels
// than positions: out^T, the residual added as it is transposed back), a
// depthwise one and a small one (loops).
// CHECK-LABEL: func.func @convolutions(
// CHECK:         nn.fused_conv %x, %{{.*}}, %{{.*}}, %r activation relu pads [1, 1, 1, 1]
// CHECK:         nn.fused_conv %p, %{{.*}}, %{{.*}}, %q activation relu pads [1, 1, 1, 1]
// CHECK:         nn.fused_conv %x, %{{.*}}, %{{.*}}, %x activation relu6 pads [1, 1, 1, 1] group 8
// CHECK:         nn.fused_conv %c, %{{.*}}, %{{.*}}, %d :
// CHECK-NOT:     nn.add
// CHECK:         func.return
nn.weight @k : tensor<16x8x3x3xf32> = dense<0.02>
nn.weight @kb : tensor<16xf32> = dense<0.1>
nn.weight @big : tensor<128x64x3x3xf32> = dense<-0.001>
nn.weight @dw : tensor<8x1x3x3xf32> = dense<0.2>
func.func @convolutions(%x: tensor<1x8x16x16xf32>, %r: tensor<1x16x16x16xf32>, %p: tensor<1x64x4x4xf32>, %q: tensor<1x128x4x4xf32>, %c: tensor<1x3x5x5xf32>, %e: tensor<4x3x3x3xf32>, %d: tensor<1x4x3x3xf32>) -> (tensor<1x16x16x16xf32>, tensor<1x128x4x4xf32>, tensor<1x8x16x16xf32>, tensor<1x4x3x3xf32>) {
  %k = nn.weight_ref @k : tensor<16x8x3x3xf32>
  %kb = nn.weight_ref @kb : tensor<16xf32>
  %kb3 = nn.reshape %kb : tensor<16xf32> -> tensor<16x1x1xf32>
  %0 = nn.conv %x, %k pads [1, 1, 1, 1] : tensor<1x8x16x16xf32>, tensor<16x8x3x3xf32> -> tensor<1x16x16x16xf32>
  %1 = nn.add %0, %kb3 : tensor<1x16x16x16xf32>, tensor<16x1x1xf32> -> tensor<1x16x16x16xf32>
  %2 = nn.add %1, %r : tensor<1x16x16x16xf32>, tensor<1x16x16x16xf32> -> tensor<1x16x16x16xf32>
  %3 = nn.relu %2 : tensor<1x16x16x16xf32>
  %big = nn.weight_ref @big : tensor<128x64x3x3xf32>
  %4 = nn.conv %p, %big pads [1, 1, 1, 1] : tensor<1x64x4x4xf32>, tensor<128x64x3x3xf32> -> tensor<1x128x4x4xf32>
  %5 = nn.add %4, %q : tensor<1x128x4x4xf32>, tensor<1x128x4x4xf32> -> tensor<1x128x4x4xf32>
  %6 = nn.relu %5 : tensor<1x128x4x4xf32>
  %dw = nn.weight_ref @dw : tensor<8x1x3x3xf32>
  %7 = nn.conv %x, %dw pads [1, 1, 1, 1] group 8 : tensor<1x8x16x16xf32>, tensor<8x1x3x3xf32> -> tensor<1x8x16x16xf32>
  %8 = nn.add %7, %x : tensor<1x8x16x16xf32>, tensor<1x8x16x16xf32> -> tensor<1x8x16x16xf32>
  %9 = nn.relu6 %8 : tensor<1x8x16x16xf32>
  %10 = nn.conv %c, %e : tensor<1x3x5x5xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x3x3xf32>
  %11 = nn.add %10, %d : tensor<1x4x3x3xf32>, tensor<1x4x3x3xf32> -> tensor<1x4x3x3xf32>
  func.return %3, %6, %9, %11 : tensor<1x16x16x16xf32>, tensor<1x128x4x4xf32>, tensor<1x8x16x16xf32>, tensor<1x4x3x3xf32>
}

// Left alone: an activation between the product and the add (act(p) + r is
// not act(p + r)), and a product used twice.
// CHECK-LABEL: func.func @left_alone(
// CHECK-NEXT:    %[[P:.*]] = nn.fused_matmul %s, %v activation relu :
// CHECK-NEXT:    nn.add %[[P]], %t
// CHECK-NEXT:    %[[Q:.*]] = nn.matmul %u, %v
// CHECK-NEXT:    nn.add %[[Q]], %t
// CHECK-NEXT:    func.return
func.func @left_alone(%s: tensor<3x5xf32>, %u: tensor<3x5xf32>, %v: tensor<5x4xf32>, %t: tensor<3x4xf32>) -> (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) {
  %0 = nn.matmul %s, %v : tensor<3x5xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  %1 = nn.relu %0 : tensor<3x4xf32>
  %2 = nn.add %1, %t : tensor<3x4xf32>, tensor<3x4xf32> -> tensor<3x4xf32>
  %3 = nn.matmul %u, %v : tensor<3x5xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  %4 = nn.add %3, %t : tensor<3x4xf32>, tensor<3x4xf32> -> tensor<3x4xf32>
  func.return %2, %4, %3 : tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>
}
