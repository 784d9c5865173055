// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// Elementwise ops become one loop nest each, over the output shape; the batch
// (dimension 0, dynamic) comes from memref.dim of the input. A broadcast
// operand is read with the output's trailing indices (a [4] bias reads [j]).
// The intermediate lives in the arena, the last op writes the output directly.

// CHECK-LABEL: func.func @chain(
// CHECK-SAME:    %x: memref<?x4xf32>, %y: memref<4xf32>, %out: memref<?x4xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "input:y", "output:0", "arena"]
// CHECK-SAME:    ncc.arena_bytes = array<i64: 64, 0>
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG:     %[[C4:.*]] = arith.constant 4 : index
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:         %[[B:.*]] = memref.dim %x, %[[C0]] : memref<?x4xf32>
// CHECK-NEXT:    %[[T:.*]] = memref.view %arena[%[[C0]]][%[[B]]] : memref<?xi8> to memref<?x4xf32>
// CHECK-NEXT:    scf.for %[[I:.*]] = %[[C0]] to %[[B]] step %[[C1]] {
// CHECK-NEXT:      scf.for %[[J:.*]] = %[[C0]] to %[[C4]] step %[[C1]] {
// CHECK-NEXT:        %[[A:.*]] = memref.load %x[%[[I]], %[[J]]] : memref<?x4xf32>
// CHECK-NEXT:        %[[R:.*]] = arith.maximumf %[[A]], %[[ZERO]] : f32
// CHECK-NEXT:        memref.store %[[R]], %[[T]][%[[I]], %[[J]]] : memref<?x4xf32>
// CHECK:         scf.for %[[I2:.*]] = %[[C0]] to %[[B]] step %[[C1]] {
// CHECK-NEXT:      scf.for %[[J2:.*]] = %[[C0]] to %[[C4]] step %[[C1]] {
// CHECK-NEXT:        %[[L:.*]] = memref.load %[[T]][%[[I2]], %[[J2]]] : memref<?x4xf32>
// CHECK-NEXT:        %[[Y:.*]] = memref.load %y[%[[J2]]] : memref<4xf32>
// CHECK-NEXT:        %[[S:.*]] = arith.addf %[[L]], %[[Y]] : f32
// CHECK-NEXT:        memref.store %[[S]], %out[%[[I2]], %[[J2]]] : memref<?x4xf32>
// CHECK:         func.return
func.func @chain(%x: tensor<?x4xf32> {ncc.name = "x"}, %y: tensor<4xf32>) -> tensor<?x4xf32> {
  %0 = nn.relu %x : tensor<?x4xf32>
  %1 = nn.add %0, %y : tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
  func.return %1 : tensor<?x4xf32>
}

// Activations are inlined arith/math: sigmoid is 1 / (1 + exp(-x)) (its exp
// `afn`: expand-math's cheaper f32 form, exact where 1 + exp needs it), softplus
// the overflow-free max(x, 0) + log1p(exp(-|x|)).

// CHECK-LABEL: func.func @acts(
// CHECK-SAME:    %x: memref<3xf64>, %out: memref<3xf64>, %out_1: memref<3xf64>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:0", "output:1"], ncc.arena_bytes = array<i64: 0, 0>
// CHECK-DAG:     %[[ONE:.*]] = arith.constant 1.000000e+00 : f64
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
// CHECK:         %[[X:.*]] = memref.load %x
// CHECK-NEXT:    %[[N:.*]] = arith.negf %[[X]] : f64
// CHECK-NEXT:    %[[E:.*]] = math.exp %[[N]] fastmath<afn> : f64
// CHECK-NEXT:    %[[D:.*]] = arith.addf %[[ONE]], %[[E]] : f64
// CHECK-NEXT:    %[[S:.*]] = arith.divf %[[ONE]], %[[D]] : f64
// CHECK-NEXT:    memref.store %[[S]], %out
// CHECK:         %[[X2:.*]] = memref.load %x
// CHECK-NEXT:    %[[M:.*]] = arith.maximumf %[[X2]], %[[ZERO]] : f64
// CHECK-NEXT:    %[[A:.*]] = math.absf %[[X2]] : f64
// CHECK-NEXT:    %[[NA:.*]] = arith.negf %[[A]] : f64
// CHECK-NEXT:    %[[EA:.*]] = math.exp %[[NA]] : f64
// CHECK-NEXT:    %[[L:.*]] = math.log1p %[[EA]] : f64
// CHECK-NEXT:    %[[SP:.*]] = arith.addf %[[M]], %[[L]] : f64
// CHECK-NEXT:    memref.store %[[SP]], %out_1
func.func @acts(%x: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %0 = nn.sigmoid %x : tensor<3xf64>
  %1 = nn.softplus %x : tensor<3xf64>
  func.return %0, %1 : tensor<3xf64>, tensor<3xf64>
}
