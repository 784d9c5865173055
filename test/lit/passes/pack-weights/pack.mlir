// RUN: ncc-opt %s --pack-weights | FileCheck %s
// RUN: ncc-opt %s --pack-weights | ncc-opt | FileCheck %s
// pack-weights: a matmul the GEMM computes, whose weight is known at compile
// time, reads the weight as the GEMM's panels [ceil(N / 32), K, 32] -- pad,
// reshape, transpose of the weight, which fold-weights then turns into a
// derived weight (packed once; again when the parameter is set).

nn.weight @w : tensor<96x70xf32>
nn.weight @b : tensor<70xf32>
nn.weight @small : tensor<8x8xf32>
nn.weight @k : tensor<96x64x3x3xf32>
nn.weight @kb : tensor<96xf32>
nn.weight @k56 : tensor<64x64x3x3xf32>

// CHECK-LABEL: func.func @dense(%x: tensor<?x96xf32>) -> tensor<?x70xf32> {
// CHECK-NEXT:    %w = nn.weight_ref @w : tensor<96x70xf32>
// CHECK-NEXT:    %b = nn.weight_ref @b : tensor<70xf32>
// CHECK-NEXT:    %0 = nn.pad %w pads [0, 0, 0, 26] : tensor<96x70xf32> -> tensor<96x96xf32>
// CHECK-NEXT:    %1 = nn.reshape %0 : tensor<96x96xf32> -> tensor<96x3x32xf32>
// CHECK-NEXT:    %2 = nn.transpose %1 perm [1, 0, 2] : tensor<96x3x32xf32> -> tensor<3x96x32xf32>
// CHECK-NEXT:    %3 = nn.packed_matmul %x, %2, %b columns 70 activation relu : tensor<?x96xf32>, tensor<3x96x32xf32>, tensor<70xf32> -> tensor<?x70xf32>
// CHECK-NEXT:    func.return %3 : tensor<?x70xf32>
func.func @dense(%x: tensor<?x96xf32>) -> tensor<?x70xf32> {
  %w = nn.weight_ref @w : tensor<96x70xf32>
  %b = nn.weight_ref @b : tensor<70xf32>
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x96xf32>, tensor<96x70xf32>, tensor<70xf32> -> tensor<?x70xf32>
  func.return %0 : tensor<?x70xf32>
}

// Too small for the GEMM, or a right operand computed at run time: unchanged.
// CHECK-LABEL: func.func @unchanged(%x: tensor<?x8xf32>, %y: tensor<96x70xf32>, %z: tensor<?x96xf32>)
// CHECK:         nn.matmul %x, %small
// CHECK:         nn.matmul %z, %y
// CHECK-NOT:     nn.packed_matmul
func.func @unchanged(%x: tensor<?x8xf32>, %y: tensor<96x70xf32>, %z: tensor<?x96xf32>) -> (tensor<?x8xf32>, tensor<?x70xf32>) {
  %small = nn.weight_ref @small : tensor<8x8xf32>
  %0 = nn.matmul %x, %small : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %1 = nn.matmul %z, %y : tensor<?x96xf32>, tensor<96x70xf32> -> tensor<?x70xf32>
  func.return %0, %1 : tensor<?x8xf32>, tensor<?x70xf32>
}

// A convolution with more output channels (96) than output positions (7 x 7)
// becomes nn.packed_conv, the transposed GEMM out^T = col^T @ w^T: w as [M, C x
// kernel], output channels padded to whole panels (none here: 96 = 3 x 32),
// then [panels, C x kernel, 32]. A 56 x 56 image keeps conv's w @ col.
// CHECK-LABEL: func.func @conv(
// CHECK:         %[[R:.*]] = nn.reshape %k : tensor<96x64x3x3xf32> -> tensor<96x576xf32>
// CHECK-NEXT:    %[[P:.*]] = nn.reshape %[[R]] : tensor<96x576xf32> -> tensor<3x32x576xf32>
// CHECK-NEXT:    %[[T:.*]] = nn.transpose %[[P]] perm [0, 2, 1] : tensor<3x32x576xf32> -> tensor<3x576x32xf32>
// CHECK-NEXT:    nn.packed_conv %x, %[[T]], %kb channels 96 kernel [3, 3] activation relu pads [1, 1, 1, 1] : tensor<?x64x7x7xf32>, tensor<3x576x32xf32>, tensor<96xf32> -> tensor<?x96x7x7xf32>
// CHECK-NEXT:    nn.conv %big, %k56 pads [1, 1, 1, 1]
func.func @conv(%x: tensor<?x64x7x7xf32>, %big: tensor<?x64x56x56xf32>) -> (tensor<?x96x7x7xf32>, tensor<?x64x56x56xf32>) {
  %k = nn.weight_ref @k : tensor<96x64x3x3xf32>
  %kb = nn.weight_ref @kb : tensor<96xf32>
  %k56 = nn.weight_ref @k56 : tensor<64x64x3x3xf32>
  %0 = nn.fused_conv %x, %k, %kb activation relu pads [1, 1, 1, 1] : tensor<?x64x7x7xf32>, tensor<96x64x3x3xf32>, tensor<96xf32> -> tensor<?x96x7x7xf32>
  %1 = nn.conv %big, %k56 pads [1, 1, 1, 1] : tensor<?x64x56x56xf32>, tensor<64x64x3x3xf32> -> tensor<?x64x56x56xf32>
  func.return %0, %1 : tensor<?x96x7x7xf32>, tensor<?x64x56x56xf32>
}
