// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// reshape, transpose and concat verifiers.

func.func @reshape_count(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{cannot reshape 24 elements (tensor<2x3x4xf32>) into 25 (tensor<5x5xf32>)}}
  %0 = nn.reshape %x : tensor<2x3x4xf32> -> tensor<5x5xf32>
  func.return
}

// -----

func.func @reshape_divisible(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{cannot reshape 24 elements (tensor<2x3x4xf32>) into tensor<?x5xf32>}}
  %0 = nn.reshape %x : tensor<2x3x4xf32> -> tensor<?x5xf32>
  func.return
}

// -----

func.func @reshape_two_dynamic(%x: tensor<?x28x28xf32>) {
  // expected-error @+1 {{the result may have at most one '?' dimension, got tensor<?x?xf32>}}
  %0 = nn.reshape %x : tensor<?x28x28xf32> -> tensor<?x?xf32>
  func.return
}

// -----

func.func @reshape_element(%x: tensor<4xf32>) {
  // expected-error @+1 {{element type changes from f32 to i64}}
  %0 = nn.reshape %x : tensor<4xf32> -> tensor<2x2xi64>
  func.return
}

// -----

func.func @perm(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{perm [0, 0, 1] is not a permutation of 0..2}}
  %0 = nn.transpose %x perm [0, 0, 1] : tensor<2x3x4xf32> -> tensor<2x2x3xf32>
  func.return
}

// -----

func.func @perm_result(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{result type tensor<2x3x4xf32> does not match the inferred type tensor<4x3x2xf32>}}
  %0 = nn.transpose %x perm [2, 1, 0] : tensor<2x3x4xf32>
  func.return
}

// -----

func.func @concat_dims(%a: tensor<2x3xf32>, %b: tensor<2x5xf32>) {
  // expected-error @+1 {{inputs differ in dimension 1 (3, 5); only the axis 0 may differ}}
  %0 = nn.concat %a, %b axis 0 : tensor<2x3xf32>, tensor<2x5xf32> -> tensor<4x3xf32>
  func.return
}

// -----

func.func @concat_rank(%a: tensor<2x3xf32>, %b: tensor<6xf32>) {
  // expected-error @+1 {{every input must have rank 2, got tensor<6xf32>}}
  %0 = nn.concat %a, %b axis 0 : tensor<2x3xf32>, tensor<6xf32> -> tensor<4x3xf32>
  func.return
}

// -----

func.func @concat_elements(%a: tensor<2xf32>, %b: tensor<2xi64>) {
  // expected-error @+1 {{inputs must have one element type, got tensor<2xf32>, tensor<2xi64>}}
  %0 = nn.concat %a, %b axis 0 : tensor<2xf32>, tensor<2xi64> -> tensor<4xf32>
  func.return
}

// -----

func.func @concat_axis(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2 (expected -2..1)}}
  %0 = nn.concat %a, %a axis 2 : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x3xf32>
  func.return
}
