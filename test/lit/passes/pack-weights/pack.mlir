// RUN: ncc-opt %s --pack-weights | FileCheck %s
// RUN: ncc-opt %s --pack-weights | ncc-opt | FileCheck %s
// pack-weights: a matmul the GEMM computes, whose weight is known at compile
// time, reads the weight as the GEMM's panels [ceil(N / 32), K, 32] -- pad,
// reshape, transpose of the weight, which fold-weights then turns into a
// derived weight (packed once; again when the parameter is set).

nn.weight @w : tensor<96x70xf32>
nn.weight @b : tensor<70xf32>
nn.weight @small : tensor<8x8xf32>

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
