// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// Weights are module-level symbols; literals print exactly (shortest decimals,
// hex bit patterns for NaN/inf), splats stay splats, parameters have no data.

// CHECK: nn.weight @w : tensor<3x2xf32> = dense<[[0.1, -0.2], [1.0e-05, 3.4028235e+38], [1.0e-45, -0.0]]>
nn.weight @w : tensor<3x2xf32> = dense<[[0.1, -0.2], [0.00001, 3.4028235e38], [1.0e-45, -0.0]]>
// CHECK: nn.weight @special : tensor<3xf32> = dense<[0x7FC00000, 0x7F800000, 0xFF800000]>
nn.weight @special : tensor<3xf32> = dense<[0x7FC00000, 0x7F800000, 0xFF800000]>
// CHECK: nn.weight @zeros : tensor<64x64xf32> = dense<0.0>
nn.weight @zeros : tensor<64x64xf32> = dense<0.0>
// CHECK: nn.weight @same : tensor<2xf32> = dense<2.5>
nn.weight @same : tensor<2xf32> = dense<[2.5, 2.5]>
// CHECK: nn.weight @f64 : tensor<2xf64> = dense<[0.1, 3.141592653589793]>
nn.weight @f64 : tensor<2xf64> = dense<[0.1, 3.141592653589793]>
// CHECK: nn.weight @idx : tensor<2x2xi64> = dense<{{\[\[}}0, -1], [9223372036854775807, 3]]>
nn.weight @idx : tensor<2x2xi64> = dense<[[0, -1], [9223372036854775807, 3]]>
// CHECK: nn.weight @scalar : tensor<f32> = dense<-1.5>
nn.weight @scalar : tensor<f32> = dense<-1.5>
// CHECK: nn.weight @param : tensor<4x3xf32>{{$}}
nn.weight @param : tensor<4x3xf32>
// CHECK: nn.weight @annotated attributes {trainable = false} : tensor<1xf32> = dense<[1.0]>
nn.weight @annotated attributes {trainable = false} : tensor<1xf32> = dense<1.0>

// CHECK-LABEL: func.func @main
// CHECK-NEXT: %w = nn.weight_ref @w : tensor<3x2xf32>
// CHECK-NEXT: %p = nn.weight_ref @param : tensor<4x3xf32>
// CHECK-NEXT: %c = nn.constant dense<{{\[\[}}1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
// CHECK-NEXT: %k = nn.constant dense<7> : tensor<3xi64>
// CHECK-NEXT: %s = nn.constant dense<0.5> : tensor<f64>
func.func @main(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %p = nn.weight_ref @param : tensor<4x3xf32>
  %c = nn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %k = nn.constant dense<[7, 7, 7]> : tensor<3xi64>
  %s = nn.constant dense<0.5> : tensor<f64>
  %y = nn.matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  func.return %y : tensor<?x2xf32>
}
