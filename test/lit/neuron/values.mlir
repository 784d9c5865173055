// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// The value extension: weights and biases with values, as a trained net.

// CHECK-LABEL: neuron.net @xor -> (n04) {
// CHECK:         neuron.neuron n02 relu(n00 * @w0002 = 1.0, n01 * @w0102 = 1.0)
// CHECK-NEXT:    neuron.neuron n03 relu(n00 * @w0003 = 1.0, n01 * @w0103 = 1.0) + @b03 = -1.0
// CHECK-NEXT:    neuron.neuron n04 identity(n02 * @w0204 = 1.0, n03 * @w0304 = -2.0)
neuron.net @xor -> (n04) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 relu(n00 * @w0002 = 1.0, n01 * @w0102 = 1.0)
  neuron.neuron n03 relu(n00 * @w0003 = 1, n01 * @w0103 = 1.0e0) + @b03 = -1.0
  neuron.neuron n04 identity(n02 * @w0204 = 1.0, n03 * @w0304 = -2.0)
}
