// RUN: ncc-opt %s --neuron-to-loops | FileCheck %s --check-prefix=NEURON
// RUN: ncc-opt %s --neuron-to-loops="mode=auto" | FileCheck %s --check-prefix=NEURON
// RUN: ncc-opt %s -p 'neuron-to-loops{mode=layers}' | FileCheck %s --check-prefix=LAYERS
// RUN: ncc-opt %s --neuron-to-loops="seed=7" | FileCheck %s --check-prefix=SEED
// RUN: not ncc-opt %s --neuron-to-loops="mode=fast" 2>&1 | FileCheck %s --check-prefix=BAD
// mode=neuron (the default) always emits the straight-line kernel; mode=auto
// chooses by size and density (a net this small: the kernel); mode=layers
// layerizes, leaving the nn function for fuse and lower-to-loops. seed: the
// initial-value rule's seed for weights without values (as layerize's).

// NEURON:     nn.weight @net.params : tensor<2xf32> = dense<[-0.95337456, 0.0]>
// NEURON:     func.func @net(%x: memref<?x1xf32>, %y: memref<?x1xf32>, %params: memref<2xf32>)
// NEURON:       scf.for
// LAYERS:     nn.weight @net_l1_w
// LAYERS:     func.func @net(%x: tensor<?x1xf32>) -> tensor<?x1xf32>
// LAYERS:       nn.sigmoid
// SEED:       nn.weight @net.params : tensor<2xf32> = dense<[0.62823075, 0.0]>
// BAD:        error: pass 'neuron-to-loops' failed: mode must be one of neuron, auto, layers, got 'fast'
neuron.net @net -> (n01) {
  neuron.input n00
  neuron.neuron n01 sigmoid(n00 * @w0001) + @b01
}
