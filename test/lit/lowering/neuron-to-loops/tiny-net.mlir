// RUN: ncc-opt %s --neuron-to-loops | FileCheck %s
// A tiny net lowered to one straight-line kernel: the batch loop's body loads the
// row's inputs, does one multiply-add per weight (weights loaded from the flat
// params buffer, never baked in), inlines each activation and stores the outputs.
// (`lower-to-llvm` later contracts each multiply-add into an FMA.)

// The initial parameter values: weights in order of first use, then biases.
// CHECK:       nn.weight @tiny.params : tensor<6xf32> = dense<[0.5, -1.0, 2.0, 0.25, -0.5, 0.125]>
// The kernel ABI (passes/lowering/abi.py): input, output, the params buffer; no arena.
// CHECK-LABEL: func.func @tiny(%x: memref<?x2xf32>, %y: memref<?x2xf32>, %params: memref<6xf32>)
// CHECK-SAME:    ncc.arg_roles = ["input:x", "output:y", "weight:tiny.params"]
// CHECK-SAME:    ncc.arena_bytes = array<i64: 0, 0>
// CHECK-SAME:    ncc.param_names = ["w0002", "w0102", "w0203", "w0003", "b02", "b03"]
// CHECK:         %[[C0:.*]] = arith.constant 0 : index
// CHECK-NEXT:    %[[BATCH:.*]] = memref.dim %x, %[[C0]] : memref<?x2xf32>
// CHECK:         scf.for %b = %[[C0]] to %[[BATCH]] step %{{.*}} {
// n02 = tanh(b02 + n00*w0002 + n01*w0102); the row's inputs are loaded at first use
// CHECK-NEXT:      %[[B02:.*]] = memref.load %params[%{{.*}}] : memref<6xf32>
// CHECK-NEXT:      %[[X0:.*]] = memref.load %x[%b, %[[C0]]] : memref<?x2xf32>
// CHECK-NEXT:      %[[W0:.*]] = memref.load %params[%[[C0]]] : memref<6xf32>
// CHECK-NEXT:      %[[M0:.*]] = arith.mulf %[[X0]], %[[W0]] : f32
// CHECK-NEXT:      %[[S0:.*]] = arith.addf %[[B02]], %[[M0]] : f32
// CHECK-NEXT:      %[[X1:.*]] = memref.load %x[%b, %{{.*}}] : memref<?x2xf32>
// CHECK-NEXT:      %[[W1:.*]] = memref.load %params[%{{.*}}] : memref<6xf32>
// CHECK-NEXT:      %[[M1:.*]] = arith.mulf %[[X1]], %[[W1]] : f32
// CHECK-NEXT:      %[[S1:.*]] = arith.addf %[[S0]], %[[M1]] : f32
// CHECK-NEXT:      %[[N02:.*]] = math.tanh %[[S1]] : f32
// Each output is stored to its column (the listed order: n03, n02) once computed.
// CHECK-NEXT:      memref.store %[[N02]], %y[%b, %{{.*}}] : memref<?x2xf32>
// n03 = sigmoid(b03 + n02*w0203 + n00*w0003): 1 / (1 + exp(-z)), inlined; the
// exp `afn` (expand-math's cheaper form: what 1 + exp needs)
// CHECK-NEXT:      %[[B03:.*]] = memref.load %params[%{{.*}}] : memref<6xf32>
// CHECK-NEXT:      %[[W2:.*]] = memref.load %params[%{{.*}}] : memref<6xf32>
// CHECK-NEXT:      %[[M2:.*]] = arith.mulf %[[N02]], %[[W2]] : f32
// CHECK-NEXT:      %[[S2:.*]] = arith.addf %[[B03]], %[[M2]] : f32
// CHECK-NEXT:      %[[W3:.*]] = memref.load %params[%{{.*}}] : memref<6xf32>
// CHECK-NEXT:      %[[M3:.*]] = arith.mulf %[[X0]], %[[W3]] : f32
// CHECK-NEXT:      %[[Z:.*]] = arith.addf %[[S2]], %[[M3]] : f32
// CHECK-NEXT:      %[[NEG:.*]] = arith.negf %[[Z]] : f32
// CHECK-NEXT:      %[[E:.*]] = math.exp %[[NEG]] fastmath<afn> : f32
// CHECK-NEXT:      %[[D:.*]] = arith.addf %[[ONE:.*]], %[[E]] : f32
// CHECK-NEXT:      %[[N03:.*]] = arith.divf %[[ONE]], %[[D]] : f32
// CHECK-NEXT:      memref.store %[[N03]], %y[%b, %[[C0]]] : memref<?x2xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
// CHECK-NOT:   neuron.
neuron.net @tiny -> (n03, n02) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @w0002 = 0.5, n01 * @w0102 = -1.0) + @b02 = -0.5
  neuron.neuron n03 sigmoid(n02 * @w0203 = 2.0, n00 * @w0003 = 0.25) + @b03 = 0.125
}
