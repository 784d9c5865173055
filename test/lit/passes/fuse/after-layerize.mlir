// RUN: ncc-translate --import-adjacency %S/../../../../examples/xor_values.txt | ncc-opt --layerize --fuse | FileCheck %s
// RUN: ncc-translate --import-adjacency %S/../../../../examples/xor_values.txt | ncc-opt -p 'layerize,fuse' | FileCheck %s
// The XOR net, layerized then fused: its hidden layer is one fused op.

// CHECK-LABEL: func.func @net(%x: tensor<?x2xf32>) -> tensor<?x1xf32> {
// CHECK:         nn.fused_matmul %x, %{{.*}}, %{{.*}} activation relu : tensor<?x2xf32>, tensor<2x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
// CHECK:         nn.matmul
// CHECK-NEXT:    func.return
