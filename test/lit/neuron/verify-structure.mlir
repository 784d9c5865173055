// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Net-level invariants: indices unique and dense, in-indices defined, outputs valid.

neuron.net @dup -> (n01) {
  neuron.input n00
  // expected-error @+1 {{neuron n00 is defined twice}}
  neuron.input n00
}

// -----

neuron.net @range -> (n00) {
  neuron.input n00
  // expected-error @+1 {{neuron n05 is out of range: a net of 2 neurons uses n00..n01}}
  neuron.neuron n05 tanh(n00 * @w0005)
}

// -----

neuron.net @undefined -> (n01) {
  neuron.input n00
  // expected-error @+1 {{in-index n07 of neuron n01 is not a neuron of this net (n00..n01)}}
  neuron.neuron n01 tanh(n07 * @w0701)
}

// -----

// expected-error @+1 {{output n09 is not a neuron of this net}}
neuron.net @badout -> (n09) {
  neuron.input n00
  neuron.neuron n01 tanh(n00 * @w0001)
}

// -----

// expected-error @+1 {{an output neuron is listed twice}}
neuron.net @twice -> (n01, n01) {
  neuron.input n00
  neuron.neuron n01 tanh(n00 * @w0001)
}

// -----

// expected-error @+1 {{net has no neurons}}
neuron.net @empty -> () {
}
