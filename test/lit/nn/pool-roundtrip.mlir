// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// max_pool and avg_pool: kernel, strides, pads; count_include_pad is a bare flag.

// CHECK-LABEL: func.func @pools(%x: tensor<?x16x32x32xf32>) -> tensor<?x16x16x16xf32> {
// CHECK-NEXT: %0 = nn.max_pool %x kernel [2, 2] strides [2, 2] : tensor<?x16x32x32xf32> -> tensor<?x16x16x16xf32>
// CHECK-NEXT: %1 = nn.max_pool %x kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<?x16x32x32xf32> -> tensor<?x16x16x16xf32>
// CHECK-NEXT: %2 = nn.avg_pool %x kernel [3, 3] pads [1, 1, 1, 1] : tensor<?x16x32x32xf32>
// CHECK-NEXT: %3 = nn.avg_pool %x kernel [3, 3] pads [1, 1, 1, 1] count_include_pad : tensor<?x16x32x32xf32>
// CHECK-NEXT: %4 = nn.avg_pool %x kernel [32, 32] : tensor<?x16x32x32xf32> -> tensor<?x16x1x1xf32>
// CHECK-NEXT: func.return %0 : tensor<?x16x16x16xf32>
// CHECK-NEXT: }
func.func @pools(%x: tensor<?x16x32x32xf32>) -> tensor<?x16x16x16xf32> {
  %0 = nn.max_pool %x kernel [2, 2] strides [2, 2] : tensor<?x16x32x32xf32> -> tensor<?x16x16x16xf32>
  %1 = nn.max_pool %x kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<?x16x32x32xf32> -> tensor<?x16x16x16xf32>
  %2 = nn.avg_pool %x kernel [3, 3] pads [1, 1, 1, 1] : tensor<?x16x32x32xf32>
  %3 = nn.avg_pool %x kernel [3, 3] pads [1, 1, 1, 1] count_include_pad : tensor<?x16x32x32xf32>
  %4 = nn.avg_pool %x kernel [32, 32] : tensor<?x16x32x32xf32> -> tensor<?x16x1x1xf32>
  func.return %0 : tensor<?x16x16x16xf32>
}

// CHECK-LABEL: func.func @pool1d(%x: tensor<1x2x10xf64>) -> tensor<1x2x4xf64> {
// CHECK-NEXT: %0 = nn.max_pool %x kernel [3] strides [2] : tensor<1x2x10xf64> -> tensor<1x2x4xf64>
// CHECK-NEXT: func.return %0 : tensor<1x2x4xf64>
// CHECK-NEXT: }
func.func @pool1d(%x: tensor<1x2x10xf64>) -> tensor<1x2x4xf64> {
  %0 = nn.max_pool %x kernel [3] strides [2] : tensor<1x2x10xf64> -> tensor<1x2x4xf64>
  func.return %0 : tensor<1x2x4xf64>
}

// CHECK-LABEL: func.func @dilated_pools(%x: tensor<?x6x16x17xf32>) -> tensor<?x6x15x15xf32> {
// CHECK-NEXT: %0 = nn.max_pool %x kernel [2, 2] dilations [1, 2] : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xf32>
// CHECK-NEXT: %{{.*}} = nn.max_pool_indices %x kernel [2, 2] dilations [1, 2] column_major : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xi64>
// CHECK-NEXT: %1 = nn.avg_pool %0 kernel [3, 3] pads [2, 2, 2, 2] dilations [2, 2] count_include_pad : tensor<?x6x15x15xf32>
// CHECK-NEXT: func.return %1 : tensor<?x6x15x15xf32>
func.func @dilated_pools(%x: tensor<?x6x16x17xf32>) -> tensor<?x6x15x15xf32> {
  %0 = nn.max_pool %x kernel [2, 2] dilations [1, 2] : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xf32>
  %i = nn.max_pool_indices %x kernel [2, 2] dilations [1, 2] column_major : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xi64>
  %1 = nn.avg_pool %0 kernel [3, 3] pads [2, 2, 2, 2] dilations [2, 2] count_include_pad : tensor<?x6x15x15xf32>
  func.return %1 : tensor<?x6x15x15xf32>
}
