// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// Reductions: reduce_* over axes (none: all), keepdims.

// CHECK-LABEL: func.func @reduce(%x: tensor<2x3x4xf32>, %i: tensor<5xi64>) -> tensor<f32> {
// CHECK-NEXT: %0 = nn.reduce_sum %x : tensor<2x3x4xf32> -> tensor<f32>
// CHECK-NEXT: %1 = nn.reduce_mean %x axes [1] : tensor<2x3x4xf32> -> tensor<2x4xf32>
// CHECK-NEXT: %2 = nn.reduce_max %x axes [-1, 0] keepdims : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
// CHECK-NEXT: %3 = nn.reduce_min %x keepdims : tensor<2x3x4xf32> -> tensor<1x1x1xf32>
// CHECK-NEXT: %4 = nn.reduce_prod %x axes [2] : tensor<2x3x4xf32> -> tensor<2x3xf32>
// CHECK-NEXT: %5 = nn.reduce_sum %i : tensor<5xi64> -> tensor<i64>
// CHECK-NEXT: %6 = nn.reduce_sum %x axes [] : tensor<2x3x4xf32>
// CHECK-NEXT: func.return %0 : tensor<f32>
// CHECK-NEXT: }
func.func @reduce(%x: tensor<2x3x4xf32>, %i: tensor<5xi64>) -> tensor<f32> {
  %0 = nn.reduce_sum %x : tensor<2x3x4xf32> -> tensor<f32>
  %1 = nn.reduce_mean %x axes [1] : tensor<2x3x4xf32> -> tensor<2x4xf32>
  %2 = nn.reduce_max %x axes [-1, 0] keepdims : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
  %3 = nn.reduce_min %x keepdims : tensor<2x3x4xf32> -> tensor<1x1x1xf32>
  %4 = nn.reduce_prod %x axes [2] : tensor<2x3x4xf32> -> tensor<2x3xf32>
  %5 = nn.reduce_sum %i : tensor<5xi64> -> tensor<i64>
  %6 = nn.reduce_sum %x axes [] : tensor<2x3x4xf32>
  func.return %0 : tensor<f32>
}

// CHECK-LABEL: func.func @index_and_scan(%x: tensor<?x5x4xf32>) -> tensor<?x5x4xf32> {
// CHECK-NEXT: %0 = nn.argmax %x axis 1 : tensor<?x5x4xf32> -> tensor<?x4xi64>
// CHECK-NEXT: %1 = nn.argmin %x axis -1 keepdims select_last_index : tensor<?x5x4xf32> -> tensor<?x5x1xi64>
// CHECK-NEXT: %2 = nn.cumsum %x axis 1 exclusive : tensor<?x5x4xf32>
// CHECK-NEXT: func.return %2 : tensor<?x5x4xf32>
func.func @index_and_scan(%x: tensor<?x5x4xf32>) -> tensor<?x5x4xf32> {
  %0 = nn.argmax %x axis 1 : tensor<?x5x4xf32> -> tensor<?x4xi64>
  %1 = nn.argmin %x axis -1 keepdims select_last_index : tensor<?x5x4xf32> -> tensor<?x5x1xi64>
  %2 = nn.cumsum %x axis 1 exclusive : tensor<?x5x4xf32>
  func.return %2 : tensor<?x5x4xf32>
}
