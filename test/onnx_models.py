"""ONNX models for tests, built from nodes (shared by the ONNX test files)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def onnx_model(nodes, inputs, outputs=("y",), inits=(), opset=18):
    """inputs: {name: (element type, shape)}; outputs: names (float) or {name: type};
    inits: {name: array}."""
    outputs = outputs if isinstance(outputs, dict) else dict.fromkeys(outputs, TensorProto.FLOAT)
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 10)  # what the installed onnxruntime reads
    return m
