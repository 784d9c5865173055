"""The control/flow op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import test_onnx_decompositions as decomposition_tests

# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


def test_import_scan_with_directions_axes_and_an_outer_value():
    # body(state, x_t, r_t) = (state + x_t * w, [state * r_t, x_t]); w from outside the body
    vi = lambda n, s: helper.make_tensor_value_info(n, decomposition_tests.F, s)  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "w"], ["xw"]), helper.make_node("Add", ["s", "xw"], ["s_out"]),
         helper.make_node("Mul", ["s", "r_t"], ["p"]), helper.make_node("Identity", ["x_t"], ["x_out"])],
        "body", [vi("s", [2]), vi("x_t", [2]), vi("r_t", [2])], [vi("s_out", [2]), vi("p", [2]), vi("x_out", [2])])
    node = helper.make_node("Scan", ["s0", "x", "r"], ["s_final", "ps", "xs"], body=body, num_scan_inputs=2,
                            scan_input_axes=[0, 1], scan_input_directions=[0, 1],
                            scan_output_axes=[0, -1], scan_output_directions=[1, 0])
    m = decomposition_tests.model([node], {"s0": (decomposition_tests.F, [2]), "x": (decomposition_tests.F, [4, 2]), "r": (decomposition_tests.F, [2, 4])}, ("s_final", "ps", "xs"),
              inits={"w": decomposition_tests.randn(2)}, opset=16)
    decomposition_tests.check(m, {"s0": decomposition_tests.randn(2), "x": decomposition_tests.randn(4, 2), "r": decomposition_tests.randn(2, 4)})


@pytest.mark.parametrize("cond", [True, False])
def test_import_if_on_a_constant_condition(cond):
    vi = lambda n: helper.make_tensor_value_info(n, decomposition_tests.F, [3])  # noqa: E731
    then = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [], [vi("t")],
                             [numpy_helper.from_array(np.ones(3, np.float32), "one")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e")])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    m = decomposition_tests.model([helper.make_node("Relu", ["x0"], ["x"]), node], {"x0": (decomposition_tests.F, [3])},
              inits={"c": np.array(cond)}, opset=16)
    module = decomposition_tests.check(m, {"x0": decomposition_tests.randn(3)})
    names = [o.name for o in list(module.ops)[-1].body.block.ops]
    assert names == (["nn.relu", "nn.weight_ref", "nn.add", "func.return"] if cond
                     else ["nn.relu", "nn.neg", "func.return"])  # the selected branch only


def test_import_if_with_a_sequence_branch_is_refused():
    seq = helper.make_tensor_sequence_value_info("s", decomposition_tests.F, [3])
    branch = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["s"])], "b", [], [seq])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", decomposition_tests.F, [3])],
                              [helper.make_tensor_sequence_value_info("y", decomposition_tests.F, [3])],
                              [numpy_helper.from_array(np.array(True), "c")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    assert decomposition_tests.diag(m) == ("g: error: node 'if' (If): the then_branch subgraph returns a sequence ('s'); "
                       "ncc imports tensors only")


