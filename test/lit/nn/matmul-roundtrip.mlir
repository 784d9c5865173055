// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// matmul (numpy semantics), fused_matmul (act(x @ w + b)), sparse_matmul (COO weight).

// CHECK-LABEL: func.func @matmul(%x: tensor<?x784xf32>, %w: tensor<784x10xf32>, %a: tensor<2x1x3x4xf32>, %b: tensor<5x4x6xf32>, %v: tensor<4xf32>) -> tensor<?x10xf32> {
// CHECK-NEXT: %y = nn.matmul %x, %w : tensor<?x784xf32>, tensor<784x10xf32> -> tensor<?x10xf32>
// CHECK-NEXT: %batched = nn.matmul %a, %b : tensor<2x1x3x4xf32>, tensor<5x4x6xf32> -> tensor<2x5x3x6xf32>
// CHECK-NEXT: %vec = nn.matmul %a, %v : tensor<2x1x3x4xf32>, tensor<4xf32> -> tensor<2x1x3xf32>
// CHECK-NEXT: %dot = nn.matmul %v, %v : tensor<4xf32>, tensor<4xf32> -> tensor<f32>
// CHECK-NEXT: func.return %y : tensor<?x10xf32>
// CHECK-NEXT: }
func.func @matmul(%x: tensor<?x784xf32>, %w: tensor<784x10xf32>, %a: tensor<2x1x3x4xf32>, %b: tensor<5x4x6xf32>, %v: tensor<4xf32>) -> tensor<?x10xf32> {
  %y = nn.matmul %x, %w : tensor<?x784xf32>, tensor<784x10xf32> -> tensor<?x10xf32>
  %batched = nn.matmul %a, %b : tensor<2x1x3x4xf32>, tensor<5x4x6xf32> -> tensor<2x5x3x6xf32>
  %vec = nn.matmul %a, %v : tensor<2x1x3x4xf32>, tensor<4xf32> -> tensor<2x1x3xf32>
  %dot = nn.matmul %v, %v : tensor<4xf32>, tensor<4xf32> -> tensor<f32>
  func.return %y : tensor<?x10xf32>
}

// CHECK-LABEL: func.func @fused(%x: tensor<?x3xf32>, %w: tensor<3x2xf32>, %b: tensor<2xf32>) -> tensor<?x2xf32> {
// CHECK-NEXT: %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
// CHECK-NEXT: %1 = nn.fused_matmul %x, %w activation tanh : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
// CHECK-NEXT: %2 = nn.fused_matmul %x, %w, %b : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
// CHECK-NEXT: func.return %0 : tensor<?x2xf32>
// CHECK-NEXT: }
func.func @fused(%x: tensor<?x3xf32>, %w: tensor<3x2xf32>, %b: tensor<2xf32>) -> tensor<?x2xf32> {
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %1 = nn.fused_matmul %x, %w activation tanh : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %2 = nn.fused_matmul %x, %w, %b : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}

// CHECK-LABEL: func.func @sparse(%x: tensor<?x3xf32>, %v: tensor<4xf32>) -> tensor<?x2xf32> {
// CHECK-NEXT: %0 = nn.sparse_matmul %x, %v rows [0, 1, 2, 2] cols [1, 0, 1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<4xf32> -> tensor<?x2xf32>
// CHECK-NEXT: func.return %0 : tensor<?x2xf32>
// CHECK-NEXT: }
func.func @sparse(%x: tensor<?x3xf32>, %v: tensor<4xf32>) -> tensor<?x2xf32> {
  %0 = nn.sparse_matmul %x, %v rows [0, 1, 2, 2] cols [1, 0, 1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<4xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}
