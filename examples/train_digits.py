"""Train an MLP on scikit-learn's bundled digits with ncc's native kernels only.

    pip install scikit-learn && python examples/train_digits.py [--epochs 30]

The digits data (1,797 8x8 images of handwritten digits, bundled with
scikit-learn: no download) is split 75 / 25 into training and test sets. The
model, an MLP 64-64-10 (ReLU), is written as an ONNX graph with onnx.helper
(MatMul + Add per layer, He-initialised weights), compiled by `ncc.compile`
and trained by `ncc.train`: every step runs one native kernel for the
forward pass, the softmax cross-entropy loss and the backward pass, and one
native Adam update kernel. Then the test accuracy (from `model(x)`, the
forward kernel, reading the trained weights in place) and the trained model
exported back to ONNX and checked with onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import ncc

HIDDEN = 64


def mlp_onnx(sizes: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{k}_w"),
                  numpy_helper.from_array(np.zeros(n_out, np.float32), f"fc{k}_b")]
        last = k == len(sizes) - 1
        nodes += [helper.make_node("MatMul", [prev, f"fc{k}_w"], [f"mm{k}"]),
                  helper.make_node("Add", [f"mm{k}", f"fc{k}_b"], ["logits" if last else f"z{k}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"h{k}"]))
            prev = f"h{k}"
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, 10)
    return model


def split(data, seed: int = 0, test_fraction: float = 0.25):
    x = (np.asarray(data.data, np.float32) / 16.0).astype(np.float32)  # pixels 0..16
    y = np.asarray(data.target, np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def train_digits(data, epochs: int = 30, seed: int = 0, lr: float = 3e-3, batch_size: int = 32,
                 verbose: bool = False):
    """(test accuracy, loss history) of the MLP trained on `data` (load_digits())."""
    x_train, y_train, x_test, y_test = split(data, seed)
    model = ncc.compile(mlp_onnx((x_train.shape[1], HIDDEN, 10), seed))
    opt = ncc.optim.Adam(model, lr=lr)
    report = (lambda epoch, loss: print(f"epoch {epoch + 1:3d}  loss {loss:.4f}")) if verbose else None
    history = ncc.train(model, (x_train, y_train), loss="cross_entropy", optimizer=opt,
                        epochs=epochs, batch_size=batch_size, seed=seed, callback=report)
    accuracy = float(np.mean(np.argmax(model(x_test), axis=1) == y_test))
    train_digits.model = model  # for the caller that wants it (main exports it)
    return accuracy, history


def digits_data():
    """scikit-learn's bundled digits, or None (with a message) without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("this example needs scikit-learn (pip install scikit-learn)", file=sys.stderr)
        return None
    return load_digits()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = digits_data()
    if data is None:
        return 1
    t0 = time.perf_counter()
    accuracy, history = train_digits(data, args.epochs, args.seed, verbose=True)
    seconds = time.perf_counter() - t0
    model = train_digits.model
    print(f"trained {args.epochs} epochs ({len(history)} steps) in {seconds:.1f} s; "
          f"test accuracy {accuracy * 100:.2f} %")
    print("memory:", ", ".join(f"{k} {v} B" for k, v in model.memory(32).items()), "(batch 32)")
    import onnxruntime as ort

    _, _, x_test, _ = split(data, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits_mlp.onnx"
        model.export_onnx(path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        diff = float(np.max(np.abs(sess.run(None, {"x": x_test})[0] - model(x_test))))
    print(f"exported to ONNX: onnxruntime agrees with ncc to {diff:.2e}")
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
