// RUN: not ncc-opt %s --parallelize-loops=threads=0 2>&1 | FileCheck %s
// A team needs at least one thread.

// CHECK: error: pass 'parallelize-loops' failed: parallelize-loops: threads must be >= 1, got 0
func.func @f(%x: memref<4xf32>) {
  func.return
}
