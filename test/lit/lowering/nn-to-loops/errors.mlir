// RUN: not ncc-opt %s --split-input-file --lower-to-loops 2>&1 | FileCheck %s
// The only dynamic dimension a kernel may have is dimension 0, the batch: an
// op that would make another dynamic size is an error at its location.

func.func @concat(%a: tensor<?x2xf32>, %b: tensor<?x2xf32>) -> tensor<?x2xf32> {
  // CHECK: errors.mlir:[[# @LINE + 1]]:3: error: pass 'lower-to-loops' failed: nn.concat: concatenating along the dynamic batch dimension is not supported
  %0 = nn.concat %a, %b axis 0 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}

// -----

func.func @transpose(%a: tensor<?x2xf32>) -> tensor<2x?xf32> {
  // CHECK: errors.mlir:[[# @LINE + 1]]:3: error: pass 'lower-to-loops' failed: nn.transpose: the result has type tensor<2x?xf32>: only dimension 0 (the batch) may be dynamic
  %0 = nn.transpose %a perm [1, 0] : tensor<?x2xf32> -> tensor<2x?xf32>
  func.return %0 : tensor<2x?xf32>
}

// -----

func.func @flatten(%a: tensor<?x4xf32>) -> tensor<?xf32> {
  // CHECK: errors.mlir:[[# @LINE + 1]]:3: error: pass 'lower-to-loops' failed: nn.reshape: reshape [?, 4] -> [?] does not keep dimension 0 as the batch
  %0 = nn.reshape %a : tensor<?x4xf32> -> tensor<?xf32>
  func.return %0 : tensor<?xf32>
}

// -----

// CHECK: errors.mlir:[[# @LINE + 1]]:1: error: pass 'lower-to-loops' failed: func.func: argument 0 has element type f16; lower-to-loops supports f32, f64, i8, ui8, i32, i64, i1
func.func @half(%a: tensor<4xf16>) -> tensor<4xf16> {
  %0 = nn.relu %a : tensor<4xf16>
  func.return %0 : tensor<4xf16>
}

// -----

func.func private @callee(tensor<2xf32>) -> tensor<2xf32>
func.func @call(%a: tensor<2xf32>) -> tensor<2xf32> {
  // CHECK: errors.mlir:[[# @LINE + 1]]:3: error: pass 'lower-to-loops' failed: func.call: lower-to-loops lowers nn ops only (inline calls first)
  %0 = func.call @callee(%a) : (tensor<2xf32>) -> tensor<2xf32>
  func.return %0 : tensor<2xf32>
}
