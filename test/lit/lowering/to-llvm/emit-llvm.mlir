// RUN: ncc-translate %s --emit-llvm | FileCheck %s
// ncc-translate --emit-llvm lowers to the llvm dialect, converts to LLVM IR and
// optimises it at O3 for this host. The elementwise loop (tanh expanded to arith by
// expand-math) is vectorized: with AVX-512, 16 floats per vector.

// CHECK-LABEL: define void @act(ptr noalias {{.*}}%{{.*}}, ptr noalias {{.*}}%{{.*}}, i64 %{{.*}})
// CHECK:       vector.body:
// CHECK:       <16 x float>
// CHECK-NOT:   @tanhf
func.func @act(%x: memref<?xf32>, %y: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf32>
    %t = math.tanh %v : f32
    memref.store %t, %y[%i] : memref<?xf32>
  }
  func.return
}
