// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// RUN: ncc-opt %s -p 'lower-to-loops{threads=2}' | FileCheck %s --check-prefix=TWO
// A float32 product with a right operand of at least 4096 elements is one call
// of the packed GEMM, `ncc_sgemm` (declared here; the engine defines it for
// the CPU it compiles for, see lowering/to-llvm/gemm.mlir): M (the batch), N,
// K, then each buffer as a flat memref with its strides -- A's row and column
// strides, B's and C's row lengths --, the flags (24: add the bias per column,
// then relu: the fused epilogue is applied in the tile, no pass over the
// output), a workspace for the packed panels (a scratch buffer of the arena
// live during the op only), the thread count (option threads: one workspace
// part per thread), the bias and the residual (the workspace where there is
// none: never read). A batch of fewer than 4 rows takes the
// matmul's loops instead, chosen at run time (scf.if).

nn.weight @w : tensor<96x80xf32>
nn.weight @b : tensor<80xf32>

// CHECK:       func.func private @ncc_sgemm(index, index, index, memref<?xf32>, index, index, memref<?xf32>, index, memref<?xf32>, index, i32, memref<?xf32>, index, memref<?xf32>, memref<?xf32>) -> ()
// CHECK-LABEL: func.func @dense(%x: memref<?x96xf32>, %out: memref<?x80xf32>, %w: memref<96x80xf32>, %b: memref<80xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 106368>
// CHECK:         %[[FLAGS:.*]] = arith.constant 24 : i32
// CHECK:         %[[BATCH:.*]] = memref.dim %x
// CHECK-NEXT:    %[[WS:.*]] = memref.view %arena[%{{.*}}][] : memref<?xi8> to memref<26592xf32>
// CHECK:         %[[ENOUGH:.*]] = arith.cmpi sge, %[[BATCH]], %{{.*}} : index
// CHECK-NEXT:    scf.if %[[ENOUGH]] {
// CHECK:         %[[A:.*]] = memref.reinterpret_cast %x to offset: [0], sizes: [%{{.*}}], strides: [1] : memref<?x96xf32> to memref<?xf32>
// CHECK-NEXT:    %[[B:.*]] = memref.reinterpret_cast %w to offset: [0], sizes: [%{{.*}}], strides: [1] : memref<96x80xf32> to memref<?xf32>
// CHECK:         %[[C:.*]] = memref.reinterpret_cast %out to offset: [0], sizes: [%{{.*}}], strides: [1] : memref<?x80xf32> to memref<?xf32>
// CHECK-NEXT:    %[[W:.*]] = memref.reinterpret_cast %[[WS]]
// CHECK-NEXT:    %[[BIAS:.*]] = memref.reinterpret_cast %b
// CHECK-NEXT:    func.call @ncc_sgemm(%[[BATCH]], %{{.*}}, %{{.*}}, %[[A]], %{{.*}}, %{{.*}}, %[[B]], %{{.*}}, %[[C]], %{{.*}}, %[[FLAGS]], %[[W]], %{{.*}}, %[[BIAS]], %[[W]])
// CHECK-NEXT:  } else {
// TWO:         ncc.arena_bytes = array<i64: 0, 212736>
// TWO:         memref.view %arena[%{{.*}}][] : memref<?xi8> to memref<53184xf32>
func.func @dense(%x: tensor<?x96xf32> {ncc.name = "x"}) -> tensor<?x80xf32> {
  %w = nn.weight_ref @w : tensor<96x80xf32>
  %b = nn.weight_ref @b : tensor<80xf32>
  %0 = nn.fused_matmul %x, %w, %b activation relu : tensor<?x96xf32>, tensor<96x80xf32>, tensor<80xf32> -> tensor<?x80xf32>
  func.return %0 : tensor<?x80xf32>
}
