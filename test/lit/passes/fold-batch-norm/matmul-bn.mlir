// RUN: ncc-opt %s --fold-batch-norm | FileCheck %s
// RUN: ncc-opt %s --fold-batch-norm --fuse | FileCheck %s --check-prefix=FUSED
// A batch norm after a matmul whose [N, C] result has the channels as its
// columns (BatchNorm1d after a Linear): the weight [K, C] is scaled per
// column, bn(x @ w + b) = x @ (w * s) + (bias - (mean - b) * s); fuse then
// makes matmul + bias + relu one fused_matmul. A 3-D result, whose batch
// norm channels are not the matmul's columns, is left alone.

nn.weight @w : tensor<16x8xf32>
nn.weight @b : tensor<8xf32>
nn.weight @scale : tensor<8xf32>
nn.weight @bias : tensor<8xf32>
nn.weight @mean : tensor<8xf32>
nn.weight @var : tensor<8xf32>

// CHECK-LABEL: func.func @linear_bn
// CHECK:         %[[S:.*]] = nn.div %scale, %{{.*}}
// CHECK-NEXT:    %[[S2:.*]] = nn.reshape %[[S]] : tensor<8xf32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[W2:.*]] = nn.mul %w, %[[S2]]
// CHECK-NEXT:    %[[MS:.*]] = nn.mul %mean, %[[S]]
// CHECK-NEXT:    %[[BS:.*]] = nn.mul %b, %[[S]]
// CHECK-NEXT:    %[[D:.*]] = nn.sub %[[MS]], %[[BS]]
// CHECK-NEXT:    %[[SHIFT:.*]] = nn.sub %bias, %[[D]]
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul %x, %[[W2]]
// CHECK-NEXT:    %[[Z:.*]] = nn.add %[[Y]], %[[SHIFT]] : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
// CHECK-NEXT:    nn.relu %[[Z]]
// CHECK-NOT:     nn.batch_norm
// FUSED-LABEL:   func.func @linear_bn
// FUSED:         nn.fused_matmul %x, %{{.*}}, %{{.*}} activation relu
// FUSED-NEXT:    func.return
func.func @linear_bn(%x: tensor<?x16xf32>) -> tensor<?x8xf32> {
  %w = nn.weight_ref @w : tensor<16x8xf32>
  %b = nn.weight_ref @b : tensor<8xf32>
  %scale = nn.weight_ref @scale : tensor<8xf32>
  %bias = nn.weight_ref @bias : tensor<8xf32>
  %mean = nn.weight_ref @mean : tensor<8xf32>
  %var = nn.weight_ref @var : tensor<8xf32>
  %0 = nn.fused_matmul %x, %w, %b : tensor<?x16xf32>, tensor<16x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %1 = nn.batch_norm %0, %scale, %bias, %mean, %var epsilon 1.0e-03 : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %2 = nn.relu %1 : tensor<?x8xf32>
  func.return %2 : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @sequence_bn
// CHECK:         nn.matmul
// CHECK-NEXT:    nn.batch_norm
func.func @sequence_bn(%x: tensor<?x4x16xf32>) -> tensor<?x4x8xf32> {
  %w = nn.weight_ref @w : tensor<16x8xf32>
  %s = nn.constant dense<1.0> : tensor<4xf32>
  %z = nn.constant dense<0.0> : tensor<4xf32>
  %0 = nn.matmul %x, %w : tensor<?x4x16xf32>, tensor<16x8xf32> -> tensor<?x4x8xf32>
  %1 = nn.batch_norm %0, %s, %z, %z, %s : tensor<?x4x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<?x4x8xf32>
  func.return %1 : tensor<?x4x8xf32>
}
