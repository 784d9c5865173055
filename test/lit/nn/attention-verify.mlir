// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// nn.attention verifiers: ranks, leading dimensions, depth, keys, the bias.

func.func @ranks(%q: tensor<2x3x4xf32>, %kt: tensor<4x5xf32>, %v: tensor<2x5x6xf32>) {
  // expected-error @+1 {{query, keys and values must have one rank >= 2, got tensor<2x3x4xf32>, tensor<4x5xf32>, tensor<2x5x6xf32>}}
  %0 = nn.attention %q, %kt, %v : tensor<2x3x4xf32>, tensor<4x5xf32>, tensor<2x5x6xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @heads(%q: tensor<2x3x4xf32>, %kt: tensor<3x4x5xf32>, %v: tensor<2x5x6xf32>) {
  // expected-error @+1 {{the keys' leading dimensions [3] must be the query's [2]}}
  %0 = nn.attention %q, %kt, %v : tensor<2x3x4xf32>, tensor<3x4x5xf32>, tensor<2x5x6xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @depth(%q: tensor<2x3x4xf32>, %kt: tensor<2x5x4xf32>, %v: tensor<2x5x6xf32>) {
  // expected-error @+1 {{the keys (transposed, [..., D, Sk]) must have the query's depth 4 at axis -2, got tensor<2x5x4xf32>}}
  %0 = nn.attention %q, %kt, %v : tensor<2x3x4xf32>, tensor<2x5x4xf32>, tensor<2x5x6xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @values(%q: tensor<2x3x4xf32>, %kt: tensor<2x4x5xf32>, %v: tensor<2x6x6xf32>) {
  // expected-error @+1 {{the values must have one row per key (5), got tensor<2x6x6xf32>}}
  %0 = nn.attention %q, %kt, %v : tensor<2x3x4xf32>, tensor<2x4x5xf32>, tensor<2x6x6xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @bias(%q: tensor<2x3x4xf32>, %kt: tensor<2x4x5xf32>, %v: tensor<2x5x6xf32>, %b: tensor<3x4xf32>) {
  // expected-error @+1 {{the bias must broadcast to the scores [2, 3, 5], got tensor<3x4xf32>}}
  %0 = nn.attention %q, %kt, %v, %b : tensor<2x3x4xf32>, tensor<2x4x5xf32>, tensor<2x5x6xf32>, tensor<3x4xf32> -> tensor<2x3x6xf32>
  func.return
}

// -----

func.func @result(%q: tensor<2x3x4xf32>, %kt: tensor<2x4x5xf32>, %v: tensor<2x5x6xf32>) {
  // expected-error @+1 {{result type tensor<2x3x5xf32> does not match the inferred type tensor<2x3x6xf32>}}
  %0 = nn.attention %q, %kt, %v : tensor<2x3x4xf32>, tensor<2x4x5xf32>, tensor<2x5x6xf32> -> tensor<2x3x5xf32>
  func.return
}
