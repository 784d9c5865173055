"""The nn matmul family: `nn.matmul`, `nn.matmul_transpose_a`, `nn.matmul_transpose_b`, `nn.fused_matmul`,
`nn.packed_matmul`."""

from __future__ import annotations

import numpy as np

from typing import Callable, ClassVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def, var_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import activations

from ncc.dialects.nn.base import NNOp, Param, activation_fn, broadcast_shapes, dims_compatible, fmt_shape, matmul_shape
from ncc.dialects.nn.base import need_float, need_numeric, need_rank, nn_op, same_element, shape_of


# ---------------------------------------------------------------------------
# Contractions: matmul, conv, sparse matmul and their fused forms.


@nn_op
class MatmulOp(NNOp):
    """numpy.matmul: batched, 1-D promotion, broadcast batch dimensions."""

    name = "nn.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = same_element(types)
        need_numeric(types[0], "operands")
        try:
            return TensorType(elt, matmul_shape(shape_of(types[0]), shape_of(types[1])))
        except ValueError as e:
            raise VerifyException(str(e)) from None


@nn_op
class MatmulTransposeAOp(NNOp):
    """lhs^T @ rhs for 2-D operands (MLIR's linalg.matmul_transpose_a): lhs [K, M],
    rhs [K, N] -> [M, N]. The weight gradient x^T @ dy of a dense layer, summed
    over the batch rows without moving the batch out of dimension 0."""

    name = "nn.matmul_transpose_a"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = same_element(types)
        need_numeric(types[0], "operands")
        need_rank(types[0], 2, "lhs [K, M]")
        need_rank(types[1], 2, "rhs [K, N]")
        (k, m), (k2, n) = shape_of(types[0]), shape_of(types[1])
        if not dims_compatible(k, k2):
            raise VerifyException(f"lhs {types[0]} and rhs {types[1]} differ in dimension 0 (K)")
        return TensorType(elt, [m, n])


@nn_op
class MatmulTransposeBOp(NNOp):
    """lhs @ rhs^T with a 2-D rhs (MLIR's linalg.matmul_transpose_b): lhs [..., K],
    rhs [N, K] -> [..., N]. The input gradient dy @ w^T of a dense layer, and
    any product whose right operand was transposed (fuse folds the transpose in)."""

    name = "nn.matmul_transpose_b"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = same_element(types)
        need_numeric(types[0], "operands")
        need_rank(types[1], 2, "rhs [N, K]")
        x, (n, k) = shape_of(types[0]), shape_of(types[1])
        if not x or not dims_compatible(x[-1], k):
            raise VerifyException(f"lhs {types[0]} does not end in K = {k}, the last dimension of rhs {types[1]}")
        return TensorType(elt, [*x[:-1], n])


def check_activation(name: str) -> None:
    if name not in activations.BY_NAME:
        raise VerifyException(f"unknown activation '{name}' (known: {', '.join(activations.BY_NAME)})")


class Epilogue:
    """A fused product's operands after its inputs, `epilogue`: none, [bias], or
    [bias, residual] -- act(product + bias + residual), the residual (a residual
    connection's other branch) of the result's type and only with a bias (fuse
    makes a zero one where there is none)."""

    @property
    def bias(self) -> SSAValue | None:
        return self.epilogue[0] if len(self.epilogue) else None

    @property
    def residual(self) -> SSAValue | None:
        return self.epilogue[1] if len(self.epilogue) > 1 else None


def epilogue_operands(bias: SSAValue | Operation | None, residual: SSAValue | Operation | None) -> list:
    if residual is not None and bias is None:
        raise ValueError("a residual comes with a bias (a zero one where there is none)")
    return [v for v in (bias, residual) if v is not None]


def check_residual(epilogue: list[TensorType], out: TensorType) -> None:
    if len(epilogue) > 2:
        raise VerifyException(f"after the inputs: a bias and a residual at most, got {len(epilogue)} operands")
    if len(epilogue) == 2 and epilogue[1] != out:
        raise VerifyException(f"the residual must have the result's type {out}, got {epilogue[1]}")


def _check_bias(bias: TensorType | None, out: TensorType, what: str) -> None:
    if bias is None:
        return
    if bias.element_type != out.element_type:
        raise VerifyException(f"bias must have element type {out.element_type}, got {bias}")
    try:
        ok = broadcast_shapes(shape_of(out), shape_of(bias)) == shape_of(out)
    except ValueError:
        ok = False
    if not ok:
        raise VerifyException(f"bias {bias} does not broadcast to the {what} shape {fmt_shape(shape_of(out))}")


@nn_op
class FusedMatmulOp(Epilogue, NNOp):
    """act(x @ w + bias [+ residual]): the `fuse` pass's target for matmul (+ add)
    (+ a residual add) (+ activation)."""

    name = "nn.fused_matmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("activation", "str", "identity"),)
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # Epilogue: none, [bias] or [bias, residual]

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation,
                 bias: SSAValue | Operation | None = None, activation: str = "identity",
                 residual: SSAValue | Operation | None = None):
        self._build([x, w, epilogue_operands(bias, residual)], activation=activation)

    @classmethod
    def infer(cls, types, p):
        check_activation(p.activation)
        need_float(types[0], "input")
        out = MatmulOp.infer(types[:2], p)
        _check_bias(types[2] if len(types) > 2 else None, out, "matmul result")
        check_residual(types[2:], out)
        return out



PANEL = 32  # columns of a packed weight's panel (a multiple of every GEMM tile's NR)


def pack_panels(w: np.ndarray) -> np.ndarray:
    """A [K, N] weight as [ceil(N / PANEL), K, PANEL] panels (zeros past N)."""
    k, n = w.shape
    p = -(-n // PANEL)
    padded = np.zeros((k, p * PANEL), w.dtype)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, p, PANEL).transpose(1, 0, 2))


def unpack_panels(panels: np.ndarray, n: int) -> np.ndarray:
    p, k, width = panels.shape
    return panels.transpose(1, 0, 2).reshape(k, p * width)[:, :n]


@nn_op
class PackedMatmulOp(Epilogue, NNOp):
    """act(x @ w + bias) with w given as its packed panels [ceil(N / 32), K, 32]
    (`pack_panels`: the layout the GEMM's micro-kernel streams, so that a weight
    is packed once, not on every call; the `pack-weights` pass makes it)."""

    name = "nn.packed_matmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("columns", "int"), Param("activation", "str", "identity"))
    input = operand_def(TensorType)
    panels = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # Epilogue: none, [bias] or [bias, residual]

    def __init__(self, x: SSAValue | Operation, panels: SSAValue | Operation, columns: int,
                 bias: SSAValue | Operation | None = None, activation: str = "identity",
                 residual: SSAValue | Operation | None = None):
        self._build([x, panels, epilogue_operands(bias, residual)], columns=columns, activation=activation)

    @classmethod
    def infer(cls, types, p):
        check_activation(p.activation)
        need_float(types[0], "input")
        elt = same_element(types[:2])
        need_rank(types[1], 3, f"panels [P, K, {PANEL}]")
        panels, x = shape_of(types[1]), shape_of(types[0])
        n = p.columns
        if n < 1 or panels[0] != -(-n // PANEL) or panels[2] != PANEL:
            raise VerifyException(f"panels {types[1]} do not hold {n} columns as "
                                  f"[{-(-max(n, 1) // PANEL)}, K, {PANEL}]")
        if not x or not dims_compatible(x[-1], panels[1]):
            raise VerifyException(f"input {types[0]} does not end in K = {panels[1]}")
        out = TensorType(elt, [*x[:-1], n])
        _check_bias(types[2] if len(types) > 2 else None, out, "matmul result")
        check_residual(types[2:], out)
        return out


def _fused_matmul(op, x, w, b=None, r=None):
    y = np.matmul(x, w)
    y = y if b is None else y + b
    return activation_fn(op.params.activation)(y if r is None else y + r)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    MatmulOp: lambda op, a, b: np.matmul(a, b),
    MatmulTransposeAOp: lambda op, a, b: np.matmul(a.T, b),
    MatmulTransposeBOp: lambda op, a, b: np.matmul(a, b.T),
    FusedMatmulOp: _fused_matmul,
    PackedMatmulOp: lambda op, x, panels, *epilogue: _fused_matmul(op, x, unpack_panels(panels, op.params.columns),
                                                                   *epilogue),
}
