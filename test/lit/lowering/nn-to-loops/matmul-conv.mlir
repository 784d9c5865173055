// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// Contractions. A matmul runs its loops (rows, k, columns) so that the inner
// loop walks the weight and the output with unit stride (k is unrolled by 8
// when there are at least 8: see @wide); a fused matmul then adds the bias and
// applies the activation to each output row. Weights are
// buffers passed in (role weight:<symbol>), never baked into the code.

nn.weight @w : tensor<4x3xf32> = dense<1.0>
nn.weight @b : tensor<3xf32> = dense<0.5>

// CHECK-LABEL: func.func @mlp(
// CHECK-SAME:    %x: memref<?x4xf32>, %out: memref<?x3xf32>, %w: memref<4x3xf32>, %b: memref<3xf32>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:0", "weight:w", "weight:b"]
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 0>
// CHECK:         %[[B:.*]] = memref.dim %x, %{{.*}} : memref<?x4xf32>
// CHECK-NEXT:    scf.for %[[I:.*]] = %{{.*}} to %[[B]] step
// CHECK-NEXT:      scf.for %[[J0:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        memref.store %{{.*}}, %out[%[[I]], %[[J0]]]
// CHECK-NEXT:      }
// CHECK-NEXT:      scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        %[[XV:.*]] = memref.load %x[%[[I]], %[[K]]] : memref<?x4xf32>
// CHECK-NEXT:        scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:          %[[ACC:.*]] = memref.load %out[%[[I]], %[[J]]] : memref<?x3xf32>
// CHECK-NEXT:          %[[WV:.*]] = memref.load %w[%[[K]], %[[J]]] : memref<4x3xf32>
// CHECK-NEXT:          %[[P:.*]] = arith.mulf %[[XV]], %[[WV]] : f32
// CHECK-NEXT:          %[[S:.*]] = arith.addf %[[ACC]], %[[P]] : f32
// CHECK-NEXT:          memref.store %[[S]], %out[%[[I]], %[[J]]] : memref<?x3xf32>
// CHECK:           scf.for %[[J2:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        %[[V:.*]] = memref.load %out[%[[I]], %[[J2]]]
// CHECK-NEXT:        %[[BV:.*]] = memref.load %b[%[[J2]]] : memref<3xf32>
// CHECK-NEXT:        %[[VB:.*]] = arith.addf %[[V]], %[[BV]] : f32
// CHECK-NEXT:        %[[R:.*]] = arith.maximumf %[[VB]], %{{.*}} : f32
// CHECK-NEXT:        memref.store %[[R]], %out[%[[I]], %[[J2]]]
func.func @mlp(%x: tensor<?x4xf32> {ncc.name = "x"}) -> tensor<?x3xf32> {
  %w = nn.weight_ref @w : tensor<4x3xf32>
  %b = nn.weight_ref @b : tensor<3xf32>
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x4xf32>, tensor<4x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  func.return %0 : tensor<?x3xf32>
}

// A convolution is a loop nest over the output (n, m, h, w) with a reduction
// over (c, kh, kw) carried in iter_args. Where padding can reach outside the
// input, the position is checked, clamped for the load, and the value replaced
// by zero: no branches in the loop body.

// CHECK-LABEL: func.func @conv(
// CHECK-SAME:    %arg0: memref<1x2x5x5xf32>, %arg1: memref<3x2x3x3xf32>, %out: memref<1x3x5x5xf32>)
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG:     %[[C5:.*]] = arith.constant 5 : index
// CHECK:         scf.for %[[M:.*]] =
// CHECK-NEXT:      scf.for %[[H:.*]] =
// CHECK-NEXT:        scf.for %[[W:.*]] =
// CHECK-NEXT:          %[[SUM:.*]] = scf.for %[[C:.*]] = {{.*}} iter_args(%[[A0:.*]] = %[[ZERO]]) -> (f32) {
// CHECK-NEXT:            scf.for %[[KH:.*]] = {{.*}} iter_args
// CHECK-NEXT:              scf.for %[[KW:.*]] = {{.*}} iter_args(%[[A:.*]] = %{{.*}}) -> (f32) {
// CHECK-NEXT:                %[[HK:.*]] = arith.addi %[[H]], %[[KH]] : index
// CHECK-NEXT:                %[[HP:.*]] = arith.subi %[[HK]], %[[C1]] : index
// CHECK-NEXT:                %[[LO:.*]] = arith.cmpi sge, %[[HP]], %[[C0]] : index
// CHECK-NEXT:                %[[HI:.*]] = arith.cmpi slt, %[[HP]], %[[C5]] : index
// CHECK-NEXT:                %[[OK:.*]] = arith.andi %[[LO]], %[[HI]] : i1
// CHECK-NEXT:                %[[HC:.*]] = arith.select %[[OK]], %[[HP]], %[[C0]] : index
// CHECK:                     %[[XV:.*]] = memref.load %arg0[%[[C0]], %[[C]], %[[HC]], %{{.*}}] : memref<1x2x5x5xf32>
// CHECK-NEXT:                %[[XS:.*]] = arith.select %{{.*}}, %[[XV]], %[[ZERO]] : f32
// CHECK-NEXT:                %[[WV:.*]] = memref.load %arg1[%[[M]], %[[C]], %[[KH]], %[[KW]]] : memref<3x2x3x3xf32>
// CHECK-NEXT:                %[[P:.*]] = arith.mulf %[[XS]], %[[WV]] : f32
// CHECK-NEXT:                %[[S:.*]] = arith.addf %[[A]], %[[P]] : f32
// CHECK-NEXT:                scf.yield %[[S]] : f32
// CHECK:                 memref.store %[[SUM]], %out[%[[C0]], %[[M]], %[[H]], %[[W]]]
func.func @conv(%x: tensor<1x2x5x5xf32>, %w: tensor<3x2x3x3xf32>) -> tensor<1x3x5x5xf32> {
  %0 = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<1x2x5x5xf32>, tensor<3x2x3x3xf32> -> tensor<1x3x5x5xf32>
  func.return %0 : tensor<1x3x5x5xf32>
}

// With k = 10: one unrolled step of 8 products per output load/store, then a
// remainder loop over the last 2.

// CHECK-LABEL: func.func @wide(
// CHECK-DAG:     %[[C8:.*]] = arith.constant 8 : index
// CHECK-COUNT-8:   memref.load %arg0
// CHECK-NEXT:      scf.for %[[J:.*]] =
// CHECK-NEXT:      %[[A0:.*]] = memref.load %out[%{{.*}}, %[[J]]]
// CHECK-NEXT:      %[[W0:.*]] = memref.load %arg1[%{{.*}}, %[[J]]]
// CHECK-NEXT:      %[[P0:.*]] = arith.mulf %{{.*}}, %[[W0]]
// CHECK-NEXT:      %[[S0:.*]] = arith.addf %[[A0]], %[[P0]]
// CHECK-COUNT-7:   arith.addf
// CHECK-NEXT:      memref.store
// CHECK:         scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:      %[[KR:.*]] = arith.addi %[[R]], %[[C8]] : index
// CHECK-NEXT:      memref.load %arg0[%{{.*}}, %[[KR]]]
func.func @wide(%x: tensor<2x10xf32>, %w: tensor<10x3xf32>) -> tensor<2x3xf32> {
  %0 = nn.matmul %x, %w : tensor<2x10xf32>, tensor<10x3xf32> -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}
