"""ncc: a neural-net compiler toolchain in Python.

    import ncc
    module = ncc.import_adjacency("net.txt")     # neuron dialect
    ncc.run_passes(module, "layerize,fuse")      # nn dialect
    ncc.reference.run(module, {"x": x})          # numpy reference semantics
"""

from ncc.diagnostics import NccError
from ncc.ir import make_context, parse_module, print_module, verify_module

__all__ = ["NccError", "make_context", "parse_module", "print_module", "verify_module"]
