// RUN: ncc-opt %s --fuse | FileCheck %s
// RecognizeAttention: the scores' matmul, their scale (a division or product by
// a constant), the mask (an additive bias, or a select of a constant boolean
// mask and a fill constant, which becomes the bias where(mask, 0, fill)), the
// softmax over the keys and the product with the values become one
// nn.attention (`causal` for a constant mask of the keys after each query).
// A softmax whose result is used again stays.

// GPT-2's causal attention: scaled by 1 / sqrt(32), masked by a select. The
// mask keeps the keys up to the query's: `causal`, no bias.
// CHECK-LABEL: func.func @causal(
// CHECK-NEXT:    %[[O:.*]] = nn.attention %q, %kt, %v scale 0.1767766922712326 causal : tensor<1x2x3x32xf32>, tensor<1x2x32x3xf32>, tensor<1x2x3x32xf32> -> tensor<1x2x3x32xf32>
// CHECK-NEXT:    func.return %[[O]]
func.func @causal(%q: tensor<1x2x3x32xf32>, %kt: tensor<1x2x32x3xf32>, %v: tensor<1x2x3x32xf32>) -> tensor<1x2x3x32xf32> {
  %s = nn.matmul %q, %kt : tensor<1x2x3x32xf32>, tensor<1x2x32x3xf32> -> tensor<1x2x3x3xf32>
  %root = nn.constant dense<5.656854> : tensor<f32>
  %0 = nn.div %s, %root : tensor<1x2x3x3xf32>, tensor<f32> -> tensor<1x2x3x3xf32>
  %mask = nn.constant dense<[[true, false, false], [true, true, false], [true, true, true]]> : tensor<3x3xi1>
  %low = nn.constant dense<-3.4028235e+38> : tensor<f32>
  %1 = nn.select %mask, %0, %low : tensor<3x3xi1>, tensor<1x2x3x3xf32>, tensor<f32> -> tensor<1x2x3x3xf32>
  %2 = nn.softmax %1 : tensor<1x2x3x3xf32>
  %3 = nn.matmul %2, %v : tensor<1x2x3x3xf32>, tensor<1x2x3x32xf32> -> tensor<1x2x3x32xf32>
  func.return %3 : tensor<1x2x3x32xf32>
}

// Older exports: the causal mask an additive constant of -10000 (at most
// MASKED: its exp is 0 as float32's lowest's is), one query more than keys.
// CHECK-LABEL: func.func @causal_bias(
// CHECK-NEXT:    %[[O:.*]] = nn.attention %q, %kt, %v causal : tensor<2x4x8xf32>, tensor<2x8x3xf32>, tensor<2x3x8xf32> -> tensor<2x4x8xf32>
// CHECK-NEXT:    func.return %[[O]]
func.func @causal_bias(%q: tensor<2x4x8xf32>, %kt: tensor<2x8x3xf32>, %v: tensor<2x3x8xf32>) -> tensor<2x4x8xf32> {
  %s = nn.matmul %q, %kt : tensor<2x4x8xf32>, tensor<2x8x3xf32> -> tensor<2x4x3xf32>
  %mask = nn.constant dense<[[[0.0, -10000.0, -10000.0], [0.0, 0.0, -10000.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]> : tensor<1x4x3xf32>
  %0 = nn.add %s, %mask : tensor<2x4x3xf32>, tensor<1x4x3xf32> -> tensor<2x4x3xf32>
  %1 = nn.softmax %0 : tensor<2x4x3xf32>
  %2 = nn.matmul %1, %v : tensor<2x4x3xf32>, tensor<2x3x8xf32> -> tensor<2x4x8xf32>
  func.return %2 : tensor<2x4x8xf32>
}

// A constant bias that masks less (-100 is not at most MASKED) stays a bias.
// CHECK-LABEL: func.func @soft_bias(
// CHECK:         nn.attention %q, %kt, %v, %{{.*}} : tensor<2x2x8xf32>, tensor<2x8x2xf32>, tensor<2x2x8xf32>, tensor<2x2xf32> -> tensor<2x2x8xf32>
func.func @soft_bias(%q: tensor<2x2x8xf32>, %kt: tensor<2x8x2xf32>, %v: tensor<2x2x8xf32>) -> tensor<2x2x8xf32> {
  %s = nn.matmul %q, %kt : tensor<2x2x8xf32>, tensor<2x8x2xf32> -> tensor<2x2x2xf32>
  %mask = nn.constant dense<[[0.0, -100.0], [0.0, 0.0]]> : tensor<2x2xf32>
  %0 = nn.add %s, %mask : tensor<2x2x2xf32>, tensor<2x2xf32> -> tensor<2x2x2xf32>
  %1 = nn.softmax %0 : tensor<2x2x2xf32>
  %2 = nn.matmul %1, %v : tensor<2x2x2xf32>, tensor<2x2x8xf32> -> tensor<2x2x8xf32>
  func.return %2 : tensor<2x2x8xf32>
}

// BERT's: the padding mask an additive bias computed at run time, the bias first.
// CHECK-LABEL: func.func @padding_bias(
// CHECK-NEXT:    %[[O:.*]] = nn.attention %q, %kt, %v, %bias scale 0.125 : tensor<?x4x5x64xf32>, tensor<?x4x64x5xf32>, tensor<?x4x5x64xf32>, tensor<?x1x1x5xf32> -> tensor<?x4x5x64xf32>
// CHECK-NEXT:    func.return %[[O]]
func.func @padding_bias(%q: tensor<?x4x5x64xf32>, %kt: tensor<?x4x64x5xf32>, %v: tensor<?x4x5x64xf32>, %bias: tensor<?x1x1x5xf32>) -> tensor<?x4x5x64xf32> {
  %s = nn.matmul %q, %kt : tensor<?x4x5x64xf32>, tensor<?x4x64x5xf32> -> tensor<?x4x5x5xf32>
  %c = nn.constant dense<0.125> : tensor<f32>
  %0 = nn.mul %c, %s : tensor<f32>, tensor<?x4x5x5xf32> -> tensor<?x4x5x5xf32>
  %1 = nn.add %bias, %0 : tensor<?x1x1x5xf32>, tensor<?x4x5x5xf32> -> tensor<?x4x5x5xf32>
  %2 = nn.softmax %1 : tensor<?x4x5x5xf32>
  %3 = nn.matmul %2, %v : tensor<?x4x5x5xf32>, tensor<?x4x5x64xf32> -> tensor<?x4x5x64xf32>
  func.return %3 : tensor<?x4x5x64xf32>
}

// No scale, no mask, three dimensions.
// CHECK-LABEL: func.func @plain(
// CHECK-NEXT:    nn.attention %q, %kt, %v : tensor<2x7x3xf32>, tensor<2x3x7xf32>, tensor<2x7x5xf32> -> tensor<2x7x5xf32>
func.func @plain(%q: tensor<2x7x3xf32>, %kt: tensor<2x3x7xf32>, %v: tensor<2x7x5xf32>) -> tensor<2x7x5xf32> {
  %s = nn.matmul %q, %kt : tensor<2x7x3xf32>, tensor<2x3x7xf32> -> tensor<2x7x7xf32>
  %p = nn.softmax %s : tensor<2x7x7xf32>
  %o = nn.matmul %p, %v : tensor<2x7x7xf32>, tensor<2x7x5xf32> -> tensor<2x7x5xf32>
  func.return %o : tensor<2x7x5xf32>
}

// The probabilities are returned too (attention weights): nothing fuses.
// CHECK-LABEL: func.func @weights_returned(
// CHECK-NOT:     nn.attention
// CHECK:         func.return
func.func @weights_returned(%q: tensor<2x7x3xf32>, %kt: tensor<2x3x7xf32>, %v: tensor<2x7x5xf32>) -> (tensor<2x7x5xf32>, tensor<2x7x7xf32>) {
  %s = nn.matmul %q, %kt : tensor<2x7x3xf32>, tensor<2x3x7xf32> -> tensor<2x7x7xf32>
  %p = nn.softmax %s : tensor<2x7x7xf32>
  %o = nn.matmul %p, %v : tensor<2x7x7xf32>, tensor<2x7x5xf32> -> tensor<2x7x5xf32>
  func.return %o, %p : tensor<2x7x5xf32>, tensor<2x7x7xf32>
}
