// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// conv_transpose runs gather-style: a loop nest over the output, each point
// the sum over (input channel, kernel offset) of the input points that land
// there. Along an undilated axis of stride s only every s-th kernel offset
// lands on a given output position o: the offsets (o % s) + t * s, reading
// input position o / s - t. For a 2x2 kernel of stride 2 that is one offset
// per axis, so one multiply-add per input channel (checked branch-free: an
// input position past the end reads index 0 and adds zero).

// CHECK-LABEL: func.func @conv_transpose(
// CHECK-SAME:    %x: memref<1x2x3x3xf32>, %w: memref<2x1x2x2xf32>, %out: memref<1x1x6x6xf32>)
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG:     %[[C3:.*]] = arith.constant 3 : index
// CHECK:         scf.for %[[H:.*]] =
// CHECK-NEXT:      scf.for %[[W:.*]] =
// CHECK-NEXT:        %[[KH:.*]] = arith.remui %[[H]], %[[C2]] : index
// CHECK-NEXT:        %[[IH:.*]] = arith.divui %[[H]], %[[C2]] : index
// CHECK-NEXT:        %[[KW:.*]] = arith.remui %[[W]], %[[C2]] : index
// CHECK-NEXT:        %[[IW:.*]] = arith.divui %[[W]], %[[C2]] : index
// CHECK-NEXT:        %[[SUM:.*]] = scf.for %[[C:.*]] = {{.*}} iter_args(%[[A:.*]] = %[[ZERO]]) -> (f32) {
// CHECK-NEXT:          %[[INH:.*]] = arith.cmpi slt, %[[IH]], %[[C3]] : index
// CHECK-NEXT:          %[[INW:.*]] = arith.cmpi slt, %[[IW]], %[[C3]] : index
// CHECK-NEXT:          %[[OK:.*]] = arith.andi %[[INH]], %[[INW]] : i1
// CHECK-NEXT:          %[[QH:.*]] = arith.select %[[OK]], %[[IH]], %[[C0]] : index
// CHECK-NEXT:          %[[QW:.*]] = arith.select %[[OK]], %[[IW]], %[[C0]] : index
// CHECK-NEXT:          %[[XV:.*]] = memref.load %x[%[[C0]], %[[C]], %[[QH]], %[[QW]]] : memref<1x2x3x3xf32>
// CHECK-NEXT:          %[[XS:.*]] = arith.select %[[OK]], %[[XV]], %[[ZERO]] : f32
// CHECK-NEXT:          %[[WV:.*]] = memref.load %w[%[[C]], %[[C0]], %[[KH]], %[[KW]]] : memref<2x1x2x2xf32>
// CHECK-NEXT:          %[[P:.*]] = arith.mulf %[[XS]], %[[WV]] : f32
// CHECK-NEXT:          %[[S:.*]] = arith.addf %[[A]], %[[P]] : f32
// CHECK-NEXT:          scf.yield %[[S]] : f32
// CHECK-NEXT:        }
// CHECK-NEXT:        memref.store %[[SUM]], %out[%[[C0]], %[[C0]], %[[H]], %[[W]]]
func.func @conv_transpose(%x: tensor<1x2x3x3xf32> {ncc.name = "x"}, %w: tensor<2x1x2x2xf32> {ncc.name = "w"}) -> tensor<1x1x6x6xf32> {
  %0 = nn.conv_transpose %x, %w strides [2, 2] : tensor<1x2x3x3xf32>, tensor<2x1x2x2xf32> -> tensor<1x1x6x6xf32>
  func.return %0 : tensor<1x1x6x6xf32>
}

// A dilated axis visits every kernel offset k: o - k * dilation must be a
// non-negative multiple of the stride, the input position its quotient.

// CHECK-LABEL: func.func @dilated(
// CHECK:         scf.for %[[O:.*]] =
// CHECK-NEXT:      scf.for %[[K:.*]] = {{.*}} iter_args
// CHECK-NEXT:        %[[KD:.*]] = arith.muli %[[K]], %[[C2:.*]] : index
// CHECK-NEXT:        %[[T:.*]] = arith.subi %[[O]], %[[KD]] : index
// CHECK-NEXT:        %[[NN:.*]] = arith.cmpi sge, %[[T]], %[[C0:.*]] : index
// CHECK-NEXT:        %[[TC:.*]] = arith.maxsi %[[T]], %[[C0]] : index
// CHECK-NEXT:        %[[Q:.*]] = arith.divui %[[TC]], %[[C2]] : index
// CHECK-NEXT:        %[[R:.*]] = arith.remui %[[TC]], %[[C2]] : index
// CHECK-NEXT:        %[[EX:.*]] = arith.cmpi eq, %[[R]], %[[C0]] : index
// CHECK-NEXT:        arith.andi %[[NN]], %[[EX]] : i1
// CHECK:             memref.load %w[%[[C0]], %[[C0]], %[[K]]] : memref<1x1x2xf32>
func.func @dilated(%x: tensor<1x1x3xf32> {ncc.name = "x"}, %w: tensor<1x1x2xf32> {ncc.name = "w"}) -> tensor<1x1x7xf32> {
  %0 = nn.conv_transpose %x, %w strides [2] dilations [2] : tensor<1x1x3xf32>, tensor<1x1x2xf32> -> tensor<1x1x7xf32>
  func.return %0 : tensor<1x1x7xf32>
}

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
