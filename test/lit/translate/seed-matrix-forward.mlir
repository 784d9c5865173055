// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix.txt --emit-equations | diff - %S/Inputs/seed_matrix.forward
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix_decorated.txt --emit-equations | diff - %S/Inputs/seed_matrix.forward
// The matrix spelling (plain and decorated) prints the seed's matrix text: a
// line for every neuron, inputs included.
