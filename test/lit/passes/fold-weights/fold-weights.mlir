// RUN: ncc-opt %s --fold-weights | FileCheck %s
// fold-weights: a value computed from weights (and literals) alone becomes a
// derived weight naming its sources; the sources stay as they are (they are the
// model's parameters). ncc.compile runs it before lowering and recomputes a
// derived weight whenever one of its sources is set.

// A weight assembled from two parameters (a quaternion-style block [qr; -qi])
// and their sum: two derived weights, each computed once.
// CHECK:      nn.weight @qr : tensor<2x2xf32> = dense<{{\[}}[1.0, 2.0], [3.0, 4.0]]>
// CHECK:      nn.weight @qi : tensor<2x2xf32>
// CHECK:      nn.weight @qr.concat attributes {ncc.derived_from = [@qr, @qi]} : tensor<4x2xf32> = dense<{{\[}}[1.0, 2.0], [3.0, 4.0], [-5.0, -6.0], [-7.0, -8.0]]>
// CHECK:      nn.weight @qr.add attributes {ncc.derived_from = [@qr, @qi]} : tensor<2x2xf32> = dense<{{\[}}[6.0, 8.0], [10.0, 12.0]]>
// CHECK-LABEL: func.func @quaternion(
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @qr.concat : tensor<4x2xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul %x, %[[W]]
// CHECK-NEXT:    %[[S:.*]] = nn.weight_ref @qr.add : tensor<2x2xf32>
// CHECK-NEXT:    nn.matmul %[[Y]], %[[S]]
// CHECK-NOT:     nn.neg
nn.weight @qr : tensor<2x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0]]>
nn.weight @qi : tensor<2x2xf32> = dense<[[5.0, 6.0], [7.0, 8.0]]>
nn.weight @p : tensor<2x3xf32>
func.func @quaternion(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %r = nn.weight_ref @qr : tensor<2x2xf32>
  %i = nn.weight_ref @qi : tensor<2x2xf32>
  %n = nn.neg %i : tensor<2x2xf32>
  %w = nn.concat %r, %n axis 0 : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<4x2xf32>
  %y = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x2xf32> -> tensor<?x2xf32>
  %s = nn.add %r, %i : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<2x2xf32>
  %z = nn.matmul %y, %s : tensor<?x2xf32>, tensor<2x2xf32> -> tensor<?x2xf32>
  func.return %z : tensor<?x2xf32>
}
func.func @no_data(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {

// A parameter without data: its derived weight has none either (the runtime
// computes it when the parameter is set).
// CHECK:      nn.weight @p.transpose attributes {ncc.derived_from = [@p]} : tensor<3x2xf32>{{$}}
// CHECK-LABEL: func.func @no_data(
// CHECK-NEXT:    %[[T:.*]] = nn.weight_ref @p.transpose : tensor<3x2xf32>
// CHECK-NEXT:    nn.matmul %x, %[[T]]
  %p = nn.weight_ref @p : tensor<2x3xf32>
  %t = nn.transpose %p perm [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  %y = nn.matmul %x, %t : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  func.return %y : tensor<?x2xf32>
}
func.func @literals(%x: tensor<?x3xf32>) -> tensor<?x3xf32> {

// Literals only: constant folding into a literal.
// CHECK-LABEL: func.func @literals(
// CHECK-NEXT:    %[[B:.*]] = nn.constant dense<[2.718282, 7.3890557, 20.085537]> : tensor<3xf32>
// CHECK-NEXT:    nn.mul %x, %[[B]]
  %a = nn.constant dense<[1.0, 2.0, 3.0]> : tensor<3xf32>
  %b = nn.exp %a : tensor<3xf32>
  %y = nn.mul %x, %b : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  func.return %y : tensor<?x3xf32>
}
