// RUN: ncc-opt %s -p 'prune{structure=channel sparsity=0.5}' | FileCheck %s
// RUN: ncc-opt %s -p 'prune{structure=channel sparsity=0.5 report=true}' 2>&1 >/dev/null | FileCheck %s --check-prefix=REPORT
// structure=channel: half of @k1's filters go (those of smallest L1 norm:
// filters 0 and 2), with their bias entries, and @k2 loses the input
// channels that read them; the types shrink on the way (the relu, the
// bias's reshape). @k2's own output is the function's result: left whole.

nn.weight @k1 : tensor<4x1x1x1xf32> = dense<[[[[0.1]]], [[[2.0]]], [[[-0.2]]], [[[-3.0]]]]>
nn.weight @b1 : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
nn.weight @k2 : tensor<2x4x1x1xf32> = dense<[[[[1.0]], [[2.0]], [[3.0]], [[4.0]]], [[[5.0]], [[6.0]], [[7.0]], [[8.0]]]]>

// CHECK:      nn.weight @k1 : tensor<2x1x1x1xf32> = dense<{{\[\[\[\[}}2.0]]], {{\[\[\[}}-3.0]]]]>
// CHECK-NEXT: nn.weight @b1 : tensor<2xf32> = dense<[2.0, 4.0]>
// CHECK-NEXT: nn.weight @k2 : tensor<2x2x1x1xf32> = dense<{{\[\[\[\[}}2.0]], {{\[\[}}4.0]]], {{\[\[\[}}6.0]], {{\[\[}}8.0]]]]>
// CHECK-LABEL: func.func @f(%x: tensor<?x1x3x3xf32>) -> tensor<?x2x3x3xf32> {
// CHECK:         nn.conv %x, %{{.+}} : tensor<?x1x3x3xf32>, tensor<2x1x1x1xf32> -> tensor<?x2x3x3xf32>
// CHECK:         nn.reshape %{{.+}} : tensor<2xf32> -> tensor<2x1x1xf32>
// CHECK:         nn.add %{{.+}}, %{{.+}} : tensor<?x2x3x3xf32>, tensor<2x1x1xf32> -> tensor<?x2x3x3xf32>
// CHECK:         nn.relu %{{.+}} : tensor<?x2x3x3xf32>
// CHECK:         nn.conv %{{.+}}, %{{.+}} : tensor<?x2x3x3xf32>, tensor<2x2x1x1xf32> -> tensor<?x2x3x3xf32>
func.func @f(%x: tensor<?x1x3x3xf32>) -> tensor<?x2x3x3xf32> {
  %k1 = nn.weight_ref @k1 : tensor<4x1x1x1xf32>
  %0 = nn.conv %x, %k1 : tensor<?x1x3x3xf32>, tensor<4x1x1x1xf32> -> tensor<?x4x3x3xf32>
  %b1 = nn.weight_ref @b1 : tensor<4xf32>
  %b = nn.reshape %b1 : tensor<4xf32> -> tensor<4x1x1xf32>
  %1 = nn.add %0, %b : tensor<?x4x3x3xf32>, tensor<4x1x1xf32> -> tensor<?x4x3x3xf32>
  %2 = nn.relu %1 : tensor<?x4x3x3xf32>
  %k2 = nn.weight_ref @k2 : tensor<2x4x1x1xf32>
  %3 = nn.conv %2, %k2 : tensor<?x4x3x3xf32>, tensor<2x4x1x1xf32> -> tensor<?x2x3x3xf32>
  func.return %3 : tensor<?x2x3x3xf32>
}

// REPORT:      k1  nn.conv  4x1x1x1  4  2  50.0 %  72  36  (channels 4 -> 2)
// REPORT-NEXT: k2  nn.conv  2x4x1x1  8  4  50.0 %  144  72  (left whole: the channels are a result of the function)
