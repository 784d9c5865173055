// RUN: ncc-opt %s --fuse | FileCheck %s
// CombineParallelMatmul: products of one input by several weights (each with
// its bias, the same activation) become one product by the weights side by
// side and a slice of its columns per product -- attention's q, k and v
// projections as one GEMM of 3 x 8 columns. The weights' concatenation is
// weight-only (fold-weights computes it once); the weights declared after the
// first product move above it.

nn.weight @wq : tensor<4x8xf32> = dense<0.5>
nn.weight @wk : tensor<4x8xf32> = dense<-0.25>
nn.weight @wv : tensor<4x8xf32> = dense<1.5>
nn.weight @bq : tensor<8xf32> = dense<0.125>
nn.weight @bk : tensor<8xf32> = dense<-1.0>
nn.weight @bv : tensor<8xf32> = dense<2.0>
nn.weight @wo : tensor<4x6xf32> = dense<0.75>
nn.weight @wt : tensor<8x4xf32> = dense<-0.5>

// CHECK-LABEL: func.func @qkv(
// CHECK:         %[[W:.*]] = nn.concat %{{.*}}, %{{.*}}, %{{.*}} axis 1 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x24xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.concat %{{.*}}, %{{.*}}, %{{.*}} axis 0 : tensor<8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<24xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_matmul %x, %[[W]], %[[B]] : tensor<?x5x4xf32>, tensor<4x24xf32>, tensor<24xf32> -> tensor<?x5x24xf32>
// CHECK-NEXT:    %[[Q:.*]] = nn.slice %[[Y]] starts [0] ends [8] axes [2]
// CHECK-NEXT:    %[[K:.*]] = nn.slice %[[Y]] starts [8] ends [16] axes [2]
// CHECK-NEXT:    %[[V:.*]] = nn.slice %[[Y]] starts [16] ends [24] axes [2]
// CHECK-NOT:     nn.matmul
// CHECK:         func.return %[[Q]], %[[K]], %[[V]]
func.func @qkv(%x: tensor<?x5x4xf32>) -> (tensor<?x5x8xf32>, tensor<?x5x8xf32>, tensor<?x5x8xf32>) {
  %wq = nn.weight_ref @wq : tensor<4x8xf32>
  %bq = nn.weight_ref @bq : tensor<8xf32>
  %0 = nn.matmul %x, %wq : tensor<?x5x4xf32>, tensor<4x8xf32> -> tensor<?x5x8xf32>
  %q = nn.add %0, %bq : tensor<?x5x8xf32>, tensor<8xf32> -> tensor<?x5x8xf32>
  %wk = nn.weight_ref @wk : tensor<4x8xf32>
  %bk = nn.weight_ref @bk : tensor<8xf32>
  %1 = nn.matmul %x, %wk : tensor<?x5x4xf32>, tensor<4x8xf32> -> tensor<?x5x8xf32>
  %k = nn.add %1, %bk : tensor<?x5x8xf32>, tensor<8xf32> -> tensor<?x5x8xf32>
  %wv = nn.weight_ref @wv : tensor<4x8xf32>
  %bv = nn.weight_ref @bv : tensor<8xf32>
  %2 = nn.matmul %x, %wv : tensor<?x5x4xf32>, tensor<4x8xf32> -> tensor<?x5x8xf32>
  %v = nn.add %2, %bv : tensor<?x5x8xf32>, tensor<8xf32> -> tensor<?x5x8xf32>
  func.return %q, %k, %v : tensor<?x5x8xf32>, tensor<?x5x8xf32>, tensor<?x5x8xf32>
}

// Products without a bias and of different widths: one nn.matmul; a weight
// given transposed (ONNX Gemm's transB) is concatenated as its transpose.
// CHECK-LABEL: func.func @plain(
// CHECK:         %[[T:.*]] = nn.transpose %{{.*}} perm [1, 0] : tensor<8x4xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[W:.*]] = nn.concat %{{.*}}, %[[T]] axis 1 : tensor<4x6xf32>, tensor<4x8xf32> -> tensor<4x14xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul %x, %[[W]] : tensor<3x4xf32>, tensor<4x14xf32> -> tensor<3x14xf32>
// CHECK-NEXT:    %[[A:.*]] = nn.slice %[[Y]] starts [0] ends [6] axes [1]
// CHECK-NEXT:    %[[B:.*]] = nn.slice %[[Y]] starts [6] ends [14] axes [1]
// CHECK-NEXT:    func.return %[[A]], %[[B]]
func.func @plain(%x: tensor<3x4xf32>) -> (tensor<3x6xf32>, tensor<3x8xf32>) {
  %wo = nn.weight_ref @wo : tensor<4x6xf32>
  %0 = nn.matmul %x, %wo : tensor<3x4xf32>, tensor<4x6xf32> -> tensor<3x6xf32>
  %wt = nn.weight_ref @wt : tensor<8x4xf32>
  %t = nn.transpose %wt perm [1, 0] : tensor<8x4xf32> -> tensor<4x8xf32>
  %1 = nn.matmul %x, %t : tensor<3x4xf32>, tensor<4x8xf32> -> tensor<3x8xf32>
  func.return %0, %1 : tensor<3x6xf32>, tensor<3x8xf32>
}

// Left alone: products with different activations (relu and none), a product
// by an input (not a weight), and one with a residual.
// CHECK-LABEL: func.func @left_alone(
// CHECK-NOT:     nn.concat
// CHECK:         nn.fused_matmul %x, %{{.*}}, %{{.*}} activation relu
// CHECK:         nn.fused_matmul %x, %{{.*}}, %{{.*}} :
// CHECK:         nn.matmul %x, %m
// CHECK:         nn.fused_matmul %x, %{{.*}}, %{{.*}}, %r
// CHECK-NOT:     nn.concat
func.func @left_alone(%x: tensor<3x4xf32>, %m: tensor<4x8xf32>, %r: tensor<3x8xf32>) -> (tensor<3x8xf32>, tensor<3x8xf32>, tensor<3x8xf32>, tensor<3x8xf32>) {
  %wq = nn.weight_ref @wq : tensor<4x8xf32>
  %bq = nn.weight_ref @bq : tensor<8xf32>
  %wk = nn.weight_ref @wk : tensor<4x8xf32>
  %bk = nn.weight_ref @bk : tensor<8xf32>
  %wv = nn.weight_ref @wv : tensor<4x8xf32>
  %0 = nn.matmul %x, %wq : tensor<3x4xf32>, tensor<4x8xf32> -> tensor<3x8xf32>
  %1 = nn.add %0, %bq : tensor<3x8xf32>, tensor<8xf32> -> tensor<3x8xf32>
  %2 = nn.relu %1 : tensor<3x8xf32>
  %3 = nn.matmul %x, %wk : tensor<3x4xf32>, tensor<4x8xf32> -> tensor<3x8xf32>
  %4 = nn.add %3, %bk : tensor<3x8xf32>, tensor<8xf32> -> tensor<3x8xf32>
  %5 = nn.matmul %x, %m : tensor<3x4xf32>, tensor<4x8xf32> -> tensor<3x8xf32>
  %6 = nn.matmul %x, %wv : tensor<3x4xf32>, tensor<4x8xf32> -> tensor<3x8xf32>
  %7 = nn.add %6, %r : tensor<3x8xf32>, tensor<3x8xf32> -> tensor<3x8xf32>
  func.return %2, %4, %5, %7 : tensor<3x8xf32>, tensor<3x8xf32>, tensor<3x8xf32>, tensor<3x8xf32>
}
