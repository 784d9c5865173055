// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// Printing is a fixed point: parse -> print -> parse -> print gives the same text.

// CHECK-LABEL: neuron.net @seed -> (n0c, n0d) {
// CHECK-NEXT:    neuron.input n00
// CHECK:         neuron.neuron n04 tanh(n00 * @w0004, n01 * @w0104)
// CHECK:         neuron.neuron n0c tanh(n08 * @w080c, n09 * @w090c, n0a * @w0a0c, n0b * @w0b0c)
// CHECK-NEXT:    neuron.neuron n0d tanh(n08 * @w080d, n09 * @w090d, n0a * @w0a0d, n0b * @w0b0d)
// CHECK-NEXT:  }
neuron.net @seed -> (n0c, n0d) {
  neuron.input n00
  neuron.input n01
  neuron.input n02
  neuron.input n03
  neuron.neuron n04 tanh(n00 * @w0004, n01 * @w0104)
  neuron.neuron n05 tanh(n00 * @w0005, n01 * @w0105, n02 * @w0205)
  neuron.neuron n06 tanh(n01 * @w0106, n02 * @w0206, n03 * @w0306)
  neuron.neuron n07 tanh(n02 * @w0207, n03 * @w0307)
  neuron.neuron n08 tanh(n04 * @w0408, n05 * @w0508)
  neuron.neuron n09 tanh(n04 * @w0409, n05 * @w0509, n06 * @w0609)
  neuron.neuron n0a tanh(n05 * @w050a, n06 * @w060a, n07 * @w070a)
  neuron.neuron n0b tanh(n06 * @w060b, n07 * @w070b)
  neuron.neuron n0c tanh(n08 * @w080c, n09 * @w090c, n0a * @w0a0c, n0b * @w0b0c)
  neuron.neuron n0d tanh(n08 * @w080d, n09 * @w090d, n0a * @w0a0d, n0b * @w0b0d)
}
