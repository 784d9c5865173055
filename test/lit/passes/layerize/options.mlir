// RUN: ncc-opt %s --layerize | FileCheck %s --check-prefix=SPARSE
// RUN: ncc-opt %s --layerize="dense-density=0.5" | FileCheck %s --check-prefix=DENSE
// RUN: ncc-opt %s -p 'layerize{dense-density=0.5}' | FileCheck %s --check-prefix=DENSE
// RUN: ncc-opt %s --layerize="seed=7" | FileCheck %s --check-prefix=SEED
// RUN: not ncc-opt %s --layerize="dense-density=0" 2>&1 | FileCheck %s --check-prefix=BAD
// Options in MLIR syntax. dense-density: a layer whose edges fill at least this
// fraction of its matrix becomes a dense matmul (absent edges are zeros);
// seed: the seed of the initial-value rule for weights without values.

// SPARSE: nn.sparse_matmul
// DENSE:  nn.weight @net_l1_w : tensor<3x2xf32> = dense<{{\[\[}}1.0, 0.0], [2.0, 3.0], [0.0, 4.0]]>
// DENSE:  nn.matmul %x
// SEED:   nn.weight @net_l2_w : tensor<1x1xf32> = dense<{{\[\[}}0.49739453]]>
// BAD:    error: pass 'layerize' failed: dense-density must be in (0, 1], got 0
neuron.net @net -> (n03, n04, n05) {
  neuron.input n00
  neuron.input n01
  neuron.input n02
  neuron.neuron n03 sigmoid(n00 * @w0003 = 1.0, n01 * @w0103 = 2.0)
  neuron.neuron n04 sigmoid(n01 * @w0104 = 3.0, n02 * @w0204 = 4.0)
  neuron.neuron n05 relu(n04 * @w0405)
}
