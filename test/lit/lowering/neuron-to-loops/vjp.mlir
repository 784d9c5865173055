// RUN: ncc-opt %s --neuron-to-loops="vjp=true" | FileCheck %s
// RUN: ncc-opt %s --neuron-to-loops="vjp=true chunk-edges=2" | FileCheck %s --check-prefix=CHUNKS
// RUN: ncc-opt %s --neuron-to-loops | FileCheck %s --check-prefix=NOVJP
// vjp=true adds the backward kernel @<net>_vjp next to the forward one. Per
// 64-row tile of the batch, loops over the tile's rows: x and dy copied into
// the tile; the forward and the backward equations of each row
// (dn = dy + sum dz_k * w, dz = dn * f'(z)), keeping n and dz in the tile; the
// gradient sums over the rows (adds marked reassoc: LLVM vectorizes them as
// reductions); y and dx (the dn of the inputs) copied out.

// One weight buffer for both kernels.
// CHECK:       nn.weight @tiny.params : tensor<5xf32> = dense<[0.5, -1.0, 2.0, -0.5, 0.25]>
// CHECK-NOT:   nn.weight
// CHECK-LABEL: func.func @tiny(%x: memref<?x2xf32>, %y: memref<?x1xf32>, %params: memref<5xf32>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:y", "weight:tiny.params"]

// The ABI the runtime calls; the parameter names are the forward kernel's.
// CHECK-LABEL: func.func @tiny_vjp(%x: memref<?x2xf32>, %dy: memref<?x1xf32>, %y: memref<?x1xf32>, %dparams: memref<5xf32>, %dx: memref<?x2xf32>, %params: memref<5xf32>, %arena: memref<?xi8>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "input:cotangent:y", "output:y", "output:grad:tiny.params", "output:grad:x", "weight:tiny.params", "arena"]
// Seven tile slots (n00, n01, n03, n02, dy, dz02, dz03) x 64 rows x 4 bytes:
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 1792>
// CHECK-SAME:    ncc.param_names = ["w0002", "w0102", "w0203", "w0003", "b02"]
// CHECK:         %[[TILE:.*]] = memref.view %arena[%[[C0:.*]]][] : memref<?xi8> to memref<7x64xf32>
// The gradient starts at zero.
// CHECK:         scf.for %k = %[[C0]] to %{{.*}} step %{{.*}} {
// CHECK-NEXT:      memref.store %{{.*}}, %dparams[%k] : memref<5xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    scf.for %t0 = %[[C0]] to %[[BATCH:.*]] step %[[C64:.*]] {
// CHECK-NEXT:      %[[LEFT:.*]] = arith.subi %[[BATCH]], %t0 : index
// CHECK-NEXT:      %[[ROWS:.*]] = arith.minsi %[[LEFT]], %[[C64]] : index
// Rows in: x and dy.
// CHECK-NEXT:      scf.for %t = %[[C0]] to %[[ROWS]] step %{{.*}} {
// CHECK:             memref.load %x
// CHECK:             memref.load %dy
// CHECK-NEXT:        memref.store %{{.*}}, %[[TILE]][%[[DY:.*]], %t]
// CHECK-NEXT:      }
// Forward: n02 = tanh(b02 + n00*w0002 + n01*w0102), n03 = relu(n02*w0203 + n00*w0003),
// the values the gradients read kept in the tile.
// CHECK-NEXT:      scf.for %[[T:.*]] = %[[C0]] to %[[ROWS]] step %{{.*}} {
// CHECK:             %[[N02:.*]] = math.tanh %{{.*}} : f32
// CHECK-NEXT:        memref.store %[[N02]], %[[TILE]][%{{.*}}, %[[T]]]
// CHECK-NEXT:        %[[W0203:.*]] = memref.load %params[%{{.*}}] : memref<5xf32>
// CHECK:             %[[Z03:.*]] = arith.addf
// CHECK-NEXT:        %[[N03:.*]] = arith.maximumf %[[Z03]], %[[ZERO:.*]] : f32
// CHECK-NEXT:        memref.store %[[N03]], %[[TILE]][%{{.*}}, %[[T]]]
// Backward: dz03 = dy * relu'(z03), from the activation table: n03 > 0 ? dy : 0 ...
// CHECK-NEXT:        %[[DY03:.*]] = memref.load %[[TILE]][%[[DY]], %[[T]]]
// CHECK-NEXT:        %[[POS:.*]] = arith.cmpf ogt, %[[N03]], %[[ZERO]] : f32
// CHECK-NEXT:        %[[DZ03:.*]] = arith.select %[[POS]], %[[DY03]], %[[ZERO]] : f32
// CHECK-NEXT:        memref.store %[[DZ03]], %[[TILE]][%[[SDZ03:.*]], %[[T]]]
// ... dn02 = dz03*w0203, dz02 = dn02 * (1 - n02^2)
// CHECK-NEXT:        %[[DN02:.*]] = arith.mulf %[[DZ03]], %[[W0203]] : f32
// CHECK-NEXT:        %[[SQ:.*]] = arith.mulf %[[N02]], %[[N02]] : f32
// CHECK-NEXT:        %[[D02:.*]] = arith.subf %[[ONE:.*]], %[[SQ]] : f32
// CHECK-NEXT:        %[[DZ02:.*]] = arith.mulf %[[DN02]], %[[D02]] : f32
// CHECK-NEXT:        memref.store %[[DZ02]], %[[TILE]][%[[SDZ02:.*]], %[[T]]]
// CHECK-NEXT:      }
// Gradients: dw0002 += dz02*n00, ..., db02 += dz02, summed over the tile's rows.
// CHECK-NEXT:      scf.for %[[TG:.*]] = %[[C0]] to %[[ROWS]] step %{{.*}} {
// CHECK-NEXT:        %[[G02:.*]] = memref.load %[[TILE]][%[[SDZ02]], %[[TG]]]
// CHECK-NEXT:        %[[X0:.*]] = memref.load %[[TILE]][%[[C0]], %[[TG]]]
// CHECK-NEXT:        %[[P0:.*]] = arith.mulf %[[G02]], %[[X0]] : f32
// CHECK:             %[[OLD:.*]] = memref.load %dparams[%[[C0]]] : memref<5xf32>
// CHECK-NEXT:        %[[NEW:.*]] = arith.addf %[[OLD]], %[[P0]] fastmath<reassoc> : f32
// CHECK-NEXT:        memref.store %[[NEW]], %dparams[%[[C0]]] : memref<5xf32>
// CHECK:           }
// Rows out: y, and dx0 = dz02*w0002 + dz03*w0003, dx1 = dz02*w0102.
// CHECK-NEXT:      scf.for %[[TO:.*]] = %[[C0]] to %[[ROWS]] step %{{.*}} {
// CHECK:             memref.store %{{.*}}, %y[%{{.*}}, %[[C0]]] : memref<?x1xf32>
// CHECK-NEXT:        memref.load %[[TILE]][%[[SDZ02]], %[[TO]]]
// CHECK:             memref.load %[[TILE]][%[[SDZ03]], %[[TO]]]
// CHECK:             memref.store %{{.*}}, %dx[%{{.*}}, %[[C0]]] : memref<?x2xf32>
// CHECK:             memref.store %{{.*}}, %dx[%{{.*}}, %{{.*}}] : memref<?x2xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return

// A net of several chunks: the forward chunks but the last, then each chunk's
// backward (its forward recomputed from the tile), last chunk first, each
// followed by its gradient loops; every phase marked to become a function of
// its own when lowered to LLVM (outline-loops).
// CHUNKS-LABEL: func.func @tiny_vjp
// CHUNKS:         scf.for %t0
// CHUNKS:           memref.load %dy
// CHUNKS:         } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             math.tanh
// CHUNKS-NOT:         arith.cmpf
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             arith.maximumf
// CHUNKS:             arith.cmpf ogt
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             fastmath<reassoc>
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             math.tanh
// CHUNKS:             arith.subf
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             fastmath<reassoc>
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:      scf.for
// CHUNKS:             memref.store %{{.*}}, %dx
// CHUNKS:           } {ncc.outline}
// CHUNKS-NEXT:    }

// NOVJP-NOT:   _vjp
neuron.net @tiny -> (n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @w0002 = 0.5, n01 * @w0102 = -1.0) + @b02 = 0.25
  neuron.neuron n03 relu(n02 * @w0203 = 2.0, n00 * @w0003 = -0.5)
}
