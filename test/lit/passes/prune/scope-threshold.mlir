// RUN: ncc-opt %s -p 'prune{sparsity=0.5 scope=global}' | FileCheck %s --check-prefix=GLOBAL
// RUN: ncc-opt %s -p 'prune{threshold=0.5}' | FileCheck %s --check-prefix=THRESHOLD
// RUN: ncc-opt %s -p 'prune{sparsity=0.5 frozen=v}' | FileCheck %s --check-prefix=FROZEN
// RUN: ncc-opt %s -p 'prune{sparsity=0.5},prune{sparsity=0.75}' | FileCheck %s --check-prefix=AGAIN
// scope=global ranks all weights together: @v's small entries all go and
// @w keeps its large ones. threshold removes |w| < 0.5 wherever it is.
// frozen (or an `ncc.frozen` attribute, as @u has) leaves a weight alone.
// Pruning again tightens the same mask.

nn.weight @w : tensor<2x2xf32> = dense<[[1.0, -3.0], [4.0, 0.2]]>
nn.weight @v : tensor<2x2xf32> = dense<[[0.1, 0.4], [-0.3, 2.0]]>
nn.weight @u attributes {ncc.frozen} : tensor<2x2xf32> = dense<[[0.1, 0.4], [-0.3, 2.0]]>

// GLOBAL:      nn.weight @w : tensor<2x2xf32> = dense<{{\[\[}}1.0, -3.0], [4.0, 0.0]]>
// GLOBAL:      nn.weight @v : tensor<2x2xf32> = dense<{{\[\[}}0.0, 0.0], [0.0, 2.0]]>
// GLOBAL:      nn.weight @u attributes {ncc.frozen} : tensor<2x2xf32> = dense<{{\[\[}}0.1, 0.4], [-0.3, 2.0]]>
// GLOBAL-NOT:  @u_mask

// THRESHOLD:   nn.weight @w : tensor<2x2xf32> = dense<{{\[\[}}1.0, -3.0], [4.0, 0.0]]>
// THRESHOLD:   nn.weight @v : tensor<2x2xf32> = dense<{{\[\[}}0.0, 0.0], [0.0, 2.0]]>

// FROZEN:      nn.weight @w : tensor<2x2xf32> = dense<{{\[\[}}0.0, -3.0], [4.0, 0.0]]>
// FROZEN:      nn.weight @v : tensor<2x2xf32> = dense<{{\[\[}}0.1, 0.4], [-0.3, 2.0]]>
// FROZEN-NOT:  @v_mask

// AGAIN:       nn.weight @w : tensor<2x2xf32> = dense<{{\[\[}}0.0, 0.0], [4.0, 0.0]]>
// AGAIN-NEXT:  nn.weight @w_mask attributes {ncc.constant, ncc.mask_of = "w"} : tensor<2x2xf32> = dense<{{\[\[}}0.0, 0.0], [1.0, 0.0]]>
// AGAIN-NOT:   @w_mask1
// AGAIN:       func.func @f
// AGAIN-COUNT-2: nn.mul
// AGAIN-NOT:   nn.mul
func.func @f(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<2x2xf32>
  %v = nn.weight_ref @v : tensor<2x2xf32>
  %u = nn.weight_ref @u : tensor<2x2xf32>
  %0 = nn.matmul %x, %w : tensor<?x2xf32>, tensor<2x2xf32> -> tensor<?x2xf32>
  %1 = nn.matmul %0, %v : tensor<?x2xf32>, tensor<2x2xf32> -> tensor<?x2xf32>
  %2 = nn.matmul %1, %u : tensor<?x2xf32>, tensor<2x2xf32> -> tensor<?x2xf32>
  func.return %2 : tensor<?x2xf32>
}
