// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// max_pool and avg_pool verifiers.

func.func @kernel_len(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{kernel must have 2 entries, got 1}}
  %0 = nn.max_pool %x kernel [2] : tensor<1x3x8x8xf32> -> tensor<1x3x4x4xf32>
  func.return
}

// -----

func.func @pad_vs_kernel(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{pads [2, 0, 0, 0] must be smaller than the kernel [2, 2]}}
  %0 = nn.avg_pool %x kernel [2, 2] pads [2, 0, 0, 0] : tensor<1x3x8x8xf32> -> tensor<1x3x9x7xf32>
  func.return
}

// -----

func.func @zero_kernel(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{kernel, strides and dilations must be >= 1 and pads >= 0}}
  %0 = nn.max_pool %x kernel [0, 2] : tensor<1x3x8x8xf32> -> tensor<1x3x8x7xf32>
  func.return
}

// -----

func.func @too_big(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{the output would be empty: spatial size [-1, 7]}}
  %0 = nn.max_pool %x kernel [10, 2] : tensor<1x3x8x8xf32> -> tensor<1x3x1x7xf32>
  func.return
}

// -----

func.func @wrong_result(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{result type tensor<1x3x4x4xf32> does not match the inferred type tensor<1x3x7x7xf32>}}
  %0 = nn.avg_pool %x kernel [2, 2] count_include_pad : tensor<1x3x8x8xf32> -> tensor<1x3x4x4xf32>
  func.return
}

// -----

func.func @missing_kernel(%x: tensor<1x3x8x8xf32>) {
  // expected-error @+1 {{expected parameter 'kernel'}}
  %0 = nn.max_pool %x strides [2, 2] : tensor<1x3x8x8xf32> -> tensor<1x3x4x4xf32>
  func.return
}

// -----

func.func @rank(%x: tensor<3x8xf32>) {
  // expected-error @+1 {{input (N, C, spatial...) must have rank >= 3, got tensor<3x8xf32>}}
  %0 = nn.max_pool %x kernel [2] : tensor<3x8xf32> -> tensor<3x4xf32>
  func.return
}
