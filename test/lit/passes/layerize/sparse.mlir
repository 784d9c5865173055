// RUN: ncc-opt %s --layerize | FileCheck %s
// A layer that is not fully connected keeps just its edges: nn.sparse_matmul
// with (row, col) pairs over its input columns and one value per edge.

// CHECK:       nn.weight @net_l1_w : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
// CHECK-LABEL: func.func @net(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
// CHECK:         nn.sparse_matmul %x, %{{.*}} rows [0, 1, 1, 2] cols [0, 0, 1, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<4xf32> -> tensor<?x2xf32>
// CHECK-NEXT:    nn.sigmoid
neuron.net @net -> (n03, n04) {
  neuron.input n00
  neuron.input n01
  neuron.input n02
  neuron.neuron n03 sigmoid(n00 * @w0003 = 1.0, n01 * @w0103 = 2.0)
  neuron.neuron n04 sigmoid(n01 * @w0104 = 3.0, n02 * @w0204 = 4.0)
}
