// RUN: ncc-translate %s --emit-llvm | FileCheck %s --check-prefixes=CHECK,HOST
// RUN: ncc-translate %s --emit-llvm --target-cpu=haswell | FileCheck %s --check-prefixes=CHECK,AVX2
// RUN: ncc-translate %s --emit-llvm --target-cpu=znver4 | FileCheck %s --check-prefixes=CHECK,AVX512
// ncc-translate --emit-llvm lowers to the llvm dialect, converts to LLVM IR and
// optimises it at O3, for this host or for the CPU --target-cpu names. The
// elementwise loop (tanh expanded to arith by expand-math) is vectorized: on the
// host at whatever width it has, 8 floats a vector on an AVX2 CPU, 16 on an
// AVX-512 CPU that prefers 512-bit vectors.

// CHECK-LABEL: define void @act(ptr noalias {{.*}}%{{.*}}, ptr noalias {{.*}}%{{.*}}, i64 %{{.*}})
// CHECK:       vector.body:
// HOST:        <{{[0-9]+}} x float>
// AVX2:        <8 x float>
// AVX512:      <16 x float>
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
