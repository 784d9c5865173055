// RUN: ncc-stats %s --batch 8 --per-op --no-memory | FileCheck %s
// RUN: ncc-stats %s --parallel-fraction 0.9755 --processors 8 --no-memory | FileCheck %s --check-prefix=AMDAHL
// RUN: ncc-stats %s --json | FileCheck %s --check-prefix=JSON
// RUN: ncc-translate %s --emit-dot | FileCheck %s --check-prefix=DOT
// ncc-stats counts a model exactly: a conv, relu, pool and a classifier at
// batch 8. Each row by hand: the conv makes 8x4x4x4 = 512 outputs of 1x3x3
// products each (4,608 MACs, 2 FLOPs each); relu 1 FLOP per element; the
// 2x2 max pool 4 per output; the matmul 8x10 outputs of 16 products; the bias
// add 1 per element; softmax 5 per element.

// CHECK:      parameters               206  trainable 206
// CHECK-NEXT: weight bytes             824  824 B
// CHECK-NEXT: MACs                   5,888  5.888 kMAC
// CHECK-NEXT: FLOPs                 13,280  13.28 kFLOP
// CHECK:      #  op           shape    weights  params   MACs  FLOPs  FLOP/B
// CHECK-NEXT: 0  nn.conv      8x4x4x4  @conv_w      36  4,608  9,216    3.41
// CHECK-NEXT: 1  nn.relu      8x4x4x4                0      0    512    0.12
// CHECK-NEXT: 2  nn.max_pool  8x4x2x2                0      0    512    0.20
// CHECK-NEXT: 3  nn.reshape   8x16                   0      0      0    0.00
// CHECK-NEXT: 4  nn.matmul    8x10     @fc_w       160  1,280  2,560    1.74
// CHECK-NEXT: 5  nn.add       8x10     @fc_b        10      0     80    0.12
// CHECK-NEXT: 6  nn.softmax   8x10                   0      0    400    0.62

// Amdahl's law for a given parallel fraction: P(8) = 1 / (0.0245 + 0.9755 / 8).
// AMDAHL:      Amdahl: f = 0.9755 (given)
// AMDAHL-NEXT: processors  speed-up
// AMDAHL-NEXT:          1      1.00
// AMDAHL-NEXT:          2      1.95
// AMDAHL-NEXT:          4      3.73
// AMDAHL-NEXT:          8      6.83

// --json: plain numbers, the memory plan of the compile pipeline (batch 1).
// JSON:      "parameters": {
// JSON-NEXT:   "total": 206,
// JSON-NEXT:   "trainable": 206,
// JSON:      "macs": 736,
// JSON-NEXT: "flops": 1660,
// JSON:      "memory": {
// JSON-NEXT:   "weights": 824,
// JSON:        "forward_arena": {{[1-9][0-9]*}},

// The graph: a node per op with its shape, the weights it reads and its FLOPs.
// DOT:      digraph "main" {
// DOT:        in0 [label="x  ?x1x4x4", shape=oval
// DOT:        [[CONV:op[0-9]+]] [label="conv\n?x4x4x4\n@conv_w 4x1x3x3 (36 params)\n1,152 FLOPs (576 MACs)"];
// DOT-NEXT:   in0 -> [[CONV]] [label="?x1x4x4"];
// DOT:        [[RELU:op[0-9]+]] [label="relu\n?x4x4x4\n64 FLOPs"];
// DOT-NEXT:   [[CONV]] -> [[RELU]]
// DOT:        out0 [label="s  ?x10", shape=oval

nn.weight @conv_w : tensor<4x1x3x3xf32> = dense<0.5>
nn.weight @fc_w : tensor<16x10xf32> = dense<0.25>
nn.weight @fc_b : tensor<10xf32> = dense<0.1>
func.func @main(%x: tensor<?x1x4x4xf32>) -> tensor<?x10xf32> {
  %w = nn.weight_ref @conv_w : tensor<4x1x3x3xf32>
  %c = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x1x4x4xf32>, tensor<4x1x3x3xf32> -> tensor<?x4x4x4xf32>
  %r = nn.relu %c : tensor<?x4x4x4xf32>
  %p = nn.max_pool %r kernel [2, 2] strides [2, 2] : tensor<?x4x4x4xf32> -> tensor<?x4x2x2xf32>
  %f = nn.reshape %p : tensor<?x4x2x2xf32> -> tensor<?x16xf32>
  %fw = nn.weight_ref @fc_w : tensor<16x10xf32>
  %fb = nn.weight_ref @fc_b : tensor<10xf32>
  %y = nn.matmul %f, %fw : tensor<?x16xf32>, tensor<16x10xf32> -> tensor<?x10xf32>
  %z = nn.add %y, %fb : tensor<?x10xf32>, tensor<10xf32> -> tensor<?x10xf32>
  %s = nn.softmax %z : tensor<?x10xf32>
  func.return %s : tensor<?x10xf32>
}
