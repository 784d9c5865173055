"""Prune the digits MLP to 90 % sparsity and fine-tune it, with ncc's native kernels only.

    pip install scikit-learn && python examples/prune_digits.py [--sparsity 0.9]

The MLP of train_digits.py (64-64-10, ReLU) gets a mask of ones on every
weight (`ncc.prune(module, sparsity=0)`), is compiled and trained dense for
30 epochs, then pruned gradually while it trains on (`ncc.optim.
pruning_schedule`: the sparsity rises over 15 epochs, fast at first, to the
goal; 25 more epochs fine-tune what is left). Every optimizer step ends with
`weight *= mask`, so pruned weights stay zero. Then: test accuracy dense and
pruned, the table of what went, and the export: an ONNX file whose weights
hold the zeros, which onnxruntime runs and which ncc compiles again (pruned
once more to find its masks, its matmuls on the sparse kernel); all agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

import ncc

_spec = importlib.util.spec_from_file_location("train_digits", Path(__file__).with_name("train_digits.py"))
train_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_digits)


def prune_digits(data, sparsity: float = 0.9, seed: int = 0, verbose: bool = False):
    """(dense accuracy, pruned accuracy, the pruned compiled model, the last prune's report)."""
    x_train, y_train, x_test, y_test = train_digits.split(data, seed)
    module = ncc.import_onnx(train_digits.mlp_onnx((x_train.shape[1], train_digits.HIDDEN, 10), seed))
    ncc.prune(module, sparsity=0.0)  # a mask of ones on every weight: the compiled model can prune later
    model = ncc.compile(module)

    def accuracy() -> float:
        return float(np.mean(np.argmax(model(x_test), axis=1) == y_test))
    ncc.train(model, (x_train, y_train), loss="cross_entropy", optimizer=ncc.optim.Adam(model, lr=3e-3),
              epochs=30, seed=seed)
    dense = accuracy()
    schedule = ncc.optim.pruning_schedule(model, sparsity, epochs=15)
    report = (lambda epoch, loss: (schedule(epoch, loss), print(f"epoch {epoch + 1:3d}  loss {loss:.4f}")))
    ncc.train(model, (x_train, y_train), loss="cross_entropy", optimizer=ncc.optim.Adam(model, lr=3e-3),
              epochs=40, seed=seed + 1, callback=report if verbose else schedule)
    return dense, accuracy(), model, model.prune(sparsity=sparsity)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = train_digits.digits_data()
    if data is None:
        return 1
    dense, pruned, model, report = prune_digits(data, args.sparsity, args.seed, verbose=True)
    print(report)
    print(f"test accuracy: dense {dense * 100:.2f} %, pruned to {args.sparsity:.0%} and fine-tuned "
          f"{pruned * 100:.2f} %")
    import onnxruntime as ort

    _, _, x_test, _ = train_digits.split(data, args.seed)
    exported = model.export_onnx()  # the weights with their zeros
    module = ncc.import_onnx(exported)
    ncc.prune(module, sparsity=args.sparsity)  # the masks again (the zeros rank first)
    fast = ncc.compile(module)  # the pruned matmuls on the sparse kernel
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    diff = max(float(np.max(np.abs(session.run(None, {"x": x_test})[0] - model(x_test)))),
               float(np.max(np.abs(fast(x_test) - model(x_test)))))
    print(f"exported to ONNX and compiled again: onnxruntime and ncc agree to {diff:.2e}")
    return 0 if pruned >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
