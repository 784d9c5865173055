// RUN: ncc-opt %s | FileCheck %s
// Weight symbols are names: two edges may share one weight (a convolution
// written neuron by neuron), and the order of ops need not be the index order.

// CHECK-LABEL: neuron.net @conv1d -> (n03, n04) attributes {spelling = "edges"} {
// CHECK:         neuron.neuron n04 relu(n01 * @k0, n02 * @k1) + @bias
// CHECK:         neuron.neuron n03 relu(n00 * @k0, n01 * @k1) + @bias
neuron.net @conv1d -> (n03, n04) attributes {spelling = "edges"} {
  neuron.input n00
  neuron.input n01
  neuron.input n02
  neuron.neuron n04 relu(n01 * @k0, n02 * @k1) + @bias
  neuron.neuron n03 relu(n00 * @k0, n01 * @k1) + @bias
}
