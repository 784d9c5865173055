// RUN: ncc-opt %s --layerize | FileCheck %s
// One depth, two activations: two layers over the same inputs, and a weight
// without a value gets the documented seeded initial value.

// CHECK:       nn.weight @net_l1_w : tensor<1x1xf32> = dense<{{\[\[}}2.0]]>
// CHECK-NEXT:  nn.weight @net_l2_w : tensor<1x1xf32> = dense<{{\[\[}}-0.44754657]]>
// CHECK-LABEL: func.func @net(%x: tensor<?x1xf32>) -> tensor<?x2xf32>
// CHECK:         %[[R:.*]] = nn.relu
// CHECK:         %[[S:.*]] = nn.sigmoid
// CHECK:         %[[C:.*]] = nn.concat %x, %[[R]], %[[S]] axis 1
// The outputs are contiguous columns of the concatenation: a slice, not a gather.
// CHECK-NEXT:    %[[O:.*]] = nn.slice %[[C]] starts [1] ends [3] axes [1]
// CHECK-NEXT:    func.return %[[O]]
neuron.net @net -> (n01, n02) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001 = 2.0)
  neuron.neuron n02 sigmoid(n00 * @w0002)
}
