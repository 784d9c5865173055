// RUN: ncc-opt %s --pack-weights --channels-last | FileCheck %s
// RUN: ncc-opt %s --pack-weights --channels-last | ncc-opt | FileCheck %s
// channels-last after pack-weights: int8 convolutions whose weight has zero
// point 0 run on channels-last images (nn.packed_qconv_nhwc, the weight as
// the int8 GEMM's B: [3, 3, C, M] -> [9C, M], packed once by nn.qpack); the
// max pool between them pools the channels-last image (its channels one more
// axis, of window 1) and the transposes between them cancel: one at each end
// of the chain, before the flatten.

nn.weight @w1 : tensor<8x4x3x3xi8>
nn.weight @w2 : tensor<16x8x3x3xi8>

// CHECK-LABEL: func.func @chain(
// CHECK:         %[[X:.*]] = nn.transpose %x perm [0, 2, 3, 1] : tensor<?x4x8x8xi8> -> tensor<?x8x8x4xi8>
// CHECK-NEXT:    %[[T1:.*]] = nn.transpose %w1 perm [2, 3, 1, 0] : tensor<8x4x3x3xi8> -> tensor<3x3x4x8xi8>
// CHECK-NEXT:    %[[M1:.*]] = nn.reshape %[[T1]] : tensor<3x3x4x8xi8> -> tensor<36x8xi8>
// CHECK-NEXT:    %[[P1:.*]] = nn.qpack %[[M1]] : tensor<36x8xi8> -> tensor<1x320xi32>
// CHECK-NEXT:    %[[C1:.*]] = nn.packed_qconv_nhwc %[[X]], %[[P1]], %zx, %{{.*}}, %s, %zy kernel [3, 3] channels 8 pads [1, 1, 1, 1] activation relu : tensor<?x8x8x4xi8>, tensor<1x320xi32>, tensor<i8>, tensor<8xi32>, tensor<f32>, tensor<i8> -> tensor<?x8x8x8xi8>
// CHECK-NEXT:    %[[V:.*]] = nn.reshape %[[C1]] : tensor<?x8x8x8xi8> -> tensor<?x1x8x8x8xi8>
// CHECK-NEXT:    %[[MP:.*]] = nn.max_pool %[[V]] kernel [2, 2, 1] strides [2, 2, 1] : tensor<?x1x8x8x8xi8> -> tensor<?x1x4x4x8xi8>
// CHECK-NEXT:    %[[PL:.*]] = nn.reshape %[[MP]] : tensor<?x1x4x4x8xi8> -> tensor<?x4x4x8xi8>
// CHECK-NOT:     nn.transpose %{{.*}} perm [0, 3, 1, 2]
// CHECK:         %[[C2:.*]] = nn.packed_qconv_nhwc %[[PL]], %{{.*}}, %zy kernel [3, 3] channels 16 pads [1, 1, 1, 1] : tensor<?x4x4x8xi8>, tensor<1x608xi32>, tensor<i8> -> tensor<?x4x4x16xi32>
// CHECK-NEXT:    %[[Y:.*]] = nn.transpose %[[C2]] perm [0, 3, 1, 2] : tensor<?x4x4x16xi32> -> tensor<?x16x4x4xi32>
// CHECK-NEXT:    %[[F:.*]] = nn.reshape %[[Y]] : tensor<?x16x4x4xi32> -> tensor<?x256xi32>
// CHECK-NEXT:    func.return %[[F]]
// CHECK-NOT:     nn.packed_qconv %
// CHECK-NOT:     nn.qpack_rows
func.func @chain(%x: tensor<?x4x8x8xi8>) -> tensor<?x256xi32> {
  %w1 = nn.weight_ref @w1 : tensor<8x4x3x3xi8>
  %w2 = nn.weight_ref @w2 : tensor<16x8x3x3xi8>
  %zx = nn.constant dense<-3> : tensor<i8>
  %zw = nn.constant dense<0> : tensor<i8>
  %s = nn.constant dense<0.01> : tensor<f32>
  %zy = nn.constant dense<-128> : tensor<i8>
  %acc = nn.qconv %x, %w1, %zx, %zw pads [1, 1, 1, 1] : tensor<?x4x8x8xi8>, tensor<8x4x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x8x8x8xi32>
  %y1 = nn.requantize %acc, %s, %zy activation relu : tensor<?x8x8x8xi32>, tensor<f32>, tensor<i8> -> tensor<?x8x8x8xi8>
  %p = nn.max_pool %y1 kernel [2, 2] strides [2, 2] : tensor<?x8x8x8xi8> -> tensor<?x8x4x4xi8>
  %acc2 = nn.qconv %p, %w2, %zy, %zw pads [1, 1, 1, 1] : tensor<?x8x4x4xi8>, tensor<16x8x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x16x4x4xi32>
  %f = nn.reshape %acc2 : tensor<?x16x4x4xi32> -> tensor<?x256xi32>
  func.return %f : tensor<?x256xi32>
}

// What stays channels-first: a weight zero point that is not 0 (its rows' sums
// would be needed), a grouped convolution.
// CHECK-LABEL: func.func @kept(
// CHECK-NOT:     nn.transpose
// CHECK:         nn.packed_qconv %x, %{{.*}}, %zx, %zw1 kernel [3, 3] weight_signed
// CHECK:         nn.packed_qconv %x, %{{.*}}, %zx, %zw kernel [3, 3] weight_signed group 2
// CHECK-NOT:     nn.packed_qconv_nhwc
func.func @kept(%x: tensor<?x4x8x8xi8>) -> (tensor<?x8x6x6xi32>, tensor<?x8x6x6xi32>) {
  %w1 = nn.weight_ref @w1 : tensor<8x4x3x3xi8>
  %wg = nn.constant dense<1> : tensor<8x2x3x3xi8>
  %zx = nn.constant dense<-3> : tensor<i8>
  %zw1 = nn.constant dense<1> : tensor<i8>
  %zw = nn.constant dense<0> : tensor<i8>
  %a = nn.qconv %x, %w1, %zx, %zw1 : tensor<?x4x8x8xi8>, tensor<8x4x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x8x6x6xi32>
  %b = nn.qconv %x, %wg, %zx, %zw group 2 : tensor<?x4x8x8xi8>, tensor<8x2x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x8x6x6xi32>
  func.return %a, %b : tensor<?x8x6x6xi32>, tensor<?x8x6x6xi32>
}
