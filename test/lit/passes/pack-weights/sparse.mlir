// RUN: ncc-opt %s --pack-weights | FileCheck %s
// RUN: ncc-opt %s --pack-weights --lower-to-loops | FileCheck %s --check-prefix=LOOPS
// pack-weights: a matmul whose weight a prune left masked, at most 50 %
// nonzero (7 of 12 is too dense), reads it in the sparse kernel's packed forms: the column form
// (CSC: colptr, rowidx) and the slice form (16 columns a slice, 32 rows a
// block: steps, blocks, lanes), the index tables constants, the values
// gathers of the masked weight (one zero appended for empty slots). A
// denser mask stays a matmul. The loops call ncc_spmm once.

nn.weight @w : tensor<4x3xf32> = dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [10.0, 11.0, 12.0]]>
nn.weight @w_mask attributes {ncc.constant, ncc.mask_of = "w"} : tensor<4x3xf32> = dense<[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]>
nn.weight @d_mask attributes {ncc.constant, ncc.mask_of = "w"} : tensor<4x3xf32> = dense<[[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]>
nn.weight @b : tensor<3xf32> = dense<[0.5, 0.5, 0.5]>

// CHECK:      nn.weight @fused_matmul_sparse_slice_gather attributes {ncc.constant} : tensor<16xi64> = dense<[12, 1, 8, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_column_gather attributes {ncc.constant} : tensor<2xi64> = dense<[1, 8]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_steps attributes {ncc.constant} : tensor<1xi32> = dense<[1]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_blocks attributes {ncc.constant} : tensor<1xi32> = dense<[0]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_lanes attributes {ncc.constant} : tensor<16xi8> = dense<[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_colptr attributes {ncc.constant} : tensor<4xi32> = dense<[0, 0, 1, 2]>
// CHECK-NEXT: nn.weight @fused_matmul_sparse_rowidx attributes {ncc.constant} : tensor<2xi32> = dense<[0, 2]>
// CHECK-LABEL: func.func @sparse(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
// CHECK:         %[[FLAT:.+]] = nn.reshape %{{.+}} : tensor<4x3xf32> -> tensor<12xf32>
// CHECK-NEXT:    %[[Z:.+]] = nn.pad %[[FLAT]] pads [0, 1] : tensor<12xf32> -> tensor<13xf32>
// CHECK:         nn.gather %[[Z]], %{{.+}} : tensor<13xf32>, tensor<16xi64> -> tensor<16xf32>
// CHECK:         nn.gather %[[Z]], %{{.+}} : tensor<13xf32>, tensor<2xi64> -> tensor<2xf32>
// CHECK:         nn.packed_sparse_matmul %x, {{.*}} in_features 4 out_features 3 activation relu
// CHECK-NOT:     nn.fused_matmul
// LOOPS:         func.call @ncc_spmm(
func.func @sparse(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
  %w = nn.weight_ref @w : tensor<4x3xf32>
  %m = nn.weight_ref @w_mask : tensor<4x3xf32>
  %wm = nn.mul %w, %m : tensor<4x3xf32>
  %b = nn.weight_ref @b : tensor<3xf32>
  %0 = nn.fused_matmul %x, %wm, %b activation relu : tensor<?x4xf32>, tensor<4x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  func.return %0 : tensor<?x3xf32>
}

// CHECK-LABEL: func.func @dense(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
// CHECK:         nn.matmul %x
// CHECK-NOT:     nn.packed_sparse_matmul
func.func @dense(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
  %w = nn.weight_ref @w : tensor<4x3xf32>
  %m = nn.weight_ref @d_mask : tensor<4x3xf32>
  %wm = nn.mul %w, %m : tensor<4x3xf32>
  %0 = nn.matmul %x, %wm : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  func.return %0 : tensor<?x3xf32>
}
