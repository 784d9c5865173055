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

func.func @int_div(%a: tensor<2xi64>) {
  // expected-error @+1 {{operands must have a float element type, got tensor<2xi64>}}
  %0 = nn.div %a, %a : tensor<2xi64>
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
