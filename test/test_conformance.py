"""ONNX conformance (test/conformance/onnx_conformance.py) in the test suite.

Default run: a representative subset of the table of passing cases
(test/conformance/passing.txt): the first listed node case of every op, every
fourth model case of the pytorch and simple kinds, and light_squeezenet, each
natively through ncc.backend. Opt-in (`pytest -m slow`): every listed case,
run by the conformance runner's worker processes; a listed case that does not
pass fails the test (the table is the claim of what ncc supports).
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "conformance"))
import onnx_conformance as conformance  # noqa: E402

TABLE = conformance.read_table()
all_cases = functools.cache(conformance.collect)


@pytest.fixture(scope="module")
def cases():
    return all_cases()


def representative(table: list[str]) -> list[str]:
    cases = all_cases()
    first_of_op: dict[str, str] = {}
    for name in table:
        if name in cases and cases[name].kind == "node":
            first_of_op.setdefault(cases[name].op, name)
    models = [n for n in table if n in cases and cases[n].kind != "node" and n != "test_squeezenet"]
    picked = sorted(first_of_op.values()) + models[::4]
    return picked + (["test_squeezenet"] if "test_squeezenet" in table else [])


SUBSET = representative(TABLE)


def test_the_table_is_substantial():
    cases = all_cases()
    assert len([n for n in TABLE if n in cases and cases[n].kind == "node"]) >= 500
    assert len(SUBSET) >= 100


@pytest.mark.parametrize("name", SUBSET)
def test_listed_case_passes_natively(name, cases):
    result = conformance.run_case(cases[name], "native")
    assert result["status"] == "pass", result["detail"]


@pytest.mark.slow
def test_every_listed_case_passes_natively():
    results = conformance.run_cases(TABLE, conformance.KINDS, "native", jobs=os.cpu_count() or 1,
                                    timeout=600)
    bad = [f"{r['name']}: {r['status']}: {r['detail']}" for r in results if r["status"] != "pass"]
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# The runner's own classification


def _case(node, inputs, outputs, want):
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
                               for n, a in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return conformance.Case("test_x", "node", 1e-3, 1e-7,
                            lambda: (model, [(list(inputs.values()), want)]), node.op_type)


def test_runner_classifies_pass_fail_and_unsupported():
    x = np.array([[-1.0, 2.0]], np.float32)
    relu = helper.make_node("Relu", ["x"], ["y"])
    assert conformance.run_case(_case(relu, {"x": x}, ["y"], [np.maximum(x, 0)]), "native")["status"] == "pass"
    wrong = conformance.run_case(_case(relu, {"x": x}, ["y"], [x]), "native")
    assert wrong["status"] == "fail" and wrong["detail"].startswith("wrong result")
    dtype = conformance.run_case(_case(relu, {"x": x}, ["y"], [np.maximum(x, 0).astype(np.float64)]), "native")
    assert dtype["status"] == "fail" and "dtype float32, expected float64" in dtype["detail"]
    unknown = helper.make_node("StringNormalizer", ["x"], ["y"], name="sn")
    r = conformance.run_case(_case(unknown, {"x": x}, ["y"], [x]), "native")
    assert r["status"] == "unsupported" and "unsupported ONNX ops: StringNormalizer (node sn)" in r["detail"]


def test_op_of_a_multi_node_case_is_named_by_the_test():
    ops = conformance._op_names()
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Relu", ["e"], ["y"])], "g", [], []))
    assert conformance._op_of("test_softmax_axis_0_expanded", model, ops) == "Softmax"
    assert conformance._op_of("test_layer_normalization_2d_axis0", model, ops) == "LayerNormalization"
