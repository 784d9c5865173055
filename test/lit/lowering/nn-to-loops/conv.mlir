// RUN: ncc-opt %s --lower-to-loops | FileCheck %s

// A convolution runs along the output rows: per (image, output channel) the
// plane is zeroed, then for each kernel offset (kh, kw) and input channel c the
// weight is loaded once and the loop over the output positions whose input is
// inside the image -- bounds computed per offset (window_range), [max(0, 1 - k),
// min(5, -(k - 1 - 5))) here -- multiplies and adds: no padding tests in the inner loop, which
// vectorizes along w. (3 output channels: no block of 2 or 4; 2 input channels:
// fewer than the unroll of 4.)

// CHECK-LABEL: func.func @conv(
// CHECK-SAME:    %x: memref<1x2x5x5xf32>, %w: memref<3x2x3x3xf32>, %out: memref<1x3x5x5xf32>)
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG:     %[[C5:.*]] = arith.constant 5 : index
// CHECK:         scf.for %[[M:.*]] =
// CHECK:             memref.store %[[ZERO]], %out[%[[C0]], %[[M]], %{{.*}}, %{{.*}}]
// CHECK:         scf.for %[[KH:.*]] =
// CHECK-NEXT:      scf.for %[[KW:.*]] =
// CHECK-NEXT:        %[[TH:.*]] = arith.subi %[[KH]], %[[C1]] : index
// CHECK-NEXT:        %[[NTH:.*]] = arith.subi %[[C0]], %[[TH]] : index
// CHECK-NEXT:        %[[LOH:.*]] = arith.maxsi %[[C0]], %[[NTH]] : index
// CHECK-NEXT:        %[[RH:.*]] = arith.subi %[[TH]], %[[C5]] : index
// CHECK-NEXT:        %[[NRH:.*]] = arith.subi %[[C0]], %[[RH]] : index
// CHECK-NEXT:        %[[HIH:.*]] = arith.minsi %[[C5]], %[[NRH]] : index
// CHECK:             scf.for %[[C:.*]] =
// CHECK-NEXT:          %[[WV:.*]] = memref.load %w[%[[M]], %[[C]], %[[KH]], %[[KW]]] : memref<3x2x3x3xf32>
// CHECK-NEXT:          scf.for %[[H:.*]] = %[[LOH]] to %[[HIH]] step %[[C1]] {
// CHECK-NEXT:            scf.for %[[W:.*]] = %{{.*}} to %{{.*}} step %[[C1]] {
// CHECK-NEXT:              %[[IH:.*]] = arith.addi %[[H]], %[[TH]] : index
// CHECK-NEXT:              %[[IW:.*]] = arith.addi %[[W]], %{{.*}} : index
// CHECK-NEXT:              %[[XV:.*]] = memref.load %x[%[[C0]], %[[C]], %[[IH]], %[[IW]]] : memref<1x2x5x5xf32>
// CHECK-NEXT:              %[[OV:.*]] = memref.load %out[%[[C0]], %[[M]], %[[H]], %[[W]]] : memref<1x3x5x5xf32>
// CHECK-NEXT:              %[[P:.*]] = arith.mulf %[[WV]], %[[XV]] : f32
// CHECK-NEXT:              %[[S:.*]] = arith.addf %[[OV]], %[[P]] : f32
// CHECK-NEXT:              memref.store %[[S]], %out[%[[C0]], %[[M]], %[[H]], %[[W]]] : memref<1x3x5x5xf32>
func.func @conv(%x: tensor<1x2x5x5xf32>, %w: tensor<3x2x3x3xf32>) -> tensor<1x3x5x5xf32> {
  %0 = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<1x2x5x5xf32>, tensor<3x2x3x3xf32> -> tensor<1x3x5x5xf32>
  func.return %0 : tensor<1x3x5x5xf32>
}
