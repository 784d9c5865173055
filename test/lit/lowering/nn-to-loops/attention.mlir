// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// nn.attention at the loop level. Products the size matmul gives the GEMM
// (Sk x D and Sk x Dv of at least 4096) are two calls of `ncc_sgemm` per block
// of up to 32 query rows, q, kt and v read where they are: S = q @ kt into a
// scratch of the block's rows of scores (never the whole score matrix), each
// row's softmax in place (scale, maximum as `x > m ? x : m`, exp, then its
// sum), o = S @ v, and o's rows divided by their sums. Smaller products (a tiny
// transformer's 32 x 32 x 32 heads) stay loops: a call would cost more than
// they do. Causal attention computes no masked score: a block's products stop
// at its last query's key.

// CHECK-LABEL: func.func @heads(
// CHECK:         %[[SCORES:.*]] = memref.reinterpret_cast %{{.*}} to offset: [0], sizes: [32, 64], strides: [64, 1]
// CHECK:         scf.for %[[HEAD:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT:      scf.for %[[BLOCK:.*]] = %{{.*}} to %{{.*}} step
// CHECK:             %[[Q:.*]] = memref.reinterpret_cast %q to offset: [%{{.*}}], sizes: [%{{.*}}], strides: [1]
// CHECK:             %[[KT:.*]] = memref.reinterpret_cast %kt to offset: [%{{.*}}], sizes: [%{{.*}}], strides: [1]
// CHECK:             func.call @ncc_sgemm(%{{.*}}, %{{.*}}, %{{.*}}, %[[Q]], %{{.*}}, %{{.*}}, %[[KT]],
// CHECK:             arith.cmpf ogt
// CHECK:             math.exp
// CHECK:             %[[V:.*]] = memref.reinterpret_cast %v to offset: [%{{.*}}], sizes: [%{{.*}}], strides: [1]
// CHECK:             %[[O:.*]] = memref.reinterpret_cast %out to offset: [%{{.*}}], sizes: [%{{.*}}], strides: [1]
// CHECK-NEXT:        func.call @ncc_sgemm(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[V]], %{{.*}}, %[[O]],
// CHECK:             arith.divf
func.func @heads(%q: tensor<2x64x64xf32> {ncc.name = "q"}, %kt: tensor<2x64x64xf32> {ncc.name = "kt"},
                 %v: tensor<2x64x64xf32> {ncc.name = "v"}) -> tensor<2x64x64xf32> {
  %o = nn.attention %q, %kt, %v scale 0.125 : tensor<2x64x64xf32>, tensor<2x64x64xf32>, tensor<2x64x64xf32> -> tensor<2x64x64xf32>
  func.return %o : tensor<2x64x64xf32>
}

// CHECK-LABEL: func.func @tiny(
// CHECK-NOT:     ncc_sgemm
// CHECK:         math.exp
// CHECK-NOT:     ncc_sgemm
// CHECK:         func.return
func.func @tiny(%q: tensor<4x32x32xf32> {ncc.name = "q"}, %kt: tensor<4x32x32xf32> {ncc.name = "kt"},
                %v: tensor<4x32x32xf32> {ncc.name = "v"}) -> tensor<4x32x32xf32> {
  %o = nn.attention %q, %kt, %v scale 0.17677669 : tensor<4x32x32xf32>, tensor<4x32x32xf32>, tensor<4x32x32xf32> -> tensor<4x32x32xf32>
  func.return %o : tensor<4x32x32xf32>
}

// Causal: query i sees keys j <= i. The block of rows [i0, i0 + n) multiplies
// min(Sk, i0 + n) keys (the GEMM's N for the scores, its K for the values), and
// its rows mask the keys after their query.
// CHECK-LABEL: func.func @causal(
// CHECK:             %[[N:.*]] = arith.minsi %{{.*}}, %{{.*}} : index
// CHECK:             %[[KEYS:.*]] = arith.minsi %{{.*}}, %{{.*}} : index
// CHECK:             func.call @ncc_sgemm(%[[N]], %[[KEYS]], %{{.*}},
// CHECK:             arith.cmpi ugt
// CHECK:             math.exp
// CHECK:             func.call @ncc_sgemm(%[[N]], %{{.*}}, %[[KEYS]],
func.func @causal(%q: tensor<2x64x64xf32> {ncc.name = "q"}, %kt: tensor<2x64x64xf32> {ncc.name = "kt"},
                  %v: tensor<2x64x64xf32> {ncc.name = "v"}) -> tensor<2x64x64xf32> {
  %o = nn.attention %q, %kt, %v scale 0.125 causal : tensor<2x64x64xf32>, tensor<2x64x64xf32>, tensor<2x64x64xf32> -> tensor<2x64x64xf32>
  func.return %o : tensor<2x64x64xf32>
}
