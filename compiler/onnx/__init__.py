"""ncc.onnx: ONNX models in and out of the nn dialect.

    module = ncc.import_onnx("model.onnx")      # importer.py: the walk over the graph
    model = ncc.export_onnx(module, "out.onnx") # exporter.py: the walk over the function

Each op family has one module here holding both directions, named as its
dialect module (ncc.dialects.nn.<family>): `@from_onnx("Conv")` rules build
nn ops from ONNX nodes, `@to_onnx(nn.ConvOp)` rules write ONNX nodes for nn
ops, next to the name map they share. Modules for ONNX ops that nn composes
rather than has (attention, recurrent, control_flow, signal) import only.
"""

from ncc.onnx.exporter import DEFAULT_OPSET, TO_ONNX, export_onnx
from ncc.onnx.importer import FROM_ONNX, Importer, import_model, import_onnx, load_model, with_dims

# Each family registers its rules when imported.
from ncc.onnx import (  # noqa: F401,E402
    attention, constants, control_flow, conv, elementwise, gather_scatter, matmul, normalization,
    pool, quant, recurrent, reduce, resize, shape, signal, softmax, sparse)

__all__ = ["DEFAULT_OPSET", "FROM_ONNX", "Importer", "TO_ONNX", "export_onnx", "import_model",
           "import_onnx", "load_model", "with_dims"]
