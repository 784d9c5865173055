// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// slice (ONNX semantics: negative indices, clamping, steps), gather (i64/i32 indices), pad.

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
