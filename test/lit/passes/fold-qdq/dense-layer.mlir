// RUN: ncc-opt %s --fold-qdq | FileCheck %s
// A QDQ dense layer (as onnxruntime's quantize_static writes it, Gemm's
// transB included): the int8 weight's transpose moves before its
// dequantize, the matmul runs on the integers, the int32 bias joins the
// accumulator, and the quantize after the relu is one requantize at the
// multiplier x_scale * w_scale / y_scale. The weight's zero points, all 0,
// become one.

// CHECK-LABEL: func.func @dense(
// CHECK:         %[[T:.*]] = nn.transpose %w perm [1, 0] : tensor<3x4xi8> -> tensor<4x3xi8>
// CHECK-NEXT:    %[[Z:.*]] = nn.constant dense<0> : tensor<i8>
// CHECK-NEXT:    %[[ACC:.*]] = nn.qmatmul %xq, %[[T]], %zx, %[[Z]] : tensor<?x4xui8>, tensor<4x3xi8>, tensor<ui8>, tensor<i8> -> tensor<?x3xi32>
// CHECK-NEXT:    %[[S:.*]] = nn.mul %sx, %sw : tensor<f32>, tensor<3xf32> -> tensor<3xf32>
// CHECK:         %[[B:.*]] = nn.add %[[ACC]], %b : tensor<?x3xi32>, tensor<3xi32> -> tensor<?x3xi32>
// CHECK:         %[[M:.*]] = nn.div %[[S]], %sy : tensor<3xf32>, tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[Y:.*]] = nn.requantize %[[B]], %[[M]], %zy axis -1 activation relu : tensor<?x3xi32>, tensor<3xf32>, tensor<ui8> -> tensor<?x3xui8>
// CHECK-NEXT:    func.return %[[Y]]
func.func @dense(%xq: tensor<?x4xui8>, %w: tensor<3x4xi8>, %b: tensor<3xi32>) -> tensor<?x3xui8> {
  %sx = nn.constant dense<0.02> : tensor<f32>
  %zx = nn.constant dense<128> : tensor<ui8>
  %sw = nn.constant dense<[0.01, 0.02, 0.03]> : tensor<3xf32>
  %zw = nn.constant dense<0> : tensor<3xi8>
  %sb = nn.constant dense<[0.0002, 0.0004, 0.0006]> : tensor<3xf32>
  %zb = nn.constant dense<0> : tensor<3xi32>
  %sy = nn.constant dense<0.1> : tensor<f32>
  %zy = nn.constant dense<0> : tensor<ui8>
  %x = nn.dequantize %xq, %sx, %zx : tensor<?x4xui8>, tensor<f32>, tensor<ui8> -> tensor<?x4xf32>
  %wf = nn.dequantize %w, %sw, %zw axis 0 : tensor<3x4xi8>, tensor<3xf32>, tensor<3xi8> -> tensor<3x4xf32>
  %wt = nn.transpose %wf perm [1, 0] : tensor<3x4xf32> -> tensor<4x3xf32>
  %bf = nn.dequantize %b, %sb, %zb axis 0 : tensor<3xi32>, tensor<3xf32>, tensor<3xi32> -> tensor<3xf32>
  %m = nn.matmul %x, %wt : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %a = nn.add %m, %bf : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %r = nn.relu %a : tensor<?x3xf32>
  %y = nn.quantize %r, %sy, %zy : tensor<?x3xf32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
  func.return %y : tensor<?x3xui8>
}

// A conv whose result stays float (no quantize after it): the integer conv,
// then one dequantize of the accumulator per output channel.
// CHECK-LABEL: func.func @conv_to_float(
// CHECK:         %[[ACC:.*]] = nn.qconv %xq, %w, %zx, %zw pads [1, 1, 1, 1] : tensor<1x2x5x5xi8>, tensor<4x2x3x3xi8>, tensor<i8>, tensor<i8> -> tensor<1x4x5x5xi32>
// CHECK-NEXT:    %[[S:.*]] = nn.mul %sx, %sw : tensor<f32>
// CHECK-NEXT:    %[[Z:.*]] = nn.constant dense<0> : tensor<i32>
// CHECK-NEXT:    %[[Y:.*]] = nn.dequantize %[[ACC]], %[[S]], %[[Z]] : tensor<1x4x5x5xi32>, tensor<f32>, tensor<i32> -> tensor<1x4x5x5xf32>
// CHECK-NEXT:    func.return %[[Y]]
func.func @conv_to_float(%xq: tensor<1x2x5x5xi8>, %w: tensor<4x2x3x3xi8>) -> tensor<1x4x5x5xf32> {
  %sx = nn.constant dense<0.02> : tensor<f32>
  %zx = nn.constant dense<-3> : tensor<i8>
  %sw = nn.constant dense<0.01> : tensor<f32>
  %zw = nn.constant dense<0> : tensor<i8>
  %x = nn.dequantize %xq, %sx, %zx : tensor<1x2x5x5xi8>, tensor<f32>, tensor<i8> -> tensor<1x2x5x5xf32>
  %wf = nn.dequantize %w, %sw, %zw : tensor<4x2x3x3xi8>, tensor<f32>, tensor<i8> -> tensor<4x2x3x3xf32>
  %y = nn.conv %x, %wf pads [1, 1, 1, 1] : tensor<1x2x5x5xf32>, tensor<4x2x3x3xf32> -> tensor<1x4x5x5xf32>
  func.return %y : tensor<1x4x5x5xf32>
}

// A quantize of a dequantize with the same literal parameters is its integers;
// a dequantize used twice, or of an activation scale per axis, stays.
// CHECK-LABEL: func.func @kept(
// CHECK-NEXT:    nn.constant
// CHECK-NEXT:    nn.constant
// CHECK-NEXT:    %[[D:.*]] = nn.dequantize %q
// CHECK-NEXT:    nn.matmul %[[D]], %[[D]]
// CHECK-NEXT:    func.return %q,
func.func @kept(%q: tensor<4x4xi8>) -> (tensor<4x4xi8>, tensor<4x4xf32>) {
  %s = nn.constant dense<0.5> : tensor<f32>
  %z = nn.constant dense<1> : tensor<i8>
  %d = nn.dequantize %q, %s, %z : tensor<4x4xi8>, tensor<f32>, tensor<i8> -> tensor<4x4xf32>
  %again = nn.quantize %d, %s, %z : tensor<4x4xf32>, tensor<f32>, tensor<i8> -> tensor<4x4xi8>
  %m = nn.matmul %d, %d : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  func.return %again, %m : tensor<4x4xi8>, tensor<4x4xf32>
}

// A max pool between a dequantize and a quantize of the same parameters (a
// positive scale) is the max pool of the integers' values.
// CHECK-LABEL: func.func @pool(
// CHECK-NEXT:    %[[Y:.*]] = nn.max_pool %q kernel [2, 2] strides [2, 2] : tensor<1x2x4x4xi8> -> tensor<1x2x2x2xi8>
// CHECK-NEXT:    func.return %[[Y]]
func.func @pool(%q: tensor<1x2x4x4xi8>) -> tensor<1x2x2x2xi8> {
  %s = nn.constant dense<0.05> : tensor<f32>
  %z = nn.constant dense<-7> : tensor<i8>
  %d = nn.dequantize %q, %s, %z : tensor<1x2x4x4xi8>, tensor<f32>, tensor<i8> -> tensor<1x2x4x4xf32>
  %p = nn.max_pool %d kernel [2, 2] strides [2, 2] : tensor<1x2x4x4xf32> -> tensor<1x2x2x2xf32>
  %y = nn.quantize %p, %s, %z : tensor<1x2x2x2xf32>, tensor<f32>, tensor<i8> -> tensor<1x2x2x2xi8>
  func.return %y : tensor<1x2x2x2xi8>
}
