// RUN: ncc-opt %s --fuse --fuse-stats -o %t 2>&1 | FileCheck %s
// RUN: ncc-opt %s -p 'fuse{stats=true}' -o %t 2>&1 | FileCheck %s
// RUN: not ncc-opt %s --fuse-stats 2>&1 | FileCheck %s --check-prefix=NOFUSE
// --fuse-stats: what the fuse pass did, on stderr. A matmul + bias + relu (one
// fused_matmul: the bias and relu in the GEMM's tile) and a chain of three
// elementwise ops after it (one loop nest): four ops and four loop nests
// fewer, and fewer arena bytes (how many depends on the GEMM's scratch, which
// the host's tile sizes set).

// CHECK:      fuse: FuseBias 1, FuseActivation 1, FuseElementwise 2
// CHECK-NEXT:   nn ops:               6 -> 2 (-4)
// CHECK-NEXT:   loop nests:           5 -> 1 (-4)
// CHECK-NEXT:   arena bytes, batch 1: {{[0-9,]+}} -> {{[0-9,]+}} (-{{[0-9,]+}})
// NOFUSE: error: --fuse-stats reports what the fuse pass does: add --fuse to the pipeline

func.func @main(%x: tensor<?x64xf32>, %w: tensor<64x64xf32>, %b: tensor<64xf32>) -> tensor<?x64xf32> {
  %0 = nn.matmul %x, %w : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %1 = nn.add %0, %b : tensor<?x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %2 = nn.relu %1 : tensor<?x64xf32>
  %3 = nn.exp %2 : tensor<?x64xf32>
  %4 = nn.tanh %3 : tensor<?x64xf32>
  %5 = nn.neg %4 : tensor<?x64xf32>
  func.return %5 : tensor<?x64xf32>
}
