"""Import and layerize a random acyclic 10,000-neuron, 100,000-edge adjacency list.

    python benchmarks/bench_import_layerize.py [--neurons N] [--edges E] [--seed S]

Prints the time of each stage. The goal (issue: foundation) is import + layerize
in under 30 s; it is measured here, not asserted in a unit test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from ncc.runtime.engine import host_summary


def random_dag_text(neurons: int, edges: int, inputs: int, seed: int) -> str:
    """An adjacency list: every non-input neuron reads ~edges/(neurons-inputs) earlier neurons."""
    rng = np.random.default_rng(seed)
    width = max(2, len(f"{neurons - 1:x}"))
    per = edges // (neurons - inputs)
    extra = edges - per * (neurons - inputs)
    lines = [f"% random DAG: {neurons} neurons, {edges} edges, seed {seed}", f"N {neurons:x}"]
    lines += [f"{j:0{width}x}" for j in range(inputs)]
    for j in range(inputs, neurons):
        k = min(j, per + (1 if j - inputs < extra else 0))
        ins = np.sort(rng.choice(j, size=k, replace=False))
        act = ("01", "03", "02")[j % 3]
        lines.append(f"{j:0{width}x} {act} " + ",".join(f"{i:0{width}x}" for i in ins))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=10_000)
    ap.add_argument("--edges", type=int, default=100_000)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from ncc.adjacency import parse_adjacency
    from ncc.ir import verify_module
    from ncc.passes.layerize import LayerizePass
    from ncc.ir import make_context

    text = random_dag_text(args.neurons, args.edges, args.inputs, args.seed)
    t0 = time.perf_counter()
    graph = parse_adjacency(text, "random.txt")
    t1 = time.perf_counter()
    module = ModuleOp([graph.to_net("random")])
    t2 = time.perf_counter()
    verify_module(module)
    t3 = time.perf_counter()
    LayerizePass().apply(make_context(), module)
    t4 = time.perf_counter()
    verify_module(module)
    t5 = time.perf_counter()
    n_ops = sum(1 for _ in module.walk())
    print(f"host: {host_summary()}")
    print(f"net: {args.neurons} neurons, {args.edges} edges, {len(text) / 1e6:.1f} MB of text")
    print(f"parse adjacency text   {t1 - t0:7.2f} s")
    print(f"build neuron IR        {t2 - t1:7.2f} s")
    print(f"verify neuron IR       {t3 - t2:7.2f} s")
    print(f"layerize               {t4 - t3:7.2f} s   ({n_ops} ops after)")
    print(f"verify nn IR           {t5 - t4:7.2f} s")
    total = t5 - t0
    print(f"total import + layerize {total:6.2f} s   (goal: < 30 s) {'OK' if total < 30 else 'OVER'}")


if __name__ == "__main__":
    main()
