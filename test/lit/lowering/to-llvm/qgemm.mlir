// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm | FileCheck %s --check-prefixes=CHECK,HOST
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=znver4 | FileCheck %s --check-prefixes=CHECK,VNNI512
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=alderlake | FileCheck %s --check-prefixes=CHECK,VNNI256
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=znver3 | FileCheck %s --check-prefixes=CHECK,MADD256
// RUN: ncc-opt %s --lower-to-loops | ncc-translate --emit-llvm --target-cpu=x86-64 | FileCheck %s --check-prefixes=CHECK,MADD128
// A qmatmul with a 2-D rhs is one call of the int8 GEMM, which the engine
// defines for the CPU it compiles for: four-byte dot products by vpdpbusd
// where the CPU has VNNI (16 lanes with AVX-512, 8 with AVX-VNNI), by
// vpmaddwd on bytes widened to int16 where it has not (exact: no saturation).

// CHECK:    define void @ncc_qgemm(
// HOST:     call <{{[0-9]+}} x i32> @llvm.x86.{{avx512.vpdpbusd|avx512.pmaddw.d|avx2.pmadd.wd|sse2.pmadd.wd}}
// VNNI512:  call <16 x i32> @llvm.x86.avx512.vpdpbusd.512
// VNNI256:  call <8 x i32> @llvm.x86.avx512.vpdpbusd.256
// MADD256:  call <8 x i32> @llvm.x86.avx2.pmadd.wd
// MADD128:  call <4 x i32> @llvm.x86.sse2.pmadd.wd

nn.weight @w : tensor<96x80xi8>

func.func @dense(%x: tensor<?x96xui8> {ncc.name = "x"}) -> tensor<?x80xi32> {
  %w = nn.weight_ref @w : tensor<96x80xi8>
  %za = nn.constant dense<128> : tensor<ui8>
  %zb = nn.constant dense<0> : tensor<i8>
  %0 = nn.qmatmul %x, %w, %za, %zb : tensor<?x96xui8>, tensor<96x80xi8>, tensor<ui8>, tensor<i8> -> tensor<?x80xi32>
  func.return %0 : tensor<?x80xi32>
}
