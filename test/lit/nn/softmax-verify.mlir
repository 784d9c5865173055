// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of softmax and log_softmax.

func.func @softmax_axis(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{axis -3 is out of range for rank 2 (expected -2..1)}}
  %0 = nn.softmax %x axis -3 : tensor<2x4xf32>
  func.return
}

// -----

func.func @log_softmax_type(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{result type tensor<2x4xf64> does not match the inferred type tensor<2x4xf32>}}
  %0 = nn.log_softmax %x : tensor<2x4xf32> -> tensor<2x4xf64>
  func.return
}
