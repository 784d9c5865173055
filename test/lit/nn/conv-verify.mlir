// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// conv and fused_conv verifiers.

func.func @channels(%x: tensor<1x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{input has 4 channels but the weight expects 3 x group 1 = 3}}
  %0 = nn.conv %x, %w : tensor<1x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x6x6xf32>
  func.return
}

// -----

func.func @group(%x: tensor<1x4x8x8xf32>, %w: tensor<6x2x3x3xf32>) {
  // expected-error @+1 {{6 output channels are not divisible by group 4}}
  %0 = nn.conv %x, %w group 4 : tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32> -> tensor<1x6x6x6xf32>
  func.return
}

// -----

func.func @strides_len(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{strides must have 2 entries, got 1}}
  %0 = nn.conv %x, %w strides [2] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x3x3xf32>
  func.return
}

// -----

func.func @pads_len(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{pads (begin..., end...) must have 4 entries, got 2}}
  %0 = nn.conv %x, %w pads [1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
  func.return
}

// -----

func.func @zero_stride(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{strides and dilations must be >= 1 and pads >= 0}}
  %0 = nn.conv %x, %w strides [0, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x6x6xf32>
  func.return
}

// -----

func.func @empty(%x: tensor<1x3x2x2xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{the output would be empty: spatial size [0, 0]}}
  %0 = nn.conv %x, %w : tensor<1x3x2x2xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x1x1xf32>
  func.return
}

// -----

func.func @weight_rank(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3xf32>) {
  // expected-error @+1 {{weight (M, C/group, kernel...) must have rank 4, got tensor<4x3x3xf32>}}
  %0 = nn.conv %x, %w : tensor<1x3x8x8xf32>, tensor<4x3x3xf32> -> tensor<1x4x6x6xf32>
  func.return
}

// -----

func.func @input_rank(%x: tensor<3x8xf32>, %w: tensor<4x3xf32>) {
  // expected-error @+1 {{input (N, C, spatial...) must have rank >= 3, got tensor<3x8xf32>}}
  %0 = nn.conv %x, %w : tensor<3x8xf32>, tensor<4x3xf32> -> tensor<3x4xf32>
  func.return
}

// -----

func.func @output_size(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{result type tensor<1x4x8x8xf32> does not match the inferred type tensor<1x4x4x4xf32>}}
  %0 = nn.conv %x, %w strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
  func.return
}

// -----

func.func @fused_bias(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{bias (one per output channel) must have shape [4], got tensor<3xf32>}}
  %0 = nn.fused_conv %x, %w, %b activation relu : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<3xf32> -> tensor<1x4x6x6xf32>
  func.return
}

// -----

func.func @fused_activation(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+1 {{unknown activation 'swish'}}
  %0 = nn.fused_conv %x, %w activation swish : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x6x6xf32>
  func.return
}

// -----

func.func @int_conv(%x: tensor<1x3x8x8xi64>, %w: tensor<4x3x3x3xi64>) {
  // expected-error @+1 {{input must have a float element type, got tensor<1x3x8x8xi64>}}
  %0 = nn.conv %x, %w : tensor<1x3x8x8xi64>, tensor<4x3x3x3xi64> -> tensor<1x4x6x6xi64>
  func.return
}

// -----

func.func @conv_transpose_channels(%x: tensor<1x3x4x4xf32>, %w: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{input has 3 channels but the weight has 2}}
  %0 = nn.conv_transpose %x, %w : tensor<1x3x4x4xf32>, tensor<2x1x3x3xf32> -> tensor<1x1x6x6xf32>
  func.return
}
