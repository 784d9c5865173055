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

// CHECK-LABEL: func.func @slice(%x: tensor<10x7x?xf32>) -> tensor<9x3x?xf32> {
// CHECK-NEXT: %0 = nn.slice %x starts [1, -3] ends [9223372036854775807, 9223372036854775807] axes [0, 1] : tensor<10x7x?xf32> -> tensor<9x3x?xf32>
// CHECK-NEXT: %1 = nn.slice %x starts [-1] ends [-9223372036854775807] axes [0] steps [-1] : tensor<10x7x?xf32>
// CHECK-NEXT: %2 = nn.slice %x starts [0, 0] ends [5, 7] steps [2, 3] : tensor<10x7x?xf32> -> tensor<3x3x?xf32>
// CHECK-NEXT: %3 = nn.slice %x starts [0] ends [2] axes [-1] : tensor<10x7x?xf32>
// CHECK-NEXT: func.return %0 : tensor<9x3x?xf32>
// CHECK-NEXT: }
func.func @slice(%x: tensor<10x7x?xf32>) -> tensor<9x3x?xf32> {
  %0 = nn.slice %x starts [1, -3] ends [9223372036854775807, 9223372036854775807] axes [0, 1] : tensor<10x7x?xf32> -> tensor<9x3x?xf32>
  %1 = nn.slice %x starts [-1] ends [-9223372036854775807] axes [0] steps [-1] : tensor<10x7x?xf32>
  %2 = nn.slice %x starts [0, 0] ends [5, 7] steps [2, 3] : tensor<10x7x?xf32> -> tensor<3x3x?xf32>
  %3 = nn.slice %x starts [0] ends [2] axes [-1] : tensor<10x7x?xf32>
  func.return %0 : tensor<9x3x?xf32>
}

// CHECK-LABEL: func.func @pad(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x10x10xf32> {
// CHECK-NEXT: %0 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
// CHECK-NEXT: %1 = nn.pad %x pads [0, 0, 2, 0, 0, 0, 0, 2] mode reflect : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
// CHECK-NEXT: %2 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] mode edge : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
// CHECK-NEXT: %3 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] value -1.5 : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
// CHECK-NEXT: %4 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] value 0xFFF0000000000000 : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
// CHECK-NEXT: func.return %0 : tensor<1x3x10x10xf32>
// CHECK-NEXT: }
func.func @pad(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x10x10xf32> {
  %0 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
  %1 = nn.pad %x pads [0, 0, 2, 0, 0, 0, 0, 2] mode reflect : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
  %2 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] mode edge : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
  %3 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] value -1.5 : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
  %4 = nn.pad %x pads [0, 0, 1, 1, 0, 0, 1, 1] value 0xFFF0000000000000 : tensor<1x3x8x8xf32> -> tensor<1x3x10x10xf32>
  func.return %0 : tensor<1x3x10x10xf32>
}

// CHECK-LABEL: func.func @triangles(%x: tensor<?x5x4xf32>) -> tensor<?x5x4xf32> {
// CHECK-NEXT: %0 = nn.triu %x k -1 : tensor<?x5x4xf32>
// CHECK-NEXT: %1 = nn.tril %0 : tensor<?x5x4xf32>
// CHECK-NEXT: func.return %1 : tensor<?x5x4xf32>
func.func @triangles(%x: tensor<?x5x4xf32>) -> tensor<?x5x4xf32> {
  %0 = nn.triu %x k -1 : tensor<?x5x4xf32>
  %1 = nn.tril %0 : tensor<?x5x4xf32>
  func.return %1 : tensor<?x5x4xf32>
}
