// RUN: ncc-opt %s --autodiff | FileCheck %s
// An embedding lookup (a gather on axis 0 by a batch of token ids), a
// reversed strided slice, a concat and a plain slice, with a dynamic batch.
// Backward: the plain slice pads its cotangent back with zeros, the concat
// splits it, the strided slice scatters it to the constant positions it read,
// the gather adds it into the table's rows (one scatter_nd by the ids: the
// batch stays in dimension 0). Only the ids are saved.

func.func @embed(%ids: tensor<?x3xi64> {ncc.name = "ids"}, %x: tensor<?x4xf32> {ncc.name = "x"}) -> tensor<?x6xf32> {
  %t = nn.weight_ref @table : tensor<5x2xf32>
  %e = nn.gather %t, %ids axis 0 : tensor<5x2xf32>, tensor<?x3xi64> -> tensor<?x3x2xf32>
  %f = nn.reshape %e : tensor<?x3x2xf32> -> tensor<?x6xf32>
  %h = nn.slice %x starts [3, 0] ends [-5, 9223372036854775807] axes [1, 0] steps [-2, 1] : tensor<?x4xf32> -> tensor<?x2xf32>
  %c = nn.concat %f, %h axis 1 : tensor<?x6xf32>, tensor<?x2xf32> -> tensor<?x8xf32>
  %y = nn.slice %c starts [1] ends [7] axes [1] : tensor<?x8xf32> -> tensor<?x6xf32>
  func.return %y : tensor<?x6xf32>
}
nn.weight @table : tensor<5x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]>

// CHECK-LABEL: func.func @embed(
// CHECK-LABEL: func.func @embed_forward(
// CHECK:         func.return %y, %ids : tensor<?x6xf32>, tensor<?x3xi64>

// CHECK-LABEL: func.func @embed_backward(%0: tensor<?x3xi64> {ncc.name = "saved:0"}, %1: tensor<?x6xf32> {ncc.name = "cotangent:0"}) -> (tensor<5x2xf32> {ncc.name = "grad:table"}, tensor<?x4xf32> {ncc.name = "grad:x"}) {
// slice [1, 7) of 8: pad 1 before and 1 after
// CHECK-NEXT:    %[[DC:.*]] = nn.pad %1 pads [0, 1, 0, 1] : tensor<?x6xf32> -> tensor<?x8xf32>
// concat: one slice per operand
// CHECK-NEXT:    %[[DF:.*]] = nn.slice %[[DC]] starts [0] ends [6] axes [1] : tensor<?x8xf32> -> tensor<?x6xf32>
// CHECK-NEXT:    %[[DH:.*]] = nn.slice %[[DC]] starts [6] ends [8] axes [1] : tensor<?x8xf32> -> tensor<?x2xf32>
// the strided slice read x[:, 3] and x[:, 1]
// CHECK-NEXT:    %[[AT:.*]] = nn.constant dense<{{\[\[}}3, 1]]> : tensor<1x2xi64>
// CHECK-NEXT:    %[[IND:.*]] = nn.broadcast %[[AT]] : tensor<1x2xi64> -> tensor<?x2xi64>
// CHECK-NEXT:    %[[ZERO:.*]] = nn.constant dense<0.0> : tensor<f32>
// CHECK-NEXT:    %[[ZX:.*]] = nn.broadcast %[[ZERO]] : tensor<f32> -> tensor<?x4xf32>
// CHECK-NEXT:    %[[DX:.*]] = nn.scatter_elements %[[ZX]], %[[IND]], %[[DH]] axis 1 : tensor<?x4xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x4xf32>
// the reshape, then the gather: ids as (?, 3, 1) index tuples into the table
// CHECK-NEXT:    %[[DE:.*]] = nn.reshape %[[DF]] : tensor<?x6xf32> -> tensor<?x3x2xf32>
// CHECK-NEXT:    %[[ZT:.*]] = nn.broadcast %[[ZERO]] : tensor<f32> -> tensor<5x2xf32>
// CHECK-NEXT:    %[[IDS:.*]] = nn.reshape %0 : tensor<?x3xi64> -> tensor<?x3x1xi64>
// CHECK-NEXT:    %[[DT:.*]] = nn.scatter_nd %[[ZT]], %[[IDS]], %[[DE]] reduction add : tensor<5x2xf32>, tensor<?x3x1xi64>, tensor<?x3x2xf32> -> tensor<5x2xf32>
// CHECK-NEXT:    func.return %[[DT]], %[[DX]] : tensor<5x2xf32>, tensor<?x4xf32>
