// RUN: ncc-opt < %s | FileCheck %s
// RUN: ncc-opt - < %s | FileCheck %s
// Without a file (or with '-'), ncc-opt reads standard input, as mlir-opt does.

// CHECK: neuron.net @n -> (n01)
neuron.net @n -> (n01) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001)
}
