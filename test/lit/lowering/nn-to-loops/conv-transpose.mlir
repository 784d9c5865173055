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
