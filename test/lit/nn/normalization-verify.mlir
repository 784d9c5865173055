// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of batch_norm and layer_norm.

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
