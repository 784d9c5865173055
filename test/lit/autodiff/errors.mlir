// RUN: not ncc-opt %s --autodiff 2>&1 | FileCheck %s
// RUN: not ncc-opt %s '--autodiff=frozen=nope' 2>&1 | FileCheck %s --check-prefix=FROZEN
// An op with no derivative rule (here a scatter that keeps the maximum) on
// the path of a gradient is an error at that op. Ops whose results carry no
// gradient (argmax's indices, a comparison) are fine.

// CHECK: errors.mlir:[[# @LINE + 5]]:{{[0-9]+}}: error: cannot differentiate 'nn.scatter_elements' with reduction max: it has no derivative rule
// CHECK-NOT: Traceback
// FROZEN: error: frozen names no weight of the module: nope
func.func @f(%x: tensor<1x1x4xf32>, %u: tensor<1x1x1xf32>) -> (tensor<1x1x4xf32>, tensor<1x1x1xi64>) {
  %i = nn.argmax %x axis 2 keepdims : tensor<1x1x4xf32> -> tensor<1x1x1xi64>
  %z = nn.scatter_elements %x, %i, %u axis 2 reduction max : tensor<1x1x4xf32>, tensor<1x1x1xi64>, tensor<1x1x1xf32> -> tensor<1x1x4xf32>
  func.return %z, %i : tensor<1x1x4xf32>, tensor<1x1x1xi64>
}
