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

// -----

func.func @slice_step(%x: tensor<10xf32>) {
  // expected-error @+1 {{steps must be nonzero}}
  %0 = nn.slice %x starts [0] ends [5] steps [0] : tensor<10xf32> -> tensor<5xf32>
  func.return
}

// -----

func.func @slice_lengths(%x: tensor<10x4xf32>) {
  // expected-error @+1 {{ends (one per start) must have 2 entries, got 1}}
  %0 = nn.slice %x starts [0, 1] ends [5] : tensor<10x4xf32> -> tensor<5x3xf32>
  func.return
}

// -----

func.func @slice_axes(%x: tensor<10x4xf32>) {
  // expected-error @+1 {{axes [1, -1] name an axis twice}}
  %0 = nn.slice %x starts [0, 1] ends [2, 3] axes [1, -1] : tensor<10x4xf32> -> tensor<10x2xf32>
  func.return
}

// -----

func.func @slice_result(%x: tensor<10xf32>) {
  // ONNX clamping: ends past the end stop at the end; 8 / 3 steps give 3 elements.
  // expected-error @+1 {{result type tensor<4xf32> does not match the inferred type tensor<3xf32>}}
  %0 = nn.slice %x starts [2] ends [100] steps [3] : tensor<10xf32> -> tensor<4xf32>
  func.return
}

// -----

func.func @pad_len(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{pads (begin..., end...) must have 4 entries, got 2}}
  %0 = nn.pad %x pads [1, 1] : tensor<2x3xf32> -> tensor<4x3xf32>
  func.return
}

// -----

func.func @pad_mode(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{unknown pad mode 'wrap' (known: constant, reflect, edge)}}
  %0 = nn.pad %x pads [0, 0, 0, 0] mode wrap : tensor<2x3xf32>
  func.return
}

// -----

func.func @pad_reflect(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{reflect padding of axis 0 needs pads < its size 2, got 2, 0}}
  %0 = nn.pad %x pads [2, 0, 0, 0] mode reflect : tensor<2x3xf32> -> tensor<4x3xf32>
  func.return
}

// -----

func.func @pad_negative(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{pads must be >= 0, got [-1, 0, 0, 0]}}
  %0 = nn.pad %x pads [-1, 0, 0, 0] : tensor<2x3xf32> -> tensor<1x3xf32>
  func.return
}

// -----

func.func @pad_value_mode(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{a pad value only applies to mode constant, not edge}}
  %0 = nn.pad %x pads [1, 0, 0, 0] mode edge value 1.0 : tensor<2x3xf32> -> tensor<3x3xf32>
  func.return
}
