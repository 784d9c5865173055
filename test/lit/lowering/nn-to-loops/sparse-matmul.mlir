// RUN: ncc-opt %s --lower-to-loops | FileCheck %s --check-prefix=UNROLL
// RUN: ncc-opt %s --lower-to-loops=sparse-unroll-limit=2 | FileCheck %s --check-prefix=TABLE
// sparse_matmul: per batch row, zero the output row, then y[c] += x[r] * v[e]
// for every edge e = (r, c). Up to sparse-unroll-limit edges this is
// straight-line code with constant indices; above it, the row and column
// indices become two i64 weights (marked ncc.constant) read by a loop.

// UNROLL-LABEL: func.func @f(
// UNROLL-SAME:    ncc.arg_roles = ["input:x", "input:v", "output:0"]
// UNROLL-DAG:     %[[C0:.*]] = arith.constant 0 : index
// UNROLL-DAG:     %[[C1:.*]] = arith.constant 1 : index
// UNROLL-DAG:     %[[C2:.*]] = arith.constant 2 : index
// UNROLL:         scf.for %[[I:.*]] = %[[C0]] to %batch step %[[C1]] {
// UNROLL:           %[[X:.*]] = memref.load %x[%[[I]], %[[C0]]] : memref<?x3xf32>
// UNROLL-NEXT:      %[[V:.*]] = memref.load %v[%[[C0]]] : memref<3xf32>
// UNROLL-NEXT:      %[[P:.*]] = arith.mulf %[[X]], %[[V]] : f32
// UNROLL-NEXT:      %[[Y:.*]] = memref.load %out[%[[I]], %[[C1]]] : memref<?x2xf32>
// UNROLL-NEXT:      %[[S:.*]] = arith.addf %[[Y]], %[[P]] : f32
// UNROLL-NEXT:      memref.store %[[S]], %out[%[[I]], %[[C1]]] : memref<?x2xf32>
// UNROLL-NEXT:      memref.load %x[%[[I]], %[[C2]]]
// UNROLL:           memref.load %x[%[[I]], %[[C1]]]
// UNROLL-NOT:     scf.for

// TABLE:       nn.weight @f_sparse_rows attributes {ncc.constant} : tensor<3xi64> = dense<[0, 2, 1]>
// TABLE-NEXT:  nn.weight @f_sparse_cols attributes {ncc.constant} : tensor<3xi64> = dense<[1, 0, 0]>
// TABLE-LABEL: func.func @f(
// TABLE-SAME:    ncc.arg_roles = ["input:x", "input:v", "output:0", "weight:f_sparse_rows", "weight:f_sparse_cols"]
// TABLE:           memref.store %{{.*}}, %out
// TABLE-NEXT:      }
// TABLE-NEXT:      scf.for %[[E:.*]] = {{.*}} {
// TABLE-NEXT:      %[[R:.*]] = memref.load %f_sparse_rows[%[[E]]] : memref<3xi64>
// TABLE-NEXT:      %[[RI:.*]] = arith.index_cast %[[R]] : i64 to index
// TABLE-NEXT:      %[[C:.*]] = memref.load %f_sparse_cols[%[[E]]] : memref<3xi64>
// TABLE-NEXT:      %[[CI:.*]] = arith.index_cast %[[C]] : i64 to index
// TABLE-NEXT:      memref.load %x[%{{.*}}, %[[RI]]]
// TABLE-NEXT:      memref.load %v[%[[E]]]
// TABLE:           memref.store %{{.*}}, %out[%{{.*}}, %[[CI]]]
func.func @f(%x: tensor<?x3xf32>, %v: tensor<3xf32>) -> tensor<?x2xf32> {
  %0 = nn.sparse_matmul %x, %v rows [0, 2, 1] cols [1, 0, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}
