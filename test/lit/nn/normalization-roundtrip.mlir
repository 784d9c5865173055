// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// batch_norm (inference form, channel axis 1) and layer_norm (axes [axis, rank)).

// CHECK-LABEL: func.func @batch_norm(%x: tensor<?x16x8x8xf32>, %s: tensor<16xf32>, %b: tensor<16xf32>, %m: tensor<16xf32>, %v: tensor<16xf32>) -> tensor<?x16x8x8xf32> {
// CHECK-NEXT: %0 = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x16x8x8xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32> -> tensor<?x16x8x8xf32>
// CHECK-NEXT: %1 = nn.batch_norm %x, %s, %b, %m, %v epsilon 0.001 : tensor<?x16x8x8xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32> -> tensor<?x16x8x8xf32>
// CHECK-NEXT: func.return %0 : tensor<?x16x8x8xf32>
// CHECK-NEXT: }
func.func @batch_norm(%x: tensor<?x16x8x8xf32>, %s: tensor<16xf32>, %b: tensor<16xf32>, %m: tensor<16xf32>, %v: tensor<16xf32>) -> tensor<?x16x8x8xf32> {
  %0 = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x16x8x8xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32> -> tensor<?x16x8x8xf32>
  %1 = nn.batch_norm %x, %s, %b, %m, %v epsilon 0.001 : tensor<?x16x8x8xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32> -> tensor<?x16x8x8xf32>
  func.return %0 : tensor<?x16x8x8xf32>
}

// CHECK-LABEL: func.func @layer_norm(%x: tensor<2x5x8xf32>, %s: tensor<8xf32>, %s2: tensor<5x8xf32>) -> tensor<2x5x8xf32> {
// CHECK-NEXT: %0 = nn.layer_norm %x, %s, %s : tensor<2x5x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x5x8xf32>
// CHECK-NEXT: %1 = nn.layer_norm %x, %s2, %s2 axis 1 epsilon 1.0e-12 : tensor<2x5x8xf32>, tensor<5x8xf32>, tensor<5x8xf32> -> tensor<2x5x8xf32>
// CHECK-NEXT: func.return %0 : tensor<2x5x8xf32>
// CHECK-NEXT: }
func.func @layer_norm(%x: tensor<2x5x8xf32>, %s: tensor<8xf32>, %s2: tensor<5x8xf32>) -> tensor<2x5x8xf32> {
  %0 = nn.layer_norm %x, %s, %s : tensor<2x5x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x5x8xf32>
  %1 = nn.layer_norm %x, %s2, %s2 axis 1 epsilon 1.0e-12 : tensor<2x5x8xf32>, tensor<5x8xf32>, tensor<5x8xf32> -> tensor<2x5x8xf32>
  func.return %0 : tensor<2x5x8xf32>
}
