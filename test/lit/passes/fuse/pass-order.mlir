// RUN: ncc-opt %s --fuse --layerize | FileCheck %s --check-prefix=FUSE-FIRST
// RUN: ncc-opt %s --layerize --fuse | FileCheck %s --check-prefix=LAYERIZE-FIRST
// Passes run in command-line order: fusing before layerizing finds nothing to fuse.

// FUSE-FIRST:     nn.matmul
// FUSE-FIRST:     nn.relu
// LAYERIZE-FIRST: nn.fused_matmul %x, %{{.*}} activation relu
neuron.net @n -> (n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 relu(n00 * @w0002 = 1.0, n01 * @w0102 = 2.0)
}
