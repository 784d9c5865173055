// RUN: ncc-opt %s --layerize --fuse --print-ir-after-all -o %t.mlir 2>&1 | FileCheck %s
// RUN: ncc-opt %s --layerize --fuse --time-passes -o %t.mlir 2>&1 | FileCheck %s --check-prefix=TIME
// --print-ir-after-all shows the IR after each pass on stderr; --time-passes its time.

// CHECK:      // -----// IR Dump After layerize //----- //
// CHECK:      nn.matmul
// CHECK:      // -----// IR Dump After fuse //----- //
// CHECK:      nn.fused_matmul
// TIME:       layerize: {{[0-9.]+}} s
// TIME-NEXT:  fuse: {{[0-9.]+}} s
neuron.net @n -> (n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 relu(n00 * @w0002 = 1.0, n01 * @w0102 = 2.0)
}
