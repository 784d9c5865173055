// RUN: ncc-opt %s --layerize | FileCheck %s
// Neurons are grouped by depth and activation. A layer that reads neurons of
// several earlier tensors (a skip connection) gathers its columns from their
// concatenation; the outputs are gathered the same way, in listed order.

// CHECK-LABEL: func.func @skip(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
// CHECK:         %[[H:.*]] = nn.tanh %{{.*}} : tensor<?x1xf32>
// CHECK:         %[[S:.*]] = nn.concat %x, %[[H]] axis 1 : tensor<?x2xf32>, tensor<?x1xf32> -> tensor<?x3xf32>
// CHECK:         %[[IDX:.*]] = nn.constant dense<[0, 2]> : tensor<2xi64>
// CHECK:         %[[IN:.*]] = nn.gather %[[S]], %[[IDX]] axis 1 : tensor<?x3xf32>, tensor<2xi64> -> tensor<?x2xf32>
// CHECK:         nn.matmul %[[IN]], %{{.*}} : tensor<?x2xf32>, tensor<2x1xf32> -> tensor<?x1xf32>
// CHECK:         %[[Y:.*]] = nn.concat %[[S]], %{{.*}} axis 1 : tensor<?x3xf32>, tensor<?x1xf32> -> tensor<?x4xf32>
// CHECK:         %[[OUT:.*]] = nn.constant dense<[3, 2]> : tensor<2xi64>
// CHECK:         nn.gather %[[Y]], %[[OUT]] axis 1
neuron.net @skip -> (n03, n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n01 * @w0102 = 0.5)
  neuron.neuron n03 relu(n00 * @w0003 = 1.0, n02 * @w0203 = 2.0)
}
