"""The nn sparse family: `nn.sparse_matmul` (a layer holding just its edges)."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import NNOp, Param, dims_compatible, need_float, need_len, need_rank, need_shape
from ncc.dialects.nn.base import nn_op, same_element, shape_of


@nn_op
class SparseMatmulOp(NNOp):
    """y[..., cols[e]] += x[..., rows[e]] * values[e]: a sparse (K x N) weight in COO form."""

    name = "nn.sparse_matmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("rows", "ints"), Param("cols", "ints"),
        Param("in_features", "int"), Param("out_features", "int"))
    input = operand_def(TensorType)
    values = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, values: SSAValue | Operation, rows: Sequence[int],
                 cols: Sequence[int], in_features: int, out_features: int):
        self._build([x, values], rows=rows, cols=cols, in_features=in_features,
                    out_features=out_features)

    @classmethod
    def infer(cls, types, p):
        x, vals = types
        need_float(x, "input")
        same_element(types, "input and values")
        need_rank(x, 1, "input", at_least=True)
        k, n = p.in_features, p.out_features
        if k < 1 or n < 1:
            raise VerifyException(f"in_features and out_features must be >= 1, got {k} and {n}")
        if not dims_compatible(shape_of(x)[-1], k):
            raise VerifyException(f"input's last dimension must be in_features = {k}, got {x}")
        nnz = len(p.rows)
        need_len(p.cols, nnz, "cols (one per row index)")
        need_shape(vals, (nnz,), "values (one per nonzero)")
        for what, idx, bound in (("row", p.rows, k), ("col", p.cols, n)):
            bad = next((e for e, i in enumerate(idx) if not 0 <= i < bound), None)
            if bad is not None:
                raise VerifyException(f"entry {bad}: {what} {idx[bad]} is out of range [0, {bound})")
        seen: dict[tuple[int, int], int] = {}
        for e, rc in enumerate(zip(p.rows, p.cols)):
            if rc in seen:
                raise VerifyException(f"entries {seen[rc]} and {e} both set (row {rc[0]}, col {rc[1]})")
            seen[rc] = e
        return TensorType(x.element_type, [*shape_of(x)[:-1], n])

    def dense_weight(self, values: np.ndarray) -> np.ndarray:
        """The (in_features x out_features) dense matrix these entries describe."""
        p = self.params
        w = np.zeros((p.in_features, p.out_features), dtype=values.dtype)
        w[list(p.rows), list(p.cols)] = values
        return w



# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    SparseMatmulOp: lambda op, x, v: np.matmul(x, op.dense_weight(v)),
}
