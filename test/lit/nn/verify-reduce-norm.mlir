// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Reductions, softmax and norm verifiers.

func.func @axis_range(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2 (expected -2..1)}}
  %0 = nn.reduce_sum %x axes [2] : tensor<2x4xf32> -> tensor<2xf32>
  func.return
}

// -----

func.func @axis_twice(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{axes [1, -1] name an axis twice}}
  %0 = nn.reduce_max %x axes [1, -1] : tensor<2x4xf32> -> tensor<2xf32>
  func.return
}

// -----

func.func @keepdims(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{result type tensor<2xf32> does not match the inferred type tensor<2x1xf32>}}
  %0 = nn.reduce_min %x axes [1] keepdims : tensor<2x4xf32> -> tensor<2xf32>
  func.return
}

// -----

func.func @int_mean(%x: tensor<4xi64>) {
  // expected-error @+1 {{operand must have a float element type, got tensor<4xi64>}}
  %0 = nn.reduce_mean %x : tensor<4xi64> -> tensor<i64>
  func.return
}

// -----

func.func @softmax_axis(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{axis -3 is out of range for rank 2 (expected -2..1)}}
  %0 = nn.softmax %x axis -3 : tensor<2x4xf32>
  func.return
}

// -----

func.func @log_softmax_type(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{result type tensor<2x4xf64> does not match the inferred type tensor<2x4xf32>}}
  %0 = nn.log_softmax %x : tensor<2x4xf32> -> tensor<2x4xf64>
  func.return
}

// -----

func.func @bn_channels(%x: tensor<2x3x4x4xf32>, %c: tensor<3xf32>, %d: tensor<4xf32>) {
  // expected-error @+1 {{mean (one per channel) must have shape [3], got tensor<4xf32>}}
  %0 = nn.batch_norm %x, %c, %c, %d, %c : tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<4xf32>, tensor<3xf32> -> tensor<2x3x4x4xf32>
  func.return
}

// -----

func.func @bn_rank(%x: tensor<3xf32>, %c: tensor<3xf32>) {
  // expected-error @+1 {{input (N, C, ...) must have rank >= 2, got tensor<3xf32>}}
  %0 = nn.batch_norm %x, %c, %c, %c, %c : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32> -> tensor<3xf32>
  func.return
}

// -----

func.func @bn_epsilon(%x: tensor<2x3xf32>, %c: tensor<3xf32>) {
  // expected-error @+1 {{epsilon must be >= 0, got -0.001}}
  %0 = nn.batch_norm %x, %c, %c, %c, %c epsilon -0.001 : tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32> -> tensor<2x3xf32>
  func.return
}

// -----

func.func @ln_shape(%x: tensor<2x5x8xf32>, %s: tensor<8xf32>) {
  // expected-error @+1 {{scale (the normalized shape) must have shape [5, 8], got tensor<8xf32>}}
  %0 = nn.layer_norm %x, %s, %s axis 1 : tensor<2x5x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x5x8xf32>
  func.return
}

// -----

func.func @ln_bias(%x: tensor<2x5x8xf32>, %s: tensor<8xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{bias (the normalized shape) must have shape [8], got tensor<5xf32>}}
  %0 = nn.layer_norm %x, %s, %b : tensor<2x5x8xf32>, tensor<8xf32>, tensor<5xf32> -> tensor<2x5x8xf32>
  func.return
}
