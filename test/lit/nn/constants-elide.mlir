// RUN: ncc-opt %s --elide-weights-if-larger=4 | FileCheck %s
// RUN: ncc-opt %s --elide-weights-if-larger=4 | ncc-opt | FileCheck %s
// RUN: ncc-opt %s | FileCheck %s --check-prefix=FULL
// Weights with more than N elements print as MLIR's dense_resource<__elided__>;
// that text parses back (a weight without data) and prints the same again.

// CHECK: nn.weight @big : tensor<2x3xf32> = dense_resource<__elided__>
// FULL: nn.weight @big : tensor<2x3xf32> = dense<{{\[\[}}1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]>
nn.weight @big : tensor<2x3xf32> = dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]>
// CHECK: nn.weight @small : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
// FULL: nn.weight @small : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
nn.weight @small : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
// CHECK: nn.weight @splat : tensor<100xf32> = dense_resource<__elided__>
// FULL: nn.weight @splat : tensor<100xf32> = dense<0.0>
nn.weight @splat : tensor<100xf32> = dense<0.0>
// CHECK: nn.weight @gone : tensor<8xf32> = dense_resource<__elided__>
// FULL: nn.weight @gone : tensor<8xf32> = dense_resource<__elided__>
nn.weight @gone : tensor<8xf32> = dense_resource<__elided__>
// CHECK: nn.weight @param : tensor<8xf32>{{$}}
// FULL: nn.weight @param : tensor<8xf32>{{$}}
nn.weight @param : tensor<8xf32>

// CHECK-LABEL: func.func @main
// CHECK-NEXT: nn.weight_ref @big : tensor<2x3xf32>
// The inline constant is not a weight: never elided.
// CHECK-NEXT: nn.constant dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]> : tensor<6xf32>
func.func @main() -> tensor<2x3xf32> {
  %w = nn.weight_ref @big : tensor<2x3xf32>
  %c = nn.constant dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]> : tensor<6xf32>
  func.return %w : tensor<2x3xf32>
}
