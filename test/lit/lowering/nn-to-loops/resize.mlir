// RUN: ncc-opt %s --lower-to-loops | FileCheck %s

// resize: the taps of each resized axis are tables computed at compile time
// (weights marked ncc.constant, passed like any weight): here a linear
// downsampling by 2 (half_pixel) reads input columns 2j and 2j + 1 with
// weights 1/2 each. Axes of scale 1 (the batch, the 3 channels) read in place.

// CHECK:       nn.weight @linear_resize_index2 attributes {ncc.constant} : tensor<2x2xi64> = dense<{{\[}}[0, 1], [2, 3]]>
// CHECK-NEXT:  nn.weight @linear_resize_weights2 attributes {ncc.constant} : tensor<2x2xf32> = dense<0.5>
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %x: memref<?x3x4xf32>, %out: memref<?x3x2xf32>, %linear_resize_index2: memref<2x2xi64>, %linear_resize_weights2: memref<2x2xf32>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:0", "weight:linear_resize_index2", "weight:linear_resize_weights2"]
// CHECK:         scf.for %[[N:.*]] = %{{.*}} to %batch step
// CHECK-NEXT:      scf.for %[[C:.*]] =
// CHECK-NEXT:        scf.for %[[J:.*]] =
// CHECK-NEXT:          %[[SUM:.*]] = scf.for %[[T:.*]] = {{.*}} iter_args(%[[A:.*]] = %{{.*}}) -> (f32) {
// CHECK-NEXT:            %[[I64:.*]] = memref.load %linear_resize_index2[%[[J]], %[[T]]] : memref<2x2xi64>
// CHECK-NEXT:            %[[I:.*]] = arith.index_cast %[[I64]] : i64 to index
// CHECK-NEXT:            %[[WT:.*]] = memref.load %linear_resize_weights2[%[[J]], %[[T]]] : memref<2x2xf32>
// CHECK-NEXT:            %[[XV:.*]] = memref.load %x[%[[N]], %[[C]], %[[I]]] : memref<?x3x4xf32>
// CHECK-NEXT:            %[[P:.*]] = arith.mulf %[[WT]], %[[XV]] : f32
// CHECK-NEXT:            %[[S:.*]] = arith.addf %[[A]], %[[P]] : f32
// CHECK-NEXT:            scf.yield %[[S]] : f32
// CHECK-NEXT:          }
// CHECK-NEXT:          memref.store %[[SUM]], %out[%[[N]], %[[C]], %[[J]]] : memref<?x3x2xf32>
func.func @linear(%x: tensor<?x3x4xf32> {ncc.name = "x"}) -> tensor<?x3x2xf32> {
  %0 = nn.resize %x mode linear scales [1.0, 1.0, 0.5] : tensor<?x3x4xf32> -> tensor<?x3x2xf32>
  func.return %0 : tensor<?x3x2xf32>
}

// Nearest reads its one tap per axis: no weights, no reduction loop. With
// tf_crop_and_resize, output positions outside the input (here the last two
// columns: the roi ends at 1.5 times the width) take the extrapolation value,
// from a 0/1 table per axis.

// CHECK:       nn.weight @crop_resize_index1 attributes {ncc.constant} : tensor<4x1xi64> = dense<{{\[}}[0], [1], [2], [2]]>
// CHECK-NEXT:  nn.weight @crop_resize_outside1 attributes {ncc.constant} : tensor<4xi64> = dense<[0, 0, 1, 1]>
// CHECK-LABEL: func.func @crop(
// CHECK-DAG:     %[[EXTRA:.*]] = arith.constant -1.000000e+00 : f32
// CHECK:         scf.for %[[I:.*]] =
// CHECK-NEXT:      scf.for %[[J:.*]] =
// CHECK-NEXT:        %[[K64:.*]] = memref.load %crop_resize_index1[%[[J]], %{{.*}}] : memref<4x1xi64>
// CHECK-NEXT:        %[[K:.*]] = arith.index_cast %[[K64]] : i64 to index
// CHECK-NEXT:        %[[V:.*]] = memref.load %x[%[[I]], %[[K]]] : memref<2x3xf32>
// CHECK-NEXT:        %[[F:.*]] = memref.load %crop_resize_outside1[%[[J]]] : memref<4xi64>
// CHECK-NEXT:        %[[OUT:.*]] = arith.cmpi ne, %[[F]], %{{.*}} : i64
// CHECK-NEXT:        %[[R:.*]] = arith.select %[[OUT]], %[[EXTRA]], %[[V]] : f32
// CHECK-NEXT:        memref.store %[[R]], %out[%[[I]], %[[J]]] : memref<2x4xf32>
func.func @crop(%x: tensor<2x3xf32> {ncc.name = "x"}) -> tensor<2x4xf32> {
  %0 = nn.resize %x scales [1.0, 1.0] coordinate_transformation_mode tf_crop_and_resize roi [0.0, 0.0, 1.0, 1.5] extrapolation_value -1.0 : tensor<2x3xf32> -> tensor<2x4xf32>
  func.return %0 : tensor<2x4xf32>
}
