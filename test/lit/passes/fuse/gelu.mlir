// RUN: ncc-opt %s --fuse | FileCheck %s
// RecognizeActivation: Gelu written out as its formula (ONNX before opset 20,
// as PyTorch exports F.gelu) becomes nn.gelu or nn.gelu_tanh, whatever the
// order of its ops; after a matmul + bias it then goes into nn.fused_matmul.
// A formula that is not Gelu, or whose inner values are used elsewhere, stays.

// PyTorch's F.gelu at opset 17: x / sqrt 2, erf, + 1, * x, * 0.5.
// CHECK-LABEL: func.func @erf_form(
// CHECK-NEXT:    %[[Y:.*]] = nn.gelu %x : tensor<?x8xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @erf_form(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %root2 = nn.constant dense<1.4142135> : tensor<f32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %half = nn.constant dense<0.5> : tensor<f32>
  %0 = nn.div %x, %root2 : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %1 = nn.erf %0 : tensor<?x8xf32>
  %2 = nn.add %1, %one : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %3 = nn.mul %x, %2 : tensor<?x8xf32>
  %4 = nn.mul %3, %half : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  func.return %4 : tensor<?x8xf32>
}

// The tanh form (GPT-2's gelu_new) after a matmul and bias: one fused_matmul.
// CHECK-LABEL: func.func @tanh_form_after_a_matmul(
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_matmul %x, %w, %b activation gelu_tanh
// CHECK-NEXT:    func.return %[[Y]]
func.func @tanh_form_after_a_matmul(%x: tensor<?x4xf32>, %w: tensor<4x8xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %half = nn.constant dense<0.5> : tensor<f32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %s = nn.constant dense<0.7978846> : tensor<f32>
  %c = nn.constant dense<0.044715> : tensor<f32>
  %three = nn.constant dense<3.0> : tensor<f32>
  %m = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x8xf32> -> tensor<?x8xf32>
  %z = nn.add %m, %b : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %0 = nn.pow %z, %three : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %1 = nn.mul %0, %c : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %2 = nn.add %z, %1 : tensor<?x8xf32>
  %3 = nn.mul %2, %s : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %4 = nn.tanh %3 : tensor<?x8xf32>
  %5 = nn.add %4, %one : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %6 = nn.mul %z, %half : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %7 = nn.mul %6, %5 : tensor<?x8xf32>
  func.return %7 : tensor<?x8xf32>
}

// 0.5 x (1 + tanh(x)) is not Gelu: it fuses as a chain, nothing is recognized.
// CHECK-LABEL: func.func @not_gelu(
// CHECK-NOT:     nn.gelu
// CHECK:         nn.fused_elementwise
// CHECK-NOT:     nn.gelu
func.func @not_gelu(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %one = nn.constant dense<1.0> : tensor<f32>
  %half = nn.constant dense<0.5> : tensor<f32>
  %0 = nn.tanh %x : tensor<?x8xf32>
  %1 = nn.add %0, %one : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %2 = nn.mul %x, %1 : tensor<?x8xf32>
  %3 = nn.mul %2, %half : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  func.return %3 : tensor<?x8xf32>
}

// Gelu's erf is also returned: the formula's ops must stay to compute it.
// CHECK-LABEL: func.func @inner_value_used(
// CHECK-NOT:     nn.gelu
// CHECK:         nn.erf
func.func @inner_value_used(%x: tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %root2 = nn.constant dense<1.4142135> : tensor<f32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %half = nn.constant dense<0.5> : tensor<f32>
  %0 = nn.div %x, %root2 : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %1 = nn.erf %0 : tensor<?x8xf32>
  %2 = nn.add %1, %one : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  %3 = nn.mul %x, %2 : tensor<?x8xf32>
  %4 = nn.mul %3, %half : tensor<?x8xf32>, tensor<f32> -> tensor<?x8xf32>
  func.return %4, %1 : tensor<?x8xf32>, tensor<?x8xf32>
}
