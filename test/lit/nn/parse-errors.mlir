// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Errors of the custom syntax, reported where they occur.

func.func @twice(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{parameter 'axis' is given twice}}
  %0 = nn.softmax %x axis 1 axis 0 : tensor<2x8xf32>
  func.return
}

// -----

func.func @type_count(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{expected 2 operand types, got 1}}
  %0 = nn.add %x, %x : tensor<2x8xf32> -> tensor<2x8xf32>
  func.return
}

// -----

func.func @missing_required(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{expected parameter 'perm'}}
  %0 = nn.transpose %x : tensor<2x3xf32> -> tensor<3x2xf32>
  func.return
}

// -----

func.func @bad_list(%x: tensor<2x3xf32>) {
  // expected-error @+1 {{Expected integer literal}}
  %0 = nn.transpose %x perm [1, a] : tensor<2x3xf32> -> tensor<3x2xf32>
  func.return
}

// -----

func.func @unknown_param(%x: tensor<2x3xf32>) {
  // A word that is not a parameter of the op ends the parameter list.
  // expected-error @+1 {{Expected ':'}}
  %0 = nn.relu %x axis 1 : tensor<2x3xf32>
  func.return
}

// -----

func.func @no_dense(%x: tensor<2xf32>) {
  // expected-error @+1 {{Expected 'dense'}}
  %c = nn.constant [1.0, 2.0] : tensor<2xf32>
  func.return
}

// -----

// expected-error @+1 {{Expected 'dense' (a dense<...> literal or dense_resource<__elided__>)}}
nn.weight @w : tensor<2xf32> = [1.0, 2.0]
