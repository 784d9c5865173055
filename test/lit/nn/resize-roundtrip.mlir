// RUN: ncc-opt %s | ncc-opt | FileCheck %s
// resize (float lists print as [a, b]).

// CHECK-LABEL: func.func @resize(%x: tensor<?x6x15x15xf32>) -> tensor<?x6x16x16xf32> {
// CHECK-NEXT: %0 = nn.resize %x mode linear scales [1.0, 1.0, 1.0666666666666667, 1.0666666666666667] coordinate_transformation_mode align_corners : tensor<?x6x15x15xf32> -> tensor<?x6x16x16xf32>
// CHECK-NEXT: func.return %0 : tensor<?x6x16x16xf32>
func.func @resize(%x: tensor<?x6x15x15xf32>) -> tensor<?x6x16x16xf32> {
  %0 = nn.resize %x mode linear scales [1.0, 1.0, 1.0666666666666667, 1.0666666666666667] coordinate_transformation_mode align_corners : tensor<?x6x15x15xf32> -> tensor<?x6x16x16xf32>
  func.return %0 : tensor<?x6x16x16xf32>
}
