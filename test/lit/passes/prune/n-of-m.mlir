// RUN: ncc-opt %s -p 'prune{structure="2:4"}' 2>&1 | FileCheck %s
// RUN: ncc-opt %s -p 'prune{structure="2:4" report=true}' 2>&1 >/dev/null | FileCheck %s --check-prefix=REPORT
// structure="N:M": of every M consecutive weights along the axis the product
// sums over, the N largest stay (2:4 is half). That axis is followed through
// transposes: @wt is read transposed (as ONNX's Gemm with transB imports), so
// its groups run along its rows; a convolution's run along input channels.
// A weight whose summed axis is not a multiple of M is left dense (the report
// says why).

nn.weight @w : tensor<4x2xf32> = dense<[[1.0, 8.0], [2.0, 7.0], [3.0, 6.0], [4.0, 5.0]]>
nn.weight @wt : tensor<2x4xf32> = dense<[[1.0, 2.0, 3.0, 4.0], [8.0, 7.0, 6.0, 5.0]]>
nn.weight @k : tensor<1x4x1x1xf32> = dense<[[[[0.5]], [[-2.0]], [[0.1]], [[3.0]]]]>
nn.weight @odd : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]>

// CHECK: nn.weight @w : tensor<4x2xf32> = dense<{{\[\[}}0.0, 8.0], [0.0, 7.0], [3.0, 0.0], [4.0, 0.0]]>
// CHECK: nn.weight @wt : tensor<2x4xf32> = dense<{{\[\[}}0.0, 0.0, 3.0, 4.0], [8.0, 7.0, 0.0, 0.0]]>
// CHECK: nn.weight @k : tensor<1x4x1x1xf32> = dense<{{\[\[\[\[}}0.0]], {{\[\[}}-2.0]], {{\[\[}}0.0]], {{\[\[}}3.0]]]]>
// CHECK: nn.weight @odd : tensor<3x2xf32> = dense<{{\[\[}}1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]>
// CHECK-NOT: @odd_mask
func.func @f(%x: tensor<?x4xf32>, %img: tensor<1x4x5x5xf32>, %z: tensor<?x3xf32>)
    -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<1x1x5x5xf32>, tensor<?x2xf32>) {
  %w = nn.weight_ref @w : tensor<4x2xf32>
  %0 = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x2xf32> -> tensor<?x2xf32>
  %wt = nn.weight_ref @wt : tensor<2x4xf32>
  %t = nn.transpose %wt perm [1, 0] : tensor<2x4xf32> -> tensor<4x2xf32>
  %1 = nn.matmul %x, %t : tensor<?x4xf32>, tensor<4x2xf32> -> tensor<?x2xf32>
  %k = nn.weight_ref @k : tensor<1x4x1x1xf32>
  %2 = nn.conv %img, %k : tensor<1x4x5x5xf32>, tensor<1x4x1x1xf32> -> tensor<1x1x5x5xf32>
  %odd = nn.weight_ref @odd : tensor<3x2xf32>
  %3 = nn.matmul %z, %odd : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  func.return %0, %1, %2, %3 : tensor<?x2xf32>, tensor<?x2xf32>, tensor<1x1x5x5xf32>, tensor<?x2xf32>
}

// REPORT: w {{.*}} 8 {{ +}}4    50.0 %
// REPORT: k       nn.conv {{.*}} 1x4x1x1 {{ +}}4 {{ +}}2    50.0 %  {{ +}}200 {{ +}}100
// REPORT: odd {{.*}} 6 {{ +}}6     0.0 % {{.*}}(left dense: the summed axis has 3 entries, not a multiple of 4)
