// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// nn.fused_elementwise verifiers: the body's arguments, its ops, its yield, the result's shape.

func.func @wrong_argument(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{body argument 0 must be tensor<f32> (an element of operand 0), got tensor<f64>}}
  %0 = nn.fused_elementwise %a : tensor<2x3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f64>):
    %1 = nn.cast %x : tensor<f64> -> tensor<f32>
    nn.yield %1 : tensor<f32>
  }
  func.return
}

// -----

func.func @argument_count(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{the body takes 1 elements, but the op has 2 operands}}
  %0 = nn.fused_elementwise %a, %b : tensor<2x3xf32>, tensor<3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f32>):
    nn.yield %x : tensor<f32>
  }
  func.return
}

// -----

func.func @not_elementwise(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{'nn.reshape' is not elementwise: a fused body holds elementwise ops, rank-0 constants and nn.yield}}
  %0 = nn.fused_elementwise %a : tensor<2x3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f32>):
    %1 = nn.reshape %x : tensor<f32> -> tensor<f32>
    nn.yield %1 : tensor<f32>
  }
  func.return
}

// -----

func.func @reads_outside(%a: tensor<2x3xf32>, %c: tensor<f32>) {
  // expected-error @+1 {{'nn.add' in the body reads a value from outside it}}
  %0 = nn.fused_elementwise %a : tensor<2x3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f32>):
    %1 = nn.add %x, %c : tensor<f32>
    nn.yield %1 : tensor<f32>
  }
  func.return
}

// -----

func.func @yield_type(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{the body yields tensor<i1>, but the result is tensor<2x3xf32>}}
  %0 = nn.fused_elementwise %a : tensor<2x3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f32>):
    %1 = nn.is_nan %x : tensor<f32> -> tensor<i1>
    nn.yield %1 : tensor<i1>
  }
  func.return
}

// -----

func.func @result_shape(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{the result must have the operands' broadcast shape [2, 3], got tensor<3xf32>}}
  %0 = nn.fused_elementwise %a, %b : tensor<2x3xf32>, tensor<3xf32> -> tensor<3xf32> {
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %1 = nn.add %x, %y: tensor<f32>
    nn.yield %1 : tensor<f32>
  }
  func.return
}

// -----

func.func @no_yield(%a: tensor<2x3xf32>) {
  %0 = nn.fused_elementwise %a : tensor<2x3xf32> -> tensor<2x3xf32> {
  ^bb0(%x: tensor<f32>):
    // expected-error @+1 {{Operation nn.neg terminates block in single-block region but is not a terminator}}
    %1 = nn.neg %x : tensor<f32>
  }
  func.return
}
