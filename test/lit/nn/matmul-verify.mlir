// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// matmul, fused_matmul and sparse_matmul verifiers.

func.func @contraction(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  // expected-error @+1 {{contraction dimensions differ: [2, 3] @ [4, 5] (3 vs 4)}}
  %0 = nn.matmul %a, %b : tensor<2x3xf32>, tensor<4x5xf32> -> tensor<2x5xf32>
  func.return
}

// -----

func.func @batch(%a: tensor<2x3x4xf32>, %b: tensor<5x4x6xf32>) {
  // expected-error @+1 {{shapes [2], [5] are not broadcastable (dimension 2 vs 5)}}
  %0 = nn.matmul %a, %b : tensor<2x3x4xf32>, tensor<5x4x6xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @scalar(%a: tensor<f32>) {
  // expected-error @+1 {{matmul operands must have rank >= 1}}
  %0 = nn.matmul %a, %a : tensor<f32>
  func.return
}

// -----

func.func @vector_result(%a: tensor<3xf32>, %b: tensor<3x4xf32>) {
  // expected-error @+1 {{result type tensor<1x4xf32> does not match the inferred type tensor<4xf32>}}
  %0 = nn.matmul %a, %b : tensor<3xf32>, tensor<3x4xf32> -> tensor<1x4xf32>
  func.return
}

// -----

func.func @fused_activation(%x: tensor<2x3xf32>, %w: tensor<3x4xf32>) {
  // expected-error @+1 {{unknown activation 'swish' (known: identity, relu, sigmoid}}
  %0 = nn.fused_matmul %x, %w activation swish : tensor<2x3xf32>, tensor<3x4xf32> -> tensor<2x4xf32>
  func.return
}

// -----

func.func @fused_bias(%x: tensor<2x3xf32>, %w: tensor<3x4xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{bias tensor<3xf32> does not broadcast to the matmul result shape [2, 4]}}
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<2x3xf32>, tensor<3x4xf32>, tensor<3xf32> -> tensor<2x4xf32>
  func.return
}

// -----

func.func @fused_bias_grows_result(%x: tensor<2x3xf32>, %w: tensor<3x4xf32>, %b: tensor<5x1x4xf32>) {
  // expected-error @+1 {{bias tensor<5x1x4xf32> does not broadcast to the matmul result shape [2, 4]}}
  %0 = nn.fused_matmul %x, %w, %b : tensor<2x3xf32>, tensor<3x4xf32>, tensor<5x1x4xf32> -> tensor<2x4xf32>
  func.return
}
