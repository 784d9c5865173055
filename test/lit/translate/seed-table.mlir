// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_list.txt --emit-equations=table | diff - %S/Inputs/seed.table
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix_decorated.txt --emit-equations=table | diff - %S/Inputs/seed.table
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix_letters.txt --emit-equations=table | FileCheck %s --check-prefix=LETTERS
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_matrix_letters.txt --emit-equations | FileCheck %s --check-prefix=FORWARD
// The seed's term matrix ("another output"): N, weight blocks, cells, flops (two
// per synapse); the names; one row per source neuron, one cell per destination.
// A net whose matrix names its neurons by letters keeps them.

// LETTERS:      14 1 196 56
// LETTERS-NEXT: a b c d e f g h i j k l m n
// LETTERS-NEXT: a _____ _____ _____ _____ +a*ae +a*af _____ _____ _____ _____ _____ _____ _____ _____
// LETTERS-NEXT: b _____ _____ _____ _____ +b*be +b*bf +b*bg _____

// FORWARD:      a = fa()
// FORWARD:      e = fe( +a*ae +b*be)
// FORWARD:      m = fm( +i*im +j*jm +k*km +l*lm)
