// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// gather (i64/i32 indices) and the element gathers and scatters.

// CHECK-LABEL: func.func @gather(%x: tensor<5x4x3xf32>, %i: tensor<2x6xi64>, %j: tensor<i32>) -> tensor<5x2x6x3xf32> {
// CHECK-NEXT: %0 = nn.gather %x, %i axis 1 : tensor<5x4x3xf32>, tensor<2x6xi64> -> tensor<5x2x6x3xf32>
// CHECK-NEXT: %1 = nn.gather %x, %j : tensor<5x4x3xf32>, tensor<i32> -> tensor<4x3xf32>
// CHECK-NEXT: func.return %0 : tensor<5x2x6x3xf32>
// CHECK-NEXT: }
func.func @gather(%x: tensor<5x4x3xf32>, %i: tensor<2x6xi64>, %j: tensor<i32>) -> tensor<5x2x6x3xf32> {
  %0 = nn.gather %x, %i axis 1 : tensor<5x4x3xf32>, tensor<2x6xi64> -> tensor<5x2x6x3xf32>
  %1 = nn.gather %x, %j : tensor<5x4x3xf32>, tensor<i32> -> tensor<4x3xf32>
  func.return %0 : tensor<5x2x6x3xf32>
}

// CHECK-LABEL: func.func @element_gathers_and_scatters(%x: tensor<?x5x4xf32>, %i: tensor<?x2x4xi64>) -> tensor<?x5x4xf32> {
// CHECK-NEXT: %0 = nn.gather_elements %x, %i axis 1 : tensor<?x5x4xf32>, tensor<?x2x4xi64> -> tensor<?x2x4xf32>
// CHECK-NEXT: %1 = nn.scatter_elements %x, %i, %0 axis 1 reduction add : tensor<?x5x4xf32>, tensor<?x2x4xi64>, tensor<?x2x4xf32> -> tensor<?x5x4xf32>
// CHECK-NEXT: func.return %1 : tensor<?x5x4xf32>
func.func @element_gathers_and_scatters(%x: tensor<?x5x4xf32>, %i: tensor<?x2x4xi64>) -> tensor<?x5x4xf32> {
  %0 = nn.gather_elements %x, %i axis 1 : tensor<?x5x4xf32>, tensor<?x2x4xi64> -> tensor<?x2x4xf32>
  %1 = nn.scatter_elements %x, %i, %0 axis 1 reduction add : tensor<?x5x4xf32>, tensor<?x2x4xi64>, tensor<?x2x4xf32> -> tensor<?x5x4xf32>
  func.return %1 : tensor<?x5x4xf32>
}

// CHECK-LABEL: func.func @scatter_nd(%x: tensor<4x3xf32>, %i: tensor<2x1xi32>, %u: tensor<2x3xf32>) -> tensor<4x3xf32> {
// CHECK-NEXT: %0 = nn.scatter_nd %x, %i, %u reduction max : tensor<4x3xf32>, tensor<2x1xi32>, tensor<2x3xf32> -> tensor<4x3xf32>
func.func @scatter_nd(%x: tensor<4x3xf32>, %i: tensor<2x1xi32>, %u: tensor<2x3xf32>) -> tensor<4x3xf32> {
  %0 = nn.scatter_nd %x, %i, %u reduction max : tensor<4x3xf32>, tensor<2x1xi32>, tensor<2x3xf32> -> tensor<4x3xf32>
  func.return %0 : tensor<4x3xf32>
}
