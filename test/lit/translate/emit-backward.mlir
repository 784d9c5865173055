// RUN: ncc-translate %s --emit-equations=backward | FileCheck %s
// Backward equations: every weight's gradient (the last layer's too) and the
// activation derivative of every neuron. n02 is an output that also feeds n03,
// so its cotangent gets both contributions.

// CHECK:      % given: dy02 dy03 = dL/dn of the outputs n02 n03
// CHECK-NEXT: dn03 = +dy03
// CHECK-NEXT: dz03 = dn03*f03'(z03)
// CHECK-NEXT: dw0203 = +dz03*n02
// CHECK-NEXT: dn02 = +dy02 +dz03*w0203
// CHECK-NEXT: dz02 = dn02*f02'(z02)
// CHECK-NEXT: dw0002 = +dz02*n00
// CHECK-NEXT: dw0102 = +dz02*n01
// CHECK-NEXT: db02 = +dz02
// CHECK-NEXT: dn01 = +dz02*w0102
// CHECK-NEXT: dn00 = +dz02*w0002
neuron.net @net -> (n02, n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 tanh(n00 * @w0002, n01 * @w0102) + @b02
  neuron.neuron n03 sigmoid(n02 * @w0203)
}
