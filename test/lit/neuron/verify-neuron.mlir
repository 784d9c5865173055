// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// A neuron's own invariants: known activation, one weight per in-edge, no repeats.

neuron.net @act -> (n01) {
  neuron.input n00
  // expected-error @+1 {{unknown activation 'swish' (known: identity, relu}}
  neuron.neuron n01 swish(n00 * @w0001)
}

// -----

neuron.net @repeat -> (n01) {
  neuron.input n00
  // expected-error @+1 {{in-index n00 appears twice}}
  neuron.neuron n01 tanh(n00 * @w0001, n00 * @w0001)
}

// -----

neuron.net @values -> (n02) {
  neuron.input n00
  neuron.input n01
  // expected-error @+1 {{either every weight of a neuron has a value or none has}}
  neuron.neuron n02 tanh(n00 * @w0002 = 0.5, n01 * @w0102)
}

// -----

neuron.net @name -> (n01) {
  neuron.input n00
  // expected-error @+1 {{expected a neuron name such as n04, got 'x00'}}
  neuron.neuron n01 tanh(x00 * @w0001)
}
