// RUN: %python %S/Inputs/make_models.py %t && ncc-translate --import-onnx %t/mlp.onnx | FileCheck %s
// Gemm with transB becomes matmul + add of the bias: the transpose of the
// initializer `w` (4x3) is folded at import into the weight, which keeps its
// name (3x4); the input's symbolic first dimension is the batch `?`.

// CHECK:      nn.weight @w : tensor<3x4xf32> = dense<[[0.0, 0.375, 0.75, 1.125],
// CHECK:      nn.weight @b : tensor<4xf32> = dense<1.0>
// CHECK:      func.func @main(%input: tensor<?x3xf32> {ncc.name = "input"}) -> (tensor<?x4xf32> {ncc.name = "y"}) {
// CHECK-NEXT:   %[[W:.*]] = nn.weight_ref @w : tensor<3x4xf32>
// CHECK-NEXT:   %[[M:.*]] = nn.matmul %input, %[[W]] : tensor<?x3xf32>, tensor<3x4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:   %[[B:.*]] = nn.weight_ref @b : tensor<4xf32>
// CHECK-NEXT:   %[[A:.*]] = nn.add %[[M]], %[[B]] : tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:   %[[R:.*]] = nn.relu %[[A]] : tensor<?x4xf32>
// CHECK-NEXT:   func.return %[[R]] : tensor<?x4xf32>
