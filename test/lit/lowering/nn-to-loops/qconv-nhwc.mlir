// RUN: ncc-opt %s --lower-to-loops | FileCheck %s
// nn.packed_qconv_nhwc at the loop level (what `channels-last` makes of an
// int8 convolution): per image, a copy of it with its padding (the input's
// zero point first, then the image inside; int8 made the int8 GEMM's uint8 by
// xor 0x80), then the matrix of its rows -- per output position and kernel
// row, one static run of 3 x 8 = 24 bytes (the kernel row's three taps, eight
// channels each, side by side in the channels-last image) -- and one call of
// `ncc_qgemm` reading those rows in place by the weight packed once. Its flags:
// 808 = A_IN_PLACE (512) | REQUANTIZE (32) | RELU (256) | PACKED_B (8), no
// BY_ROW (the bias and scale are per column: the channels are the columns);
// the input's zero point + 128 (the uint8 the bytes became).

// CHECK-LABEL: func.func @conv(
// CHECK-DAG:     %[[FLIP:.*]] = arith.constant -128 : i8
// CHECK-DAG:     %[[BYTES:.*]] = arith.constant 24 : index
// CHECK-DAG:     %[[MOVED:.*]] = arith.constant 128 : i32
// CHECK-DAG:     %[[FLAGS:.*]] = arith.constant 808 : i32
// CHECK:         scf.for %[[N:.*]] = %{{.*}} to %batch step
// CHECK:           %[[FILL:.*]] = arith.xori %{{.*}}, %[[FLIP]] : i8
// CHECK:           %[[IMAGE:.*]] = memref.reinterpret_cast %x to offset: [%{{.*}}], sizes: [6, 6, 8], strides: [48, 8, 1]
// CHECK:           %[[FRAME:.*]] = memref.reinterpret_cast %{{.*}} to offset: [2592], sizes: [8, 8, 8], strides: [64, 8, 1]
// CHECK:           memref.store %[[FILL]], %[[FRAME]]
// CHECK:           %[[BYTE:.*]] = memref.load %[[IMAGE]]
// CHECK-NEXT:      %[[FLIPPED:.*]] = arith.xori %[[BYTE]], %[[FLIP]] : i8
// CHECK:           memref.store %[[FLIPPED]], %[[FRAME]]
// CHECK:           scf.for %{{.*}} = %{{.*}} to %[[BYTES]] step
// CHECK:           %[[ZERO:.*]] = arith.addi %{{.*}}, %[[MOVED]] : i32
// CHECK:           func.call @ncc_qgemm(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[ZERO]], %{{.*}}, %{{.*}}, %[[FLAGS]],
func.func @conv(%x: tensor<?x6x6x8xi8> {ncc.name = "x"}) -> tensor<?x6x6x16xi8> {
  %p = nn.constant dense<0> : tensor<1x608xi32>
  %zx = nn.constant dense<-3> : tensor<i8>
  %b = nn.constant dense<0> : tensor<16xi32>
  %s = nn.constant dense<0.01> : tensor<f32>
  %zy = nn.constant dense<5> : tensor<i8>
  %y = nn.packed_qconv_nhwc %x, %p, %zx, %b, %s, %zy kernel [3, 3] channels 16 pads [1, 1, 1, 1] activation relu : tensor<?x6x6x8xi8>, tensor<1x608xi32>, tensor<i8>, tensor<16xi32>, tensor<f32>, tensor<i8> -> tensor<?x6x6x16xi8>
  func.return %y : tensor<?x6x6x16xi8>
}
