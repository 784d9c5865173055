"""End to end on a real (tiny) trained net: XOR written neuron by neuron.

    python examples/xor.py

Imports examples/xor_values.txt into the neuron dialect, prints its forward and
backward equations, lowers it to the nn dialect (layerize), fuses the layers
(fuse), evaluates it with the reference interpreter at each level, and
compiles it to native code (both lowerings: straight-line neuron code, and
layers) and runs that.
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

    native = {mode: ncc.compile(HERE / "xor_values.txt", neuron_mode=mode) for mode in ("neuron", "layers")}
    y_native = {mode: model(x) for mode, model in native.items()}
    print("== native code of the neuron kernel (LLVM IR, first lines) ==")
    print("\n".join(native["neuron"].llvm_ir.splitlines()[:12]))

    print("== x0 x1 -> xor (reference: neuron, nn; native: neuron, layers) ==")
    for k, row in enumerate(x):
        ys = (y_neuron[k, 0], y_nn[k, 0], y_native["neuron"][k, 0], y_native["layers"][k, 0])
        print(f"   {int(row[0])}  {int(row[1])}  ->  " + "  ".join(f"{v:g}" for v in ys))
    expected = np.logical_xor(x[:, 0], x[:, 1]).astype(np.float32)
    for y in (y_neuron, y_nn, *y_native.values()):
        assert np.array_equal(y[:, 0], expected)
    print("ok: every level computes XOR")


if __name__ == "__main__":
    main()
