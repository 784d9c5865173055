"""One training step of an MLP, ncc's native kernels vs PyTorch on the CPU.

    python benchmarks/bench_training.py [--batch 64] [--repeat 20] [--optimizer sgd|adam]

The model: MLP 784-512-512-10 (relu, relu, logits) written with onnx.helper
(MatMul + Add per layer), imported and compiled by ncc; PyTorch gets a
torch.nn.Sequential with the same initial weights. One step is forward +
softmax cross-entropy loss + backward + optimizer update (SGD with momentum
0.9, or Adam), at batch 64 on random data:

* ncc: `model.value_and_grad(x, labels, loss="cross_entropy", wrt="params")`
  (one native kernel: forward, loss and backward, one memory plan) and
  `opt.step(grads)` (one native update kernel);
* PyTorch: `zero_grad`, forward, `cross_entropy`, `backward`, `step`.

Threads: ncc's kernels run on one thread, so PyTorch runs with
`torch.set_num_threads(1)` (the same thread count); its default thread count
is reported too. Before timing, both run the same steps from the same weights
and the losses are compared. Times are medians over blocks of steps, ncc's
and PyTorch's (one thread) blocks alternating, so that the load of a shared
machine weighs on both alike.
Skipped cleanly (exit 0, a message) when PyTorch is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc.runtime.engine import host_summary

SIZES = (784, 512, 512, 10)


def mlp_weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n_in, n_out in zip(SIZES, SIZES[1:]):
        bound = 1.0 / np.sqrt(n_in)  # torch.nn.Linear's default initialisation range
        out.append((rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32),
                    rng.uniform(-bound, bound, n_out).astype(np.float32)))
    return out


def mlp_onnx(weights: list[tuple[np.ndarray, np.ndarray]]):
    nodes, inits, prev = [], [], "x"
    for k, (w, b) in enumerate(weights, start=1):
        inits += [numpy_helper.from_array(w, f"fc{k}_w"), numpy_helper.from_array(b, f"fc{k}_b")]
        nodes += [helper.make_node("MatMul", [prev, f"fc{k}_w"], [f"mm{k}"]),
                  helper.make_node("Add", [f"mm{k}", f"fc{k}_b"], [f"z{k}" if k < len(weights) else "y"])]
        if k < len(weights):
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"h{k}"]))
            prev = f"h{k}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SIZES[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def block_size(step, block_s: float = 0.2) -> int:
    step()
    t0 = time.perf_counter()
    step()
    return max(1, int(block_s / max(time.perf_counter() - t0, 1e-6)))


def interleaved_medians(steps: dict, repeat: int) -> dict:
    """Median time per step of each callable, timed in alternating blocks so
    that a change of load on a shared machine hits them alike."""
    sizes = {k: block_size(f) for k, f in steps.items()}
    times: dict = {k: [] for k in steps}
    for _ in range(repeat):
        for k, f in steps.items():
            t0 = time.perf_counter()
            for _ in range(sizes[k]):
                f()
            times[k].append((time.perf_counter() - t0) / sizes[k])
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare against (pip install torch)")
        return 0

    weights = mlp_weights()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.batch, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], args.batch)

    t0 = time.perf_counter()
    model = ncc.compile(mlp_onnx(weights), threads=1)  # against PyTorch on one thread
    make_opt = (lambda m: ncc.optim.SGD(m, lr=0.01, momentum=0.9)) if args.optimizer == "sgd" \
        else (lambda m: ncc.optim.Adam(m, lr=1e-3))
    opt = make_opt(model)
    loss0, grads = model.value_and_grad(x, labels, loss="cross_entropy", wrt="params")
    opt.step(grads)
    compile_s = time.perf_counter() - t0

    def torch_model():
        layers = []
        for k, (w, b) in enumerate(weights):
            lin = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers += [lin] + ([torch.nn.ReLU()] if k < len(weights) - 1 else [])
        net = torch.nn.Sequential(*layers)
        topt = (torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9) if args.optimizer == "sgd"
                else torch.optim.Adam(net.parameters(), lr=1e-3))
        return net, topt

    tx, tl = torch.from_numpy(x), torch.from_numpy(labels)

    def torch_step(net, topt):
        topt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(tx), tl)
        loss.backward()
        topt.step()
        return loss.item()

    # Same weights, same steps: the losses agree.
    net, topt = torch_model()
    tloss0 = torch_step(net, topt)
    loss1, grads = model.value_and_grad(x, labels, loss="cross_entropy", wrt="params")
    tloss1 = torch_step(net, topt)
    print(f"losses (ncc vs torch): step 1 {loss0:.6f} vs {tloss0:.6f}, step 2 {loss1:.6f} vs {tloss1:.6f}")
    if abs(loss0 - tloss0) > 1e-4 * max(1.0, abs(tloss0)) \
            or abs(loss1 - tloss1) > 1e-3 * max(1.0, abs(tloss1)):
        print("error: ncc and PyTorch disagree", file=sys.stderr)
        return 1

    def ncc_step():
        _, g = model.value_and_grad(x, labels, loss="cross_entropy", wrt="params")
        opt.step(g)

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    net, topt = torch_model()
    medians = interleaved_medians({"ncc": ncc_step, 1: lambda: torch_step(net, topt)}, args.repeat)
    ncc_s, results = medians.pop("ncc"), medians
    if default_threads > 1:
        torch.set_num_threads(default_threads)
        net, topt = torch_model()
        results[default_threads] = interleaved_medians({0: lambda: torch_step(net, topt)},
                                                       args.repeat)[0]
    torch.set_num_threads(default_threads)
    plan = model.memory()
    print(f"host: {host_summary()}")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {args.batch}, {args.optimizer}: one training step "
          f"(forward + loss + backward + update)")
    print(f"  ncc first step (compile + run): {compile_s:.2f} s")
    print(f"  ncc (1 thread):        {ncc_s * 1e3:8.2f} ms")
    for threads, s in results.items():
        print(f"  PyTorch ({threads} thread{'s' if threads > 1 else ''}):  {s * 1e3:8.2f} ms"
              f"   ncc / PyTorch time: {ncc_s / s:.2f}x")
    print(f"  memory at batch {args.batch}: " + ", ".join(f"{k} {v / 2**20:.2f} MiB"
                                                         for k, v in plan.at(args.batch).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
