// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of the gathers and scatters (gather, gather_elements, scatter_elements, scatter_nd).

func.func @gather_indices(%x: tensor<5x4xf32>, %i: tensor<3xf32>) {
  // expected-error @+1 {{indices must be i64 or i32, got tensor<3xf32>}}
  %0 = nn.gather %x, %i : tensor<5x4xf32>, tensor<3xf32> -> tensor<3x4xf32>
  func.return
}

// -----

func.func @gather_axis(%x: tensor<5x4xf32>, %i: tensor<3xi64>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2 (expected -2..1)}}
  %0 = nn.gather %x, %i axis 2 : tensor<5x4xf32>, tensor<3xi64> -> tensor<5x3xf32>
  func.return
}

// -----

func.func @gather_result(%x: tensor<5x4xf32>, %i: tensor<2x3xi64>) {
  // expected-error @+1 {{result type tensor<3x4xf32> does not match the inferred type tensor<2x3x4xf32>}}
  %0 = nn.gather %x, %i : tensor<5x4xf32>, tensor<2x3xi64> -> tensor<3x4xf32>
  func.return
}

// -----

func.func @gather_elements_rank(%x: tensor<3x4xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{indices must have the input's rank 2, got tensor<2xi64>}}
  %0 = nn.gather_elements %x, %i : tensor<3x4xf32>, tensor<2xi64> -> tensor<2xf32>
  func.return
}

// -----

func.func @scatter_reduction(%x: tensor<3xf32>, %i: tensor<2xi64>, %u: tensor<2xf32>) {
  // expected-error @+1 {{unknown reduction 'sum' (known: none, add, mul, max, min)}}
  %0 = nn.scatter_elements %x, %i, %u reduction sum : tensor<3xf32>, tensor<2xi64>, tensor<2xf32> -> tensor<3xf32>
  func.return
}

// -----

func.func @scatter_nd_updates(%x: tensor<4x3xf32>, %i: tensor<2x1xi64>, %u: tensor<2x4xf32>) {
  // expected-error @+1 {{updates (indices' shape[:-1] + input's shape[k:]) must have shape [2, 3], got tensor<2x4xf32>}}
  %0 = nn.scatter_nd %x, %i, %u : tensor<4x3xf32>, tensor<2x1xi64>, tensor<2x4xf32> -> tensor<4x3xf32>
  func.return
}
