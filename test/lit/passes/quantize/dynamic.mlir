// RUN: ncc-opt %s --quantize="mode=dynamic" | FileCheck %s
// RUN: ncc-opt %s --quantize="mode=dynamic" --fold-qdq | FileCheck %s --check-prefix=INT
// Dynamic quantization: the weight becomes an int8 weight (symmetric, one
// scale per column) read through a dequantize; the input is quantized at run
// time (uint8 over its range, nn.dynamic_parameters); the bias stays float.
// fold-qdq then runs the product on the integers.

nn.weight @w : tensor<4x3xf32> = dense<[[1.27, 0.5, -0.25], [-0.635, 0.1, 0.25], [0.0, -0.5, 0.125], [0.3175, 0.2, -0.0625]]>
nn.weight @b : tensor<3xf32> = dense<[0.1, 0.2, 0.3]>

// CHECK:       nn.weight @w_quantized : tensor<4x3xi8> = dense<{{\[}}[127, 127, -127], [-64, 25, 127], [0, -127, 64], [32, 51, -32]]>
// CHECK-NOT:   nn.weight @w :
// CHECK-LABEL: func.func @dense(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
// CHECK:         nn.reduce_min %x
// CHECK:         nn.reduce_max %x
// CHECK:         %[[Q:.*]] = nn.quantize %x, %[[S:.*]], %[[Z:.*]] : tensor<?x4xf32>, tensor<f32>, tensor<ui8> -> tensor<?x4xui8>
// CHECK-NEXT:    %[[X:.*]] = nn.dequantize %[[Q]], %[[S]], %[[Z]] : tensor<?x4xui8>, tensor<f32>, tensor<ui8> -> tensor<?x4xf32>
// CHECK-NEXT:    %[[WS:.*]] = nn.constant dense<[0.01, 0.003937008, 0.001968504]> : tensor<3xf32>
// CHECK:         %[[W:.*]] = nn.dequantize %{{.*}}, %[[WS]], %{{.*}} : tensor<4x3xi8>, tensor<3xf32>, tensor<3xi8> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.matmul %[[X]], %[[W]]
// CHECK:         nn.add %[[Y]], %{{.*}} : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>

// INT-LABEL:   func.func @dense(
// INT:           %[[ACC:.*]] = nn.qmatmul %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x4xui8>, tensor<4x3xi8>, tensor<ui8>, tensor<i8> -> tensor<?x3xi32>
// INT:           nn.dequantize %[[ACC]], %{{.*}}, %{{.*}} axis -1 : tensor<?x3xi32>, tensor<3xf32>, tensor<3xi32> -> tensor<?x3xf32>
// INT-NOT:       nn.matmul
func.func @dense(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
  %w = nn.weight_ref @w : tensor<4x3xf32>
  %b = nn.weight_ref @b : tensor<3xf32>
  %y = nn.matmul %x, %w : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %z = nn.add %y, %b : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  func.return %z : tensor<?x3xf32>
}
