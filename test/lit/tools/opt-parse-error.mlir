// RUN: not ncc-opt %s 2>&1 | FileCheck %s
// A syntax error is reported at its file:line:col, on one line.

// CHECK: opt-parse-error.mlir:[[# @LINE + 3]]:26: error: expected a neuron name such as n04, got 'input'
// CHECK-NOT: Traceback
neuron.net @n -> (n01) {
  neuron.neuron n01 relu(input * @w)
}
