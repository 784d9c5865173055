// RUN: ncc-opt %s --split-input-file | FileCheck %s
// RUN: not ncc-opt %s 2>&1 | FileCheck %s --check-prefix=WHOLE
// Each '// -----' chunk is its own module; outputs are joined by the same marker.

// CHECK:      neuron.net @first
// CHECK:      // -----
// CHECK-NEXT: builtin.module {
// CHECK-NEXT:   neuron.net @first
// Without the flag both nets are in one module, where @first is defined twice.
// WHOLE: opt-split-input-file.mlir:[[# @LINE + 8]]:1: error: redefinition of symbol "first"
neuron.net @first -> (n01) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001)
}

// -----

neuron.net @first -> (n01) {
  neuron.input n00
  neuron.neuron n01 tanh(n00 * @w0001)
}
