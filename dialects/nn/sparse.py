"""The nn sparse family: `nn.sparse_matmul` (a layer holding just its edges)
and `nn.packed_sparse_matmul` (a pruned weight in the sparse kernel's packed forms)."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def, opt_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import NNOp, Param, dims_compatible, need_float, need_len, need_rank, need_shape
from ncc.dialects.nn.base import activation_fn, nn_op, same_element, shape_of
from ncc.dialects.nn.matmul import check_activation


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



SLICE, BLOCK = 16, 32  # packed_sparse_matmul's slice form: output columns per slice, rows of K per block
COLUMN_BLOCK = 128  # its column form: rows of K per block (so X^T's rows of a block stay in L1)


def column_segments(k: int, n: int) -> int:
    """Segments of the column form: one per block of COLUMN_BLOCK rows and column."""
    return -(-k // COLUMN_BLOCK) * n


def entry_columns(colptr: np.ndarray, n: int) -> np.ndarray:
    """The column of each entry of the column form (segment s is column s mod n)."""
    return np.repeat(np.arange(len(colptr) - 1) % n, np.diff(colptr))


class PackedSparseOp(NNOp):
    """act(x @ W + bias) for a K x N weight W of fixed sparsity pattern, held
    twice in the packed forms of the sparse kernel (passes/lowering/spmm.py;
    `pack-weights` makes them from a pruned weight's mask):
      columns  W's nonzeros by block of COLUMN_BLOCK rows, then column (CSC per
               block): segment s = block * N + n holds rows
               rowidx[colptr[s]:colptr[s + 1]] of column n, in that block,
               their values column_values;
      slices   per slice of SLICE output columns, `steps[s]` steps; step t holds
               for each column of its slice a row within block blocks[t]
               (lanes, a byte, < BLOCK) and its value (slice_values; 0 for a
               column with no more nonzeros there).
    The reference reads the columns; the values are derived weights of the
    pruned parameter, the tables constants."""

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("in_features", "int"), Param("out_features", "int"), Param("activation", "str", "identity"))
    input = operand_def(TensorType)
    slice_values = operand_def(TensorType)
    column_values = operand_def(TensorType)
    steps = operand_def(TensorType)
    blocks = operand_def(TensorType)
    lanes = operand_def(TensorType)
    colptr = operand_def(TensorType)
    rowidx = operand_def(TensorType)
    bias = opt_operand_def(TensorType)

    TABLES: ClassVar[tuple[tuple[str, int], ...]] = (("steps", 32), ("blocks", 32), ("lanes", 8), ("colptr", 32),
                                                     ("rowidx", 32))

    def __init__(self, x: SSAValue | Operation, slice_values, column_values, steps, blocks, lanes, colptr,
                 rowidx, in_features: int, out_features: int, bias=None, activation: str = "identity"):
        self._build([x, slice_values, column_values, steps, blocks, lanes, colptr, rowidx,
                     [bias] if bias is not None else []], in_features=in_features, out_features=out_features,
                    activation=activation)

    FEATURE_AXIS: ClassVar[int] = -1  # the input's axis of the in_features (and the output's of out_features)

    @classmethod
    def infer(cls, types, p):
        check_activation(p.activation)
        x, slice_values, column_values, steps, blocks, lanes, colptr, rowidx = types[:8]
        need_float(x, "input")
        same_element([x, slice_values, column_values], "input and values")
        need_rank(x, 1 if cls.FEATURE_AXIS == -1 else 3, "input", at_least=True)
        k, n = p.in_features, p.out_features
        if k < 1 or n < 1:
            raise VerifyException(f"in_features and out_features must be >= 1, got {k} and {n}")
        if not dims_compatible(shape_of(x)[cls.FEATURE_AXIS], k):
            what = "last dimension" if cls.FEATURE_AXIS == -1 else "channels (dimension 1)"
            raise VerifyException(f"input's {what} must be in_features = {k}, got {x}")
        for (what, width), t in zip(cls.TABLES, (steps, blocks, lanes, colptr, rowidx)):
            if getattr(t.element_type, "width", None) is None or t.element_type.width.data != width:
                raise VerifyException(f"{what} must be a 1-D tensor of i{width}, got {t}")
            need_rank(t, 1, what)
        need_shape(steps, (-(-n // SLICE),), f"steps (one per slice of {SLICE} columns)")
        need_shape(colptr, (column_segments(k, n) + 1,), f"colptr (one per block of {COLUMN_BLOCK} rows and "
                   "column, + 1)")
        nnz, slots = shape_of(rowidx)[0], shape_of(blocks)[0]
        need_shape(column_values, (nnz,), "column_values (one per row index)")
        need_shape(lanes, (slots * SLICE,), f"lanes ({SLICE} per step)")
        need_shape(slice_values, (slots * SLICE,), f"slice_values ({SLICE} per step)")
        shape = list(shape_of(x))
        shape[cls.FEATURE_AXIS] = n
        out = TensorType(x.element_type, shape)
        if len(types) > 8:
            need_shape(types[8], (n,), "bias (one per output column)")
            same_element([x, types[8]], "input and bias")
        return out

    def check_tables(self, steps, blocks, lanes, colptr, rowidx) -> None:
        """Raise VerifyException unless the tables describe valid forms (what
        the kernel relies on to stay inside its buffers)."""
        k, n = self.params.in_features, self.params.out_features
        if colptr[0] != 0 or np.any(np.diff(colptr) < 0) or colptr[-1] != len(rowidx):
            raise VerifyException("colptr must rise from 0 to the number of row indices")
        if len(rowidx) and (rowidx.min() < 0 or rowidx.max() >= k):
            raise VerifyException(f"a row index is outside [0, {k})")
        segment = np.repeat(np.arange(len(colptr) - 1), np.diff(colptr))
        if np.any(rowidx // COLUMN_BLOCK != segment // n):
            raise VerifyException(f"a row index is outside its segment's block of {COLUMN_BLOCK} rows")
        if np.any(steps < 0) or steps.sum() != len(blocks):
            raise VerifyException("steps must count the steps, one block index each")
        if len(blocks) and (blocks.min() < 0 or blocks.max() * BLOCK >= k):
            raise VerifyException(f"a block index is outside the {-(-k // BLOCK)} blocks of {k} rows")
        if len(lanes) and (lanes.min() < 0 or lanes.max() >= BLOCK):
            raise VerifyException(f"a lane's row is outside [0, {BLOCK})")

    def dense_weight(self, column_values: np.ndarray, colptr: np.ndarray, rowidx: np.ndarray) -> np.ndarray:
        """The (in_features x out_features) weight the column form describes."""
        w = np.zeros((self.params.in_features, self.params.out_features), dtype=column_values.dtype)
        w[rowidx, entry_columns(colptr, self.params.out_features)] = column_values
        return w


@nn_op
class PackedSparseMatmulOp(PackedSparseOp):
    __doc__ = PackedSparseOp.__doc__
    name = "nn.packed_sparse_matmul"


@nn_op
class PackedSparseConvOp(PackedSparseOp):
    """act(conv(x, w) + bias) for a 1x1 convolution of stride 1 (no padding,
    one group) whose [out, in, 1, 1] filter w is W^T of a K x N weight held in
    packed_sparse_matmul's forms: channels first, so that the sparse kernel
    reads each image and writes each output where they are (pack-weights
    makes it from a pruned 1x1 convolution)."""

    name = "nn.packed_sparse_conv"
    FEATURE_AXIS: ClassVar[int] = 1


def _packed_sparse(op, x, slice_values, column_values, steps, blocks, lanes, colptr, rowidx, bias=None):
    try:
        op.check_tables(steps, blocks, lanes, colptr, rowidx)
    except VerifyException as e:
        raise ValueError(f"{op.name}: {e}") from None
    w = op.dense_weight(column_values, colptr, rowidx)
    if op.FEATURE_AXIS == 1:  # channels first: out[:, m, ...] = sum_c x[:, c, ...] w[c, m]
        y = np.moveaxis(np.tensordot(x, w, axes=([1], [0])), -1, 1)
        bias = None if bias is None else bias.reshape(-1, *[1] * (x.ndim - 2))
    else:
        y = np.matmul(x, w)
    return activation_fn(op.params.activation)(y if bias is None else y + bias)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    SparseMatmulOp: lambda op, x, v: np.matmul(x, op.dense_weight(v)),
    PackedSparseMatmulOp: _packed_sparse, PackedSparseConvOp: _packed_sparse,
}
