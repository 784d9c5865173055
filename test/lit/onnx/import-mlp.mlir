// RUN: %python %S/Inputs/make_models.py %t && ncc-translate --import-onnx %t/mlp.onnx | FileCheck %s
// RUN: ncc-translate --import-onnx %t/mlp.onnx | ncc-opt --fold-weights | FileCheck %s --check-prefix=FOLD
// Gemm with transB becomes matmul + add of the bias. The initializer `w` is the
// model's parameter as the file declares it (4x3): its transpose stays an op, so
// that training differentiates through it; the input's symbolic first dimension
// is the batch `?`.

// CHECK:      nn.weight @w : tensor<4x3xf32> = dense<[[0.0, 0.125, 0.25],
// CHECK:      nn.weight @b : tensor<4xf32> = dense<1.0>
// CHECK:      func.func @main(%input: tensor<?x3xf32> {ncc.name = "input"}) -> (tensor<?x4xf32> {ncc.name = "y"}) {
// CHECK-NEXT:   %[[W:.*]] = nn.weight_ref @w : tensor<4x3xf32>
// CHECK-NEXT:   %[[T:.*]] = nn.transpose %[[W]] perm [1, 0] : tensor<4x3xf32> -> tensor<3x4xf32>
// CHECK-NEXT:   %[[M:.*]] = nn.matmul %input, %[[T]] : tensor<?x3xf32>, tensor<3x4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:   %[[B:.*]] = nn.weight_ref @b : tensor<4xf32>
// CHECK-NEXT:   %[[A:.*]] = nn.add %[[M]], %[[B]] : tensor<?x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
// CHECK-NEXT:   %[[R:.*]] = nn.relu %[[A]] : tensor<?x4xf32>
// CHECK-NEXT:   func.return %[[R]] : tensor<?x4xf32>

// For inference, fold-weights (which ncc.compile runs) computes the transpose once
// into a derived weight that names its source; `w` itself is unchanged.
// FOLD:      nn.weight @w : tensor<4x3xf32> = dense<[[0.0, 0.125, 0.25],
// FOLD:      nn.weight @w.transpose attributes {ncc.derived_from = [@w]} : tensor<3x4xf32> = dense<[[0.0, 0.375, 0.75, 1.125],
// FOLD:      func.func @main
// FOLD-NEXT:   %[[W:.*]] = nn.weight_ref @w.transpose : tensor<3x4xf32>
// FOLD-NEXT:   %{{.*}} = nn.matmul %input, %[[W]] : tensor<?x3xf32>, tensor<3x4xf32> -> tensor<?x4xf32>
// FOLD-NOT:    nn.transpose
