// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of the index reductions, element gathers and scatters, transposed
// convolution and resize.

func.func @argmax_type(%x: tensor<3x4xf32>) {
  // expected-error @+1 {{result type tensor<3xf32> does not match the inferred type tensor<3xi64>}}
  %0 = nn.argmax %x axis 1 : tensor<3x4xf32> -> tensor<3xf32>
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

// -----

func.func @conv_transpose_channels(%x: tensor<1x3x4x4xf32>, %w: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{input has 3 channels but the weight has 2}}
  %0 = nn.conv_transpose %x, %w : tensor<1x3x4x4xf32>, tensor<2x1x3x3xf32> -> tensor<1x1x6x6xf32>
  func.return
}

// -----

func.func @resize_mode(%x: tensor<1x4xf32>) {
  // expected-error @+1 {{unknown mode 'area' (known: nearest, linear, cubic)}}
  %0 = nn.resize %x mode area scales [1.0, 2.0] : tensor<1x4xf32> -> tensor<1x8xf32>
  func.return
}

// -----

func.func @resize_batch(%x: tensor<?x4xf32>) {
  // expected-error @+1 {{dimension 0 is dynamic: it must keep its size (scale 1)}}
  %0 = nn.resize %x scales [2.0, 2.0] : tensor<?x4xf32> -> tensor<?x8xf32>
  func.return
}

// -----

func.func @resize_scales(%x: tensor<1x4xf32>) {
  // expected-error @+1 {{expected parameter 'scales'}}
  %0 = nn.resize %x mode linear : tensor<1x4xf32> -> tensor<1x8xf32>
  func.return
}
