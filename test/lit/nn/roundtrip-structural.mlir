// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// Index reductions (i64 results), cumsum, triangles, element gathers and
// scatters, transposed convolution, resize (float lists print as [a, b]),
// and dilated pools.

// CHECK-LABEL: func.func @index_and_scan(%x: tensor<?x5x4xf32>, %i: tensor<?x2x4xi64>) -> tensor<?x5x4xf32> {
// CHECK-NEXT: %0 = nn.argmax %x axis 1 : tensor<?x5x4xf32> -> tensor<?x4xi64>
// CHECK-NEXT: %1 = nn.argmin %x axis -1 keepdims select_last_index : tensor<?x5x4xf32> -> tensor<?x5x1xi64>
// CHECK-NEXT: %2 = nn.cumsum %x axis 1 exclusive : tensor<?x5x4xf32>
// CHECK-NEXT: %3 = nn.triu %2 k -1 : tensor<?x5x4xf32>
// CHECK-NEXT: %4 = nn.tril %3 : tensor<?x5x4xf32>
// CHECK-NEXT: %5 = nn.gather_elements %4, %i axis 1 : tensor<?x5x4xf32>, tensor<?x2x4xi64> -> tensor<?x2x4xf32>
// CHECK-NEXT: %6 = nn.scatter_elements %4, %i, %5 axis 1 reduction add : tensor<?x5x4xf32>, tensor<?x2x4xi64>, tensor<?x2x4xf32> -> tensor<?x5x4xf32>
// CHECK-NEXT: func.return %6 : tensor<?x5x4xf32>
func.func @index_and_scan(%x: tensor<?x5x4xf32>, %i: tensor<?x2x4xi64>) -> tensor<?x5x4xf32> {
  %0 = nn.argmax %x axis 1 : tensor<?x5x4xf32> -> tensor<?x4xi64>
  %1 = nn.argmin %x axis -1 keepdims select_last_index : tensor<?x5x4xf32> -> tensor<?x5x1xi64>
  %2 = nn.cumsum %x axis 1 exclusive : tensor<?x5x4xf32>
  %3 = nn.triu %2 k -1 : tensor<?x5x4xf32>
  %4 = nn.tril %3 : tensor<?x5x4xf32>
  %5 = nn.gather_elements %4, %i axis 1 : tensor<?x5x4xf32>, tensor<?x2x4xi64> -> tensor<?x2x4xf32>
  %6 = nn.scatter_elements %4, %i, %5 axis 1 reduction add : tensor<?x5x4xf32>, tensor<?x2x4xi64>, tensor<?x2x4xf32> -> tensor<?x5x4xf32>
  func.return %6 : tensor<?x5x4xf32>
}

// CHECK-LABEL: func.func @scatter_nd(%x: tensor<4x3xf32>, %i: tensor<2x1xi32>, %u: tensor<2x3xf32>) -> tensor<4x3xf32> {
// CHECK-NEXT: %0 = nn.scatter_nd %x, %i, %u reduction max : tensor<4x3xf32>, tensor<2x1xi32>, tensor<2x3xf32> -> tensor<4x3xf32>
func.func @scatter_nd(%x: tensor<4x3xf32>, %i: tensor<2x1xi32>, %u: tensor<2x3xf32>) -> tensor<4x3xf32> {
  %0 = nn.scatter_nd %x, %i, %u reduction max : tensor<4x3xf32>, tensor<2x1xi32>, tensor<2x3xf32> -> tensor<4x3xf32>
  func.return %0 : tensor<4x3xf32>
}

// CHECK-LABEL: func.func @windows(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<?x6x16x16xf32> {
// CHECK-NEXT: %0 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 0, 0] group 2 output_padding [0, 1] : tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x6x16x17xf32>
// CHECK-NEXT: %1 = nn.max_pool %0 kernel [2, 2] dilations [1, 2] : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xf32>
// CHECK-NEXT: %{{.*}} = nn.max_pool_indices %0 kernel [2, 2] dilations [1, 2] column_major : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xi64>
// CHECK-NEXT: %2 = nn.avg_pool %1 kernel [3, 3] pads [2, 2, 2, 2] dilations [2, 2] count_include_pad : tensor<?x6x15x15xf32>
// CHECK-NEXT: %3 = nn.resize %2 mode linear scales [1.0, 1.0, 1.0666666666666667, 1.0666666666666667] coordinate_transformation_mode align_corners : tensor<?x6x15x15xf32> -> tensor<?x6x16x16xf32>
// CHECK-NEXT: func.return %3 : tensor<?x6x16x16xf32>
func.func @windows(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<?x6x16x16xf32> {
  %0 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 0, 0] group 2 output_padding [0, 1] : tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x6x16x17xf32>
  %1 = nn.max_pool %0 kernel [2, 2] dilations [1, 2] : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xf32>
  %i = nn.max_pool_indices %0 kernel [2, 2] dilations [1, 2] column_major : tensor<?x6x16x17xf32> -> tensor<?x6x15x15xi64>
  %2 = nn.avg_pool %1 kernel [3, 3] pads [2, 2, 2, 2] dilations [2, 2] count_include_pad : tensor<?x6x15x15xf32>
  %3 = nn.resize %2 mode linear scales [1.0, 1.0, 1.0666666666666667, 1.0666666666666667] coordinate_transformation_mode align_corners : tensor<?x6x15x15xf32> -> tensor<?x6x16x16xf32>
  func.return %3 : tensor<?x6x16x16xf32>
}
