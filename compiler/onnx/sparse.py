"""The sparse family in ONNX (export only: ONNX has no sparse matmul to import):
a sparse_matmul with constant values becomes a MatMul with the dense weight;
with computed values, a ScatterND into zeros, then MatMul. A
packed_sparse_matmul's column values are scattered the same way (its index
tables are constants), then MatMul, bias and activation."""

from __future__ import annotations

import numpy as np
from xdsl.ir import Operation

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import numpy_dtype
from ncc.dialects.nn.sparse import entry_columns
from ncc.onnx.elementwise import activation_to_onnx
from ncc.onnx.exporter import Graph, to_onnx


@to_onnx(nn.SparseMatmulOp)
def _export_sparse_matmul(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    src = op.values.owner
    data = (g.weights[src.sym].data if isinstance(src, nn.WeightRefOp) and src.sym in g.weights
            else src.data if isinstance(src, nn.ConstantOp) else None)
    if data is not None:  # constant values: the dense weight itself
        w = g.const(op.dense_weight(data), data.dtype)
    else:  # computed values: scattered into zeros at run time
        zeros = g.const(np.zeros((p.in_features, p.out_features)), numpy_dtype(op.result.type.element_type))
        w = g.node("ScatterND", [zeros, g.const(np.stack([p.rows, p.cols], 1).reshape(-1, 2)), ins[1]])
    return g.node("MatMul", [ins[0], w])


@to_onnx(nn.PackedSparseMatmulOp, nn.PackedSparseConvOp)
def _export_packed_sparse(g: Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    tables = []
    for v in (op.colptr, op.rowidx):
        src = v.owner
        w = g.weights.get(src.sym) if isinstance(src, nn.WeightRefOp) else None
        if w is None or w.data is None:
            raise NccError.at_op(op, "only a packed_sparse_matmul with constant index tables exports to ONNX")
        tables.append(w.data.astype(np.int64))
    colptr, rowidx = tables
    cols = entry_columns(colptr, p.out_features)
    zeros = g.const(np.zeros((p.in_features, p.out_features)), numpy_dtype(op.result.type.element_type))
    w = g.node("ScatterND", [zeros, g.const(np.stack([rowidx, cols], 1).reshape(-1, 2)), ins[2]])
    if isinstance(op, nn.PackedSparseConvOp):  # the filter [N, K, 1, 1]: W^T
        spatial = len(nn.shape_of(op.result.type)) - 2
        w = g.node("Reshape", [g.node("Transpose", [w], perm=[1, 0]),
                               g.const([p.out_features, p.in_features] + [1] * spatial)])
        y = g.node("Conv", [ins[0], w] + ins[8:9])
    else:
        y = g.node("MatMul", [ins[0], w])
        if len(ins) > 8:
            y = g.node("Add", [y, ins[8]])
    return activation_to_onnx(g, p.activation, y, op.result)
