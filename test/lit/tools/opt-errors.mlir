// RUN: not ncc-opt %s -p bogus 2>&1 | FileCheck %s --check-prefix=PASS
// RUN: not ncc-opt %s --no-such-flag 2>&1 | FileCheck %s --check-prefix=FLAG
// RUN: not ncc-opt %t.does-not-exist.mlir 2>&1 | FileCheck %s --check-prefix=FILE
// RUN: not ncc-opt %s -p 'layerize{no-such-option=1}' 2>&1 | FileCheck %s --check-prefix=OPTION
// Bad command lines are one-line errors with exit code 1, never a traceback.

// PASS: error: unknown pass 'bogus' (available: {{.*}}layerize{{.*}})
// FLAG: error: unrecognized arguments: --no-such-flag
// FILE: does-not-exist.mlir: error: cannot read input file: No such file or directory
// OPTION: error: invalid options for pass 'layerize'
// PASS-NOT: Traceback
neuron.net @n -> (n01) {
  neuron.input n00
  neuron.neuron n01 relu(n00 * @w0001)
}
