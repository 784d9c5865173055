"""The nn shape family (data movement): reshape, broadcast, transpose, concat,
slice, pad, triu / tril."""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def, var_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, add_param_props, dims_compatible, need_len, need_rank
from ncc.dialects.nn.base import nn_op, normalize_axes, normalize_axis, same_element, shape_of
from ncc.dialects.nn.elementwise import generate


# ---------------------------------------------------------------------------
# Data movement


@nn_op
class ReshapeOp(NNOp):
    """Reshape to the result type's shape; one `?` there takes the remaining size."""

    name = "nn.reshape"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, shape: Sequence[int] | TensorType):
        """`shape` may hold one -1 (inferred from the static input size, else `?`)."""
        x = SSAValue.get(x)
        xt = x.type
        if isinstance(shape, TensorType):
            rt = shape
        else:
            dims = [DYN if d is None or d < 0 else int(d) for d in shape]
            if dims.count(DYN) == 1 and DYN not in shape_of(xt):
                known = math.prod(d for d in dims if d != DYN)
                if known and math.prod(shape_of(xt)) % known == 0:
                    dims[dims.index(DYN)] = math.prod(shape_of(xt)) // known
            rt = TensorType(xt.element_type, dims)
        self._build([x], rt)

    @classmethod
    def infer(cls, types, p):
        return None  # the target shape is the result type; checked in verify_

    def verify_(self) -> None:
        super().verify_()
        src, dst = self.input.type, self.result.type
        if src.element_type != dst.element_type:
            raise VerifyException(f"element type changes from {src.element_type} to {dst.element_type}")
        s, d = shape_of(src), shape_of(dst)
        if d.count(DYN) > 1:
            raise VerifyException(f"the result may have at most one '?' dimension, got {dst}")
        if DYN in s:
            return
        total, known = math.prod(s), math.prod(x for x in d if x != DYN)
        if DYN not in d and total != known:
            raise VerifyException(f"cannot reshape {total} elements ({src}) into {known} ({dst})")
        if DYN in d and (known == 0 or total % known):
            raise VerifyException(f"cannot reshape {total} elements ({src}) into {dst}")


@nn_op
class BroadcastOp(NNOp):
    """Broadcast to the result type's shape by numpy's rules (ONNX Expand, MLIR's
    linalg.broadcast): `nn.broadcast %g : tensor<1x3xf32> -> tensor<?x3xf32>`.
    A `?` in the result that the operand does not carry is the run-time batch
    size (as everywhere in native code); autodiff uses it to spread a reduced
    cotangent back over its input."""

    name = "nn.broadcast"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, result_type: TensorType):
        self._build([x], result_type)

    @classmethod
    def infer(cls, types, p):
        return None  # the target shape is the result type; checked in verify_

    def verify_(self) -> None:
        src, dst = self.input.type, self.result.type
        if src.element_type != dst.element_type:
            raise VerifyException(f"element type changes from {src.element_type} to {dst.element_type}")
        s, d = shape_of(src), shape_of(dst)
        if len(s) > len(d):
            raise VerifyException(f"cannot broadcast {src} to the lower rank of {dst}")
        for a, b in zip(s, d[len(d) - len(s):]):
            if a != 1 and not dims_compatible(a, b):
                raise VerifyException(f"cannot broadcast {src} to {dst}")


@nn_op
class TransposeOp(NNOp):
    """Permute dimensions: result dim i is input dim perm[i]."""

    name = "nn.transpose"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("perm", "ints"),)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, perm: Sequence[int]):
        self._build([x], perm=perm)

    @classmethod
    def infer(cls, types, p):
        shape = shape_of(types[0])
        if sorted(p.perm) != list(range(len(shape))):
            raise VerifyException(f"perm {list(p.perm)} is not a permutation of 0..{len(shape) - 1}")
        return TensorType(types[0].element_type, [shape[i] for i in p.perm])


@nn_op
class ConcatOp(NNOp):
    """Concatenate along `axis`; other dimensions must agree."""

    name = "nn.concat"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int"),)
    inputs = var_operand_def(TensorType)

    def __init__(self, inputs: Sequence[SSAValue | Operation], axis: int):
        self._build([list(inputs)], axis=axis)

    @classmethod
    def infer(cls, types, p):
        if not types:
            raise VerifyException("needs at least one input")
        elt = same_element(types, "inputs")
        rank = len(shape_of(types[0]))
        for t in types:
            need_rank(t, rank, "every input")
        axis = normalize_axis(p.axis, rank)
        out = []
        for i in range(rank):
            dims = [shape_of(t)[i] for t in types]
            if i == axis:
                out.append(DYN if DYN in dims else sum(dims))
                continue
            static = {d for d in dims if d != DYN}
            if len(static) > 1:
                raise VerifyException(f"inputs differ in dimension {i} ({', '.join(map(str, dims))}); "
                                      f"only the axis {axis} may differ")
            out.append(static.pop() if static else DYN)
        return TensorType(elt, out)


def _slice_axes(ts, v):
    return tuple(range(len(v.starts)))


def _slice_steps(ts, v):
    return (1,) * len(v.starts)


def onnx_slice(dim: int, start: int, end: int, step: int) -> slice:
    """ONNX Slice bounds as a Python slice: negative indices count from the end,
    then clamp to [0, dim] (step > 0) or [0, dim-1] / [-1, dim-1] (step < 0).
    Unlike Python's own clamping, a far-negative start with a negative step
    still starts at 0."""
    if dim == 0:
        return slice(0, 0, step)
    start += dim if start < 0 else 0
    end += dim if end < 0 else 0
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    end = min(max(end, -1), dim - 1)
    return slice(min(max(start, 0), dim - 1), None if end < 0 else end, step)


def slice_length(dim: int, start: int, end: int, step: int) -> int:
    return DYN if dim == DYN else len(range(dim)[onnx_slice(dim, start, end, step)])


@nn_op
class SliceOp(NNOp):
    """ONNX Slice: x[starts:ends:steps] on `axes` (default 0..len(starts)-1)."""

    name = "nn.slice"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("starts", "ints"), Param("ends", "ints"),
                                           Param("axes", "ints", _slice_axes),
                                           Param("steps", "ints", _slice_steps))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, starts: Sequence[int], ends: Sequence[int],
                 axes: Sequence[int] | None = None, steps: Sequence[int] | None = None):
        self._build([x], starts=starts, ends=ends, axes=axes, steps=steps)

    @classmethod
    def infer(cls, types, p):
        shape = list(shape_of(types[0]))
        n = len(p.starts)
        need_len(p.ends, n, "ends (one per start)")
        need_len(p.axes, n, "axes (one per start)")
        need_len(p.steps, n, "steps (one per start)")
        axes = normalize_axes(p.axes, len(shape))
        if 0 in p.steps:
            raise VerifyException("steps must be nonzero")
        for a, s, e, st in zip(axes, p.starts, p.ends, p.steps):
            shape[a] = slice_length(shape[a], s, e, st)
        return TensorType(types[0].element_type, shape)


PAD_MODES = ("constant", "reflect", "edge")


@nn_op
class PadOp(NNOp):
    """Pad every axis by pads [begin..., end...]; mode constant (with value), reflect, edge."""

    name = "nn.pad"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("pads", "ints"), Param("mode", "str", "constant"),
                                           Param("value", "float", 0.0))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, pads: Sequence[int], mode: str = "constant",
                 value: float = 0.0):
        self._build([x], pads=pads, mode=mode, value=value)

    @classmethod
    def infer(cls, types, p):
        shape = shape_of(types[0])
        r = len(shape)
        need_len(p.pads, 2 * r, "pads (begin..., end...)")
        if min(p.pads, default=0) < 0:
            raise VerifyException(f"pads must be >= 0, got {list(p.pads)}")
        if p.mode not in PAD_MODES:
            raise VerifyException(f"unknown pad mode '{p.mode}' (known: {', '.join(PAD_MODES)})")
        if p.mode != "constant" and p.value != 0.0:
            raise VerifyException(f"a pad value only applies to mode constant, not {p.mode}")
        out = []
        for i, d in enumerate(shape):
            b, e = p.pads[i], p.pads[i + r]
            if d != DYN and p.mode == "reflect" and max(b, e) >= d:
                raise VerifyException(f"reflect padding of axis {i} needs pads < its size {d}, got {b}, {e}")
            if d == 0 and p.mode == "edge" and max(b, e) > 0:
                raise VerifyException(f"edge padding of axis {i} needs a non-empty axis")
            out.append(DYN if d == DYN else d + b + e)
        return TensorType(types[0].element_type, out)


class TriangleOp(NNOp):
    """The upper (triu) or lower (tril) triangle of the last two dimensions,
    from diagonal `k` (0: the main one, > 0 above, < 0 below); zeros elsewhere."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("k", "int", 0),)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, k: int = 0):
        self._build([x], k=k)

    @classmethod
    def infer(cls, types, p):
        need_rank(types[0], 2, "input", at_least=True)
        return types[0]


add_param_props(TriangleOp)
TRIANGLE: dict[str, Callable[..., np.ndarray]] = {"triu": np.triu, "tril": np.tril}
TRIANGLE_OPS: dict[str, type[TriangleOp]] = {
    n: generate(TriangleOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: {TriangleOp.__doc__}"}, globals())
    for n, f in TRIANGLE.items()}



def slice_reference(x, starts, ends, axes, steps) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = onnx_slice(x.shape[a], s, e, st)
    return x[tuple(index)]


def pad_reference(x, pads, mode, value) -> np.ndarray:
    r = x.ndim
    widths = [(pads[i], pads[i + r]) for i in range(r)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=value)
    return np.pad(x, widths, mode=mode)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    ReshapeOp: lambda op, x: x.reshape([-1 if d == DYN else d for d in shape_of(op.result.type)]),
    TransposeOp: lambda op, x: np.transpose(x, op.params.perm),
    ConcatOp: lambda op, *xs: np.concatenate(xs, axis=op.params.axis),
    SliceOp: lambda op, x: slice_reference(x, op.params.starts, op.params.ends, op.params.axes,
                                     op.params.steps),
    PadOp: lambda op, x: pad_reference(x, op.params.pads, op.params.mode, op.params.value),
    **{cls: (lambda op, x: type(op).fn(x, op.params.k)) for cls in TRIANGLE_OPS.values()},
}
