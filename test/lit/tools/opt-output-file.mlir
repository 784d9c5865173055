// RUN: ncc-opt %s -o %t.out.mlir
// RUN: FileCheck %s < %t.out.mlir
// -o writes the result to a file.

// CHECK: neuron.neuron n01 sigmoid(n00 * @w0001)
neuron.net @n -> (n01) {
  neuron.input n00
  neuron.neuron n01 sigmoid(n00 * @w0001)
}
