// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// reshape (the target is the result type; one `?` takes the rest), transpose, concat.

// CHECK-LABEL: func.func @reshape(%x: tensor<?x1x28x28xf32>, %y: tensor<2x3x4xf32>) -> tensor<?x784xf32> {
// CHECK-NEXT: %0 = nn.reshape %x : tensor<?x1x28x28xf32> -> tensor<?x784xf32>
// CHECK-NEXT: %1 = nn.reshape %y : tensor<2x3x4xf32> -> tensor<24xf32>
// CHECK-NEXT: %2 = nn.reshape %y : tensor<2x3x4xf32> -> tensor<?x4xf32>
// CHECK-NEXT: %3 = nn.reshape %1 : tensor<24xf32> -> tensor<1x2x1x12xf32>
// CHECK-NEXT: func.return %0 : tensor<?x784xf32>
// CHECK-NEXT: }
func.func @reshape(%x: tensor<?x1x28x28xf32>, %y: tensor<2x3x4xf32>) -> tensor<?x784xf32> {
  %0 = nn.reshape %x : tensor<?x1x28x28xf32> -> tensor<?x784xf32>
  %1 = nn.reshape %y : tensor<2x3x4xf32> -> tensor<24xf32>
  %2 = nn.reshape %y : tensor<2x3x4xf32> -> tensor<?x4xf32>
  %3 = nn.reshape %1 : tensor<24xf32> -> tensor<1x2x1x12xf32>
  func.return %0 : tensor<?x784xf32>
}

// CHECK-LABEL: func.func @transpose(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
// CHECK-NEXT: %0 = nn.transpose %x perm [2, 0, 1] : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
// CHECK-NEXT: %1 = nn.transpose %x perm [0, 1, 2] : tensor<2x3x4xf32>
// CHECK-NEXT: func.return %0 : tensor<4x2x3xf32>
// CHECK-NEXT: }
func.func @transpose(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
  %0 = nn.transpose %x perm [2, 0, 1] : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
  %1 = nn.transpose %x perm [0, 1, 2] : tensor<2x3x4xf32>
  func.return %0 : tensor<4x2x3xf32>
}

// CHECK-LABEL: func.func @concat(%a: tensor<2x3xf32>, %b: tensor<2x5xf32>, %c: tensor<?x3xf32>) -> tensor<2x8xf32> {
// CHECK-NEXT: %0 = nn.concat %a, %b axis 1 : tensor<2x3xf32>, tensor<2x5xf32> -> tensor<2x8xf32>
// CHECK-NEXT: %1 = nn.concat %a, %c, %a axis 0 : tensor<2x3xf32>, tensor<?x3xf32>, tensor<2x3xf32> -> tensor<?x3xf32>
// CHECK-NEXT: %2 = nn.concat %a axis -1 : tensor<2x3xf32>
// CHECK-NEXT: func.return %0 : tensor<2x8xf32>
// CHECK-NEXT: }
func.func @concat(%a: tensor<2x3xf32>, %b: tensor<2x5xf32>, %c: tensor<?x3xf32>) -> tensor<2x8xf32> {
  %0 = nn.concat %a, %b axis 1 : tensor<2x3xf32>, tensor<2x5xf32> -> tensor<2x8xf32>
  %1 = nn.concat %a, %c, %a axis 0 : tensor<2x3xf32>, tensor<?x3xf32>, tensor<2x3xf32> -> tensor<?x3xf32>
  %2 = nn.concat %a axis -1 : tensor<2x3xf32>
  func.return %0 : tensor<2x8xf32>
}
