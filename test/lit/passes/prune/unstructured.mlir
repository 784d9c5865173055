// RUN: ncc-opt %s --prune="sparsity=0.5" | FileCheck %s
// RUN: ncc-opt %s -p 'prune{sparsity=0.5}' | ncc-opt | FileCheck %s
// RUN: ncc-opt %s -p 'prune{sparsity=0.5 report=true}' 2>&1 >/dev/null | FileCheck %s --check-prefix=REPORT
// prune (nn, unstructured, per layer): half of each weight a product reads,
// the smallest |w| first. The weight keeps its name, shape and layout, with
// zeros where pruned; its reads go through a mask (an internal weight), so the
// reference, native code, gradients and ONNX export compute `w * mask`. The
// bias is not a product's operand and stays.

nn.weight @w : tensor<2x4xf32> = dense<[[0.1, -2.0, 0.3, 4.0], [-0.5, 0.6, -7.0, 0.05]]>
nn.weight @b : tensor<4xf32> = dense<[0.01, 0.02, 0.03, 0.04]>

// CHECK:       nn.weight @w : tensor<2x4xf32> = dense<{{\[\[}}0.0, -2.0, 0.0, 4.0], [0.0, 0.6, -7.0, 0.0]]>
// CHECK-NEXT:  nn.weight @w_mask attributes {ncc.constant, ncc.mask_of = "w"} : tensor<2x4xf32> = dense<{{\[\[}}0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]>
// CHECK-NEXT:  nn.weight @b : tensor<4xf32> = dense<[0.01, 0.02, 0.03, 0.04]>
// CHECK-LABEL: func.func @mlp(%x: tensor<?x2xf32>) -> tensor<?x4xf32> {
// CHECK-NEXT:    %w = nn.weight_ref @w : tensor<2x4xf32>
// CHECK-NEXT:    %0 = nn.weight_ref @w_mask : tensor<2x4xf32>
// CHECK-NEXT:    %[[MASKED:.+]] = nn.mul %w, %0 : tensor<2x4xf32>
// CHECK-NEXT:    %b = nn.weight_ref @b : tensor<4xf32>
// CHECK-NEXT:    %{{.+}} = nn.fused_matmul %x, %[[MASKED]], %b activation relu
func.func @mlp(%x: tensor<?x2xf32>) -> tensor<?x4xf32> {
  %w = nn.weight_ref @w : tensor<2x4xf32>
  %b = nn.weight_ref @b : tensor<4xf32>
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x2xf32>, tensor<2x4xf32>, tensor<4xf32> -> tensor<?x4xf32>
  func.return %0 : tensor<?x4xf32>
}

// REPORT:      weight  read by          shape  nonzero before  after  sparsity  FLOPs before  after
// REPORT-NEXT: w       nn.fused_matmul  2x4                 8      4    50.0 %            16  8
// REPORT-NEXT: total                    8                   8      4    50.0 %            16  8
