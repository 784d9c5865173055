// RUN: not ncc-opt %s -p 'prune{sparsity=1.0}' 2>&1 | FileCheck %s --check-prefix=RANGE
// RUN: not ncc-opt %s -p 'prune{sparsity=0.5 threshold=0.1}' 2>&1 | FileCheck %s --check-prefix=BOTH
// RUN: not ncc-opt %s -p 'prune' 2>&1 | FileCheck %s --check-prefix=NONE
// RUN: not ncc-opt %s -p 'prune{sparsity=0.5 scope=net}' 2>&1 | FileCheck %s --check-prefix=SCOPE
// RUN: not ncc-opt %s -p 'prune{structure=channels}' 2>&1 | FileCheck %s --check-prefix=STRUCTURE
// RUN: not ncc-opt %s -p 'prune{structure="4:2"}' 2>&1 | FileCheck %s --check-prefix=STRUCTURE
// RUN: not ncc-opt %s -p 'prune{sparsity=0.5 frozen=fc9}' 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not ncc-opt %s -p 'prune{sparsity=x}' 2>&1 | FileCheck %s --check-prefix=TYPE
// Bad options are errors that name the option; a weight that is not there is
// an error listing those that are.

// RANGE:     error: prune: option sparsity: must be in [0, 1), got 1.0
// BOTH:      error: prune: option threshold: give sparsity or threshold, not both
// NONE:      error: prune: option sparsity: prune needs sparsity=<fraction in [0, 1)>, threshold=<|w| below which weights go> or structure="N:M"
// SCOPE:     error: prune: option scope: must be layer or global, got 'net'
// STRUCTURE: error: prune: option structure: must be unstructured, channel or N:M with 0 < N < M (e.g. "2:4")
// UNKNOWN:   error: prune: option frozen: fc9 is not a weight that a matmul or convolution reads (those are: fc1)
// TYPE:      error: invalid options for pass 'prune'

nn.weight @fc1 : tensor<2x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0]]>
func.func @f(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w = nn.weight_ref @fc1 : tensor<2x2xf32>
  %0 = nn.matmul %x, %w : tensor<?x2xf32>, tensor<2x2xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}
