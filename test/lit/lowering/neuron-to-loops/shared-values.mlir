// RUN: not ncc-opt %s --neuron-to-loops 2>&1 | FileCheck %s
// A shared weight symbol is one parameter of the kernel: its values must agree.
// The error points at the neuron that disagrees.

// CHECK: shared-values.mlir:[[# @LINE + 5]]:3: error: pass 'neuron-to-loops' failed: symbol @s is shared but has two values: 1.0 at n02 and 3.0 at n03 (a shared symbol is one parameter)
neuron.net @net -> (n02, n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 identity(n00 * @s = 1.0, n01 * @t = 2.0)
  neuron.neuron n03 identity(n00 * @s = 3.0)
}
