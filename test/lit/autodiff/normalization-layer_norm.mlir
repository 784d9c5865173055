// RUN: ncc-opt %s --autodiff | FileCheck %s
// A layer norm over the last axis with a dynamic batch: the forward saves only
// its input (mean and 1/std are recomputed in the backward); the bias gets the
// cotangent summed over the batch, the scale the cotangent times the
// normalized input, the input rstd (h - mean(h) - xhat mean(h xhat)), h = g scale.

func.func @ln(%x: tensor<?x4xf32> {ncc.name = "x"}) -> tensor<?x4xf32> {
  %s = nn.weight_ref @ln_scale : tensor<4xf32>
  %b = nn.weight_ref @ln_bias : tensor<4xf32>
  %y = nn.layer_norm %x, %s, %b : tensor<?x4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<?x4xf32>
  func.return %y : tensor<?x4xf32>
}
nn.weight @ln_scale : tensor<4xf32> = dense<[1.0, 0.5, 2.0, -1.0]>
nn.weight @ln_bias : tensor<4xf32> = dense<[0.0, 0.25, -0.5, 1.0]>

// CHECK-LABEL: func.func @ln(
// CHECK-LABEL: func.func @ln_forward(%x: tensor<?x4xf32> {ncc.name = "x"}) -> (tensor<?x4xf32> {ncc.name = "0"}, tensor<?x4xf32> {ncc.name = "saved:0"}) {
// CHECK:         %y = nn.layer_norm %x, %s, %b
// CHECK-NEXT:    func.return %y, %x : tensor<?x4xf32>, tensor<?x4xf32>

// CHECK-LABEL: func.func @ln_backward(%0: tensor<?x4xf32> {ncc.name = "saved:0"}, %1: tensor<?x4xf32> {ncc.name = "cotangent:0"}) -> (tensor<4xf32> {ncc.name = "grad:ln_scale"}, tensor<4xf32> {ncc.name = "grad:ln_bias"}, tensor<?x4xf32> {ncc.name = "grad:x"}) {
// bias: the cotangent summed over the batch
// CHECK:         %[[GB:.*]] = nn.reduce_sum %1 axes [0] keepdims : tensor<?x4xf32> -> tensor<1x4xf32>
// CHECK-NEXT:    %[[DB:.*]] = nn.reshape %[[GB]] : tensor<1x4xf32> -> tensor<4xf32>
// xhat, recomputed from the saved input
// CHECK-NEXT:    %[[MU:.*]] = nn.reduce_mean %0 axes [1] keepdims : tensor<?x4xf32> -> tensor<?x1xf32>
// CHECK-NEXT:    %[[XC:.*]] = nn.sub %0, %[[MU]]
// CHECK-NEXT:    %[[SQ:.*]] = nn.mul %[[XC]], %[[XC]]
// CHECK-NEXT:    %[[VAR:.*]] = nn.reduce_mean %[[SQ]] axes [1] keepdims
// CHECK-NEXT:    %[[EPS:.*]] = nn.constant dense<1.0e-05> : tensor<f32>
// CHECK-NEXT:    %[[VE:.*]] = nn.add %[[VAR]], %[[EPS]]
// CHECK-NEXT:    %[[STD:.*]] = nn.sqrt %[[VE]]
// CHECK-NEXT:    %[[RSTD:.*]] = nn.reciprocal %[[STD]] : tensor<?x1xf32>
// CHECK-NEXT:    %[[XHAT:.*]] = nn.mul %[[XC]], %[[RSTD]] : tensor<?x4xf32>, tensor<?x1xf32> -> tensor<?x4xf32>
// scale: g xhat summed over the batch
// CHECK-NEXT:    %[[GX:.*]] = nn.mul %1, %[[XHAT]]
// CHECK-NEXT:    %[[GS:.*]] = nn.reduce_sum %[[GX]] axes [0] keepdims
// CHECK-NEXT:    %[[DS:.*]] = nn.reshape %[[GS]] : tensor<1x4xf32> -> tensor<4xf32>
// input
// CHECK-NEXT:    %s = nn.weight_ref @ln_scale : tensor<4xf32>
// CHECK-NEXT:    %[[H:.*]] = nn.mul %1, %s : tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:    %[[HM:.*]] = nn.reduce_mean %[[H]] axes [1] keepdims
// CHECK-NEXT:    %[[HC:.*]] = nn.sub %[[H]], %[[HM]]
// CHECK-NEXT:    %[[HX:.*]] = nn.mul %[[H]], %[[XHAT]]
// CHECK-NEXT:    %[[HXM:.*]] = nn.reduce_mean %[[HX]] axes [1] keepdims
// CHECK-NEXT:    %[[P:.*]] = nn.mul %[[XHAT]], %[[HXM]]
// CHECK-NEXT:    %[[D:.*]] = nn.sub %[[HC]], %[[P]]
// CHECK-NEXT:    %[[DX:.*]] = nn.mul %[[RSTD]], %[[D]] : tensor<?x1xf32>, tensor<?x4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:    func.return %[[DS]], %[[DB]], %[[DX]] : tensor<4xf32>, tensor<4xf32>, tensor<?x4xf32>
