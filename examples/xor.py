"""End to end on a real (tiny) trained net: XOR written neuron by neuron.

    python examples/xor.py

Imports examples/xor_values.txt into the neuron dialect, prints its forward and
backward equations, lowers it to the nn dialect (layerize), fuses the layers
(fuse), and evaluates it with the reference interpreter at each level.
"""

from pathlib import Path

import numpy as np

import ncc

HERE = Path(__file__).parent


def main() -> None:
    module = ncc.import_adjacency(HERE / "xor_values.txt", name="xor")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)

    print("== neuron dialect ==")
    print(ncc.print_module(module))
    print("== forward equations ==")
    print(ncc.emit_equations(module))
    print("== backward equations ==")
    print(ncc.emit_equations(module, "backward"))
    y_neuron = ncc.reference.run(module, [x])[0]

    ncc.run_passes(module, "layerize,fuse")
    print("== nn dialect after layerize,fuse ==")
    print(ncc.print_module(module))
    y_nn = ncc.reference.run(module, [x])[0]

    print("== x0 x1 -> xor (neuron level, nn level) ==")
    for row, a, b in zip(x, y_neuron[:, 0], y_nn[:, 0]):
        print(f"   {int(row[0])}  {int(row[1])}  ->  {a:g}  {b:g}")
    expected = np.logical_xor(x[:, 0], x[:, 1]).astype(np.float32)
    assert np.array_equal(y_neuron[:, 0], expected) and np.array_equal(y_nn[:, 0], expected)
    print("ok: both levels compute XOR")


if __name__ == "__main__":
    main()
