// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Elementwise verifiers: broadcasting, element types, the given result type.

func.func @not_broadcastable(%a: tensor<2x3xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{shapes [2, 3], [4] are not broadcastable (dimension 3 vs 4)}}
  %0 = nn.add %a, %b : tensor<2x3xf32>, tensor<4xf32> -> tensor<2x3xf32>
  func.return
}

// -----

func.func @wrong_result(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{result type tensor<3x3xf32> does not match the inferred type tensor<2x3xf32>}}
  %0 = nn.mul %a, %b : tensor<2x3xf32>, tensor<3xf32> -> tensor<3x3xf32>
  func.return
}

// -----

func.func @mixed_elements(%a: tensor<2xf32>, %b: tensor<2xf64>) {
  // expected-error @+1 {{operands must have one element type, got tensor<2xf32>, tensor<2xf64>}}
  %0 = nn.sub %a, %b : tensor<2xf32>, tensor<2xf64> -> tensor<2xf32>
  func.return
}

// -----

func.func @int_pow(%a: tensor<2xi64>) {
  // expected-error @+1 {{operands must have a float element type, got tensor<2xi64>}}
  %0 = nn.pow %a, %a : tensor<2xi64>
  func.return
}

// -----

func.func @bool_add(%a: tensor<2xi1>) {
  // expected-error @+1 {{operands must have a numeric element type, got tensor<2xi1> (i1 tensors take the logical ops and nn.select)}}
  %0 = nn.add %a, %a : tensor<2xi1>
  func.return
}

// -----

func.func @compare_result_is_bool(%a: tensor<2xf32>) {
  // expected-error @+1 {{result type tensor<2xf32> does not match the inferred type tensor<2xi1>}}
  %0 = nn.less %a, %a : tensor<2xf32>
  func.return
}

// -----

func.func @select_needs_a_bool_condition(%a: tensor<2xf32>) {
  // expected-error @+1 {{the condition must have element type i1 (bool), got tensor<2xf32>}}
  %0 = nn.select %a, %a, %a : tensor<2xf32>
  func.return
}

// -----

func.func @logical_on_floats(%a: tensor<2xf32>, %b: tensor<2xi1>) {
  // expected-error @+1 {{operands must have element type i1 (bool), got tensor<2xf32>}}
  %0 = nn.or %a, %b : tensor<2xf32>, tensor<2xi1> -> tensor<2xi1>
  func.return
}

// -----

func.func @int_activation(%a: tensor<2xi64>) {
  // expected-error @+1 {{operand must have a float element type, got tensor<2xi64>}}
  %0 = nn.relu %a : tensor<2xi64>
  func.return
}

// -----

func.func @unary_changes_type(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{result type tensor<3x2xf32> does not match the inferred type tensor<2x3xf32>}}
  %0 = nn.exp %a : tensor<2x3xf32> -> tensor<3x2xf32>
  func.return
}

// -----

func.func @unranked(%a: f32) {
  // expected-error @+1 {{operand 'input' at position 0 does not verify}}
  %0 = "nn.tanh"(%a) : (f32) -> tensor<f32>
  func.return
}

// -----

func.func @types_missing(%a: tensor<2xf32>) {
  // expected-error @+1 {{expected '->' and the result type}}
  %0 = nn.add %a, %a : tensor<2xf32>, tensor<2xf32>
  func.return
}
