"""The fuzz harness in the test suite: a short deterministic campaign over
every target (a long one: `pytest -m slow test/fuzz`, or
`python test/fuzz/campaign.py`), and each signature a campaign has found kept
as a regression test with its smallest input, run in the harness's worker
(a hang or a crash is an outcome, not a stuck test)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Campaign, run_campaign, table  # noqa: E402

BAD = ("traceback", "crash", "hang")


def test_a_short_campaign_finds_nothing():
    """200 mutated inputs per target (about 8 s; the ONNX seeds onnx ships as
    files, not its generated node cases): only ok and located errors."""
    outcomes = run_campaign(["adjacency", "mlir", "onnx", "runtime"], 200, seed=2026, timeout=30, quick=True)
    kinds = {o.kind for o in outcomes}
    assert not kinds & set(BAD), "\n" + table(outcomes)
    assert {"ok", "error"} <= kinds  # both were exercised


@pytest.mark.slow
def test_a_long_campaign_finds_nothing():
    outcomes = run_campaign(["adjacency", "mlir", "onnx", "runtime"], 2500, seed=1, timeout=10)
    print(table(outcomes))
    assert not {o.kind for o in outcomes} & set(BAD), "\n" + table(outcomes)


@pytest.fixture(scope="module")
def worker():
    campaign = Campaign(timeout=20)
    yield campaign
    campaign.close()


def _model(nodes, inputs, outputs=("y",), opset=18, inits=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _expand_of_a_long_shape():
    """Expand to a shape given as an int64 graph input of 2^31 entries (onnx's shape inference did not answer)."""
    graph = helper.make_graph([helper.make_node("Expand", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2 ** 31])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=4).SerializeToString()


def _string_attribute(node, name, raw: bytes):
    a = helper.make_attribute(name, "x")
    a.s = raw
    node.attribute.append(a)
    return node


def _qgemm(**attributes):
    """com.microsoft's QGemm (onnx has no schema for it: Attributes checks its own table)."""
    i8 = [helper.make_tensor_value_info(n, TensorProto.UINT8 if n == "a" else TensorProto.FLOAT, s)
          for n, s in (("a", [2, 4]),)]
    inits = [helper.make_tensor("as", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("az", TensorProto.UINT8, [], [0]),
             helper.make_tensor("b", TensorProto.INT8, [4, 3], [1] * 12),
             helper.make_tensor("bs", TensorProto.FLOAT, [], [0.2]), helper.make_tensor("bz", TensorProto.INT8, [], [0])]
    node = helper.make_node("QGemm", ["a", "as", "az", "b", "bs", "bz"], ["y"], domain="com.microsoft", **attributes)
    graph = helper.make_graph([node], "g", i8, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                   helper.make_opsetid("com.microsoft", 1)]).SerializeToString()


def _scan(num_scan_inputs, length=5):
    """A running sum as a Scan (onnx's test_scan9_sum) over `length` elements, with the given num_scan_inputs."""
    body = helper.make_graph([helper.make_node("Add", ["s", "x"], ["s2"]), helper.make_node("Identity", ["s2"], ["o"])],
                             "body", [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("s", "x")],
                             [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("s2", "o")])
    node = helper.make_node("Scan", ["init", "xs"], ["y", "z"], body=body, num_scan_inputs=num_scan_inputs)
    return _model([node], [("init", []), ("xs", [length])], ("y", "z"))


LIT = "func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {\n  %0 = nn.relu %x : tensor<2xf32>\n  func.return %0 : tensor<2xf32>\n}\n"

# (target, payload, a fragment of the one-line error it must give)
REGRESSIONS = {
    # adjacency: counts and indices beyond what a net may have (hung, then MemoryError)
    "adjacency-huge-count": ("adjacency", "N fffffffffffffffff\n00 01\n", "more than ncc's limit of 0x100000"),
    "adjacency-huge-index": ("adjacency", "00 7fffffffffffffff\n", "beyond ncc's limit of 0x100000 neurons"),
    # MLIR: xDSL's string regex backtracked exponentially on an unclosed quote (28 s for 26 characters)
    "mlir-unclosed-quote": ("mlir", LIT.replace("nn.relu", 'nn.re"lu') + '"' + "ab\\" * 20,
                            "<fuzz>:2:13: error: unterminated string literal"),
    "mlir-bad-escape": ("mlir", LIT.replace("nn.relu", '"nn.relu\\q"'), "invalid escape in a string literal"),
    "mlir-deep-nesting": ("mlir", LIT.replace("tensor<2xf32>) ->", "tensor<" * 300 + "f32" + ">" * 300 + ") ->", 1),
                          "nesting too deep to parse"),  # was RecursionError
    "mlir-integer-out-of-range": ("mlir", LIT.replace("%0 = nn.relu %x : tensor<2xf32>",
                                                      "%0 = nn.transpose %x perm [18446744073709551616] : "
                                                      "tensor<2xf32> -> tensor<2xf32>"),
                                  "<fuzz>:2:30: error: Integer value 18446744073709551616 is out of range"),
    "mlir-use-before-def": ("mlir", LIT.replace("%0 = nn.relu %x", "%0 = nn.relu %1").replace(
        "  func.return", "  %1 = nn.neg %x : tensor<2xf32>\n  func.return"), "of nn.relu is used before it is defined"),
    "mlir-empty-function": ("mlir", "nn.weight @w : tensor<2xf32>\nfunc.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {\n}\n",
                            "<fuzz>:2:1: error: pass 'lower-to-loops' failed: func.func: the function does not end with func.return"),
    "mlir-verifier-exception": ("mlir", "func.func @f(%x: memref<f32>, %i: index) {\n  %0 = memref.load %x[%i] : "
                                "memref<f32>\n  func.return\n}\n", "<fuzz>:2:3: error: expected an index for each dimension"),
    "mlir-nested-module": ("mlir", "builtin.module {\nbuiltin.module {\n" + LIT + "}\n}\n",
                           "<fuzz>:2:1: error: a nested builtin.module: ncc takes one module"),
    "mlir-first-token": ("mlir", "\x00" + LIT, "<fuzz>:1:1: error:"),  # the lexer's error in the parser's constructor
    # ONNX: attributes (wrong type, not UTF-8, unknown, missing), sizes that cannot exist, a Split
    # whose num_outputs disagrees with its outputs (onnx's shape inference aborted the process)
    "onnx-attribute-type": ("onnx", _model([helper.make_node("Flatten", ["x"], ["y"], axis=[1, 2])], [("x", [2, 3])]),
                            "(Flatten) fails onnx's checker: Mismatched attribute type in ' : axis'"),
    "onnx-contrib-attribute-type": ("onnx", _qgemm(transA=0.5), "(QGemm): attribute 'transA' must be INT, got FLOAT"),
    "onnx-contrib-unknown-attribute": ("onnx", _qgemm(bogus=1), "(QGemm): unknown attribute 'bogus'"),
    "onnx-attribute-not-utf8": ("onnx", _model([_string_attribute(helper.make_node("Pad", ["x", "p"], ["y"]), "mode",
                                                                  b"\xff\xfe")], [("x", [2, 3]), ("p", [4])]),
                                "attribute 'mode' is not UTF-8 text"),
    "onnx-split-num-outputs": ("onnx", _model([helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=4)],
                                              [("x", [6])], ("a", "b")),
                               "num_outputs is 4 but the node has 2 outputs"),
    "onnx-split-num-outputs-beyond-int32": ("onnx", _model([helper.make_node(
        "Split", ["x"], ["a", "b"], axis=0, num_outputs=2 ** 62)], [("x", [6])], ("a", "b")),
        "(Split): attribute 'num_outputs' is out of range (4611686018427387904)"),
    "onnx-axis-beyond-int32": ("onnx", _model([helper.make_node("LayerNormalization", ["x", "w"], ["y"], axis=2 ** 31)],
                                              [("x", [2, 5]), ("w", [5])]),  # onnx's shape inference segfaulted
                               "(LayerNormalization): attribute 'axis' is out of range (2147483648)"),
    "onnx-scan-num-scan-inputs": ("onnx", _scan(2 ** 31), "num_scan_inputs is 2147483648, but the node has 2 inputs"),
    "onnx-scan-of-nothing": ("onnx", _scan(1, length=0),
                             "the scan inputs have length 0"),
    "onnx-huge-input": ("onnx", _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 2 ** 31, 2 ** 20])]),
                        "graph input 'x' of shape [2, 2147483648, 1048576] would take"),
    "onnx-huge-initializer": ("onnx", _model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", [3])], inits=[
        TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2 ** 31, 1000])]),
        "initializer 'w' of shape [2147483648, 1000] would take"),
    "onnx-huge-constant-of-shape": ("onnx", _model([helper.make_node(
        "ConstantOfShape", ["s"], ["y"])], [], inits=[helper.make_tensor("s", TensorProto.INT64, [2], [2 ** 31, 2 ** 20])]),
        "the output of shape [2147483648, 1048576] would take"),
    "onnx-expand-to-2-31-dims": ("onnx", _expand_of_a_long_shape(), "input 1 ('shape') must be a constant"),
    "onnx-gqa-zero-heads": ("onnx", _model([helper.make_node("Attention", ["q", "k", "v"], ["y"])],
                                           [("q", [1, 2, 4, 8]), ("k", [1, 0, 4, 8]), ("v", [1, 0, 4, 8])], opset=23),
                            "q heads a multiple of kv heads"),
    # run time: a zero-stride view of 2^40 rows (MemoryError when copied), output names not a list
    "runtime-wrong-calls": ("runtime", 12345, None),
}


@pytest.mark.parametrize("name", REGRESSIONS)
def test_a_found_input_is_a_located_error(worker, name):
    target, payload, message = REGRESSIONS[name]
    outcome = worker.run(target, payload)
    if message is None:  # run-time cases: anything but a traceback, crash or hang
        assert outcome.kind not in BAD, outcome.detail
        return
    assert outcome.kind == "error", f"{outcome.kind}: {outcome.detail}"
    assert message in outcome.detail, outcome.detail


def test_the_runtime_target_refuses_what_it_cannot_allocate():
    """The run-time half of the regressions, in this process (the worker's
    models are its own): a huge broadcast view, output names not a list."""
    import ncc
    from harness import RUNTIME_MODEL

    model = ncc.compile(RUNTIME_MODEL, cache=False)
    good = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32), "i": np.array([0, 2])}
    huge = np.broadcast_to(np.float32(1), (2 ** 40, 3))
    with pytest.raises(ncc.NccError, match="more than this machine's memory"):
        model.run({**good, "a": huge, "b": huge})
    with pytest.raises(ncc.NccError, match="output_names must be a list"):
        model.run(good, 123)
