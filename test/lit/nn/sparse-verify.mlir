// RUN: ncc-opt %s --split-input-file --verify-diagnostics
// Verifiers of sparse_matmul: its index lists against the dense shape.

func.func @sparse_range(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{entry 1: row 3 is out of range [0, 3)}}
  %0 = nn.sparse_matmul %x, %v rows [0, 3] cols [1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_col(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{entry 0: col -1 is out of range [0, 2)}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [-1, 0] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_duplicate(%x: tensor<?x3xf32>, %v: tensor<3xf32>) {
  // expected-error @+1 {{entries 0 and 2 both set (row 1, col 1)}}
  %0 = nn.sparse_matmul %x, %v rows [1, 0, 1] cols [1, 0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_lengths(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{cols (one per row index) must have 2 entries, got 3}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_values(%x: tensor<?x3xf32>, %v: tensor<5xf32>) {
  // expected-error @+1 {{values (one per nonzero) must have shape [2], got tensor<5xf32>}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<5xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_features(%x: tensor<?x4xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{input's last dimension must be in_features = 3, got tensor<?x4xf32>}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 out_features 2 : tensor<?x4xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}

// -----

func.func @sparse_missing(%x: tensor<?x3xf32>, %v: tensor<2xf32>) {
  // expected-error @+1 {{expected parameter 'out_features'}}
  %0 = nn.sparse_matmul %x, %v rows [0, 1] cols [0, 1] in_features 3 : tensor<?x3xf32>, tensor<2xf32> -> tensor<?x2xf32>
  func.return
}
