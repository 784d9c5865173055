// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// softmax and log_softmax (axis default -1).

// CHECK-LABEL: func.func @softmax(%x: tensor<?x10xf32>) -> tensor<?x10xf32> {
// CHECK-NEXT: %0 = nn.softmax %x : tensor<?x10xf32>
// CHECK-NEXT: %1 = nn.softmax %x axis 0 : tensor<?x10xf32>
// CHECK-NEXT: %2 = nn.log_softmax %x axis -1 : tensor<?x10xf32>
// CHECK-NEXT: %3 = nn.log_softmax %x : tensor<?x10xf32>
// CHECK-NEXT: func.return %0 : tensor<?x10xf32>
// CHECK-NEXT: }
func.func @softmax(%x: tensor<?x10xf32>) -> tensor<?x10xf32> {
  %0 = nn.softmax %x : tensor<?x10xf32>
  %1 = nn.softmax %x axis 0 : tensor<?x10xf32>
  %2 = nn.log_softmax %x axis -1 : tensor<?x10xf32>
  %3 = nn.log_softmax %x : tensor<?x10xf32>
  func.return %0 : tensor<?x10xf32>
}
