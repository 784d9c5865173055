"""What every VJP rule builds with: `Backward` (emit nn ops into the backward, read primal
values, constants, unbroadcasting) and the small helpers the families share."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Block, Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import shape_of


MODES = ("combined", "split")


def is_float(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and isinstance(v.type.element_type, nn.FLOAT_TYPES)


def name_attrs(names: Sequence[str]) -> ArrayAttr:
    return ArrayAttr([DictionaryAttr({"ncc.name": StringAttr(n)}) for n in names])


def _names(attrs: ArrayAttr | None, n: int, default: Callable[[int], str]) -> list[str]:
    out = [default(i) for i in range(n)]
    for i, a in enumerate(attrs.data if attrs else ()):
        if isinstance(a, DictionaryAttr) and isinstance(s := a.data.get("ncc.name"), StringAttr):
            out[i] = s.data
    return out


def input_names(fn: func.FuncOp) -> list[str]:
    return _names(fn.arg_attrs, len(fn.function_type.inputs.data), lambda i: f"arg{i}")


def result_names(fn: func.FuncOp) -> list[str]:
    return _names(fn.res_attrs, len(fn.function_type.outputs.data), str)


def weight_kinds(module: ModuleOp) -> dict[str, str]:
    """Each nn.weight's kind: "trainable" (a parameter training updates), or why
    not: "batch-norm statistics" (a running mean or variance), "constant" (an
    ncc.constant: folded from the code), "<type> (not a float)"."""
    stats = {v.owner.sym for op in module.walk() if isinstance(op, nn.BatchNormOp)
             for v in (op.mean, op.var) if isinstance(v.owner, nn.WeightRefOp)}
    trainable = {op.sym for op in trainable_weights(module)}
    kinds = {}
    for op in module.ops:
        if isinstance(op, nn.WeightOp):
            kinds[op.sym] = ("constant" if nn.CONSTANT_MARK in op.attributes else
                             f"{op.type.element_type} (not a float)" if op.sym not in trainable else
                             "batch-norm statistics" if op.sym in stats else "trainable")
    return kinds


def trainable_weights(module: ModuleOp) -> list[nn.WeightOp]:
    """The weights autodiff differentiates by default: float, not folded constants."""
    return [op for op in module.ops if isinstance(op, nn.WeightOp) and nn.CONSTANT_MARK not in op.attributes
            and isinstance(op.type.element_type, nn.FLOAT_TYPES)]


# ---------------------------------------------------------------------------
# The builder a rule gets


class Backward:
    """Where a rule builds its part of the backward: see the module docstring."""

    def __init__(self, block: Block, split: bool):
        self.block, self.split = block, split
        self.saved: list[SSAValue] = []  # forward values the backward reads (split mode)
        self._primal: dict[SSAValue, SSAValue] = {}
        self.active: set[SSAValue] = set()
        self._anchor: Operation | None = None  # combined mode: insert before the return
        self._constants: dict[tuple, SSAValue] = {}

    # -- building
    def emit(self, op: Operation) -> SSAValue:
        if self._anchor is not None:
            self.block.insert_op_before(op, self._anchor)
        else:
            self.block.add_op(op)
        return op.results[0]

    def primal(self, v: SSAValue) -> SSAValue:
        """The forward value `v`, as the backward sees it."""
        if not self.split:
            return v
        if v not in self._primal:
            owner = v.owner
            if isinstance(owner, (nn.WeightRefOp, nn.ConstantOp)):  # re-read, never saved
                self._primal[v] = self.emit(owner.clone())
            else:
                self.saved.append(v)
                self._primal[v] = self.block.insert_arg(v.type, len(self.saved) - 1)
        return self._primal[v]

    def wants(self, op: Operation, i: int) -> bool:
        return op.operands[i] in self.active

    # -- small expression helpers (numpy broadcasting, like the ops)
    def un(self, name: str, x: SSAValue) -> SSAValue:
        return self.emit(nn.UNARY_OPS[name](x))

    def bin(self, name: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(nn.BINARY_OPS[name](a, b))

    def cmp(self, name: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(nn.COMPARE_OPS[name](a, b))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(nn.SelectOp(cond, a, b))

    def constant(self, value: float, like: SSAValue | TensorType) -> SSAValue:
        """A rank-0 constant of `like`'s element type (one per value and type)."""
        t = like if isinstance(like, TensorType) else like.type
        key = (float(value), t.element_type)
        if key not in self._constants:
            self._constants[key] = self.emit(nn.ConstantOp(np.array(value, nn.numpy_dtype(t.element_type))))
        return self._constants[key]

    def zeros(self, t: TensorType) -> SSAValue:
        return self.emit(nn.BroadcastOp(self.constant(0.0, t), t))

    def reshape(self, x: SSAValue, t: TensorType | Sequence[int]) -> SSAValue:
        if isinstance(t, TensorType) and x.type == t:
            return x
        return self.emit(nn.ReshapeOp(x, t))

    def reduce(self, name: str, x: SSAValue, axes: Sequence[int], keepdims: bool) -> SSAValue:
        return self.emit(nn.REDUCE_OPS[name](x, axes=list(axes), keepdims=keepdims))

    def unbroadcast(self, g: SSAValue, t: TensorType) -> SSAValue:
        """Sum `g` (of a broadcast shape) back to the shape of `t`."""
        gs, ts = shape_of(g.type), shape_of(t)
        lead = len(gs) - len(ts)
        axes = [i for i in range(len(gs)) if i < lead or (ts[i - lead] == 1 and gs[i] != 1)]
        if axes:
            g = self.reduce("reduce_sum", g, axes, keepdims=True)
        return self.reshape(g, t)

    def broadcast(self, g: SSAValue, t: TensorType) -> SSAValue:
        return g if g.type == t else self.emit(nn.BroadcastOp(g, t))


Rule = Callable[[Backward, Operation, SSAValue], list[SSAValue | None]]


def scaled_product(bw, g, x, c):
    return bw.bin("mul", g, bw.bin("mul", x, bw.constant(c, x))) if c != 1 else bw.bin("mul", g, x)


# ---------------------------------------------------------------------------
# Norms, gathers and scatters, slices and pads, scans, triangles, sparse
# matmul, resize. Index operands get no cotangent; scatters and gathers are
# each other's transposes.


def no_rule(op: Operation, what: str) -> NccError:
    return NccError.at_op(op, f"cannot differentiate '{op.name}' {what}: it has no derivative rule "
                              "(freeze the weights and inputs whose gradient flows through it)")


def int_constant(bw: Backward, values: np.ndarray) -> SSAValue:
    return bw.emit(nn.ConstantOp(np.asarray(values, np.int64)))
