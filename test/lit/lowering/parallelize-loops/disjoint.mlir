// RUN: ncc-opt %s --parallelize-loops=threads=2 | FileCheck %s
// parallelize-loops marks the outermost loop of a nest whose iterations touch
// disjoint memory, and which does enough work to pay for waking a team:
// `ncc.parallel = <team size>`. Each iteration of a marked loop owns a slice
// of what it writes (a dimension indexed by the loop's variable) or a slab (a
// view at A * iv + C, at most |A| bytes long).

// Each row i writes y[i, *] only: the outer loop splits.
// CHECK-LABEL: func.func @relu
// CHECK:         scf.for %j
// CHECK:         } {ncc.parallel = 2 : i64}
// CHECK-NEXT:    func.return
func.func @relu(%x: memref<256x256xf32>, %y: memref<256x256xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %zero = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c256 step %c1 {
    scf.for %j = %c0 to %c256 step %c1 {
      %v = memref.load %x[%i, %j] : memref<256x256xf32>
      %r = arith.maximumf %v, %zero : f32
      memref.store %r, %y[%i, %j] : memref<256x256xf32>
    }
  }
  func.return
}

// A row sum carried in registers (iter_args) by the inner loop: rows split.
// CHECK-LABEL: func.func @row_sums
// CHECK:         } {ncc.parallel = 2 : i64}
func.func @row_sums(%x: memref<256x256xf32>, %s: memref<256xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %zero = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c256 step %c1 {
    %sum = scf.for %j = %c0 to %c256 step %c1 iter_args(%acc = %zero) -> (f32) {
      %v = memref.load %x[%i, %j] : memref<256x256xf32>
      %a = arith.addf %acc, %v : f32
      scf.yield %a : f32
    }
    memref.store %sum, %s[%i] : memref<256xf32>
  }
  func.return
}

// Every row adds into the same s[j]: the rows may not split; the columns
// could, but only by launching a team once per row (too many launches).
// CHECK-LABEL: func.func @column_sums
// CHECK-NOT:     ncc.parallel
// CHECK:         func.return
func.func @column_sums(%x: memref<256x256xf32>, %s: memref<256xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  scf.for %i = %c0 to %c256 step %c1 {
    scf.for %j = %c0 to %c256 step %c1 {
      %v = memref.load %x[%i, %j] : memref<256x256xf32>
      %a = memref.load %s[%j] : memref<256xf32>
      %b = arith.addf %a, %v : f32
      memref.store %b, %s[%j] : memref<256xf32>
    }
  }
  func.return
}

// Iteration i reads what iteration i - 1 wrote: not independent.
// CHECK-LABEL: func.func @prefix_sums
// CHECK-NOT:     ncc.parallel
// CHECK:         func.return
func.func @prefix_sums(%x: memref<65536xf32>) {
  %c1 = arith.constant 1 : index
  %n = arith.constant 65536 : index
  scf.for %i = %c1 to %n step %c1 {
    %p = arith.subi %i, %c1 : index
    %a = memref.load %x[%p] : memref<65536xf32>
    %b = memref.load %x[%i] : memref<65536xf32>
    %s = arith.addf %a, %b : f32
    memref.store %s, %x[%i] : memref<65536xf32>
  }
  func.return
}

// Each plane c writes its own 1,024 floats of y, through a view at c * 1024.
// CHECK-LABEL: func.func @planes
// CHECK:         memref.reinterpret_cast
// CHECK:         } {ncc.parallel = 2 : i64}
func.func @planes(%x: memref<64x1024xf32>, %y: memref<65536xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %c1024 = arith.constant 1024 : index
  scf.for %c = %c0 to %c64 step %c1 {
    %at = arith.muli %c, %c1024 : index
    %plane = memref.reinterpret_cast %y to offset: [%at], sizes: [1024], strides: [1] : memref<65536xf32> to memref<1024xf32>
    scf.for %k = %c0 to %c1024 step %c1 {
      %v = memref.load %x[%c, %k] : memref<64x1024xf32>
      %d = arith.addf %v, %v : f32
      memref.store %d, %plane[%k] : memref<1024xf32>
    }
  }
  func.return
}

// Views 512 floats apart but 1,024 long: neighbours overlap, nothing splits.
// CHECK-LABEL: func.func @overlapping_planes
// CHECK-NOT:     ncc.parallel
// CHECK:         func.return
func.func @overlapping_planes(%x: memref<64x1024xf32>, %y: memref<65536xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c63 = arith.constant 63 : index
  %c512 = arith.constant 512 : index
  %c1024 = arith.constant 1024 : index
  scf.for %c = %c0 to %c63 step %c1 {
    %at = arith.muli %c, %c512 : index
    %plane = memref.reinterpret_cast %y to offset: [%at], sizes: [1024], strides: [1] : memref<65536xf32> to memref<1024xf32>
    scf.for %k = %c0 to %c1024 step %c1 {
      %v = memref.load %x[%c, %k] : memref<64x1024xf32>
      memref.store %v, %plane[%k] : memref<1024xf32>
    }
  }
  func.return
}

// Too little work to pay for a team (16 x 16 elements).
// CHECK-LABEL: func.func @small
// CHECK-NOT:     ncc.parallel
// CHECK:         func.return
func.func @small(%x: memref<16x16xf32>, %y: memref<16x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  scf.for %i = %c0 to %c16 step %c1 {
    scf.for %j = %c0 to %c16 step %c1 {
      %v = memref.load %x[%i, %j] : memref<16x16xf32>
      memref.store %v, %y[%i, %j] : memref<16x16xf32>
    }
  }
  func.return
}

// A loop over the batch (its trip count known at run time) splits when it
// has at least `ncc.parallel_min_trips` iterations (enough work for the
// team), and the loops inside are looked at too, for a batch of 1 (here a
// row of 1,024 is too little work).
// CHECK-LABEL: func.func @rows
// CHECK:         memref.store %{{.*}}, %y[%i, %k]
// CHECK-NEXT:    }{{$}}
// CHECK-NEXT:    } {ncc.parallel = 2 : i64, ncc.parallel_min_trips = {{[0-9]+}} : i64}
func.func @rows(%x: memref<?x1024xf32>, %y: memref<?x1024xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c1024 = arith.constant 1024 : index
  %n = memref.dim %x, %c0 : memref<?x1024xf32>
  scf.for %i = %c0 to %n step %c1 {
    scf.for %k = %c0 to %c1024 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x1024xf32>
      %e = math.exp %v : f32
      memref.store %e, %y[%i, %k] : memref<?x1024xf32>
    }
  }
  func.return
}

// Iteration c writes rows c + 64 (the second input of a concat) and, unrolled
// by 2, rows 2r and 2r + 1 (block r of 2): each owns its block of rows.
// CHECK-LABEL: func.func @blocks
// CHECK:         } {ncc.parallel = 2 : i64}
// CHECK:         } {ncc.parallel = 2 : i64}
func.func @blocks(%x: memref<64x1024xf32>, %y: memref<128x1024xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c32 = arith.constant 32 : index
  %c64 = arith.constant 64 : index
  %c1024 = arith.constant 1024 : index
  scf.for %c = %c0 to %c64 step %c1 {
    scf.for %k = %c0 to %c1024 step %c1 {
      %v = memref.load %x[%c, %k] : memref<64x1024xf32>
      %row = arith.addi %c, %c64 : index
      memref.store %v, %y[%row, %k] : memref<128x1024xf32>
    }
  }
  scf.for %r = %c0 to %c32 step %c1 {
    %even = arith.muli %r, %c2 : index
    %odd = arith.addi %even, %c1 : index
    scf.for %k = %c0 to %c1024 step %c1 {
      %a = memref.load %x[%even, %k] : memref<64x1024xf32>
      %b = memref.load %x[%odd, %k] : memref<64x1024xf32>
      memref.store %b, %y[%even, %k] : memref<128x1024xf32>
      memref.store %a, %y[%odd, %k] : memref<128x1024xf32>
    }
  }
  func.return
}

// A matrix-vector product in column tiles (lower-to-loops{threads=N} makes
// them): tile t owns columns 256 t + [0, min(256, 1000 - 256 t)), an inner
// loop's variable bounded by 256, over every k.
// CHECK-LABEL: func.func @column_tiles
// CHECK:         scf.for %k
// CHECK:         } {ncc.parallel = 2 : i64}
func.func @column_tiles(%x: memref<1x512xf32>, %w: memref<512x1000xf32>, %y: memref<1x1000xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c256 = arith.constant 256 : index
  %c512 = arith.constant 512 : index
  %c1000 = arith.constant 1000 : index
  scf.for %t = %c0 to %c4 step %c1 {
    %j0 = arith.muli %t, %c256 : index
    %left = arith.subi %c1000, %j0 : index
    %width = arith.minsi %c256, %left : index
    scf.for %k = %c0 to %c512 step %c1 {
      %xv = memref.load %x[%c0, %k] : memref<1x512xf32>
      scf.for %jj = %c0 to %width step %c1 {
        %j = arith.addi %jj, %j0 : index
        %wv = memref.load %w[%k, %j] : memref<512x1000xf32>
        %acc = memref.load %y[%c0, %j] : memref<1x1000xf32>
        %p = arith.mulf %xv, %wv : f32
        %s = arith.addf %acc, %p : f32
        memref.store %s, %y[%c0, %j] : memref<1x1000xf32>
      }
    }
  }
  func.return
}
