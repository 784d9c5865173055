// RUN: ncc-opt %s -p 'prune{threshold=0.1}' | FileCheck %s
// RUN: ncc-opt %s -p 'prune{threshold=0.1}' | ncc-translate --emit-equations=forward | FileCheck %s --check-prefix=EQ
// RUN: ncc-opt %s -p 'prune{sparsity=0.2 scope=global}' | FileCheck %s
// RUN: ncc-opt %s -p 'prune{threshold=0.1 report=true}' 2>&1 >/dev/null | FileCheck %s --check-prefix=REPORT
// prune (neuron): synapses with |w| below the threshold (or the smallest
// fraction) go. n02 is then left without inputs: it is the constant
// relu(1.0) = 1.0, added to n03's bias times its synapse (1.2; n03 had no
// bias, so one is made, @b03); n02 then feeds nothing and goes, and the
// neurons are numbered again. Weight symbols keep their names. The inputs
// stay whatever happens (they are the net's input columns), as do outputs.

// CHECK-LABEL: neuron.net @net -> (n03) {
// CHECK-NEXT:    neuron.input n00
// CHECK-NEXT:    neuron.input n01
// CHECK-NEXT:    neuron.neuron n02 tanh(n00 * @w0003 = 1.0, n01 * @w0103 = 0.5) + @b03 = 1.2
// CHECK-NEXT:    neuron.neuron n03 identity(n02 * @w0304 = 2.0)
// CHECK-NEXT:  }
neuron.net @net -> (n04) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 relu(n00 * @w0002 = 0.01) + @b02 = 1.0
  neuron.neuron n03 tanh(n00 * @w0003 = 1.0, n01 * @w0103 = 0.5, n02 * @w0203 = 1.2)
  neuron.neuron n04 identity(n03 * @w0304 = 2.0)
}

// Before: n03 = f03( +n00*w0003 +n01*w0103 +n02*w0203), five terms in all.
// EQ:      n02 = f02( +n00*w0003 +n01*w0103 +b03)
// EQ-NEXT: n03 = f03( +n02*w0304)

// REPORT: @net  neuron.net synapses  5  5  3  40.0 %  10  6  (neurons 5 -> 4, 1 folded into biases)
