// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// Elementwise ops: one type when operands and result agree, `a, b -> r` when broadcasting.

// CHECK-LABEL: func.func @activations(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
// CHECK-NEXT: %0 = nn.identity %x : tensor<2x3xf32>
// CHECK-NEXT: %1 = nn.relu %0 : tensor<2x3xf32>
// CHECK-NEXT: %2 = nn.sigmoid %1 : tensor<2x3xf32>
// CHECK-NEXT: %3 = nn.tanh %2 : tensor<2x3xf32>
// CHECK-NEXT: %4 = nn.leaky_relu %3 : tensor<2x3xf32>
// CHECK-NEXT: %5 = nn.elu %4 : tensor<2x3xf32>
// CHECK-NEXT: %6 = nn.softplus %5 : tensor<2x3xf32>
// CHECK-NEXT: %7 = nn.silu %6 : tensor<2x3xf32>
// CHECK-NEXT: %8 = nn.sin %7 : tensor<2x3xf32>
// CHECK-NEXT: %9 = nn.gaussian %8 : tensor<2x3xf32>
// CHECK-NEXT: %10 = nn.abs %9 : tensor<2x3xf32>
// CHECK-NEXT: %11 = nn.step %10 : tensor<2x3xf32>
// CHECK-NEXT: func.return %11 : tensor<2x3xf32>
// CHECK-NEXT: }
func.func @activations(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.identity %x : tensor<2x3xf32>
  %1 = nn.relu %0 : tensor<2x3xf32>
  %2 = nn.sigmoid %1 : tensor<2x3xf32>
  %3 = nn.tanh %2 : tensor<2x3xf32>
  %4 = nn.leaky_relu %3 : tensor<2x3xf32>
  %5 = nn.elu %4 : tensor<2x3xf32>
  %6 = nn.softplus %5 : tensor<2x3xf32>
  %7 = nn.silu %6 : tensor<2x3xf32>
  %8 = nn.sin %7 : tensor<2x3xf32>
  %9 = nn.gaussian %8 : tensor<2x3xf32>
  %10 = nn.abs %9 : tensor<2x3xf32>
  %11 = nn.step %10 : tensor<2x3xf32>
  func.return %11 : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @math(%x: tensor<?x4xf64>) -> tensor<?x4xf64> {
// CHECK-NEXT: %0 = nn.exp %x : tensor<?x4xf64>
// CHECK-NEXT: %1 = nn.log %0 : tensor<?x4xf64>
// CHECK-NEXT: %2 = nn.neg %1 : tensor<?x4xf64>
// CHECK-NEXT: %3 = nn.sqrt %2 : tensor<?x4xf64>
// CHECK-NEXT: %4 = nn.reciprocal %3 : tensor<?x4xf64>
// CHECK-NEXT: %5 = nn.erf %4 : tensor<?x4xf64>
// CHECK-NEXT: %6 = nn.floor %5 : tensor<?x4xf64>
// CHECK-NEXT: %7 = nn.ceil %6 : tensor<?x4xf64>
// CHECK-NEXT: %8 = nn.cos %7 : tensor<?x4xf64>
// CHECK-NEXT: func.return %8 : tensor<?x4xf64>
// CHECK-NEXT: }
func.func @math(%x: tensor<?x4xf64>) -> tensor<?x4xf64> {
  %0 = nn.exp %x : tensor<?x4xf64>
  %1 = nn.log %0 : tensor<?x4xf64>
  %2 = nn.neg %1 : tensor<?x4xf64>
  %3 = nn.sqrt %2 : tensor<?x4xf64>
  %4 = nn.reciprocal %3 : tensor<?x4xf64>
  %5 = nn.erf %4 : tensor<?x4xf64>
  %6 = nn.floor %5 : tensor<?x4xf64>
  %7 = nn.ceil %6 : tensor<?x4xf64>
  %8 = nn.cos %7 : tensor<?x4xf64>
  func.return %8 : tensor<?x4xf64>
}

// CHECK-LABEL: func.func @binary(%a: tensor<4x1x5xf32>, %b: tensor<3x1xf32>, %i: tensor<2xi64>) -> tensor<4x3x5xf32> {
// CHECK-NEXT: %0 = nn.add %a, %b : tensor<4x1x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
// CHECK-NEXT: %1 = nn.sub %0, %0 : tensor<4x3x5xf32>
// CHECK-NEXT: %2 = nn.mul %1, %a : tensor<4x3x5xf32>, tensor<4x1x5xf32> -> tensor<4x3x5xf32>
// CHECK-NEXT: %3 = nn.div %2, %b : tensor<4x3x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
// CHECK-NEXT: %4 = nn.max %3, %2 : tensor<4x3x5xf32>
// CHECK-NEXT: %5 = nn.min %4, %3 : tensor<4x3x5xf32>
// CHECK-NEXT: %6 = nn.pow %5, %b : tensor<4x3x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
// CHECK-NEXT: %7 = nn.add %i, %i : tensor<2xi64>
// CHECK-NEXT: func.return %6 : tensor<4x3x5xf32>
// CHECK-NEXT: }
func.func @binary(%a: tensor<4x1x5xf32>, %b: tensor<3x1xf32>, %i: tensor<2xi64>) -> tensor<4x3x5xf32> {
  %0 = nn.add %a, %b : tensor<4x1x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
  %1 = nn.sub %0, %0 : tensor<4x3x5xf32>
  %2 = nn.mul %1, %a : tensor<4x3x5xf32>, tensor<4x1x5xf32> -> tensor<4x3x5xf32>
  %3 = nn.div %2, %b : tensor<4x3x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
  %4 = nn.max %3, %2 : tensor<4x3x5xf32>
  %5 = nn.min %4, %3 : tensor<4x3x5xf32>
  %6 = nn.pow %5, %b : tensor<4x3x5xf32>, tensor<3x1xf32> -> tensor<4x3x5xf32>
  %7 = nn.add %i, %i : tensor<2xi64>
  func.return %6 : tensor<4x3x5xf32>
}

// CHECK-LABEL: func.func @dynamic(%a: tensor<?x1xf32>, %b: tensor<1x7xf32>) -> tensor<?x7xf32> {
// CHECK-NEXT: %0 = nn.add %a, %b : tensor<?x1xf32>, tensor<1x7xf32> -> tensor<?x7xf32>
// CHECK-NEXT: func.return %0 : tensor<?x7xf32>
// CHECK-NEXT: }
func.func @dynamic(%a: tensor<?x1xf32>, %b: tensor<1x7xf32>) -> tensor<?x7xf32> {
  %0 = nn.add %a, %b : tensor<?x1xf32>, tensor<1x7xf32> -> tensor<?x7xf32>
  func.return %0 : tensor<?x7xf32>
}
