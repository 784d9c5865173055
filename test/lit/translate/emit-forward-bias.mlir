// RUN: ncc-translate %s --emit-equations | FileCheck %s --match-full-lines
// RUN: not ncc-translate %s --emit-equations=sideways 2>&1 | FileCheck %s --check-prefix=BAD
// A bias is the last term; shared weight symbols print as they are named.

// CHECK:      n02 = f02( +n00*k0 +n01*k1 +b02)
// CHECK-NEXT: n03 = f03( +n01*k0 +n02*k1)
// BAD: argument --emit-equations: invalid choice: 'sideways'
neuron.net @net -> (n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @k0, n01 * @k1) + @b02
  neuron.neuron n03 tanh(n01 * @k0, n02 * @k1)
}
