// RUN: ncc-opt %s -p 'prune{threshold=0.1}' --split-input-file --verify-diagnostics
// A neuron net is pruned by its synapses' values: a net without them, N:M
// structure (nn weights only) and an unknown synapse are errors at the net
// or neuron.

neuron.net @net -> (n02) {
  neuron.input n00
  neuron.input n01
  // expected-error @+1 {{prune: neuron n02 has no weight values to rank}}
  neuron.neuron n02 tanh(n00 * @w0002, n01 * @w0102)
}
