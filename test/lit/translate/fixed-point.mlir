// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_list.txt -o %t.1.mlir
// RUN: ncc-opt %t.1.mlir -o %t.2.mlir
// RUN: diff %t.1.mlir %t.2.mlir
// RUN: ncc-translate --import-adjacency %S/../../../examples/xor_values.txt -o %t.3.mlir
// RUN: ncc-opt %t.3.mlir | ncc-opt | diff - %t.3.mlir
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix_decorated.txt | ncc-opt | ncc-translate --emit-equations | diff - %S/Inputs/seed_matrix.forward
// Import -> print -> ncc-opt -> print is a fixed point, and the equations survive it.
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_list.txt | ncc-opt --layerize -o %t.nn.1.mlir
// RUN: ncc-opt %t.nn.1.mlir -o %t.nn.2.mlir
// RUN: diff %t.nn.1.mlir %t.nn.2.mlir
// RUN: ncc-opt %t.nn.1.mlir --fuse -o %t.nn.3.mlir
// RUN: ncc-opt %t.nn.3.mlir | diff - %t.nn.3.mlir
// The same holds at the nn level, after layerize and after fuse.
