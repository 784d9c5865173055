// RUN: ncc-opt %s --parallelize-loops=threads=2 | FileCheck %s
// A scratch buffer (made by an op marked `ncc.scratch`, as the padded plane of
// max pooling and depthwise convolution) is shared by every iteration of the
// loop over planes; a loop marked `ncc.scratch_per_iteration` promises that
// each of its iterations writes the part of the scratch it reads before
// reading it. Such a loop splits: each thread gets a copy of the scratch
// (outline-loops makes it). Its border, filled once before the loop (too
// little work to split), is in every copy.

// CHECK-LABEL: func.func @planes
// CHECK:         memref.store %{{.*}}, %pad[%k]
// CHECK-NEXT:    }{{$}}
// The planes: each copies its plane into the scratch, then reads it.
// CHECK:         } {ncc.scratch_per_iteration, ncc.parallel = 2 : i64}
func.func @planes(%x: memref<64x32x32xf32>, %y: memref<64x32x32xf32>, %arena: memref<?xi8>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  %c34 = arith.constant 34 : index
  %c64 = arith.constant 64 : index
  %c1156 = arith.constant 1156 : index
  %inf = arith.constant 0xff800000 : f32
  %raw = memref.view %arena[%c0][] : memref<?xi8> to memref<1156xf32>
  %pad = memref.reinterpret_cast %raw to offset: [0], sizes: [1156], strides: [1] {ncc.scratch} : memref<1156xf32> to memref<1156xf32>
  scf.for %k = %c0 to %c1156 step %c1 {
    memref.store %inf, %pad[%k] : memref<1156xf32>
  }
  scf.for %c = %c0 to %c64 step %c1 {
    scf.for %i = %c0 to %c32 step %c1 {
      scf.for %j = %c0 to %c32 step %c1 {
        %v = memref.load %x[%c, %i, %j] : memref<64x32x32xf32>
        %i1 = arith.addi %i, %c1 : index
        %row = arith.muli %i1, %c34 : index
        %at = arith.addi %row, %j : index
        %at1 = arith.addi %at, %c1 : index
        memref.store %v, %pad[%at1] : memref<1156xf32>
      }
    }
    scf.for %i = %c0 to %c32 step %c1 {
      scf.for %j = %c0 to %c32 step %c1 {
        %row = arith.muli %i, %c34 : index
        %at = arith.addi %row, %j : index
        %a = memref.load %pad[%at] : memref<1156xf32>
        %at2 = arith.addi %at, %c1 : index
        %b = memref.load %pad[%at2] : memref<1156xf32>
        %m = arith.maximumf %a, %b : f32
        memref.store %m, %y[%c, %i, %j] : memref<64x32x32xf32>
      }
    }
  } {ncc.scratch_per_iteration}
  func.return
}

// The same loop without the promise: the scratch is shared, nothing splits.
// CHECK-LABEL: func.func @unpromised
// CHECK-NOT:     ncc.parallel
// CHECK:         func.return
func.func @unpromised(%x: memref<64x32x32xf32>, %y: memref<64x32x32xf32>, %arena: memref<?xi8>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  %c34 = arith.constant 34 : index
  %c64 = arith.constant 64 : index
  %c1156 = arith.constant 1156 : index
  %inf = arith.constant 0xff800000 : f32
  %raw = memref.view %arena[%c0][] : memref<?xi8> to memref<1156xf32>
  %pad = memref.reinterpret_cast %raw to offset: [0], sizes: [1156], strides: [1] {ncc.scratch} : memref<1156xf32> to memref<1156xf32>
  scf.for %k = %c0 to %c1156 step %c1 {
    memref.store %inf, %pad[%k] : memref<1156xf32>
  }
  scf.for %c = %c0 to %c64 step %c1 {
    scf.for %i = %c0 to %c32 step %c1 {
      scf.for %j = %c0 to %c32 step %c1 {
        %v = memref.load %x[%c, %i, %j] : memref<64x32x32xf32>
        %row = arith.muli %i, %c34 : index
        %at = arith.addi %row, %j : index
        memref.store %v, %pad[%at] : memref<1156xf32>
      }
    }
    scf.for %i = %c0 to %c32 step %c1 {
      scf.for %j = %c0 to %c32 step %c1 {
        %row = arith.muli %i, %c34 : index
        %at = arith.addi %row, %j : index
        %a = memref.load %pad[%at] : memref<1156xf32>
        memref.store %a, %y[%c, %i, %j] : memref<64x32x32xf32>
      }
    }
  }
  func.return
}
