// RUN: ncc-opt %s --fuse | FileCheck %s
// RecognizeSoftmax: softmax written out (exp(x - max) / sum, or exp(x) / sum,
// the reductions over one axis with keepdims) becomes nn.softmax; reductions
// over another axis, or an inner value used elsewhere, leave it alone.

// CHECK-LABEL: func.func @stable(
// CHECK-NEXT:    %[[Y:.*]] = nn.softmax %x : tensor<?x5xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @stable(%x: tensor<?x5xf32>) -> tensor<?x5xf32> {
  %0 = nn.reduce_max %x axes [1] keepdims : tensor<?x5xf32> -> tensor<?x1xf32>
  %1 = nn.sub %x, %0 : tensor<?x5xf32>, tensor<?x1xf32> -> tensor<?x5xf32>
  %2 = nn.exp %1 : tensor<?x5xf32>
  %3 = nn.reduce_sum %2 axes [-1] keepdims : tensor<?x5xf32> -> tensor<?x1xf32>
  %4 = nn.div %2, %3 : tensor<?x5xf32>, tensor<?x1xf32> -> tensor<?x5xf32>
  func.return %4 : tensor<?x5xf32>
}

// Without the max, over the channels of an image.
// CHECK-LABEL: func.func @plain_over_channels(
// CHECK-NEXT:    %[[Y:.*]] = nn.softmax %x axis -3 : tensor<1x3x2x2xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @plain_over_channels(%x: tensor<1x3x2x2xf32>) -> tensor<1x3x2x2xf32> {
  %0 = nn.exp %x : tensor<1x3x2x2xf32>
  %1 = nn.reduce_sum %0 axes [1] keepdims : tensor<1x3x2x2xf32> -> tensor<1x1x2x2xf32>
  %2 = nn.div %0, %1 : tensor<1x3x2x2xf32>, tensor<1x1x2x2xf32> -> tensor<1x3x2x2xf32>
  func.return %2 : tensor<1x3x2x2xf32>
}

// The max over another axis than the sum: the sub stays, exp(x - m) / sum is
// still a softmax of x - m.
// CHECK-LABEL: func.func @other_axes(
// CHECK:         %[[M:.*]] = nn.reduce_max %x axes [0] keepdims
// CHECK-NEXT:    %[[D:.*]] = nn.sub %x, %[[M]]
// CHECK-NEXT:    nn.softmax %[[D]]
func.func @other_axes(%x: tensor<3x5xf32>) -> tensor<3x5xf32> {
  %0 = nn.reduce_max %x axes [0] keepdims : tensor<3x5xf32> -> tensor<1x5xf32>
  %1 = nn.sub %x, %0 : tensor<3x5xf32>, tensor<1x5xf32> -> tensor<3x5xf32>
  %2 = nn.exp %1 : tensor<3x5xf32>
  %3 = nn.reduce_sum %2 axes [1] keepdims : tensor<3x5xf32> -> tensor<3x1xf32>
  %4 = nn.div %2, %3 : tensor<3x5xf32>, tensor<3x1xf32> -> tensor<3x5xf32>
  func.return %4 : tensor<3x5xf32>
}

// The exponentials are returned too: nothing is recognized.
// CHECK-LABEL: func.func @exp_returned(
// CHECK-NOT:     nn.softmax
// CHECK:         func.return
func.func @exp_returned(%x: tensor<3x5xf32>) -> (tensor<3x5xf32>, tensor<3x5xf32>) {
  %0 = nn.exp %x : tensor<3x5xf32>
  %1 = nn.reduce_sum %0 axes [1] keepdims : tensor<3x5xf32> -> tensor<3x1xf32>
  %2 = nn.div %0, %1 : tensor<3x5xf32>, tensor<3x1xf32> -> tensor<3x5xf32>
  func.return %2, %0 : tensor<3x5xf32>, tensor<3x5xf32>
}
