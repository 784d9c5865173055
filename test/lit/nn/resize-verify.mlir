// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of resize.

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
