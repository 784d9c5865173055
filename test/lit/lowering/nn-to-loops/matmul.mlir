// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// Contractions. A matmul computes ROW_BLOCK = 4 output rows at a time (the
// batch in blocks of 4, then the remaining rows one by one), k unrolled by 8
// when there are at least 8 (see @wide), and an inner loop over the columns
// that walks the weight and the output with unit stride: each weight element
// loaded feeds the 4 rows. A fused matmul then adds the bias and applies the
// activation to each output row. Weights are buffers passed in (role
// weight:<symbol>), never baked into the code.

nn.weight @w : tensor<4x3xf32> = dense<1.0>
nn.weight @b : tensor<3xf32> = dense<0.5>

// CHECK-LABEL: func.func @mlp(
// CHECK-SAME:    %x: memref<?x4xf32>, %out: memref<?x3xf32>, %w: memref<4x3xf32>, %b: memref<3xf32>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:0", "weight:w", "weight:b"]
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 0>
// CHECK:         %[[B:.*]] = memref.dim %x, %{{.*}} : memref<?x4xf32>
// CHECK-NEXT:    %[[NB:.*]] = arith.divui %[[B]], %[[C4:.*]] : index
// CHECK-NEXT:    %[[DONE:.*]] = arith.muli %[[NB]], %[[C4]] : index
// CHECK-NEXT:    scf.for %[[IB:.*]] = %{{.*}} to %[[NB]] step
// CHECK-NEXT:      %[[I0:.*]] = arith.muli %[[IB]], %[[C4]] : index
// CHECK-NEXT:      %[[I1:.*]] = arith.addi %[[I0]], %{{.*}} : index
// CHECK:           scf.for %[[J0:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        memref.store %{{.*}}, %out[%[[I0]], %[[J0]]]
// CHECK-NEXT:        memref.store %{{.*}}, %out[%[[I1]], %[[J0]]]
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        %[[X0:.*]] = memref.load %x[%[[I0]], %[[K]]] : memref<?x4xf32>
// CHECK-NEXT:        %[[X1:.*]] = memref.load %x[%[[I1]], %[[K]]] : memref<?x4xf32>
// CHECK:             scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:          %[[WV:.*]] = memref.load %w[%[[K]], %[[J]]] : memref<4x3xf32>
// CHECK-NEXT:          %[[ACC:.*]] = memref.load %out[%[[I0]], %[[J]]] : memref<?x3xf32>
// CHECK-NEXT:          %[[P:.*]] = arith.mulf %[[X0]], %[[WV]] : f32
// CHECK-NEXT:          %[[S:.*]] = arith.addf %[[ACC]], %[[P]] : f32
// CHECK-NEXT:          memref.store %[[S]], %out[%[[I0]], %[[J]]] : memref<?x3xf32>
// CHECK-NEXT:          %[[ACC1:.*]] = memref.load %out[%[[I1]], %[[J]]] : memref<?x3xf32>
// CHECK-NEXT:          %[[P1:.*]] = arith.mulf %[[X1]], %[[WV]] : f32
// CHECK:           scf.for %[[J2:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        %[[V:.*]] = memref.load %out[%[[I0]], %[[J2]]]
// CHECK-NEXT:        %[[BV:.*]] = memref.load %b[%[[J2]]] : memref<3xf32>
// CHECK-NEXT:        %[[VB:.*]] = arith.addf %[[V]], %[[BV]] : f32
// CHECK-NEXT:        %[[R:.*]] = arith.maximumf %[[VB]], %{{.*}} : f32
// CHECK-NEXT:        memref.store %[[R]], %out[%[[I0]], %[[J2]]]
// The remaining rows, one at a time:
// CHECK:         %[[REST:.*]] = arith.subi %[[B]], %[[DONE]] : index
// CHECK-NEXT:    scf.for %[[IR:.*]] = %{{.*}} to %[[REST]] step
// CHECK-NEXT:      %[[I:.*]] = arith.addi %[[IR]], %[[DONE]] : index
func.func @mlp(%x: tensor<?x4xf32> {ncc.name = "x"}) -> tensor<?x3xf32> {
  %w = nn.weight_ref @w : tensor<4x3xf32>
  %b = nn.weight_ref @b : tensor<3xf32>
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x4xf32>, tensor<4x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  func.return %0 : tensor<?x3xf32>
}

// With k = 10: one unrolled step of 8 products per output load/store, then a
// remainder loop over the last 2.

// CHECK-LABEL: func.func @wide(
// CHECK-DAG:     %[[C8:.*]] = arith.constant 8 : index
// CHECK-COUNT-8:   memref.load %x
// CHECK-NEXT:      scf.for %[[J:.*]] =
// CHECK-COUNT-8:     memref.load %w[%{{.*}}, %[[J]]]
// CHECK-NEXT:        %[[A0:.*]] = memref.load %out[%{{.*}}, %[[J]]]
// CHECK-NEXT:        %[[P0:.*]] = arith.mulf
// CHECK-NEXT:        %[[S0:.*]] = arith.addf %[[A0]], %[[P0]]
// CHECK-COUNT-7:     arith.addf
// CHECK-NEXT:        memref.store
// CHECK:         scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:      %[[KR:.*]] = arith.addi %[[R]], %[[C8]] : index
// CHECK-NEXT:      memref.load %x[%{{.*}}, %[[KR]]]
func.func @wide(%x: tensor<2x10xf32>, %w: tensor<10x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x10xf32>, tensor<10x3xf32> -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}
