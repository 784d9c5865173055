// RUN: ncc-opt %s --split-input-file --autodiff | FileCheck %s
// The backward of convolutions and pools: a conv's input gradient is the
// transposed conv of its cotangent with the same weight, its weight gradient
// one nn.conv_weight_grad (a sum over the batch); max_pool sends each
// cotangent to its window's first maximum (one scatter-add per plane);
// avg_pool spreads it over the window (a transposed conv with ones, one group
// per channel); conv_transpose's gradients are a conv and a weight gradient.

nn.weight @w : tensor<4x3x3x3xf32> = dense<0.5>

// conv + relu + max_pool: the forward saves the relu output (read by the relu
// and max_pool rules) and the image (read by the weight gradient).
// CHECK-LABEL: func.func @net_forward(
// CHECK-SAME:      -> (tensor<?x4x4x4xf32> {ncc.name = "0"}, tensor<?x4x8x8xf32> {ncc.name = "saved:0"}, tensor<?x3x8x8xf32> {ncc.name = "saved:1"})
// CHECK:         %[[R:.*]] = nn.relu
// CHECK:         func.return %{{.*}}, %[[R]], %x
// CHECK-LABEL: func.func @net_backward(
// CHECK-SAME:      %[[Y:[0-9]+]]: tensor<?x4x8x8xf32> {ncc.name = "saved:0"}, %[[X:[0-9]+]]: tensor<?x3x8x8xf32> {ncc.name = "saved:1"}, %[[G:[0-9]+]]: tensor<?x4x4x4xf32> {ncc.name = "cotangent:0"}
// CHECK-SAME:      -> (tensor<4x3x3x3xf32> {ncc.name = "grad:w"}, tensor<?x3x8x8xf32> {ncc.name = "grad:image"})
// CHECK-NEXT:    %[[I:.*]] = nn.max_pool_indices %[[Y]] kernel [2, 2] strides [2, 2] : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xi64>
// CHECK-NEXT:    %[[IF:.*]] = nn.reshape %[[I]] : tensor<?x4x4x4xi64> -> tensor<?x4x16xi64>
// CHECK-NEXT:    %[[PLANE:.*]] = nn.constant dense<64> : tensor<i64>
// CHECK-NEXT:    %[[POS:.*]] = nn.mod %[[IF]], %[[PLANE]] : tensor<?x4x16xi64>, tensor<i64> -> tensor<?x4x16xi64>
// CHECK-NEXT:    %[[ZERO:.*]] = nn.constant dense<0.0> : tensor<f32>
// CHECK-NEXT:    %[[ZEROS:.*]] = nn.broadcast %[[ZERO]] : tensor<f32> -> tensor<?x4x64xf32>
// CHECK-NEXT:    %[[GF:.*]] = nn.reshape %[[G]] : tensor<?x4x4x4xf32> -> tensor<?x4x16xf32>
// CHECK-NEXT:    %[[S:.*]] = nn.scatter_elements %[[ZEROS]], %[[POS]], %[[GF]] axis 2 reduction add : tensor<?x4x64xf32>, tensor<?x4x16xi64>, tensor<?x4x16xf32> -> tensor<?x4x64xf32>
// CHECK-NEXT:    %[[GP:.*]] = nn.reshape %[[S]] : tensor<?x4x64xf32> -> tensor<?x4x8x8xf32>
// CHECK-NEXT:    %[[ON:.*]] = nn.greater %[[Y]], %[[ZERO]]
// CHECK-NEXT:    %[[GC:.*]] = nn.select %[[ON]], %[[GP]], %[[ZERO]]
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @w : tensor<4x3x3x3xf32>
// CHECK-NEXT:    %[[GX:.*]] = nn.conv_transpose %[[GC]], %[[W]] pads [1, 1, 1, 1] : tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x3x8x8xf32>
// CHECK-NEXT:    %[[GW:.*]] = nn.conv_weight_grad %[[X]], %[[GC]] kernel [3, 3] pads [1, 1, 1, 1] : tensor<?x3x8x8xf32>, tensor<?x4x8x8xf32> -> tensor<4x3x3x3xf32>
// CHECK-NEXT:    func.return %[[GW]], %[[GX]]
func.func @net(%x: tensor<?x3x8x8xf32> {ncc.name = "image"}) -> tensor<?x4x4x4xf32> {
  %w = nn.weight_ref @w : tensor<4x3x3x3xf32>
  %c = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<?x4x8x8xf32>
  %r = nn.relu %c : tensor<?x4x8x8xf32>
  %p = nn.max_pool %r kernel [2, 2] strides [2, 2] : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>
  func.return %p : tensor<?x4x4x4xf32>
}

// -----

// A strided, dilated, grouped conv of two inputs: the transposed conv gets an
// output_padding for the input row no window reaches.
// CHECK-LABEL: func.func @strided_backward(
// CHECK-SAME:      %[[K:[0-9]+]]: tensor<4x1x3x3xf32> {ncc.name = "saved:0"}, %[[X:[0-9]+]]: tensor<?x2x6x9xf32> {ncc.name = "saved:1"}, %[[G:[0-9]+]]: tensor<?x4x3x3xf32> {ncc.name = "cotangent:0"}
// CHECK-NEXT:    %[[GX:.*]] = nn.conv_transpose %[[G]], %[[K]] strides [2, 2] pads [1, 0, 1, 0] dilations [1, 2] group 2 output_padding [1, 0] : tensor<?x4x3x3xf32>, tensor<4x1x3x3xf32> -> tensor<?x2x6x9xf32>
// CHECK-NEXT:    %[[GK:.*]] = nn.conv_weight_grad %[[X]], %[[G]] kernel [3, 3] strides [2, 2] pads [1, 0, 1, 0] dilations [1, 2] group 2 : tensor<?x2x6x9xf32>, tensor<?x4x3x3xf32> -> tensor<4x1x3x3xf32>
// CHECK-NEXT:    func.return %[[GX]], %[[GK]]
func.func @strided(%x: tensor<?x2x6x9xf32>, %k: tensor<4x1x3x3xf32>) -> tensor<?x4x3x3xf32> {
  %c = nn.conv %x, %k strides [2, 2] pads [1, 0, 1, 0] dilations [1, 2] group 2 : tensor<?x2x6x9xf32>, tensor<4x1x3x3xf32> -> tensor<?x4x3x3xf32>
  func.return %c : tensor<?x4x3x3xf32>
}

// -----

// avg_pool without count_include_pad: the cotangent divided by each window's
// count of cells inside the image, then a transposed conv with ones.
// CHECK-LABEL: func.func @avg_backward(
// CHECK-SAME:      %[[G:[0-9]+]]: tensor<?x2x3x3xf32> {ncc.name = "cotangent:0"}
// CHECK-NEXT:    %[[COUNT:.*]] = nn.constant dense<{{\[\[\[\[}}4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]]]> : tensor<1x1x3x3xf32>
// CHECK-NEXT:    %[[D:.*]] = nn.div %[[G]], %[[COUNT]] : tensor<?x2x3x3xf32>, tensor<1x1x3x3xf32> -> tensor<?x2x3x3xf32>
// CHECK-NEXT:    %[[ONES:.*]] = nn.constant dense<1.0> : tensor<2x1x3x3xf32>
// CHECK-NEXT:    %[[GX:.*]] = nn.conv_transpose %[[D]], %[[ONES]] strides [2, 2] pads [1, 1, 1, 1] group 2 : tensor<?x2x3x3xf32>, tensor<2x1x3x3xf32> -> tensor<?x2x5x5xf32>
// CHECK-NEXT:    func.return %[[GX]]
func.func @avg(%x: tensor<?x2x5x5xf32>) -> tensor<?x2x3x3xf32> {
  %p = nn.avg_pool %x kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<?x2x5x5xf32> -> tensor<?x2x3x3xf32>
  func.return %p : tensor<?x2x3x3xf32>
}

// -----

nn.weight @up_w : tensor<2x3x2x2xf32> = dense<0.25>

// conv_transpose: its input gradient is a conv, its weight gradient the
// conv's weight gradient with input and cotangent swapped.
// CHECK-LABEL: func.func @up_backward(
// CHECK-SAME:      %[[X:[0-9]+]]: tensor<?x2x3x3xf32> {ncc.name = "saved:0"}, %[[G:[0-9]+]]: tensor<?x3x6x6xf32> {ncc.name = "cotangent:0"}
// CHECK-NEXT:    %[[W:.*]] = nn.weight_ref @up_w
// CHECK-NEXT:    %[[GX:.*]] = nn.conv %[[G]], %[[W]] strides [2, 2] : tensor<?x3x6x6xf32>, tensor<2x3x2x2xf32> -> tensor<?x2x3x3xf32>
// CHECK-NEXT:    %[[GW:.*]] = nn.conv_weight_grad %[[G]], %[[X]] kernel [2, 2] strides [2, 2] : tensor<?x3x6x6xf32>, tensor<?x2x3x3xf32> -> tensor<2x3x2x2xf32>
// CHECK-NEXT:    func.return %[[GW]], %[[GX]]
func.func @up(%x: tensor<?x2x3x3xf32>) -> tensor<?x3x6x6xf32> {
  %w = nn.weight_ref @up_w : tensor<2x3x2x2xf32>
  %u = nn.conv_transpose %x, %w strides [2, 2] : tensor<?x2x3x3xf32>, tensor<2x3x2x2xf32> -> tensor<?x3x6x6xf32>
  func.return %u : tensor<?x3x6x6xf32>
}
