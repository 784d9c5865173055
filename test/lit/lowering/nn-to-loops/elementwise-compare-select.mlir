// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// RUN: ncc-opt %s --lower-to-loops --lower-to-llvm | FileCheck %s --check-prefix=LLVM
// A comparison makes an i1 tensor, which nn.select reads: min(x, y) written as
// select(x < y, x, y). The i1 intermediate lives in the arena, one byte per
// element (numpy's bool layout); the float compare is ordered (NaN gives false).

// CHECK-LABEL: func.func @min(
// CHECK-SAME:    %x: memref<?x4xf32>, %y: memref<4xf32>, %out: memref<?x4xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arena_bytes = array<i64: 64, 0>
// CHECK:         %[[B:.*]] = memref.dim %x
// CHECK-NEXT:    %[[LT:.*]] = memref.view %arena[%{{.*}}][%[[B]]] : memref<?xi8> to memref<?x4xi1>
// CHECK:           %[[X:.*]] = memref.load %x[%[[I:.*]], %[[J:.*]]] : memref<?x4xf32>
// CHECK-NEXT:      %[[Y:.*]] = memref.load %y[%[[J]]] : memref<4xf32>
// CHECK-NEXT:      %[[C:.*]] = arith.cmpf olt, %[[X]], %[[Y]] : f32
// CHECK-NEXT:      memref.store %[[C]], %[[LT]][%[[I]], %[[J]]] : memref<?x4xi1>
// CHECK:           %[[C2:.*]] = memref.load %[[LT]][%[[I2:.*]], %[[J2:.*]]] : memref<?x4xi1>
// CHECK-NEXT:      %[[X2:.*]] = memref.load %x[%[[I2]], %[[J2]]] : memref<?x4xf32>
// CHECK-NEXT:      %[[Y2:.*]] = memref.load %y[%[[J2]]] : memref<4xf32>
// CHECK-NEXT:      %[[S:.*]] = arith.select %[[C2]], %[[X2]], %[[Y2]] : f32
// CHECK-NEXT:      memref.store %[[S]], %out[%[[I2]], %[[J2]]] : memref<?x4xf32>

// At the llvm level an i1 is stored zero-extended to a byte and loaded as
// "byte != 0", so any nonzero byte of a numpy bool array reads as true. (Each
// loop nest is a function of its own: outline-loops.)

// LLVM-LABEL: llvm.func @min_nest0(
// LLVM:         %[[F:.*]] = llvm.fcmp "olt" %{{.*}}, %{{.*}} : f32
// LLVM-NEXT:    %[[E:.*]] = llvm.zext %[[F]] : i1 to i8
// LLVM:         %[[P:.*]] = llvm.getelementptr inbounds %{{.*}}[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// LLVM-NEXT:    llvm.store %[[E]], %[[P]] : i8, !llvm.ptr
// LLVM-LABEL: llvm.func @min_nest1(
// LLVM:         %[[Z:.*]] = llvm.mlir.constant(0 : i8) : i8
// LLVM:         %[[L:.*]] = llvm.load %{{.*}} : !llvm.ptr -> i8
// LLVM-NEXT:    %[[T:.*]] = llvm.icmp "ne" %[[L]], %[[Z]] : i8
// LLVM:         llvm.select %[[T]], %{{.*}}, %{{.*}} : i1, f32
func.func @min(%x: tensor<?x4xf32> {ncc.name = "x"}, %y: tensor<4xf32> {ncc.name = "y"}) -> tensor<?x4xf32> {
  %lt = nn.less %x, %y : tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xi1>
  %m = nn.select %lt, %x, %y : tensor<?x4xi1>, tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
  func.return %m : tensor<?x4xf32>
}
