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

// -----

func.func @sparse_range(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{entry 1: row 3 is out of range [0, 3)}}
  %0 = nn.sparse_matmul %x, %v rows [0, 3] cols [1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_col(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{entry 0: col -1 is out of range [0, 2)}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [-1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_duplicate(%x: tensor<?x3xf32>, %v: tensor<3xf32>) {
  // expected-error @+1 {{entries 0 and 2 both set (row 1, col 1)}}
  %0 = nn.sparse_matmul %x, %v rows [1, 0, 1] cols [1, 0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_lengths(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{cols (one per row index) must have 2 entries, got 3}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_values(%x: tensor<?x3xf32>, %v: tensor<5xf32>) {
  // expected-error @+1 {{values (one per nonzero) must have shape [2], got tensor<5xf32>}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<5xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_features(%x: tensor<?x4xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{input's last dimension must be in_features = 3, got tensor<?x4xf32>}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 out_features 2 : tensor<?x4xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_missing(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{expected parameter 'out_features'}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}
