// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of the reductions (reduce_*, argmax, argmin, cumsum).

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

func.func @argmax_type(%x: tensor<3x4xf32>) {
  // expected-error @+1 {{result type tensor<3xf32> does not match the inferred type tensor<3xi64>}}
  %0 = nn.argmax %x axis 1 : tensor<3x4xf32> -> tensor<3xf32>
  func.return
}
