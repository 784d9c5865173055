// RUN: rm -rf %t && mkdir -p %t
// RUN: ncc-translate %s --emit-c -o %t/tiny.c
// RUN: FileCheck %s --input-file=%t/tiny.c
// RUN: FileCheck %s --input-file=%t/tiny.h --check-prefix=HEADER
// --emit-c prints the loop level as C99: the weights as static arrays, one
// kernel whose arguments are named after the model's (in_x, out_y, w_w), a
// comment before the code of each nn op (after fuse: matmul + relu is one),
// loops over the batch (four rows at a time, then the rest, as the loop
// level has them), relu as one comparison that keeps NaN (max(x, 0) against a
// constant), and the entry points the header declares.

// HEADER:      input x: float [batch, 3]
// HEADER-NEXT: output y: float [batch, 2]
// HEADER:      size_t tiny_workspace_size(int64_t batch);
// HEADER-NEXT: int tiny_forward(const float *x, float *y, int64_t batch, void *workspace);

// CHECK:      #include "tiny.h"
// CHECK:      #include <math.h>
// CHECK:      /* @w: [3, 2] */
// CHECK-NEXT: static const float tiny_w_w[6] = {
// CHECK-NEXT:     0.5f, -1.0f, 0.25f, 2.0f, 1.5f, 0.0f
// CHECK-NEXT: };
// CHECK:      static void tiny_forward_kernel(const float *restrict in_x, float *restrict out_y, const float *restrict w_w, int64_t batch) {
// CHECK-NEXT:     (void)in_x;
// CHECK:          /* nn.fused_matmul @w -> [?, 2] ({{.*}}emit-c.mlir:{{[0-9]+}}:3) */
// CHECK-NEXT:     const int64_t [[ROWS:v[0-9]+]] = (int64_t)((uint64_t)batch / (uint64_t)4);
// CHECK:          for (int64_t [[I:i[0-9]+]] = 0; [[I]] < [[ROWS]]; [[I]] += 1) {
// CHECK:                  const float [[W:v[0-9]+]] = w_w[{{i[0-9]+}} * 2 + {{i[0-9]+}}];
// CHECK:              const float {{v[0-9]+}} = ([[Z:v[0-9]+]] <= 0.0f ? 0.0f : [[Z]]);
// CHECK:      int tiny_forward(const float *x, float *y, int64_t batch, void *workspace) {
// CHECK-NEXT:     if (batch < 0) return 1;
// CHECK-NEXT:     if (workspace == NULL && tiny_workspace_size(batch) > 0) return 2;
// CHECK-NEXT:     tiny_forward_kernel(x, y, tiny_w_w, batch);
// CHECK-NEXT:     return 0;

nn.weight @w : tensor<3x2xf32> = dense<[[0.5, -1.0], [0.25, 2.0], [1.5, 0.0]]>
func.func @main(%x: tensor<?x3xf32> {ncc.name = "x"}) -> (tensor<?x2xf32> {ncc.name = "y"}) {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %h = nn.matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %y = nn.relu %h : tensor<?x2xf32>
  func.return %y : tensor<?x2xf32>
}
