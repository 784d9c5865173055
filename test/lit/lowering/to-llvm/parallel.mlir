// RUN: ncc-opt %s --lower-to-llvm | FileCheck %s --check-prefix=LLVM
// RUN: ncc-translate %s --emit-llvm | FileCheck %s --check-prefix=IR
// lower-to-llvm calls an outlined parallel loop through its launcher,
// `@<loop>_parallel`, declared with the loop function's type and marked with
// the team size, the step and the loop it runs; the engine defines it
// (passes/lowering/openmp.py): it splits [lo, hi) into one run of whole
// iterations per thread and runs them on an OpenMP team (GOMP_parallel; where
// libgomp is missing, the threads' runs one after another).

// LLVM:       llvm.func @scale(
// LLVM:         llvm.call @scale_nest0_parallel(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (i64, i64, !llvm.ptr, !llvm.ptr, i64) -> ()
// LLVM:       llvm.func @scale_nest0(%{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr {llvm.noalias}, %{{.*}}: !llvm.ptr {llvm.noalias}, %{{.*}}: i64) attributes {ncc.outlined}
// LLVM:       llvm.func @scale_nest0_parallel(i64, i64, !llvm.ptr, !llvm.ptr, i64) attributes {ncc.parallel = [2 : i64, 1 : i64, 2 : i64], ncc.parallel_loop = "scale_nest0"}

// The team's body: thread t of n runs iterations [lo + t * per, min(hi, ...)).
// IR:         define internal void @scale_nest0_parallel_team(ptr
// IR:           call {{.*}}void @scale_nest0(i64 %{{.*}}, i64 %{{.*}},
func.func @scale(%x: memref<512x512xf32>, %y: memref<512x512xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c512 = arith.constant 512 : index
  %two = arith.constant 2.0 : f32
  scf.for %i = %c0 to %c512 step %c1 {
    scf.for %j = %c0 to %c512 step %c1 {
      %v = memref.load %x[%i, %j] : memref<512x512xf32>
      %d = arith.mulf %v, %two : f32
      memref.store %d, %y[%i, %j] : memref<512x512xf32>
    }
  } {ncc.parallel = 2 : i64}
  func.return
}
