// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm | FileCheck %s --check-prefixes=CHECK,HOST
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=haswell | FileCheck %s --check-prefixes=CHECK,AVX2
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=znver4 | FileCheck %s --check-prefixes=CHECK,AVX512
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=x86-64 | FileCheck %s --check-prefixes=CHECK,SSE
// The engine defines the GEMM a kernel calls for the CPU it compiles for: its
// micro-kernel keeps an MR x NR tile of C in vector registers (two vectors a
// row) and does MR x 2 fused multiply-adds per k: 6 x 16 floats on an AVX2
// CPU (16 vector registers), 14 x 32 on an AVX-512 CPU (32 registers), 6 x 8
// with SSE (the baseline x86-64), the host's whatever it has.

// CHECK:   define void @ncc_sgemm(
// HOST:    @ncc_sgemm_tile_{{[0-9]+}}x{{[0-9]+}}
// AVX2:    @ncc_sgemm_tile_6x16
// AVX512:  @ncc_sgemm_tile_14x32
// SSE:     @ncc_sgemm_tile_6x8
// HOST:    call <{{[0-9]+}} x float> @llvm.fma.v{{[0-9]+}}f32
// AVX2:    call <8 x float> @llvm.fma.v8f32
// AVX512:  call <16 x float> @llvm.fma.v16f32
// SSE:     call <4 x float> @llvm.fma.v4f32

nn.weight @w : tensor<96x80xf32>

func.func @dense(%x: tensor<?x96xf32> {ncc.name = "x"}) -> tensor<?x80xf32> {
  %w = nn.weight_ref @w : tensor<96x80xf32>
  %0 = nn.matmul %x, %w : tensor<?x96xf32>, tensor<96x80xf32> -> tensor<?x80xf32>
  func.return %0 : tensor<?x80xf32>
}
