"""The neuron dialect through its Python API: builders, views, verifier, syntax."""

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.dialects import neuron
from ncc.dialects.neuron import InputOp, NetOp, NeuronGraph, NeuronOp, find_cycle
from ncc.ir import parse_module, print_module, verify_module


def small_graph(**kw) -> NeuronGraph:
    # n00, n01 inputs; n02 = tanh(n00, n01); n03 = relu(n02, n00)
    return NeuronGraph(activation=[None, None, "tanh", "relu"], inputs=[[], [], [0, 1], [0, 2]], **kw)


def test_graph_defaults_name_weights_and_outputs():
    g = small_graph()
    assert g.weights == [[], [], ["w0002", "w0102"], ["w0003", "w0203"]]
    assert g.outputs == [3]
    assert g.input_indices == [0, 1]
    assert g.depths() == [0, 0, 1, 2]
    order = g.topological_order()
    assert order.index(2) < order.index(3)


def test_to_net_and_back_is_identity():
    g = small_graph(values=[None, None, [0.5, -1.0], [2.0, 0.25]], bias=[None, None, None, "b03"],
                    bias_value=[None, None, None, 0.125])
    net = g.to_net("small")
    verify_module(ModuleOp([net]))
    back = net.graph()
    assert back.activation == g.activation and back.inputs == g.inputs
    assert back.values == g.values and back.bias == g.bias and back.bias_value == g.bias_value
    assert back.outputs == [3] and back.weights == g.weights


def test_print_parse_fixed_point_with_values_and_attributes():
    g = small_graph(values=[None, None, [0.1, -3.5e-8], [1e20, 2.0]], spelling="matrix")
    text = print_module(ModuleOp([g.to_net("m")]))
    assert 'attributes {spelling = "matrix"}' in text
    assert "n02 tanh(n00 * @w0002 = 0.1, n01 * @w0102 = -3.5e-08)" in text
    again = print_module(parse_module(text))
    assert again == text


def test_names_widen_past_256_neurons():
    n = 300
    g = NeuronGraph(activation=[None] + ["relu"] * (n - 1), inputs=[[]] + [[j - 1] for j in range(1, n)])
    assert neuron.name_width(n) == 3 and neuron.name_width(256) == 2
    text = print_module(ModuleOp([g.to_net()]))
    assert "neuron.neuron n12b relu(n12a * @w12a12b)" in text
    assert print_module(parse_module(text)) == text


def test_initial_value_is_a_seeded_pure_function_of_the_name():
    a = neuron.initial_value("w0004")
    assert a == neuron.initial_value("w0004")
    assert a != neuron.initial_value("w0004", seed=1)
    assert -1.0 <= a < 1.0 and neuron.initial_value("b04") == 0.0
    vals = [neuron.initial_value(f"w{i:04x}") for i in range(2000)]
    assert abs(np.mean(vals)) < 0.05 and min(vals) < -0.9 and max(vals) > 0.9


@pytest.mark.parametrize("ops, message", [
    ([InputOp(0), InputOp(0)], "neuron n00 is defined twice"),
    ([InputOp(0), NeuronOp(3, "relu", [0], ["w"])], "neuron n03 is out of range"),
    ([InputOp(0), NeuronOp(1, "relu", [1], ["w"])], "neuron n01 feeds itself (a self-loop)"),
    ([InputOp(0), NeuronOp(1, "relu", [0, 0], ["a", "b"])], "in-index n00 appears twice"),
    ([InputOp(0), NeuronOp(1, "relu", [0], ["a", "b"])], "has 1 in-indices but 2 weight symbols"),
    ([InputOp(0), NeuronOp(1, "relu", [0], ["a"], values=[1.0, 2.0])], "has 1 in-indices but 2 weight values"),
    ([InputOp(0), NeuronOp(1, "swish", [0], ["a"])], "unknown activation 'swish'"),
    ([InputOp(0), NeuronOp(1, "relu", [0, 2], ["a", "b"]), NeuronOp(2, "relu", [1], ["c"])],
     "the net has a cycle: n01 -> n02 -> n01"),
    ([], "net has no neurons"),
])
def test_verifier_errors(ops, message):
    module = ModuleOp([NetOp("bad", [], ops)])
    with pytest.raises(NccError) as err:
        verify_module(module)
    assert message in str(err.value)


def test_verifier_error_points_at_the_neuron_line():
    text = "neuron.net @n -> (n01) {\n  neuron.input n00\n  neuron.input n00\n}\n"
    with pytest.raises(NccError) as err:
        parse_module(text, "net.mlir")
    assert str(err.value) == "net.mlir:3:3: error: neuron n00 is defined twice"


def test_find_cycle():
    assert find_cycle({0: [], 1: [0], 2: [1]}) is None
    assert find_cycle({0: [2], 1: [0], 2: [1]}) == [0, 1, 2, 0]
    assert find_cycle({0: [0]}) == [0, 0]


def test_large_net_builds_through_the_python_api():
    rng = np.random.default_rng(0)
    n, inputs = 3000, 50
    acts = [None] * inputs + ["tanh"] * (n - inputs)
    ins = [[] for _ in range(inputs)] + [sorted(rng.choice(j, 5, replace=False).tolist())
                                         for j in range(inputs, n)]
    net = NeuronGraph(acts, ins).to_net()
    verify_module(ModuleOp([net]))
    assert sum(1 for _ in net.neurons) == n
    assert net.graph().inputs == ins
