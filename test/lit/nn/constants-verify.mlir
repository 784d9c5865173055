// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Weight symbols and references; constants.

nn.weight @w : tensor<2x2xf32> = dense<0.0>
func.func @type_mismatch() {
  // expected-error @+1 {{type tensor<2x3xf32> does not match weight @w of type tensor<2x2xf32>}}
  %w = nn.weight_ref @w : tensor<2x3xf32>
  func.return
}

// -----

func.func @unknown() {
  // expected-error @+1 {{refers to an unknown weight @nope}}
  %w = nn.weight_ref @nope : tensor<2xf32>
  func.return
}

// -----

func.func @not_a_weight() {
  // expected-error @+1 {{@not_a_weight is a 'func.func', not an nn.weight}}
  %w = nn.weight_ref @not_a_weight : tensor<2xf32>
  func.return
}

// -----

// expected-error @+1 {{type must be a tensor type with a static shape, got tensor<?x2xf32>}}
nn.weight @dynamic : tensor<?x2xf32>

// -----

// expected-error @+1 {{literal has shape [3] but the type is tensor<2xf32>}}
nn.weight @short : tensor<2xf32> = dense<[1.0, 2.0, 3.0]>

// -----

// expected-error @+1 {{literal has shape [2, 1] but the type is tensor<2xf32>}}
nn.weight @nested : tensor<2xf32> = dense<[[1.0], [2.0]]>

// -----

// expected-error @+1 {{invalid dense literal}}
nn.weight @ragged : tensor<2x2xf32> = dense<[[1.0, 2.0], [3.0]]>

// -----

// expected-error @+1 {{an integer literal may only hold integers, got float64 values}}
nn.weight @ints : tensor<2xi64> = dense<[1.5, 2.0]>

// -----

// expected-error @+1 {{only dense_resource<__elided__> is supported}}
nn.weight @blob : tensor<2xf32> = dense_resource<blob1>

// -----

func.func @constant() {
  // expected-error @+1 {{literal has shape [2] but the type is tensor<3xf32>}}
  %c = nn.constant dense<[1.0, 2.0]> : tensor<3xf32>
  func.return
}
