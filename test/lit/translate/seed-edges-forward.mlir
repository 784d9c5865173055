// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_edges.txt --emit-equations | diff - %S/Inputs/seed_list.forward
// The edge list of the seed net gives the list's equations.
