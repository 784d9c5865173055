"""Train the digits MLP and a small CNN, quantize both to int8, compare test accuracy, with ncc only.

    pip install scikit-learn && python examples/quantize_digits.py [--method minmax|percentile|entropy]

The MLP of train_digits.py (64-64-10, ReLU) and a CNN on the 8 x 8 images
(conv 3x3 1->8, relu, conv 3x3 stride 2 8->16, relu, flatten, linear 256->10)
are trained natively (Adam, cross entropy), then quantized by
`ncc.quantize` (static: calibrated on 256 training images; weights int8 per
channel, activations int8 per tensor) and compiled again: their matmuls and
convolutions run on the int8 kernel. The table: test accuracy float and
int8, the per-op report of the CNN, and the export: the QDQ model that
onnxruntime runs with the same predictions.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import ncc

_spec = importlib.util.spec_from_file_location("train_digits", Path(__file__).with_name("train_digits.py"))
train_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_digits)


def cnn_onnx(seed: int = 0):
    """x [batch, 64] (the image's pixels) -> [batch, 1, 8, 8] -> two convolutions -> 10 logits."""
    rng = np.random.default_rng(seed)

    def he(*shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    inits = {"shape": np.array([-1, 1, 8, 8], np.int64), "k1": he(8, 1, 3, 3, fan_in=9),
             "c1": np.zeros(8, np.float32), "k2": he(16, 8, 3, 3, fan_in=72), "c2": np.zeros(16, np.float32),
             "w": he(256, 10, fan_in=256), "b": np.zeros(10, np.float32)}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["img"]),
             helper.make_node("Conv", ["img", "k1", "c1"], ["v1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["v1"], ["r1"]),
             helper.make_node("Conv", ["r1", "k2", "c2"], ["v2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["v2"], ["r2"]), helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["logits"])]
    graph = helper.make_graph(nodes, "digits_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, 10)
    return model


def quantize_digits(data, method: str = "minmax", epochs: int = 30, seed: int = 0):
    """{"mlp" | "cnn": (float accuracy, int8 accuracy, the quantized module, the report)}."""
    x_train, y_train, x_test, y_test = train_digits.split(data, seed)
    results = {}
    for name, onnx_model in (("mlp", train_digits.mlp_onnx((64, train_digits.HIDDEN, 10), seed)),
                             ("cnn", cnn_onnx(seed))):
        model = ncc.compile(onnx_model)
        ncc.train(model, (x_train, y_train), loss="cross_entropy", optimizer=ncc.optim.Adam(model, lr=3e-3),
                  epochs=epochs, seed=seed)
        float_accuracy = float(np.mean(np.argmax(model(x_test), axis=1) == y_test))
        module = ncc.import_onnx(model.export_onnx())  # the trained float model
        calibration = [{"x": x_train[i:i + 32]} for i in range(0, 256, 32)]
        report = ncc.quantize(module, calibration, method=method)
        int8 = ncc.compile(module)
        int8_accuracy = float(np.mean(np.argmax(int8(x_test), axis=1) == y_test))
        results[name] = (float_accuracy, int8_accuracy, module, report)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = train_digits.digits_data()
    if data is None:
        return 1
    results = quantize_digits(data, args.method, args.epochs, args.seed)
    print(f"{'model':<6} {'float32':>8} {'int8':>8} {'change':>8}   ({args.method} calibration, 256 images)")
    for name, (f, q, _, _) in results.items():
        print(f"{name:<6} {f * 100:7.2f}% {q * 100:7.2f}% {(q - f) * 100:+7.2f}")
    module, report = results["cnn"][2], results["cnn"][3]
    print(report)
    import onnxruntime as ort

    _, _, x_test, _ = train_digits.split(data, args.seed)
    sess = ort.InferenceSession(ncc.export_onnx(module).SerializeToString(), providers=["CPUExecutionProvider"])
    agree = float(np.mean(np.argmax(sess.run(None, {"x": x_test})[0], 1) == np.argmax(ncc.compile(module)(x_test), 1)))
    print(f"exported as QDQ: onnxruntime's predictions agree with ncc's on {agree * 100:.1f} % of the test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
