// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_list.txt --emit-equations -o %t.txt
// RUN: diff %t.txt %S/Inputs/seed_list.forward
// RUN: ncc-translate --import-adjacency %S/../../../examples/seed_list.txt --emit-equations=forward | diff - %S/Inputs/seed_list.forward
// The seed's adjacency-list example prints exactly the seed's forward text
// (Inputs/seed_list.forward is copied from adjacency-format.md).
