// RUN: ncc-opt %s --fuse | FileCheck %s
// FuseElementwise: a chain of elementwise ops becomes one nn.fused_elementwise
// (one loop nest once lowered, no buffer between the ops). Its operands are
// the chain's inputs, each read once; constants of one element move into the
// body. A producer joins its consumer only when the consumer is its only user
// and reads it at the result's own shape, so nothing is computed twice.

// The tanh Gelu's formula with another cube coefficient (0.05: not Gelu, so not
// recognized as nn.gelu_tanh): nine ops, one loop.
// CHECK-LABEL: func.func @gelu_like(
// CHECK-NEXT:    %[[Y:.*]] = nn.fused_elementwise %x : tensor<?x8xf32> -> tensor<?x8xf32> {
// CHECK-NEXT:    ^{{.*}}(%[[E:.*]]: tensor<f32>):
// CHECK-DAG:       %[[HALF:.*]] = nn.constant dense<0.5> : tensor<f32>
// CHECK-DAG:       %[[ONE:.*]] = nn.constant dense<1.0> : tensor<f32>
// CHECK-DAG:       %[[C:.*]] = nn.constant dense<0.05> : tensor<f32>
// CHECK:           %[[SQ:.*]] = nn.mul %[[E]], %[[E]] : tensor<f32>
// CHECK-NEXT:      %[[CUBE:.*]] = nn.mul %[[E]], %[[SQ]] : tensor<f32>
// CHECK-NEXT:      nn.mul %[[C]], %[[CUBE]] : tensor<f32>
// CHECK:           %[[T:.*]] = nn.tanh
// CHECK-NEXT:      %[[P:.*]] = nn.add %[[ONE]], %[[T]] : tensor<f32>
// CHECK-NEXT:      %[[Q:.*]] = nn.mul %[[E]], %[[P]] : tensor<f32>
// CHECK-NEXT:      %[[R:.*]] = nn.mul %[[HALF]], %[[Q]] : tensor<f32>
// CHECK-NEXT:      nn.yield %[[R]] : tensor<f32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[Y]]
func.func @gelu_like(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %half = nn.constant dense<0.5> : tensor<f32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %s = nn.constant dense<0.7978846> : tensor<f32>
  %c = nn.constant dense<0.05> : tensor<f32>
  %0 = nn.mul %x, %x : tensor<?x8xf32>
  %1 = nn.mul %x, %0 : tensor<?x8xf32>
  %2 = nn.mul %c, %1 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %3 = nn.add %x, %2 : tensor<?x8xf32>
  %4 = nn.mul %s, %3 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %5 = nn.tanh %4 : tensor<?x8xf32>
  %6 = nn.add %one, %5 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %7 = nn.mul %x, %6 : tensor<?x8xf32>
  %8 = nn.mul %half, %7 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  func.return %8 : tensor<?x8xf32>
}

// Attention scores: scaled, then masked by a boolean constant that is not one
// element (an operand: it broadcasts over the heads).
// CHECK-LABEL: func.func @scale_and_mask(
// CHECK-NEXT:    %[[M:.*]] = nn.constant dense<{{.*}}> : tensor<2x2xi1>
// CHECK-NEXT:    nn.fused_elementwise %s, %[[M]] : tensor<1x4x2x2xf32>, tensor<2x2xi1> -> tensor<1x4x2x2xf32> {
// CHECK-NEXT:    ^{{.*}}(%[[S:.*]]: tensor<f32>, %[[K:.*]]: tensor<i1>):
// CHECK:           %[[D:.*]] = nn.div %[[S]], %{{.*}} : tensor<f32>
// CHECK-NEXT:      %[[R:.*]] = nn.select %[[K]], %[[D]], %{{.*}} : tensor<i1>, tensor<f32>, tensor<f32> -> tensor<f32>
// CHECK-NEXT:      nn.yield %[[R]]
func.func @scale_and_mask(%s: tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32> {
  %root = nn.constant dense<5.656854> : tensor<f32>
  %mask = nn.constant dense<[[true, false], [true, true]]> : tensor<2x2xi1>
  %low = nn.constant dense<-3.4028235e+38> : tensor<f32>
  %0 = nn.div %s, %root : tensor<1x4x2x2xf32>, tensor<f32> -> tensor<1x4x2x2xf32>
  %1 = nn.select %mask, %0, %low : tensor<2x2xi1>, tensor<1x4x2x2xf32>, tensor<f32> -> tensor<1x4x2x2xf32>
  func.return %1 : tensor<1x4x2x2xf32>
}

// Two chains meeting in an add: one fused op reading %x once and %b once.
// CHECK-LABEL: func.func @diamond(
// CHECK-NEXT:    nn.fused_elementwise %x, %b : tensor<3x4xf32>, tensor<4xf32> -> tensor<3x4xf32> {
// CHECK-NEXT:    ^{{.*}}(%[[X:.*]]: tensor<f32>, %[[B:.*]]: tensor<f32>):
// CHECK-NEXT:      %[[S:.*]] = nn.sigmoid %[[X]]
// CHECK-NEXT:      %[[M:.*]] = nn.mul %[[S]], %[[B]]
// CHECK-NEXT:      %[[E:.*]] = nn.exp %[[X]]
// CHECK-NEXT:      %[[A:.*]] = nn.add %[[E]], %[[M]]
// CHECK-NEXT:      nn.yield %[[A]]
func.func @diamond(%x: tensor<3x4xf32>, %b: tensor<4xf32>) -> tensor<3x4xf32> {
  %0 = nn.exp %x : tensor<3x4xf32>
  %1 = nn.sigmoid %x : tensor<3x4xf32>
  %2 = nn.mul %1, %b : tensor<3x4xf32>, tensor<4xf32> -> tensor<3x4xf32>
  %3 = nn.add %0, %2 : tensor<3x4xf32>
  func.return %3 : tensor<3x4xf32>
}

// What stays: a value with a second user (here returned), a producer of a
// smaller shape that the consumer broadcasts (fusing would compute it per
// row), and a lone elementwise op (nothing to fuse it with).
// CHECK-LABEL: func.func @kept(
// CHECK-NEXT:    %[[T:.*]] = nn.tanh %x : tensor<3x4xf32>
// CHECK-NEXT:    %[[N:.*]] = nn.neg %[[T]] : tensor<3x4xf32>
// CHECK-NEXT:    %[[E:.*]] = nn.exp %b : tensor<4xf32>
// CHECK-NEXT:    %[[A:.*]] = nn.add %x, %[[E]] : tensor<3x4xf32>, tensor<4xf32> -> tensor<3x4xf32>
// CHECK-NEXT:    func.return %[[T]], %[[N]], %[[A]]
func.func @kept(%x: tensor<3x4xf32>, %b: tensor<4xf32>) -> (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) {
  %0 = nn.tanh %x : tensor<3x4xf32>
  %1 = nn.neg %0 : tensor<3x4xf32>
  %2 = nn.exp %b : tensor<4xf32>
  %3 = nn.add %x, %2 : tensor<3x4xf32>, tensor<4xf32> -> tensor<3x4xf32>
  func.return %0, %1, %3 : tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>
}

// A matmul's bias and activation still go into nn.fused_matmul first; the
// chain after it fuses on its own.
// CHECK-LABEL: func.func @after_a_matmul(
// CHECK-NEXT:    %[[M:.*]] = nn.fused_matmul %x, %w, %b activation relu
// CHECK-NEXT:    nn.fused_elementwise %[[M]] : tensor<2x3xf32> -> tensor<2x3xf32> {
// CHECK:           nn.exp
// CHECK-NEXT:      nn.neg
func.func @after_a_matmul(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>, %b: tensor<3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x4xf32>, tensor<4x3xf32> -> tensor<2x3xf32>
  %1 = nn.add %0, %b : tensor<2x3xf32>, tensor<3xf32> -> tensor<2x3xf32>
  %2 = nn.relu %1 : tensor<2x3xf32>
  %3 = nn.exp %2 : tensor<2x3xf32>
  %4 = nn.neg %3 : tensor<2x3xf32>
  func.return %4 : tensor<2x3xf32>
}
