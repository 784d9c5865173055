// RUN: ncc-opt %s --pack-weights | FileCheck %s
// RUN: ncc-opt %s --pack-weights | ncc-opt | FileCheck %s
// pack-weights on the int8 contractions fold-qdq makes: the weight packed
// once (nn.qpack_rows, nn.qpack), and the requantize after the contraction
// (with the i32 bias add before it, if any) folded into the packed op's
// epilogue -- bias, scale, zero point -- which the int8 GEMM applies in its
// tile: the i32 accumulator is never stored.

nn.weight @w : tensor<4x2x3x3xi8>
nn.weight @b : tensor<4x1x1xi32>
nn.weight @wd : tensor<4x3xi8>
nn.weight @w1 : tensor<4x2x1x1xi8>
nn.weight @b1 : tensor<4xi32>

// QLinearConv's chain: conv, bias per channel, requantize per channel.
// CHECK-LABEL: func.func @conv(
// CHECK:         %[[S:.*]] = nn.div %sw, %sy : tensor<4xf32>, tensor<f32> -> tensor<4xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.reshape %b : tensor<4x1x1xi32> -> tensor<4xi32>
// CHECK-NEXT:    %[[R:.*]] = nn.reshape %w : tensor<4x2x3x3xi8> -> tensor<4x18xi8>
// CHECK-NEXT:    %[[P:.*]] = nn.qpack_rows %[[R]] : tensor<4x18xi8> -> tensor<4x6xi32>
// CHECK-NEXT:    %[[Y:.*]] = nn.packed_qconv %x, %[[P]], %zx, %zw, %[[B]], %[[S]], %zy kernel [3, 3] weight_signed pads [1, 1, 1, 1] : tensor<?x2x5x5xi8>, tensor<4x6xi32>, tensor<i8>, tensor<i8>, tensor<4xi32>, tensor<4xf32>, tensor<i8> -> tensor<?x4x5x5xi8>
// CHECK-NEXT:    func.return %[[Y]]
func.func @conv(%x: tensor<?x2x5x5xi8>) -> tensor<?x4x5x5xi8> {
  %w = nn.weight_ref @w : tensor<4x2x3x3xi8>
  %b = nn.weight_ref @b : tensor<4x1x1xi32>
  %zx = nn.constant dense<-3> : tensor<i8>
  %zw = nn.constant dense<0> : tensor<i8>
  %sw = nn.constant dense<[0.01, 0.02, 0.03, 0.04]> : tensor<4xf32>
  %sy = nn.constant dense<0.5> : tensor<f32>
  %zy = nn.constant dense<-128> : tensor<i8>
  %acc = nn.qconv %x, %w, %zx, %zw pads [1, 1, 1, 1] : tensor<?x2x5x5xi8>, tensor<4x2x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x4x5x5xi32>
  %total = nn.add %acc, %b : tensor<?x4x5x5xi32>, tensor<4x1x1xi32> -> tensor<?x4x5x5xi32>
  %s = nn.div %sw, %sy : tensor<4xf32>, tensor<f32> -> tensor<4xf32>
  %y = nn.requantize %total, %s, %zy : tensor<?x4x5x5xi32>, tensor<4xf32>, tensor<i8> -> tensor<?x4x5x5xi8>
  func.return %y : tensor<?x4x5x5xi8>
}

// A matmul requantized without a bias, with relu: the epilogue's bias is zeros.
// CHECK-LABEL: func.func @dense(
// CHECK:         %[[Z:.*]] = nn.constant dense<0> : tensor<3xi32>
// CHECK-NEXT:    %[[P:.*]] = nn.qpack %w : tensor<4x3xi8> -> tensor<1x64xi32>
// CHECK-NEXT:    %[[Y:.*]] = nn.packed_qmatmul %x, %[[P]], %zx, %zw, %[[Z]], %s, %zy depth 4 columns 3 activation relu : tensor<?x4xui8>, tensor<1x64xi32>, tensor<ui8>, tensor<i8>, tensor<3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
// CHECK-NEXT:    func.return %[[Y]]
func.func @dense(%x: tensor<?x4xui8>) -> tensor<?x3xui8> {
  %w = nn.weight_ref @wd : tensor<4x3xi8>
  %zx = nn.constant dense<128> : tensor<ui8>
  %zw = nn.constant dense<0> : tensor<i8>
  %s = nn.constant dense<0.001> : tensor<f32>
  %zy = nn.constant dense<0> : tensor<ui8>
  %acc = nn.qmatmul %x, %w, %zx, %zw : tensor<?x4xui8>, tensor<4x3xi8>, tensor<ui8>, tensor<i8> -> tensor<?x3xi32>
  %y = nn.requantize %acc, %s, %zy activation relu : tensor<?x3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
  func.return %y : tensor<?x3xui8>
}

// The accumulator has another user: packed, not fused (the i32 result is needed).
// CHECK-LABEL: func.func @shared(
// CHECK:         %[[A:.*]] = nn.packed_qmatmul %x, %{{.*}}, %zx, %zw depth 4 columns 3 : tensor<?x4xui8>, tensor<1x64xi32>, tensor<ui8>, tensor<i8> -> tensor<?x3xi32>
// CHECK-NEXT:    %[[Y:.*]] = nn.requantize %[[A]], %s, %zy : tensor<?x3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
// CHECK-NEXT:    func.return %[[Y]], %[[A]]
func.func @shared(%x: tensor<?x4xui8>) -> (tensor<?x3xui8>, tensor<?x3xi32>) {
  %w = nn.weight_ref @wd : tensor<4x3xi8>
  %zx = nn.constant dense<128> : tensor<ui8>
  %zw = nn.constant dense<0> : tensor<i8>
  %s = nn.constant dense<0.001> : tensor<f32>
  %zy = nn.constant dense<0> : tensor<ui8>
  %acc = nn.qmatmul %x, %w, %zx, %zw : tensor<?x4xui8>, tensor<4x3xi8>, tensor<ui8>, tensor<i8> -> tensor<?x3xi32>
  %y = nn.requantize %acc, %s, %zy : tensor<?x3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
  func.return %y, %acc : tensor<?x3xui8>, tensor<?x3xi32>
}

// A bias along another axis than the channels (here the width): not the epilogue's.
// CHECK-LABEL: func.func @bias_along_width(
// CHECK:         nn.packed_qconv %x, %{{.*}}, %zx, %zw kernel [1, 1] weight_signed : tensor<?x2x5x4xi8>, tensor<4x2xi32>, tensor<i8>, tensor<i8> -> tensor<?x4x5x4xi32>
// CHECK-NEXT:    nn.add
// CHECK-NEXT:    nn.requantize
func.func @bias_along_width(%x: tensor<?x2x5x4xi8>) -> tensor<?x4x5x4xi8> {
  %w = nn.weight_ref @w1 : tensor<4x2x1x1xi8>
  %b = nn.weight_ref @b1 : tensor<4xi32>
  %zx = nn.constant dense<0> : tensor<i8>
  %zw = nn.constant dense<0> : tensor<i8>
  %s = nn.constant dense<0.01> : tensor<f32>
  %zy = nn.constant dense<0> : tensor<i8>
  %acc = nn.qconv %x, %w, %zx, %zw : tensor<?x2x5x4xi8>, tensor<4x2x1x1xi8>, tensor<i8>, tensor<i8> -> tensor<?x4x5x4xi32>
  %total = nn.add %acc, %b : tensor<?x4x5x4xi32>, tensor<4xi32> -> tensor<?x4x5x4xi32>
  %y = nn.requantize %total, %s, %zy : tensor<?x4x5x4xi32>, tensor<f32>, tensor<i8> -> tensor<?x4x5x4xi8>
  func.return %y : tensor<?x4x5x4xi8>
}
