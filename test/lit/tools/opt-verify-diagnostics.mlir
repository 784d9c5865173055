// RUN: not ncc-opt %s --verify-diagnostics 2>&1 | FileCheck %s
// --verify-diagnostics fails when an expected error is missing or an error was not expected.

// CHECK-DAG: opt-verify-diagnostics.mlir:[[# @LINE + 5]]:3: error: unexpected error: neuron n01 feeds itself (a self-loop)
// CHECK-DAG: opt-verify-diagnostics.mlir:[[# @LINE + 2]]: error: expected error "defined twice" on line [[# @LINE + 3]] was not produced
neuron.net @n -> (n01) {
  // expected-error @+1 {{defined twice}}
  neuron.input n00
  neuron.neuron n01 relu(n01 * @w0101)
}
