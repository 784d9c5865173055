// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// The static memory plan. Intermediates are memref.views of the one arena
// argument; a buffer's bytes are free once its last user has run, so a chain
// of elementwise ops ping-pongs between two slots (tanh -> slot 0, relu ->
// slot 1, exp -> slot 0 again). A reshape of an intermediate is a view of the
// same bytes (no copy loop). Per-batch sizes are rounded to 64 bytes a row:
// ncc.arena_bytes = [per batch row, constant] = [2 * 64, 0].

// CHECK-LABEL: func.func @chain(
// CHECK-SAME:    ncc.arena_bytes = array<i64: 128, 0>
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C64:.*]] = arith.constant 64 : index
// CHECK:         %[[B:.*]] = memref.dim %x, %[[C0]]
// CHECK-NEXT:    %[[T:.*]] = memref.view %arena[%[[C0]]][%[[B]]] : memref<?xi8> to memref<?x16xf32>
// CHECK:         math.tanh
// CHECK:         %[[OFF:.*]] = arith.muli %[[B]], %[[C64]] : index
// CHECK-NEXT:    %[[R:.*]] = memref.view %arena[%[[OFF]]][%[[B]]] : memref<?xi8> to memref<?x16xf32>
// CHECK:         arith.maximumf
// CHECK:         %[[E:.*]] = memref.view %arena[%[[C0]]][%[[B]]] : memref<?xi8> to memref<?x16xf32>
// CHECK:         math.exp
// CHECK:         %[[V:.*]] = memref.view %arena[%[[C0]]][%[[B]]] : memref<?xi8> to memref<?x4x4xf32>
// CHECK-NEXT:    scf.for
// CHECK-NEXT:      scf.for
// CHECK-NEXT:        scf.for
// CHECK-NEXT:          memref.load %[[V]]
// CHECK-NEXT:          arith.negf
// CHECK-NEXT:          memref.store %{{.*}}, %out
func.func @chain(%x: tensor<?x16xf32>) -> tensor<?x4x4xf32> {
  %0 = nn.tanh %x : tensor<?x16xf32>
  %1 = nn.relu %0 : tensor<?x16xf32>
  %2 = nn.exp %1 : tensor<?x16xf32>
  %3 = nn.reshape %2 : tensor<?x16xf32> -> tensor<?x4x4xf32>
  %4 = nn.neg %3 : tensor<?x4x4xf32>
  func.return %4 : tensor<?x4x4xf32>
}

// Buffers of static size go to the constant region at the start of the arena
// (the exp of an [8] tensor: bytes 0..63), per-batch ones after it (at 64 +
// a * batch). The gather's index constant becomes a module-level weight marked
// ncc.constant, passed as a buffer like any weight. The reduction's result
// reuses the slot of the mul, dead after the gather.

// CHECK:       nn.weight @mixed_const attributes {ncc.constant} : tensor<3xi64> = dense<[0, 2, 4]>
// CHECK-LABEL: func.func @mixed(
// CHECK-SAME:    %x: memref<?x8xf32>, %s: memref<8xf32>, %out: memref<?x8xf32>, %mixed_const: memref<3xi64>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "input:s", "output:0", "weight:mixed_const", "arena"]
// CHECK-SAME:    ncc.arena_bytes = array<i64: 128, 64>
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C64:.*]] = arith.constant 64 : index
// CHECK:         %[[B:.*]] = memref.dim %x, %[[C0]]
// CHECK-NEXT:    memref.view %arena[%[[C0]]][] : memref<?xi8> to memref<8xf32>
// CHECK:         memref.view %arena[%[[C64]]][%[[B]]] : memref<?xi8> to memref<?x8xf32>
// CHECK:         %[[M:.*]] = arith.muli %[[B]], %[[C64]] : index
// CHECK-NEXT:    %[[OFF:.*]] = arith.addi %[[M]], %[[C64]] : index
// CHECK-NEXT:    memref.view %arena[%[[OFF]]][%[[B]]] : memref<?xi8> to memref<?x3xf32>
// CHECK:         memref.load %mixed_const
// CHECK:         memref.view %arena[%[[C64]]][%[[B]]] : memref<?xi8> to memref<?x1xf32>
func.func @mixed(%x: tensor<?x8xf32>, %s: tensor<8xf32>) -> tensor<?x8xf32> {
  %c = nn.constant dense<[0, 2, 4]> : tensor<3xi64>
  %0 = nn.exp %s : tensor<8xf32>
  %1 = nn.mul %x, %0 : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %2 = nn.gather %1, %c axis 1 : tensor<?x8xf32>, tensor<3xi64> -> tensor<?x3xf32>
  %3 = nn.reduce_sum %2 axes [1] keepdims : tensor<?x3xf32> -> tensor<?x1xf32>
  %4 = nn.add %x, %3 : tensor<?x8xf32>, tensor<?x1xf32> -> tensor<?x8xf32>
  func.return %4 : tensor<?x8xf32>
}
