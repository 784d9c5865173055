// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// slice, gather and pad verifiers.

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
