"""A conv's backward, ncc's native kernels vs PyTorch on one thread, in one run.

    python benchmarks/bench_conv_grad.py [--batch 8] [--quick]

For each distinct convolution of ResNet-18 (224 x 224 input; 3x3, 1x1 and
the 7x7 stem), the two kernels of its backward at batch `--batch`:

* weight gradient: ncc's `nn.conv_weight_grad` vs `torch.nn.grad.conv2d_weight`;
* input gradient: ncc's `nn.conv_transpose` (the conv's vjp with respect to
  its input) vs `torch.nn.grad.conv2d_input`.

Each ncc kernel is a one-op module compiled with threads=1; PyTorch runs with
`torch.set_num_threads(1)`. Results are compared (relative to the largest
gradient) before anything is timed; times are medians over blocks of calls,
ncc's and PyTorch's measured back to back per layer, each one's fastest of
three rounds. GFLOP/s counts one
multiply-add as 2 FLOPs. The last lines give the totals over the layers and
the goal of issue 12: the weight gradient at least as fast as PyTorch's.
Skipped cleanly (exit 0, a message) when PyTorch is not installed.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import ncc
from ncc.runtime.engine import host_summary

try:
    import torch
except ImportError:  # PyTorch is optional here
    torch = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best_of_rounds  # noqa: E402

# ResNet-18's convolutions: input channels, output channels, input size, kernel, stride, padding
LAYERS = [(3, 64, 224, 7, 2, 3), (64, 64, 56, 3, 1, 1), (64, 128, 56, 3, 2, 1), (128, 128, 28, 3, 1, 1),
          (64, 128, 56, 1, 2, 0), (128, 256, 28, 3, 2, 1), (256, 256, 14, 3, 1, 1), (256, 512, 14, 3, 2, 1),
          (512, 512, 7, 3, 1, 1), (256, 512, 14, 1, 2, 0)]


def kernels(c: int, m: int, size: int, k: int, stride: int, pad: int):
    """The weight- and input-gradient modules (MLIR text) of one conv, and its output size."""
    out = (size + 2 * pad - k) // stride + 1
    rest = (size + 2 * pad - k) % stride  # input rows the conv never read: the transpose's output_padding
    x, dy, w = (f"tensor<?x{c}x{size}x{size}xf32>", f"tensor<?x{m}x{out}x{out}xf32>",
                f"tensor<{m}x{c}x{k}x{k}xf32>")
    attrs = f"strides [{stride}, {stride}] pads [{pad}, {pad}, {pad}, {pad}]"
    weight_grad = (f"func.func @main(%x: {x}, %g: {dy}) -> {w} {{\n"
                   f"  %w = nn.conv_weight_grad %x, %g kernel [{k}, {k}] {attrs} : {x}, {dy} -> {w}\n"
                   f"  func.return %w : {w}\n}}")
    input_grad = (f"func.func @main(%g: {dy}, %w: {w}) -> {x} {{\n"
                  f"  %x = nn.conv_transpose %g, %w {attrs} output_padding [{rest}, {rest}] : {dy}, {w} -> {x}\n"
                  f"  func.return %x : {x}\n}}")
    return weight_grad, input_grad, out


def bench(layer, batch: int, block: float) -> dict:
    c, m, size, k, stride, pad = layer
    weight_text, input_text, out = kernels(*layer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, size, size), dtype=np.float32)
    dy = rng.standard_normal((batch, m, out, out), dtype=np.float32)
    w = rng.standard_normal((m, c, k, k), dtype=np.float32)
    weight_grad = ncc.compile(ncc.parse_module(weight_text), cache=False, threads=1)
    input_grad = ncc.compile(ncc.parse_module(input_text), cache=False, threads=1)
    tx, tdy, tw = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(w)
    torch_weight = lambda: torch.nn.grad.conv2d_weight(tx, w.shape, tdy, stride=stride, padding=pad)  # noqa: E731
    torch_input = lambda: torch.nn.grad.conv2d_input(x.shape, tw, tdy, stride=stride, padding=pad)  # noqa: E731
    for got, want in ((weight_grad(x, dy), torch_weight()), (input_grad(dy, w), torch_input())):
        want = want.numpy()
        err = np.abs(got - want).max() / np.abs(want).max()
        if err > 1e-4:
            raise SystemExit(f"layer {layer}: ncc differs from PyTorch by {err:.1e} (relative to the largest)")
    times = best_of_rounds([lambda: weight_grad(x, dy), torch_weight, lambda: input_grad(dy, w), torch_input], 3,
                           block, 5)
    return {"flop": 2 * batch * m * c * k * k * out * out, **dict(zip(("ncc_w", "torch_w", "ncc_x", "torch_x"), times))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="images per call (default 8)")
    ap.add_argument("--quick", action="store_true", help="shorter timing blocks (noisier)")
    args = ap.parse_args()
    if args.batch < 1:
        ap.error(f"--batch must be >= 1, got {args.batch}")
    if torch is None:
        print("PyTorch is not installed: nothing to compare against (pip install torch)")
        return 0
    torch.set_num_threads(1)
    print(f"host: {host_summary()}")
    print(f"ResNet-18's convolutions, batch {args.batch}, 1 thread each; GFLOP/s in brackets")
    print(f"{'C -> M, size, k/s/p':<26}{'weight gradient: ncc':>22}{'torch':>17}{'ratio':>8}"
          f"{'input gradient: ncc':>22}{'torch':>17}{'ratio':>8}")
    total = dict.fromkeys(("ncc_w", "torch_w", "ncc_x", "torch_x"), 0.0)
    for layer in LAYERS:
        r = bench(layer, args.batch, 0.05 if args.quick else 0.2)
        for key in total:
            total[key] += r[key]
        c, m, size, k, s, p = layer
        cells = [f"{r[key] * 1e3:8.2f} ms ({r['flop'] / r[key] / 1e9:4.0f})" for key in total]
        print(f"{f'{c} -> {m}, {size}, {k}/{s}/{p}':<26}{cells[0]:>22}{cells[1]:>17}"
              f"{r['torch_w'] / r['ncc_w']:7.2f}x{cells[2]:>22}{cells[3]:>17}{r['torch_x'] / r['ncc_x']:7.2f}x")
    ratio_w, ratio_x = total["torch_w"] / total["ncc_w"], total["torch_x"] / total["ncc_x"]
    print(f"total: weight gradient ncc {total['ncc_w'] * 1e3:.1f} ms, torch {total['torch_w'] * 1e3:.1f} ms "
          f"({ratio_w:.2f}x); input gradient ncc {total['ncc_x'] * 1e3:.1f} ms, torch "
          f"{total['torch_x'] * 1e3:.1f} ms ({ratio_x:.2f}x)")
    print(f"goal: conv_weight_grad >= PyTorch (1 thread): {ratio_w:.2f}x ({'met' if ratio_w >= 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
