// RUN: ncc-opt %s --fuse | FileCheck %s
// FoldTranspose: a product of a transposed matrix reads it transposed (the
// GEMM packs its operands either way), so the transpose is not computed.
// dy @ w^T -- autodiff's input gradient of a dense layer -- becomes
// nn.matmul_transpose_b; a^T @ b becomes nn.matmul_transpose_a; a transposed
// operand of those turns them back into nn.matmul.

// CHECK-LABEL: func.func @input_gradient(
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @w
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul_transpose_b %dy, %[[W]] : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xf32>
// CHECK-NEXT:    func.return %[[Y]]
nn.weight @w : tensor<128x64xf32> = dense<0.5>
func.func @input_gradient(%dy: tensor<?x64xf32>) -> tensor<?x128xf32> {
  %w = nn.weight_ref @w : tensor<128x64xf32>
  %t = nn.transpose %w perm [1, 0] : tensor<128x64xf32> -> tensor<64x128xf32>
  %y = nn.matmul %dy, %t : tensor<?x64xf32>, tensor<64x128xf32> -> tensor<?x128xf32>
  func.return %y : tensor<?x128xf32>
}

// The left operand, and a rank-3 left operand of matmul_transpose_b.
// CHECK-LABEL: func.func @left_and_batched(
// CHECK-NEXT:    %[[A:.*]] = nn.matmul_transpose_a %a, %b : tensor<5x3xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
// CHECK-NEXT:    %[[C:.*]] = nn.matmul_transpose_b %x, %b : tensor<2x6x4xf32>, tensor<5x4xf32> -> tensor<2x6x5xf32>
// CHECK-NEXT:    func.return %[[A]], %[[C]]
func.func @left_and_batched(%a: tensor<5x3xf32>, %b: tensor<5x4xf32>, %x: tensor<2x6x4xf32>) -> (tensor<3x4xf32>, tensor<2x6x5xf32>) {
  %at = nn.transpose %a perm [1, 0] : tensor<5x3xf32> -> tensor<3x5xf32>
  %0 = nn.matmul %at, %b : tensor<3x5xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  %bt = nn.transpose %b perm [1, 0] : tensor<5x4xf32> -> tensor<4x5xf32>
  %1 = nn.matmul %x, %bt : tensor<2x6x4xf32>, tensor<4x5xf32> -> tensor<2x6x5xf32>
  func.return %0, %1 : tensor<3x4xf32>, tensor<2x6x5xf32>
}

// Transposed twice: a plain matmul. The transpose also returned stays.
// CHECK-LABEL: func.func @back_to_matmul(
// CHECK-NEXT:    %[[T:.*]] = nn.transpose %a perm [1, 0]
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul %a, %b : tensor<3x5xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
// CHECK-NEXT:    func.return %[[Y]], %[[T]]
func.func @back_to_matmul(%a: tensor<3x5xf32>, %b: tensor<5x4xf32>) -> (tensor<3x4xf32>, tensor<5x3xf32>) {
  %t = nn.transpose %a perm [1, 0] : tensor<3x5xf32> -> tensor<5x3xf32>
  %y = nn.matmul_transpose_a %t, %b : tensor<5x3xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  func.return %y, %t : tensor<3x4xf32>, tensor<5x3xf32>
}

// Left alone: both operands transposed (no op reads both so), a transpose of
// more than two axes, and a product fused with its bias (fold-weights computes
// a weight's transpose once; the fused op reads it as it is).
// CHECK-LABEL: func.func @left_alone(
// CHECK:         %[[E:.*]] = nn.transpose %e perm [1, 0]
// CHECK-NEXT:    nn.matmul_transpose_a %a, %[[E]]
// CHECK-NEXT:    %[[T:.*]] = nn.transpose %b perm [1, 0]
// CHECK-NEXT:    nn.transpose %x perm [0, 2, 1]
// CHECK-NEXT:    nn.matmul %{{.*}}, %b
// CHECK:         nn.fused_matmul %{{.*}}, %[[T]], %c
func.func @left_alone(%a: tensor<5x3xf32>, %b: tensor<5x4xf32>, %e: tensor<4x5xf32>, %x: tensor<2x5x6xf32>, %c: tensor<5xf32>) -> (tensor<3x4xf32>, tensor<2x6x4xf32>, tensor<6x5xf32>) {
  %et = nn.transpose %e perm [1, 0] : tensor<4x5xf32> -> tensor<5x4xf32>
  %0 = nn.matmul_transpose_a %a, %et : tensor<5x3xf32>, tensor<5x4xf32> -> tensor<3x4xf32>
  %t = nn.transpose %b perm [1, 0] : tensor<5x4xf32> -> tensor<4x5xf32>
  %xt = nn.transpose %x perm [0, 2, 1] : tensor<2x5x6xf32> -> tensor<2x6x5xf32>
  %1 = nn.matmul %xt, %b : tensor<2x6x5xf32>, tensor<5x4xf32> -> tensor<2x6x4xf32>
  %r = nn.reshape %x : tensor<2x5x6xf32> -> tensor<6x10xf32>
  %s = nn.slice %r starts [0] ends [4] axes [1] : tensor<6x10xf32> -> tensor<6x4xf32>
  %2 = nn.matmul %s, %t : tensor<6x4xf32>, tensor<4x5xf32> -> tensor<6x5xf32>
  %3 = nn.add %2, %c : tensor<6x5xf32>, tensor<5xf32> -> tensor<6x5xf32>
  func.return %0, %1, %3 : tensor<3x4xf32>, tensor<2x6x4xf32>, tensor<6x5xf32>
}
