// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// A net is a DAG: self-loops and longer cycles are errors naming the neurons.

neuron.net @self -> (n01) {
  neuron.input n00
  // expected-error @+1 {{neuron n01 feeds itself (a self-loop)}}
  neuron.neuron n01 tanh(n00 * @w0001, n01 * @w0101)
}

// -----

neuron.net @cycle -> (n03) {
  neuron.input n00
  // expected-error @+1 {{the net has a cycle: n01 -> n02 -> n03 -> n01}}
  neuron.neuron n01 tanh(n00 * @w0001, n03 * @w0301)
  neuron.neuron n02 tanh(n01 * @w0102)
  neuron.neuron n03 tanh(n02 * @w0203)
}
