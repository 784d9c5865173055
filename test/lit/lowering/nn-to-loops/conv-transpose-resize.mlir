// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// conv_transpose runs scatter-style, lower_conv's loops with input and output
// swapped: the output plane is zeroed, then for each kernel offset (kh, kw)
// and input channel c the weight is loaded once and the loop over the input
// points that land inside the output -- bounds computed per offset, here i in
// [max(0, -floor(k / 2)), min(3, -floor((k - 6) / 2))) -- multiplies and adds
// into out[2i + k]: no tests in the inner loop, which vectorizes along the
// input row.

// CHECK-LABEL: func.func @conv_transpose(
// CHECK-SAME:    %x: memref<1x2x3x3xf32>, %w: memref<2x1x2x2xf32>, %out: memref<1x1x6x6xf32>)
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG:     %[[C3:.*]] = arith.constant 3 : index
// CHECK-DAG:     %[[C6:.*]] = arith.constant 6 : index
// CHECK:             memref.store %[[ZERO]], %out[%[[C0]], %[[C0]], %{{.*}}, %{{.*}}]
// CHECK:         scf.for %[[KH:.*]] =
// CHECK-NEXT:      scf.for %[[KW:.*]] =
// CHECK-NEXT:        %[[FH:.*]] = arith.floordivsi %[[KH]], %[[C2]] : index
// CHECK-NEXT:        %[[NFH:.*]] = arith.subi %[[C0]], %[[FH]] : index
// CHECK-NEXT:        %[[LOH:.*]] = arith.maxsi %[[C0]], %[[NFH]] : index
// CHECK-NEXT:        %[[EH:.*]] = arith.subi %[[KH]], %[[C6]] : index
// CHECK-NEXT:        %[[FEH:.*]] = arith.floordivsi %[[EH]], %[[C2]] : index
// CHECK-NEXT:        %[[NFEH:.*]] = arith.subi %[[C0]], %[[FEH]] : index
// CHECK-NEXT:        %[[HIH:.*]] = arith.minsi %[[C3]], %[[NFEH]] : index
// CHECK:             scf.for %[[C:.*]] =
// CHECK-NEXT:          %[[WV:.*]] = memref.load %w[%[[C]], %[[C0]], %[[KH]], %[[KW]]] : memref<2x1x2x2xf32>
// CHECK-NEXT:          scf.for %[[IH:.*]] = %[[LOH]] to %[[HIH]] step
// CHECK-NEXT:            scf.for %[[IW:.*]] =
// CHECK-NEXT:              %[[SH:.*]] = arith.muli %[[IH]], %[[C2]] : index
// CHECK-NEXT:              %[[OH:.*]] = arith.addi %[[SH]], %[[KH]] : index
// CHECK-NEXT:              %[[SW:.*]] = arith.muli %[[IW]], %[[C2]] : index
// CHECK-NEXT:              %[[OW:.*]] = arith.addi %[[SW]], %[[KW]] : index
// CHECK-NEXT:              %[[XV:.*]] = memref.load %x[%[[C0]], %[[C]], %[[IH]], %[[IW]]] : memref<1x2x3x3xf32>
// CHECK-NEXT:              %[[OV:.*]] = memref.load %out[%[[C0]], %[[C0]], %[[OH]], %[[OW]]] : memref<1x1x6x6xf32>
// CHECK-NEXT:              %[[P:.*]] = arith.mulf %[[WV]], %[[XV]] : f32
// CHECK-NEXT:              %[[S:.*]] = arith.addf %[[OV]], %[[P]] : f32
// CHECK-NEXT:              memref.store %[[S]], %out[%[[C0]], %[[C0]], %[[OH]], %[[OW]]] : memref<1x1x6x6xf32>
func.func @conv_transpose(%x: tensor<1x2x3x3xf32> {ncc.name = "x"}, %w: tensor<2x1x2x2xf32> {ncc.name = "w"}) -> tensor<1x1x6x6xf32> {
  %0 = nn.conv_transpose %x, %w strides [2, 2] : tensor<1x2x3x3xf32>, tensor<2x1x2x2xf32> -> tensor<1x1x6x6xf32>
  func.return %0 : tensor<1x1x6x6xf32>
}

// Dilated and padded: input point i lands at i * 2 + (k * 2 - 1).

// CHECK-LABEL: func.func @dilated(
// CHECK:           memref.store %{{.*}}, %out
// CHECK:         scf.for %[[K:.*]] =
// CHECK-NEXT:      %[[KD:.*]] = arith.muli %[[K]], %[[C2:.*]] : index
// CHECK-NEXT:      %[[T:.*]] = arith.subi %[[KD]], %[[C1:.*]] : index
// CHECK:           memref.load %w[%[[C0:.*]], %[[C0]], %[[K]]] : memref<1x1x2xf32>
// CHECK-NEXT:      scf.for %[[I:.*]] =
// CHECK-NEXT:        %[[S:.*]] = arith.muli %[[I]], %[[C2]] : index
// CHECK-NEXT:        %[[O:.*]] = arith.addi %[[S]], %[[T]] : index
// CHECK-NEXT:        memref.load %x[%[[C0]], %[[C0]], %[[I]]] : memref<1x1x3xf32>
// CHECK-NEXT:        memref.load %out[%[[C0]], %[[C0]], %[[O]]] : memref<1x1x6xf32>
func.func @dilated(%x: tensor<1x1x3xf32> {ncc.name = "x"}, %w: tensor<1x1x2xf32> {ncc.name = "w"}) -> tensor<1x1x6xf32> {
  %0 = nn.conv_transpose %x, %w strides [2] pads [1, 0] dilations [2] : tensor<1x1x3xf32>, tensor<1x1x2xf32> -> tensor<1x1x6xf32>
  func.return %0 : tensor<1x1x6xf32>
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
