// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// A small MLP with a symbolic batch `?`: weights as symbols, the ops keep `?`
// through matmul, broadcasting add, activations, softmax and reshape.

// CHECK: nn.weight @fc1_w : tensor<4x3xf32> = dense<{{\[\[}}0.25, -0.5, 1.0], [0.125, 0.0, -1.0], [2.0, 0.5, 0.75], [-0.25, 1.5, 0.0]]>
// CHECK: nn.weight @fc1_b : tensor<3xf32> = dense<[0.1, 0.2, 0.3]>
// CHECK: nn.weight @fc2_w : tensor<3x2xf32>{{$}}
nn.weight @fc1_w : tensor<4x3xf32> = dense<[[0.25, -0.5, 1.0], [0.125, 0.0, -1.0], [2.0, 0.5, 0.75], [-0.25, 1.5, 0.0]]>
nn.weight @fc1_b : tensor<3xf32> = dense<[0.1, 0.2, 0.3]>
nn.weight @fc2_w : tensor<3x2xf32>

// CHECK-LABEL: func.func @main(%x: tensor<?x2x2xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
// CHECK-NEXT:    %flat = nn.reshape %x : tensor<?x2x2xf32> -> tensor<?x4xf32>
// CHECK-NEXT:    %w1 = nn.weight_ref @fc1_w : tensor<4x3xf32>
// CHECK-NEXT:    %b1 = nn.weight_ref @fc1_b : tensor<3xf32>
// CHECK-NEXT:    %h = nn.matmul %flat, %w1 : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
// CHECK-NEXT:    %hb = nn.add %h, %b1 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
// CHECK-NEXT:    %a = nn.relu %hb : tensor<?x3xf32>
// CHECK-NEXT:    %w2 = nn.weight_ref @fc2_w : tensor<3x2xf32>
// CHECK-NEXT:    %o = nn.fused_matmul %a, %w2 activation tanh : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
// CHECK-NEXT:    %p = nn.softmax %o : tensor<?x2xf32>
// CHECK-NEXT:    func.return %p : tensor<?x2xf32>
// CHECK-NEXT:  }
func.func @main(%x: tensor<?x2x2xf32> {ncc.name = "input"}) -> tensor<?x2xf32> {
  %flat = nn.reshape %x : tensor<?x2x2xf32> -> tensor<?x4xf32>
  %w1 = nn.weight_ref @fc1_w : tensor<4x3xf32>
  %b1 = nn.weight_ref @fc1_b : tensor<3xf32>
  %h = nn.matmul %flat, %w1 : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %hb = nn.add %h, %b1 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %a = nn.relu %hb : tensor<?x3xf32>
  %w2 = nn.weight_ref @fc2_w : tensor<3x2xf32>
  %o = nn.fused_matmul %a, %w2 activation tanh : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %p = nn.softmax %o : tensor<?x2xf32>
  func.return %p : tensor<?x2xf32>
}

// A result type may be more static than inference can tell (`?` is compatible).
// CHECK-LABEL: func.func @refined
// CHECK-NEXT:    %0 = nn.add %a, %b : tensor<?x3xf32>, tensor<3xf32> -> tensor<8x3xf32>
func.func @refined(%a: tensor<?x3xf32>, %b: tensor<3xf32>) -> tensor<8x3xf32> {
  %0 = nn.add %a, %b : tensor<?x3xf32>, tensor<3xf32> -> tensor<8x3xf32>
  func.return %0 : tensor<8x3xf32>
}
