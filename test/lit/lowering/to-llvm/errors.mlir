// RUN: not ncc-opt %s --lower-to-llvm 2>&1 | FileCheck %s
// An op without an LLVM lowering is an error at its location, naming it.

func.func @bad(%x: memref<4x4xf32>) {
  %c0 = arith.constant 0 : index
  // CHECK: errors.mlir:[[# @LINE + 1]]:3: error: pass 'lower-to-llvm' failed: 'memref.subview' has no lowering to the llvm dialect
  %s = memref.subview %x[0, 0][2, 2][1, 1] : memref<4x4xf32> to memref<2x2xf32, strided<[4, 1]>>
  %v = memref.load %s[%c0, %c0] : memref<2x2xf32, strided<[4, 1]>>
  memref.store %v, %x[%c0, %c0] : memref<4x4xf32>
  func.return
}
