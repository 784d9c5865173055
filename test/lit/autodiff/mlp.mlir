// RUN: ncc-opt %s --autodiff | FileCheck %s
// RUN: ncc-opt %s '--autodiff=frozen=fc1_w,fc1_b inputs=false' | FileCheck %s --check-prefix=FROZEN
// A two-layer MLP and its derivative. @main_forward returns what the backward
// reads: the softmax output (for softmax's rule), the relu output (relu's rule
// reads y > 0, so the pre-activation is not kept) and the input (for
// d(fc1_w)); the weights are read again, not saved. @main_backward runs the
// rules in reverse: softmax, the second matmul (dW = a^T dy without moving the
// batch out of dimension 0), relu, the bias (summed over the batch), the first
// matmul.

nn.weight @fc1_w : tensor<4x3xf32> = dense<0.5>
nn.weight @fc1_b : tensor<3xf32> = dense<0.1>
nn.weight @fc2_w : tensor<3x2xf32> = dense<-0.25>

// CHECK-LABEL: func.func @main(
// CHECK-LABEL: func.func @main_forward(%x: tensor<?x4xf32> {ncc.name = "input"}) -> (tensor<?x2xf32> {ncc.name = "0"}, tensor<?x2xf32> {ncc.name = "saved:0"}, tensor<?x3xf32> {ncc.name = "saved:1"}, tensor<?x4xf32> {ncc.name = "saved:2"})
// CHECK:         %p = nn.softmax %o
// CHECK-NEXT:    func.return %p, %p, %a, %x
// CHECK-LABEL: func.func @main_backward(%0: tensor<?x2xf32> {ncc.name = "saved:0"}, %1: tensor<?x3xf32> {ncc.name = "saved:1"}, %2: tensor<?x4xf32> {ncc.name = "saved:2"}, %3: tensor<?x2xf32> {ncc.name = "cotangent:0"})
// CHECK-SAME:    -> (tensor<4x3xf32> {ncc.name = "grad:fc1_w"}, tensor<3xf32> {ncc.name = "grad:fc1_b"}, tensor<3x2xf32> {ncc.name = "grad:fc2_w"}, tensor<?x4xf32> {ncc.name = "grad:input"})
// softmax: y * (g - sum(g * y))
// CHECK-NEXT:    %[[GY:.*]] = nn.mul %3, %0
// CHECK-NEXT:    %[[S:.*]] = nn.reduce_sum %[[GY]] axes [1] keepdims
// CHECK-NEXT:    %[[D:.*]] = nn.sub %3, %[[S]]
// CHECK-NEXT:    %[[DO:.*]] = nn.mul %0, %[[D]]
// second matmul: da = do @ w2^T, dw2 = a^T @ do
// CHECK-NEXT:    %w2 = nn.weight_ref @fc2_w
// CHECK-NEXT:    %[[W2T:.*]] = nn.transpose %w2 perm [1, 0]
// CHECK-NEXT:    %[[DA:.*]] = nn.matmul %[[DO]], %[[W2T]]
// CHECK-NEXT:    %[[DW2:.*]] = nn.matmul_transpose_a %1, %[[DO]] : tensor<?x3xf32>, tensor<?x2xf32> -> tensor<3x2xf32>
// relu: g where y > 0
// CHECK-NEXT:    %[[ZERO:.*]] = nn.constant dense<0.0> : tensor<f32>
// CHECK-NEXT:    %[[POS:.*]] = nn.greater %1, %[[ZERO]]
// CHECK-NEXT:    %[[DH:.*]] = nn.select %[[POS]], %[[DA]], %[[ZERO]]
// bias: summed over the broadcast (batch) dimension
// CHECK-NEXT:    %[[DB:.*]] = nn.reduce_sum %[[DH]] axes [0] keepdims : tensor<?x3xf32> -> tensor<1x3xf32>
// CHECK-NEXT:    %[[DB1:.*]] = nn.reshape %[[DB]] : tensor<1x3xf32> -> tensor<3xf32>
// CHECK:         %[[DX:.*]] = nn.matmul %[[DH]], %{{.*}} : tensor<?x3xf32>, tensor<3x4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:    %[[DW1:.*]] = nn.matmul_transpose_a %2, %[[DH]]
// CHECK-NEXT:    func.return %[[DW1]], %[[DB1]], %[[DW2]], %[[DX]]

// With the first layer frozen and no input gradient, nothing below the second
// matmul is differentiated and neither x nor the relu's mask is needed.
// FROZEN-LABEL: func.func @main_forward(
// FROZEN:         func.return %p, %p, %a : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x3xf32>
// FROZEN-LABEL: func.func @main_backward(
// FROZEN-SAME:    -> (tensor<3x2xf32> {ncc.name = "grad:fc2_w"})
// FROZEN-NOT:     nn.select
// FROZEN:         nn.matmul_transpose_a
// FROZEN-NEXT:    func.return
func.func @main(%x: tensor<?x4xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
  %w1 = nn.weight_ref @fc1_w : tensor<4x3xf32>
  %b1 = nn.weight_ref @fc1_b : tensor<3xf32>
  %h = nn.matmul %x, %w1 : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %hb = nn.add %h, %b1 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %a = nn.relu %hb : tensor<?x3xf32>
  %w2 = nn.weight_ref @fc2_w : tensor<3x2xf32>
  %o = nn.matmul %a, %w2 : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %p = nn.softmax %o : tensor<?x2xf32>
  func.return %p : tensor<?x2xf32>
}
