"""Structural ops take every element type a model gives them (bool and integer
tensors: attention masks, position ids, shape arithmetic): imported, run by
the reference interpreter and natively, and exported, each against
onnxruntime; and the attention-mask subgraph that PyTorch exports of BERT and
GPT-2 contain."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from onnx_models import onnx_model

import ncc

rng = np.random.default_rng(5)
TYPES = {"bool": (TensorProto.BOOL, np.bool_), "int64": (TensorProto.INT64, np.int64),
         "int32": (TensorProto.INT32, np.int32), "int8": (TensorProto.INT8, np.int8),
         "float32": (TensorProto.FLOAT, np.float32)}


def sample(dtype, shape):
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return (rng.integers(-9, 9, shape) if np.dtype(dtype).kind in "iu" else rng.normal(size=shape)).astype(dtype)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, TensorProto.INT64, [len(value)], value))


# op -> (nodes, extra graph inputs beyond x [2, 3]); y's type is x's unless given
STRUCTURAL = {
    "Expand": ([const("s", [2, 2, 3]), helper.make_node("Expand", ["x", "s"], ["y"])], {}),
    "Tile": ([const("r", [2, 1]), helper.make_node("Tile", ["x", "r"], ["y"])], {}),
    "Reshape": ([const("s", [3, 2]), helper.make_node("Reshape", ["x", "s"], ["y"])], {}),
    "Concat": ([helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], {}),
    "Slice": ([const("b", [1]), const("e", [3]), const("a", [1]),
               helper.make_node("Slice", ["x", "b", "e", "a"], ["y"])], {}),
    "Gather": ([const("i", [2, 0, 2]), helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], {}),
    "Transpose": ([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], {}),
    "Unsqueeze": ([const("a", [0]), helper.make_node("Unsqueeze", ["x", "a"], ["y"])], {}),
    "Flatten": ([helper.make_node("Flatten", ["x"], ["y"], axis=0)], {}),
    "Identity": ([helper.make_node("Identity", ["x"], ["y"])], {}),
    "Where": ([helper.make_node("Where", ["c", "x", "z"], ["y"])],
              {"c": (TensorProto.BOOL, [2, 3]), "z": (None, [2, 3])}),
}


def oracle(m, feeds):
    """onnxruntime's outputs; onnx's reference evaluator where onnxruntime has no
    kernel for the type (Where on bool)."""
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    except NotImplemented:  # onnxruntime's own exception class of that name
        return ReferenceEvaluator(m).run(None, feeds)
    return sess.run(None, feeds)


def check_everywhere(m, feeds):
    """Reference, native and export -> the oracle all equal the oracle on `m`."""
    want = oracle(m, feeds)
    module = ncc.import_onnx(m)
    runs = {"reference": ncc.reference.run(module, feeds),
            "native": ncc.compile(module, cache=False).run(feeds),
            "export": oracle(ncc.export_onnx(module), feeds)}
    for how, got in runs.items():
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape, how
            np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=how)


@pytest.mark.parametrize("dtype", ["bool", "int64", "int32", "int8"])
@pytest.mark.parametrize("op", list(STRUCTURAL))
def test_structural_ops_on_bool_and_integer_tensors(op, dtype):
    onnx_type, np_type = TYPES[dtype]
    nodes, extra = STRUCTURAL[op]
    inputs = {"x": (onnx_type, [2, 3])}
    inputs.update({k: (t if t is not None else onnx_type, s) for k, (t, s) in extra.items()})
    m = onnx_model(nodes, inputs, outputs={"y": onnx_type})
    feeds = {k: sample(TYPES["bool"][1] if t == TensorProto.BOOL else np_type, s) for k, (t, s) in inputs.items()}
    check_everywhere(m, feeds)


@pytest.mark.parametrize("src,dst", [(s, d) for s in ("bool", "int64", "int32", "int8", "float32")
                                     for d in ("bool", "int64", "int32", "float32") if s != d])
def test_cast_between_element_types(src, dst):
    m = onnx_model([helper.make_node("Cast", ["x"], ["y"], to=TYPES[dst][0])],
                   {"x": (TYPES[src][0], [2, 3])}, outputs={"y": TYPES[dst][0]})
    x = sample(TYPES[src][1], (2, 3))
    if src == "float32" and dst != "bool":
        x = np.round(x * 4).astype(np.float32)  # integral floats: the float -> int rounding is ORT's own
    check_everywhere(m, {"x": x})


def test_attention_mask_subgraph_of_a_bert_export():
    """The mask subgraph torch.onnx.export writes for Hugging Face BERT and GPT-2
    (legacy exporter, opset 17): an int64 mask [B, S] unsqueezed to [B, 1, 1, S],
    a causal bool matrix from a Range-like table and LessOrEqual, Expand of the
    bool matrix to [B, 1, S, S], And, Where into a float bias, added to the
    scores before Softmax."""
    s = 6
    nodes = [
        const("ax", [1, 2]),
        helper.make_node("Unsqueeze", ["mask", "ax"], ["m4"]),                  # [B, 1, 1, S] int64
        helper.make_node("Cast", ["m4"], ["mb"], to=TensorProto.BOOL),
        helper.make_node("LessOrEqual", ["cols", "rows"], ["causal"]),          # [S, S] bool
        const("shape", [2, 1, s, s]),
        helper.make_node("Expand", ["causal", "shape"], ["ce"]),                # [B, 1, S, S] bool
        helper.make_node("And", ["ce", "mb"], ["keep"]),
        helper.make_node("Where", ["keep", "zero", "neg"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["y"], axis=-1),
    ]
    idx = np.arange(s, dtype=np.int64)
    inits = {"cols": idx[None, :], "rows": idx[:, None], "zero": np.array(0.0, np.float32),
             "neg": np.array(np.finfo(np.float32).min, np.float32)}
    m = onnx_model(nodes, {"mask": (TensorProto.INT64, [2, s]), "scores": (TensorProto.FLOAT, [2, 1, s, s])},
                   inits=inits)
    mask = np.ones((2, s), np.int64)
    mask[1, 4:] = 0  # the second sequence is padded
    check_everywhere(m, {"mask": mask, "scores": rng.normal(size=(2, 1, s, s)).astype(np.float32)})
