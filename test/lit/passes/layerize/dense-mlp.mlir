// RUN: ncc-opt %s --layerize | FileCheck %s
// A fully connected 2-3-1 net: each layer is one dense nn.matmul, its bias an
// nn.add, its activation one op; the weights become module-level nn.weight symbols.

// CHECK-LABEL: builtin.module {
// CHECK-NEXT:    nn.weight @mlp_l1_w : tensor<2x3xf32> = dense<{{\[\[}}1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]>
// CHECK-NEXT:    nn.weight @mlp_l1_b : tensor<3xf32> = dense<[0.5, 0.0, -0.5]>
// CHECK-NEXT:    nn.weight @mlp_l2_w : tensor<3x1xf32> = dense<{{\[\[}}1.0], [-1.0], [2.0]]>
// CHECK-LABEL:   func.func @mlp(%x: tensor<?x2xf32>) -> tensor<?x1xf32> {
// CHECK-NEXT:      %0 = nn.weight_ref @mlp_l1_w : tensor<2x3xf32>
// CHECK-NEXT:      %1 = nn.matmul %x, %0 : tensor<?x2xf32>, tensor<2x3xf32> -> tensor<?x3xf32>
// CHECK-NEXT:      %2 = nn.weight_ref @mlp_l1_b : tensor<3xf32>
// CHECK-NEXT:      %3 = nn.add %1, %2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
// CHECK-NEXT:      %4 = nn.relu %3 : tensor<?x3xf32>
// CHECK-NEXT:      %5 = nn.weight_ref @mlp_l2_w : tensor<3x1xf32>
// CHECK-NEXT:      %6 = nn.matmul %4, %5 : tensor<?x3xf32>, tensor<3x1xf32> -> tensor<?x1xf32>
// CHECK-NEXT:      func.return %6 : tensor<?x1xf32>
// CHECK-NOT:     neuron.
neuron.net @mlp -> (n05) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 relu(n00 * @w0002 = 1.0, n01 * @w0102 = 2.0) + @b02 = 0.5
  neuron.neuron n03 relu(n00 * @w0003 = 3.0, n01 * @w0103 = 4.0) + @b03 = 0.0
  neuron.neuron n04 relu(n00 * @w0004 = 5.0, n01 * @w0104 = 6.0) + @b04 = -0.5
  neuron.neuron n05 identity(n02 * @w0205 = 1.0, n03 * @w0305 = -1.0, n04 * @w0405 = 2.0)
}
