"""Writes the small ONNX models the lit tests in test/lit/onnx import: `make_models.py DIR`."""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def save(name, nodes, inputs, inits=(), opset=17, outputs=("y",)):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, os.path.join(out, f"{name}.onnx"))
    return model


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
w = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
save("mlp", [helper.make_node("Gemm", ["input", "w", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["y"])],
     {"input": ["N", 3]}, {"w": w, "b": np.ones(4, np.float32)})
save("cnn", [helper.make_node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])],
     {"x": ["N", 2, 8, 8]}, {"k": np.zeros((4, 2, 3, 3), np.float32), "kb": np.zeros(4, np.float32)})
save("unsupported", [helper.make_node("Foo", ["x"], ["a"], name="n1"),
                     helper.make_node("Foo", ["a"], ["b"], name="n2"),
                     helper.make_node("Bar", ["b"], ["y"], name="n3")], {"x": [3]})
data = save("relu", [helper.make_node("Relu", ["x"], ["y"])], {"x": [3]}).SerializeToString()
with open(os.path.join(out, "truncated.onnx"), "wb") as f:
    f.write(data[:len(data) // 2])
