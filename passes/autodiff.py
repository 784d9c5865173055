"""autodiff: reverse-mode differentiation of nn functions.

    func.func @f(%x) -> %y              func.func @f_forward(%x) -> (%y, saved...)
      (nn ops)                 ==>      func.func @f_backward(saved..., %dy) -> (grads...)
                                        (or, combined: @f_vjp(%x, %dy) -> (%y, grads...))

The gradient is taken with respect to every trainable weight (a float
`nn.weight` that is not `frozen` and not a folded constant, `ncc.constant`) and
the float inputs. Only *active* values get a cotangent: those that depend on
something being differentiated (a frozen weight's branch is never
differentiated: its dead gradient is not computed) and that a result depends
on. Ops are visited in reverse; each op's rule `VJP[type(op)]` maps the
cotangent of its result to cotangents of its operands, built from nn ops (so
the backward is lowered and compiled like any other nn code). A rule reads
forward values through `bw.primal(v)`: in split mode exactly those values
become the forward function's extra `saved:<k>` results (weights and constants
are re-read instead of saved), so the forward saves only what the backward
needs.

Names (`ncc.name` attributes, which become the kernel roles after
lower-to-loops): cotangent arguments `cotangent:<result name>`, gradients
`grad:<weight>` (module order) then `grad:<input name>` (argument order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, i64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import activations, nn
from ncc.dialects.nn import DYN, shape_of

MODES = ("combined", "split")


def _is_float(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and isinstance(v.type.element_type, nn.FLOAT_TYPES)


def _name_attrs(names: Sequence[str]) -> ArrayAttr:
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


# ---------------------------------------------------------------------------
# VJP rules. Each returns one cotangent per operand (None: no gradient, or not wanted).


def _unary(d: Callable[[Backward, SSAValue, SSAValue, SSAValue], SSAValue | None]) -> Rule:
    """A rule from d(bw, x, y, g) -> dx; it calls bw.primal only on what it uses."""
    return lambda bw, op, g: [d(bw, op.operands[0], op.result, g)]


def _scale(bw, g, x, c):
    return bw.bin("mul", g, bw.bin("mul", x, bw.constant(c, x))) if c != 1 else bw.bin("mul", g, x)


# dy/dx of each elementwise function, from the input x or (cheaper to save, and
# fusable forward code) the output y.
UNARY_VJP: dict[str, Callable] = {
    "neg": lambda bw, x, y, g: bw.un("neg", g),
    "exp": lambda bw, x, y, g: bw.bin("mul", g, bw.primal(y)),
    "log": lambda bw, x, y, g: bw.bin("div", g, bw.primal(x)),
    "sqrt": lambda bw, x, y, g: bw.bin("div", g, _scale(bw, bw.constant(1, y), bw.primal(y), 2)),
    "reciprocal": lambda bw, x, y, g: bw.un("neg", bw.bin("mul", g, bw.bin("mul", *[bw.primal(y)] * 2))),
    "cos": lambda bw, x, y, g: bw.un("neg", bw.bin("mul", g, bw.un("sin", bw.primal(x)))),
    "erf": lambda bw, x, y, g: (lambda xv: bw.bin("mul", g, _scale(
        bw, bw.constant(1, x), bw.un("exp", bw.un("neg", bw.bin("mul", xv, xv))),
        2 / math.sqrt(math.pi))))(bw.primal(x)),
    "sinh": lambda bw, x, y, g: bw.bin("mul", g, bw.un("cosh", bw.primal(x))),
    "cosh": lambda bw, x, y, g: bw.bin("mul", g, bw.un("sinh", bw.primal(x))),
    # d/dx of the inverse functions: g / h(x)
    **{name: (lambda h: lambda bw, x, y, g: bw.bin("div", g, h(bw, bw.primal(x))))(h) for name, h in {
        "asin": lambda bw, xv: bw.un("sqrt", bw.bin("sub", bw.constant(1, xv), bw.bin("mul", xv, xv))),
        "acos": lambda bw, xv: bw.un("neg", bw.un("sqrt", bw.bin("sub", bw.constant(1, xv),
                                                                  bw.bin("mul", xv, xv)))),
        "atan": lambda bw, xv: bw.bin("add", bw.constant(1, xv), bw.bin("mul", xv, xv)),
        "asinh": lambda bw, xv: bw.un("sqrt", bw.bin("add", bw.bin("mul", xv, xv), bw.constant(1, xv))),
        "acosh": lambda bw, xv: bw.un("sqrt", bw.bin("sub", bw.bin("mul", xv, xv), bw.constant(1, xv))),
        "atanh": lambda bw, xv: bw.bin("sub", bw.constant(1, xv), bw.bin("mul", xv, xv)),
    }.items()},
    # piecewise constant: zero almost everywhere (as PyTorch)
    **{name: (lambda bw, x, y, g: None) for name in ("floor", "ceil", "round", "sign")},
    # the activations: the table's vjp (dialects/activations.py), on nn ops
    **{a.name: (lambda a: lambda bw, x, y, g: a.vjp(
        _NNScalar(bw, g), bw.primal(x) if "z" in a.reads else None,
        bw.primal(y) if "n" in a.reads else None, g))(a) for a in activations.ACTIVATIONS},
}


class _NNScalar:
    """The activation table's Scalar on nn tensor ops (constants of `like`'s type)."""

    def __init__(self, bw: Backward, like: SSAValue):
        self.bw, self.like = bw, like

    def const(self, v: float) -> SSAValue:
        return self.bw.constant(v, self.like)

    def __getattr__(self, name: str):
        if name in ("add", "sub", "mul", "div", "max", "min"):
            return lambda a, b: self.bw.bin(name, a, b)
        if name in nn.UNARY_OPS:
            return lambda a: self.bw.un(name, a)
        raise AttributeError(name)

    def positive(self, a: SSAValue) -> SSAValue:
        return self.bw.cmp("greater", a, self.const(0.0))

    def negative(self, a: SSAValue) -> SSAValue:
        return self.bw.cmp("less", a, self.const(0.0))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.bw.select(cond, a, b)


def _binary(d: Callable) -> Rule:
    """A rule from d(bw, a, b, y, g) -> (da, db) before unbroadcasting."""

    def rule(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
        a, b = op.operands
        da, db = d(bw, a, b, op.result, g)
        return [bw.unbroadcast(da, a.type) if da is not None and bw.wants(op, 0) else None,
                bw.unbroadcast(db, b.type) if db is not None and bw.wants(op, 1) else None]
    return rule


def _max_share(bw: Backward, a: SSAValue, b: SSAValue, which: str) -> SSAValue:
    """1 where `a` wins (greater for max, less for min), 0.5 on ties (as PyTorch), else 0."""
    av, bv = bw.primal(a), bw.primal(b)
    t = bw.constant(1, a)
    return bw.select(bw.cmp(which, av, bv), t,
                     bw.select(bw.cmp("equal", av, bv), bw.constant(0.5, a), bw.constant(0, a)))


def _max_min(which: str):
    def d(bw, a, b, y, g):
        share = _max_share(bw, a, b, which)
        return bw.bin("mul", g, share), bw.bin("mul", g, bw.bin("sub", bw.constant(1, a), share))
    return d


def _quotient(bw: Backward, a: SSAValue, b: SSAValue, y: SSAValue) -> SSAValue:
    """(a - remainder) / b: floor(a / b) for mod, trunc(a / b) for fmod."""
    bv = bw.primal(b)
    return bw.bin("div", bw.bin("sub", bw.primal(a), bw.primal(y)), bv)


BINARY_VJP: dict[str, Callable] = {
    "add": lambda bw, a, b, y, g: (g, g),
    "sub": lambda bw, a, b, y, g: (g, bw.un("neg", g)),
    "mul": lambda bw, a, b, y, g: (bw.bin("mul", g, bw.primal(b)) if a in bw.active else None,
                                   bw.bin("mul", g, bw.primal(a)) if b in bw.active else None),
    # da = g / b; db = -g a / b^2 = -da * y
    "div": lambda bw, a, b, y, g: (lambda da: (da, bw.un("neg", bw.bin("mul", da, bw.primal(y)))
                                               if b in bw.active else None))(
        bw.bin("div", g, bw.primal(b))),
    "max": _max_min("greater"),
    "min": _max_min("less"),
    # da = g b a^(b-1); db = g y log(a)
    "pow": lambda bw, a, b, y, g: (
        bw.bin("mul", g, bw.bin("mul", bw.primal(b), bw.bin(
            "pow", bw.primal(a), bw.bin("sub", bw.primal(b), bw.constant(1, b))))) if a in bw.active else None,
        bw.bin("mul", g, bw.bin("mul", bw.primal(y), bw.un("log", bw.primal(a)))) if b in bw.active else None),
    "mod": lambda bw, a, b, y, g: (g, bw.un("neg", bw.bin("mul", g, _quotient(bw, a, b, y)))
                                   if b in bw.active else None),
    "fmod": lambda bw, a, b, y, g: (g, bw.un("neg", bw.bin("mul", g, _quotient(bw, a, b, y)))
                                    if b in bw.active else None),
}


def _transpose_last2(bw: Backward, x: SSAValue) -> SSAValue:
    r = len(shape_of(x.type))
    return bw.emit(nn.TransposeOp(x, [*range(r - 2), r - 1, r - 2]))


def _matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """numpy.matmul: da = g @ b^T, db = a^T @ g, each summed over broadcast batch
    dimensions; 1-D operands are promoted to matrices and back."""
    a, b = op.operands
    sa, sb = shape_of(a.type), shape_of(b.type)
    elt = a.type.element_type
    a2t = TensorType(elt, [1, *sa]) if len(sa) == 1 else a.type
    b2t = TensorType(elt, [*sb, 1]) if len(sb) == 1 else b.type
    gs = list(shape_of(g.type))
    if len(sa) == 1:
        gs.insert(len(gs) - (len(sb) > 1), 1)
    if len(sb) == 1:
        gs.append(1)
    g2 = bw.reshape(g, TensorType(elt, gs))
    out: list[SSAValue | None] = [None, None]
    if bw.wants(op, 0):
        bt = _transpose_last2(bw, bw.reshape(bw.primal(b), b2t))
        out[0] = bw.reshape(bw.unbroadcast(bw.emit(nn.MatmulOp(g2, bt)), a2t), a.type)
    if bw.wants(op, 1):
        av = bw.reshape(bw.primal(a), a2t)
        if len(shape_of(a2t)) == 2 and len(shape_of(b2t)) == 2:  # rows of a may be the batch
            db = bw.emit(nn.MatmulTransposeAOp(av, g2))
        else:
            db = bw.unbroadcast(bw.emit(nn.MatmulOp(_transpose_last2(bw, av), g2)), b2t)
        out[1] = bw.reshape(db, b.type)
    return out


def _matmul_transpose_a_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = a^T b: da = b g^T, db = a g."""
    a, b = op.operands
    return [bw.emit(nn.MatmulOp(bw.primal(b), bw.emit(nn.TransposeOp(g, [1, 0]))))
            if bw.wants(op, 0) else None,
            bw.emit(nn.MatmulOp(bw.primal(a), g)) if bw.wants(op, 1) else None]


def activation_vjp(bw: Backward, op: Operation, g: SSAValue, pre: Callable[[], SSAValue]) -> SSAValue:
    """The cotangent of a fused op's pre-activation sum z, given g = dL/dy.
    Rules that read y use the op's own result; the others recompute z (`pre`)."""
    act = op.params.activation
    if act == "identity":
        return g
    z = pre() if "z" in activations.BY_NAME[act].reads else None
    shim = _ActivationShim(bw, z)
    return UNARY_VJP[act](shim, z, op.result, g) or bw.zeros(g.type)


class _ActivationShim:
    """A Backward whose primal() returns the recomputed z for the fused op's x."""

    def __init__(self, bw: Backward, z: SSAValue | None):
        self._bw, self._z = bw, z

    def __getattr__(self, name):
        return getattr(self._bw, name)

    def primal(self, v: SSAValue) -> SSAValue:
        return self._z if v is self._z else self._bw.primal(v)


def _fused_matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    x, w = op.operands[:2]
    bias = op.operands[2] if len(op.operands) > 2 else None

    def pre() -> SSAValue:
        z = bw.emit(nn.MatmulOp(bw.primal(x), bw.primal(w)))
        return bw.bin("add", z, bw.primal(bias)) if bias is not None else z

    dz = activation_vjp(bw, op, g, pre)
    dx, dw = _matmul_vjp(bw, _MatmulView(op), dz)
    return [dx, dw] + ([bw.unbroadcast(dz, bias.type) if bw.wants(op, 2) else None] if bias else [])


class _MatmulView:
    """The (x, w) part of a fused matmul, as the matmul rule reads it."""

    def __init__(self, op: Operation):
        self.operands = op.operands[:2]
        self._op = op

    def __getattr__(self, name):
        return getattr(self._op, name)


def _reduce_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    x = op.operands[0]
    xs = shape_of(x.type)
    axes = nn.normalize_axes(op.params.axes, len(xs))
    keep = TensorType(g.type.element_type, [1 if i in axes else d for i, d in enumerate(xs)])
    gk = bw.reshape(g, keep)
    kind = op.name[len("nn.reduce_"):]
    if kind == "sum":
        return [bw.broadcast(gk, x.type)]
    if kind == "mean":
        n = math.prod(xs[i] for i in axes if xs[i] != DYN)
        if any(xs[i] == DYN for i in axes):  # the batch: divide by the count at run time
            ones = bw.broadcast(bw.constant(1, x), x.type)
            count = bw.reduce("reduce_sum", ones, axes, keepdims=True)
            return [bw.broadcast(bw.bin("div", gk, count), x.type)]
        return [bw.broadcast(bw.bin("mul", gk, bw.constant(1 / n, x)), x.type)]
    yk = bw.reshape(bw.primal(op.result), keep)
    xv = bw.primal(x)
    if kind == "prod":  # d/dx_i prod = prod / x_i
        return [bw.bin("div", bw.bin("mul", bw.broadcast(gk, x.type), yk), xv)]
    # max/min: shared evenly by the elements that attain it (as torch.amax)
    hit = bw.select(bw.cmp("equal", xv, yk), bw.constant(1, x), bw.constant(0, x))
    count = bw.reduce("reduce_sum", hit, axes, keepdims=True)
    return [bw.bin("mul", hit, bw.bin("div", gk, count))]


def _softmax_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g), along the axis."""
    axis = nn.normalize_axis(op.params.axis, len(shape_of(g.type)))
    y = bw.primal(op.result)
    if isinstance(op, nn.SoftmaxOp):
        s = bw.reduce("reduce_sum", bw.bin("mul", g, y), [axis], keepdims=True)
        return [bw.bin("mul", y, bw.bin("sub", g, s))]
    s = bw.reduce("reduce_sum", g, [axis], keepdims=True)
    return [bw.bin("sub", g, bw.bin("mul", bw.un("exp", y), s))]


def _reshape_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.reshape(g, op.operands[0].type)]


def _broadcast_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.unbroadcast(g, op.operands[0].type)]


def _transpose_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    inverse = [0] * len(op.params.perm)
    for i, p in enumerate(op.params.perm):
        inverse[p] = i
    return [bw.emit(nn.TransposeOp(g, inverse))]


def _concat_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    axis = nn.normalize_axis(op.params.axis, len(shape_of(g.type)))
    out, start = [], 0
    for i, x in enumerate(op.operands):
        n = shape_of(x.type)[axis]
        out.append(bw.emit(nn.SliceOp(g, [start], [start + n], [axis])) if bw.wants(op, i) else None)
        start += n
    return out


def _cast_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.emit(nn.CastOp(g, op.operands[0].type.element_type))]


def _select_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    cond = bw.primal(op.operands[0])
    zero = bw.constant(0, g)
    return [None] + [bw.unbroadcast(bw.select(cond, g, zero) if i == 1 else bw.select(cond, zero, g),
                                    op.operands[i].type) if bw.wants(op, i) else None for i in (1, 2)]


# ---------------------------------------------------------------------------
# Norms, gathers and scatters, slices and pads, scans, triangles, sparse
# matmul, resize. Index operands get no cotangent; scatters and gathers are
# each other's transposes.


def _no_rule(op: Operation, what: str) -> NccError:
    return NccError.at_op(op, f"cannot differentiate '{op.name}' {what}: it has no derivative rule "
                              "(freeze the weights and inputs whose gradient flows through it)")


def _int_constant(bw: Backward, values: np.ndarray) -> SSAValue:
    return bw.emit(nn.ConstantOp(np.asarray(values, np.int64)))


def _batch_norm_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = (x - mean) inv scale + bias per channel (axis 1), inv = 1/sqrt(var + eps):
    dx = g scale inv; dbias = S(g); dscale = S(g (x - mean)) inv;
    dmean = -dbias scale inv; dvar = -dscale scale inv^2 / 2 (S: the sum over all axes but 1)."""
    x, scale, bias, mean, var = op.operands
    sx = shape_of(x.type)
    ct = TensorType(x.type.element_type, [sx[1], *[1] * (len(sx) - 2)])  # broadcasts against x

    def per_channel(v: SSAValue) -> SSAValue:  # (C,) -> (C, 1, ...)
        return bw.reshape(v, ct)

    def channel_sum(v: SSAValue) -> SSAValue:  # x-shaped -> (C,)
        return bw.reduce("reduce_sum", v, [i for i in range(len(sx)) if i != 1], keepdims=False)

    out: list[SSAValue | None] = [None] * 5
    if bw.wants(op, 2) or bw.wants(op, 3):
        out[2] = channel_sum(g)
    if not any(bw.wants(op, i) for i in (0, 1, 3, 4)):
        return out
    eps = bw.constant(op.params.epsilon, x)
    inv = bw.un("reciprocal", bw.un("sqrt", bw.bin("add", bw.primal(var), eps)))
    s_inv = bw.bin("mul", bw.primal(scale), inv)
    if bw.wants(op, 0):
        out[0] = bw.bin("mul", g, per_channel(s_inv))
    if bw.wants(op, 3):
        out[3] = bw.un("neg", bw.bin("mul", out[2], s_inv))
    if bw.wants(op, 1) or bw.wants(op, 4):
        s = channel_sum(bw.bin("mul", g, bw.bin("sub", bw.primal(x), per_channel(bw.primal(mean)))))
        out[1] = bw.bin("mul", s, inv)
        if bw.wants(op, 4):
            out[4] = _scale(bw, out[1], bw.bin("mul", s_inv, inv), -0.5)
    return out


def _layer_norm_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = xhat scale + bias, xhat = (x - mean) rstd over the axes [axis, rank):
    dbias, dscale: g, g xhat summed over the leading axes; with h = g scale,
    dx = rstd (h - mean(h) - xhat mean(h xhat)). mean and rstd are recomputed
    from x (only x is saved)."""
    x, scale, bias = op.operands
    r = len(shape_of(x.type))
    axes = list(range(nn.normalize_axis(op.params.axis, r), r))
    out: list[SSAValue | None] = [None, None, bw.unbroadcast(g, bias.type) if bw.wants(op, 2) else None]
    if not (bw.wants(op, 0) or bw.wants(op, 1)):
        return out

    def mean(v: SSAValue) -> SSAValue:
        return bw.reduce("reduce_mean", v, axes, keepdims=True)

    xv = bw.primal(x)
    xc = bw.bin("sub", xv, mean(xv))
    rstd = bw.un("reciprocal", bw.un("sqrt", bw.bin("add", mean(bw.bin("mul", xc, xc)),
                                                    bw.constant(op.params.epsilon, x))))
    xhat = bw.bin("mul", xc, rstd)
    if bw.wants(op, 1):
        out[1] = bw.unbroadcast(bw.bin("mul", g, xhat), scale.type)
    if bw.wants(op, 0):
        h = bw.bin("mul", g, bw.primal(scale))
        centered = bw.bin("sub", h, mean(h))
        along = bw.bin("mul", xhat, mean(bw.bin("mul", h, xhat)))  # the part along xhat
        out[0] = bw.bin("mul", rstd, bw.bin("sub", centered, along))
    return out


def _gather_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """take(x, indices, axis): the cotangent is added into zeros at the taken
    positions (repeated indices add up; negative ones count from the end). On
    axis 0 each index names a slice of x: one scatter_nd, whatever the indices'
    shape (an embedding's batch of token ids stays the batch). On another axis:
    the indices flattened and broadcast over the cotangent, one scatter_elements."""
    if not bw.wants(op, 0):
        return [None, None]
    x, idx = op.operands
    sx, si = shape_of(x.type), shape_of(idx.type)
    a = nn.normalize_axis(op.params.axis, len(sx))
    ielt = idx.type.element_type
    zeros = bw.zeros(x.type)
    if a == 0:
        ind = bw.reshape(bw.primal(idx), TensorType(ielt, [*si, 1]))
        return [bw.emit(nn.ScatterNDOp(zeros, ind, g, reduction="add")), None]
    if DYN in si:  # its dimensions would follow x's first ones: not the batch
        raise _no_rule(op, f"on axis {a} with indices of a dynamic shape")
    k = math.prod(si)
    gk = bw.reshape(g, TensorType(g.type.element_type, [*sx[:a], k, *sx[a + 1:]]))
    flat = bw.reshape(bw.primal(idx), TensorType(ielt, [*[1] * a, k, *[1] * (len(sx) - a - 1)]))
    ind = bw.broadcast(flat, TensorType(ielt, shape_of(gk.type)))
    return [bw.emit(nn.ScatterElementsOp(zeros, ind, gk, axis=a, reduction="add")), None]


def _gather_elements_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    if not bw.wants(op, 0):
        return [None, None]
    x, idx = op.operands
    return [bw.emit(nn.ScatterElementsOp(bw.zeros(x.type), bw.primal(idx), g, axis=op.params.axis,
                                         reduction="add")), None]


def _gather_nd(bw: Backward, t: SSAValue, idx: SSAValue) -> SSAValue:
    """t[idx[j, 0], ..., idx[j, k-1], ...] for every j (ONNX GatherND): a gather
    along axis 0 by the first component, then one gather_elements per further
    component (t is never flattened, so its dimension 0 may be the batch)."""
    sj = list(shape_of(idx.type)[:-1])
    k, st, ielt = shape_of(idx.type)[-1], shape_of(t.type), idx.type.element_type
    nj = len(sj)

    def component(c: int) -> SSAValue:
        return bw.reshape(bw.emit(nn.SliceOp(idx, [c], [c + 1], [nj])), TensorType(ielt, sj))

    cur = bw.emit(nn.GatherOp(t, component(0), axis=0))  # sj + st[1:]
    for c in range(1, k):
        rest = list(st[c + 1:])
        ind = bw.reshape(component(c), TensorType(ielt, [*sj, *[1] * (1 + len(rest))]))
        ind = bw.broadcast(ind, TensorType(ielt, [*sj, 1, *rest]))
        cur = bw.reshape(bw.emit(nn.GatherElementsOp(cur, ind, axis=nj)),
                         TensorType(t.type.element_type, [*sj, *rest]))
    return cur


def _write_ids(bw: Backward, shape: Sequence[int]) -> SSAValue:
    """i64 row-major positions 0, 1, ... of a tensor of `shape` (whose
    dimension 0 may be the run-time batch)."""
    if DYN not in shape:
        return _int_constant(bw, np.arange(math.prod(shape)).reshape(shape))
    rest = list(shape[1:])
    ones = bw.broadcast(_int_constant(bw, np.array(1)), TensorType(i64, [DYN, *[1] * len(rest)]))
    rows = bw.bin("sub", bw.emit(nn.CumSumOp(ones, axis=0)), _int_constant(bw, np.array(1)))
    per_row = math.prod(rest)
    return bw.bin("add", bw.bin("mul", rows, _int_constant(bw, np.array(per_row))),
                  _int_constant(bw, np.arange(per_row).reshape([1, *rest])))


def _unique_constant(v: SSAValue, positions: Callable[[np.ndarray], np.ndarray]) -> bool:
    """`v` is a constant whose scatter positions (rows of `positions(data)`,
    negative indices not yet counted from the end) are all distinct."""
    if not isinstance(v.owner, nn.ConstantOp):
        return False
    pos = positions(np.asarray(v.owner.data))
    return len(np.unique(pos, axis=0)) == len(pos)


def _scatter_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """scatter_elements / scatter_nd. reduction add: dx = g, dupdates = g at the
    positions (a gather). reduction none: the positions written get no
    cotangent in dx, and an update only the cotangent of the position it
    wrote last (of repeated positions, the last in row-major order wins, as in
    the forward): which one is found by scattering the writers' ids and
    reading them back (skipped for constant indices without repeats)."""
    x, idx, upd = op.operands
    p = op.params
    if p.reduction not in ("none", "add"):
        raise _no_rule(op, f"with reduction {p.reduction}")
    elements = isinstance(op, nn.ScatterElementsOp)
    sx = shape_of(x.type)
    iv = bw.primal(idx)
    axis = nn.normalize_axis(p.axis, len(sx)) if elements else 0
    k = 0 if elements else shape_of(idx.type)[-1]

    def scatter(into: SSAValue, values: SSAValue) -> SSAValue:
        return bw.emit(nn.ScatterElementsOp(into, iv, values, axis=axis) if elements
                       else nn.ScatterNDOp(into, iv, values))

    def gather(t: SSAValue) -> SSAValue:
        return bw.emit(nn.GatherElementsOp(t, iv, axis=axis)) if elements else _gather_nd(bw, t, iv)

    out: list[SSAValue | None] = [None, None, None]
    if p.reduction == "add":
        out[0] = g if bw.wants(op, 0) else None
        out[2] = gather(g) if bw.wants(op, 2) else None
        return out
    if bw.wants(op, 0):
        out[0] = scatter(g, bw.zeros(upd.type))
    if not bw.wants(op, 2):
        return out
    du = gather(g)

    def positions(ind: np.ndarray) -> np.ndarray:
        if not elements:
            return np.mod(ind.reshape(-1, k), sx[:k])
        where = np.indices(ind.shape).reshape(ind.ndim, -1)
        where[axis] = np.mod(ind.reshape(-1), sx[axis])
        return where.T

    if DYN in sx or not _unique_constant(idx, positions):
        writers = shape_of(idx.type) if elements else shape_of(idx.type)[:-1]
        ids = _write_ids(bw, writers)
        minus1 = bw.broadcast(_int_constant(bw, np.array(-1)), TensorType(i64, sx if elements else sx[:k]))
        won = bw.cmp("equal", gather(scatter(minus1, ids)), ids)
        if not elements:  # one writer per slice
            won = bw.reshape(won, TensorType(won.type.element_type, [*writers, *[1] * (len(sx) - k)]))
        du = bw.select(won, du, bw.constant(0, g))
    out[2] = du
    return out


def _slice_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """The cotangent goes back to its place in zeros: the axes of step 1 by one
    pad, the others (larger or negative steps) by a scatter to the constant
    positions they read."""
    from ncc.passes.lowering.nn_to_loops import BIG_END

    x = op.operands[0]
    sx = shape_of(x.type)
    r, p = len(sx), op.params
    pads, scattered = [0] * (2 * r), []
    for a, s, e, st in zip(nn.normalize_axes(p.axes, r), p.starts, p.ends, p.steps):
        if sx[a] == DYN:  # only the whole batch has a known place
            if not (s == 0 and e >= BIG_END and st == 1):
                raise _no_rule(op, "of a part of the dynamic batch dimension")
            continue
        read = range(sx[a])[nn.onnx_slice(sx[a], s, e, st)]
        if len(read) == 0:
            return [bw.zeros(x.type)]
        if st == 1:
            pads[a], pads[a + r] = read.start, sx[a] - read.stop
        else:
            scattered.append((a, read))
    cur = g
    for a, read in scattered:
        shape = list(shape_of(cur.type))
        at = _int_constant(bw, np.array(read).reshape([len(read) if i == a else 1 for i in range(r)]))
        ind = bw.broadcast(at, TensorType(i64, shape))
        shape[a] = sx[a]
        zeros = bw.zeros(TensorType(g.type.element_type, shape))
        cur = bw.emit(nn.ScatterElementsOp(zeros, ind, cur, axis=a))
    return [bw.emit(nn.PadOp(cur, pads)) if any(pads) else cur]


def _pad_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Axis by axis (padding composes as a product of per-axis maps): the inner
    part; for edge, plus the sum of each pad onto the element it repeats; for
    reflect, plus each pad reversed onto the elements it mirrors."""
    x = op.operands[0]
    sx = shape_of(x.type)
    r, p = len(sx), op.params
    cur = g
    for d in range(r):
        lo, hi = p.pads[d], p.pads[d + r]
        if not lo and not hi:
            continue
        n = sx[d]
        if n == DYN:
            raise _no_rule(op, "that pads the dynamic batch dimension")
        full = lo + n + hi

        def part(start: int, end: int, step: int = 1, src=cur, d=d) -> SSAValue:
            return bw.emit(nn.SliceOp(src, [start], [end], [d], [step]))

        def place(v: SSAValue, before: int, after: int, d=d) -> SSAValue:  # zeros around v along d
            widths = [0] * (2 * r)
            widths[d], widths[d + r] = before, after
            return bw.emit(nn.PadOp(v, widths)) if before or after else v

        acc = part(lo, lo + n)
        if p.mode == "edge":
            def total(start: int, end: int, d=d) -> SSAValue:
                return bw.reduce("reduce_sum", part(start, end), [d], keepdims=True)

            if lo:
                acc = bw.bin("add", acc, place(total(0, lo), 0, n - 1))
            if hi:
                acc = bw.bin("add", acc, place(total(lo + n, full), n - 1, 0))
        elif p.mode == "reflect":  # pad position lo - j mirrors element j; lo + n - 1 + j mirrors n - 1 - j
            if lo:
                acc = bw.bin("add", acc, place(part(lo - 1, -(full + 1), -1), 1, n - 1 - lo))
            if hi:
                acc = bw.bin("add", acc, place(part(full - 1, lo + n - 1, -1), n - 1 - hi, 1))
        cur = acc
    return [cur]


def _cumsum_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y_j sums x_i over i <= j (i < j exclusive): x_i's cotangent sums g_j over
    j >= i (j > i): the same scan in the other direction."""
    p = op.params
    return [bw.emit(nn.CumSumOp(g, axis=p.axis, exclusive=p.exclusive, reverse=not p.reverse))]


def _triangle_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    return [bw.emit(type(op)(g, k=op.params.k))]  # the same mask


def _sparse_matmul_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y[..., c] += x[..., r] v: dx is the sparse product of g with the
    transposed entries; dv[e] sums x[..., r_e] g[..., c_e] over the leading axes."""
    x, v = op.operands
    p = op.params
    out: list[SSAValue | None] = [None, None]
    if bw.wants(op, 0):
        out[0] = bw.emit(nn.SparseMatmulOp(g, bw.primal(v), rows=p.cols, cols=p.rows,
                                           in_features=p.out_features, out_features=p.in_features))
    if bw.wants(op, 1):
        last = len(shape_of(x.type)) - 1
        xr = bw.emit(nn.GatherOp(bw.primal(x), _int_constant(bw, np.array(p.rows)), axis=last))
        gc = bw.emit(nn.GatherOp(g, _int_constant(bw, np.array(p.cols)), axis=last))
        out[1] = bw.unbroadcast(bw.bin("mul", xr, gc), v.type)
    return out


def _resize_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Resize is linear in x: along each resized axis y = M x, M[o, i] the sum
    of the weights of o's taps at i (zero rows where extrapolated). dx applies
    each M^T: a matmul by the constant M with that axis moved last (the other
    axes keep their order, so a batch stays in dimension 0)."""
    x = op.operands[0]
    r = len(shape_of(x.type))
    dtype = nn.numpy_dtype(g.type.element_type)
    cur = g
    for t in op.taps():
        n_out, n_in = t.index.shape[0], shape_of(x.type)[t.axis]
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out)[:, None], t.index), t.weights)
        if t.outside is not None:
            m[t.outside] = 0
        perm = [i for i in range(r) if i != t.axis] + [t.axis]
        moved = cur if t.axis == r - 1 else bw.emit(nn.TransposeOp(cur, perm))
        cur = bw.emit(nn.MatmulOp(moved, bw.emit(nn.ConstantOp(m.astype(dtype)))))
        if t.axis != r - 1:
            cur = bw.emit(nn.TransposeOp(cur, [perm.index(i) for i in range(r)]))
    return [cur]


# ---------------------------------------------------------------------------
# Convolutions and pools. The input gradient of a sliding window is a
# transposed conv of the cotangent (output_padding restores the input
# positions past the last window); the weight gradient sums over the batch in
# dimension 0, so it is its own op, nn.conv_weight_grad.


def _window(p) -> dict:
    return {"strides": p.strides, "pads": p.pads, "dilations": p.dilations}


def _static_windows(op: Operation) -> None:
    """The rules compute paddings and counts from the sizes: only the batch may be `?`."""
    if any(DYN in shape_of(v.type)[1:] for v in (*op.operands, op.results[0])):
        raise NccError.at_op(op, f"cannot differentiate '{op.name}' with a dynamic size other than "
                                 "the batch (dimension 0)")


def _output_padding(x: TensorType, g: TensorType, kernel: Sequence[int], p) -> list[int]:
    """What conv_transpose adds so that `g`'s windows cover `x` again."""
    xs, gs, k = shape_of(x)[2:], shape_of(g)[2:], len(kernel)
    return [s - ((o - 1) * st + (kk - 1) * d + 1 - p.pads[i] - p.pads[i + k])
            for i, (s, o, kk, st, d) in enumerate(zip(xs, gs, kernel, p.strides, p.dilations))]


def _conv_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = conv(x, w): dx = conv_transpose(g, w), dw = conv_weight_grad(x, g)."""
    _static_windows(op)
    x, w = op.operands[:2]
    p = op.params
    kernel = shape_of(w.type)[2:]
    dx = dw = None
    if bw.wants(op, 0):
        dx = bw.emit(nn.ConvTransposeOp(g, bw.primal(w), **_window(p), group=p.group,
                                        output_padding=_output_padding(x.type, g.type, kernel, p)))
    if bw.wants(op, 1):
        dw = bw.emit(nn.ConvWeightGradOp(bw.primal(x), g, kernel, **_window(p), group=p.group))
    return [dx, dw]


def _fused_conv_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    x, w = op.operands[:2]
    bias = op.operands[2] if len(op.operands) > 2 else None
    p = op.params

    def pre() -> SSAValue:
        return bw.emit(nn.FusedConvOp(bw.primal(x), bw.primal(w),
                                      bw.primal(bias) if bias is not None else None,
                                      **_window(p), group=p.group))

    dz = activation_vjp(bw, op, g, pre)
    axes = [0, *range(2, len(shape_of(g.type)))]  # every axis but the channels
    return _conv_vjp(bw, op, dz) + ([bw.reduce("reduce_sum", dz, axes, keepdims=False)
                                     if bw.wants(op, 2) else None] if bias is not None else [])


def _conv_transpose_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """y = conv_transpose(x, w), the input gradient of a conv: dx = conv(g, w),
    dw = conv_weight_grad(g, x) (the conv's input and output swapped). An
    output_padding of a stride or more (which ONNX forbids) leaves room for
    windows past x: dx drops them, and x is padded to meet them for dw."""
    _static_windows(op)
    x, w = op.operands
    p = op.params
    kernel = shape_of(w.type)[2:]
    xs, k = shape_of(x.type), len(kernel)
    extra = [o // s for o, s in zip(p.output_padding, p.strides)]
    dx = dw = None
    if bw.wants(op, 0):
        dx = bw.emit(nn.ConvOp(g, bw.primal(w), **_window(p), group=p.group))
        if any(extra):
            dx = bw.emit(nn.SliceOp(dx, [0] * k, list(xs[2:]), list(range(2, 2 + k))))
    if bw.wants(op, 1):
        xv = bw.primal(x)
        if any(extra):
            xv = bw.emit(nn.PadOp(xv, [0] * len(xs) + [0, 0, *extra]))
        dw = bw.emit(nn.ConvWeightGradOp(g, xv, kernel, **_window(p), group=p.group))
    return [dx, dw]


def _max_pool_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """The cotangent goes to each window's first maximum (as PyTorch; overlapping
    windows add up): nn.max_pool_indices finds it, as a flat index into x whose
    remainder by the plane size is its position in its (n, c) plane, and one
    scatter-add per plane puts g there."""
    _static_windows(op)
    x = op.operands[0]
    p = op.params
    (n, c, *spatial), elt = shape_of(x.type), g.type.element_type
    plane, outs = math.prod(spatial), math.prod(shape_of(g.type)[2:])
    idx = bw.emit(nn.MaxPoolIndicesOp(bw.primal(x), p.kernel, **_window(p)))
    idx = bw.reshape(idx, TensorType(idx.type.element_type, [n, c, outs]))
    local = bw.bin("mod", idx, bw.constant(plane, idx))
    dx = bw.emit(nn.ScatterElementsOp(bw.zeros(TensorType(elt, [n, c, plane])), local,
                                      bw.reshape(g, TensorType(elt, [n, c, outs])), 2, "add"))
    return [bw.reshape(dx, x.type)]


def _avg_pool_vjp(bw: Backward, op: Operation, g: SSAValue) -> list[SSAValue | None]:
    """Each window's cotangent divided by its count, spread evenly over the
    window: a transposed conv with a kernel of ones, one group per channel.
    The counts (static: the spatial sizes are) are the window's cells inside
    the image, a product over the axes, unless count_include_pad."""
    _static_windows(op)
    x = op.operands[0]
    p = op.params
    (_, c, *spatial), out = shape_of(x.type), shape_of(g.type)[2:]
    k, dtype = len(spatial), nn.numpy_dtype(g.type.element_type)
    count = np.ones([1, 1, *out])
    if not p.count_include_pad:
        for i, (s, o, kk, st, d) in enumerate(zip(spatial, out, p.kernel, p.strides, p.dilations)):
            pos = np.arange(o)[:, None] * st + np.arange(kk)[None, :] * d - p.pads[i]
            count = count * ((pos >= 0) & (pos < s)).sum(1).reshape([-1 if j == i else 1 for j in range(k)])
    else:
        count = count * math.prod(p.kernel)
    if (count == count.flat[0]).all():
        g = bw.bin("div", g, bw.constant(float(count.flat[0]), g))
    else:
        g = bw.bin("div", g, bw.emit(nn.ConstantOp(count.astype(dtype))))
    ones = bw.emit(nn.ConstantOp(np.ones([c, 1, *p.kernel], dtype)))
    return [bw.emit(nn.ConvTransposeOp(g, ones, **_window(p), group=c,
                                       output_padding=_output_padding(x.type, g.type, p.kernel, p)))]


CONV_VJP: dict[type, Rule] = {
    nn.ConvOp: _conv_vjp, nn.FusedConvOp: _fused_conv_vjp, nn.ConvTransposeOp: _conv_transpose_vjp,
    nn.MaxPoolOp: _max_pool_vjp, nn.AvgPoolOp: _avg_pool_vjp,
}


VJP: dict[type, Rule] = {
    **{cls: _unary(UNARY_VJP[name]) for name, cls in nn.UNARY_OPS.items()},
    **{cls: _binary(BINARY_VJP[name]) for name, cls in nn.BINARY_OPS.items()},
    **{cls: _reduce_vjp for cls in nn.REDUCE_OPS.values()},
    nn.MatmulOp: _matmul_vjp, nn.MatmulTransposeAOp: _matmul_transpose_a_vjp,
    nn.FusedMatmulOp: _fused_matmul_vjp,
    nn.SoftmaxOp: _softmax_vjp, nn.LogSoftmaxOp: _softmax_vjp,
    nn.ReshapeOp: _reshape_vjp, nn.BroadcastOp: _broadcast_vjp, nn.TransposeOp: _transpose_vjp,
    nn.ConcatOp: _concat_vjp, nn.CastOp: _cast_vjp, nn.SelectOp: _select_vjp,
    # norms, gathers and scatters, slices and pads, scans, triangles, sparse matmul, resize
    nn.BatchNormOp: _batch_norm_vjp, nn.LayerNormOp: _layer_norm_vjp,
    nn.GatherOp: _gather_vjp, nn.GatherElementsOp: _gather_elements_vjp,
    nn.ScatterElementsOp: _scatter_vjp, nn.ScatterNDOp: _scatter_vjp,
    nn.SliceOp: _slice_vjp, nn.PadOp: _pad_vjp, nn.CumSumOp: _cumsum_vjp,
    **{cls: _triangle_vjp for cls in nn.TRIANGLE_OPS.values()},
    nn.SparseMatmulOp: _sparse_matmul_vjp, nn.ResizeOp: _resize_vjp,
    **CONV_VJP,
}


# ---------------------------------------------------------------------------
# The engine


@dataclass
class _Plan:
    fn: func.FuncOp
    weights: list[str]  # differentiated weights, module order
    inputs: list[int]  # differentiated argument positions


def _plan(module: ModuleOp, fn: func.FuncOp, frozen: Iterable[str], inputs: bool | Iterable[str]) -> _Plan:
    frozen = set(frozen)
    all_weights = {op.sym for op in module.ops if isinstance(op, nn.WeightOp)}
    unknown = sorted(frozen - all_weights)
    if unknown:
        raise NccError(f"frozen names no weight of the module: {', '.join(unknown)}")
    weights = [w.sym for w in trainable_weights(module) if w.sym not in frozen]
    names = input_names(fn)
    args = fn.body.block.args
    if inputs is True:
        chosen = [i for i, a in enumerate(args) if _is_float(a)]
    elif inputs is False:
        chosen = []
    else:
        wanted = list(inputs)
        bad = [n for n in wanted if n not in names]
        if bad:
            raise NccError(f"no input named {', '.join(bad)} (inputs: {', '.join(names)})")
        chosen = [i for i, n in enumerate(names) if n in wanted]
        ints = [names[i] for i in chosen if not _is_float(args[i])]
        if ints:
            raise NccError(f"input {', '.join(ints)} is not a float tensor: it has no gradient")
    return _Plan(fn, weights, chosen)


def _active(ops: list[Operation], sources: set[SSAValue], returned: list[SSAValue]) -> set[SSAValue]:
    varied = set(sources)
    for op in ops:
        if any(o in varied for o in op.operands):
            varied.update(r for r in op.results if _is_float(r))
    useful = {v for v in returned if v in varied}
    for op in reversed(ops):
        if any(r in useful for r in op.results):
            useful.update(o for o in op.operands if o in varied)
    return useful


def _add_all(bw: Backward, parts: list[SSAValue]) -> SSAValue:
    acc = parts[0]
    for p in parts[1:]:
        acc = bw.bin("add", acc, p)
    return acc


def _backward(bw: Backward, plan: _Plan, fwd: func.FuncOp, seeds: list[SSAValue | None]) -> list[SSAValue]:
    """Build the backward of `fwd` (a clone of plan.fn) into bw; the gradients in order."""
    block = fwd.body.block
    ops = list(block.ops)
    origin = dict(zip(ops, plan.fn.body.block.ops))  # errors point at the user's op
    ret = ops[-1]
    if not isinstance(ret, func.ReturnOp):
        raise NccError.at_op(fwd, "the function does not end with func.return")
    ops = ops[:-1]
    wanted = set(plan.weights)
    refs: dict[str, list[SSAValue]] = {}
    for op in ops:
        if isinstance(op, func.CallOp):
            raise NccError.at_op(origin[op], "autodiff needs calls inlined first")
        if isinstance(op, nn.WeightRefOp) and op.sym in wanted:
            refs.setdefault(op.sym, []).append(op.result)
    args = [block.args[i] for i in plan.inputs]
    sources = {v for vs in refs.values() for v in vs} | set(args)
    bw.active = _active(ops, sources, [v for v, s in zip(ret.arguments, seeds) if s is not None])
    cts: dict[SSAValue, list[SSAValue]] = {}
    for v, seed in zip(ret.arguments, seeds):
        if seed is not None and v in bw.active:
            cts.setdefault(v, []).append(seed)
    for op in reversed(ops):
        if not op.results or op.results[0] not in cts or isinstance(op, (nn.WeightRefOp, nn.ConstantOp)):
            continue
        g = _add_all(bw, cts.pop(op.results[0]))
        rule = VJP.get(type(op))
        if rule is None:
            raise NccError.at_op(origin[op], f"cannot differentiate '{op.name}': it has no derivative rule "
                                     "(freeze the weights and inputs whose gradient flows through it)")
        for i, (operand, d) in enumerate(zip(op.operands, rule(bw, op, g))):
            if d is None or operand not in bw.active:
                continue
            if d.type != operand.type:
                d = bw.reshape(d, operand.type) if shape_of(d.type) == shape_of(operand.type) else d
                if not nn.types_compatible(d.type, operand.type):
                    raise NccError.at_op(origin[op], f"internal error: the rule of {op.name} gave a cotangent "
                                             f"of type {d.type} for operand {i} of type {operand.type}")
            cts.setdefault(operand, []).append(d)
    module = plan.fn.parent_op()  # fwd, a clone, is not in the module yet
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)} if module else {}
    grads = []
    for sym in plan.weights:
        parts = [p for v in refs.get(sym, []) for p in cts.pop(v, [])]
        grads.append(_add_all(bw, parts) if parts else bw.zeros(weights[sym].type))
    for a in args:
        parts = cts.pop(a, [])
        grads.append(_add_all(bw, parts) if parts else bw.zeros(a.type))
    return grads


def _find(module: ModuleOp, fn: func.FuncOp | str) -> func.FuncOp:
    if isinstance(fn, func.FuncOp):
        return fn
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == fn and op.body.blocks:
            return op
    raise NccError(f"no function '{fn}' in the module")


def differentiate(module: ModuleOp, fn: func.FuncOp | str, *, frozen: Iterable[str] = (),
                  inputs: bool | Iterable[str] = True, mode: str = "combined",
                  cotangents: str = "args") -> list[func.FuncOp]:
    """Add the derivative functions of `fn` to `module` (after it): see the module docstring."""
    if mode not in MODES:
        raise NccError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if cotangents not in ("args", "ones"):
        raise NccError(f"cotangents must be 'args' or 'ones', got '{cotangents}'")
    fn = _find(module, fn)
    plan = _plan(module, fn, frozen, inputs)
    name = fn.sym_name.data
    in_names, out_names = input_names(fn), result_names(fn)
    out_types = list(fn.function_type.outputs.data)
    grad_names = [f"grad:{w}" for w in plan.weights] + [f"grad:{in_names[i]}" for i in plan.inputs]
    ct_names = [f"cotangent:{n}" for n in out_names] if cotangents == "args" else []
    fwd = fn.clone()
    block = fwd.body.block
    ret = block.last_op
    if mode == "combined":
        bw = Backward(block, split=False)
        bw._anchor = ret
        seeds = [block.insert_arg(t, len(block.args)) for t in out_types] if ct_names else \
            [bw.constant(1.0, t) if _is_float_type(t) else None for t in out_types]
        if ct_names:
            seeds = [s if _is_float_type(s.type) else None for s in seeds]
        grads = _backward(bw, plan, fwd, seeds)
        results = list(ret.arguments) + grads
        Rewriter.replace_op(ret, func.ReturnOp(*results))
        vjp = _function(f"{name}_vjp", block, in_names + ct_names, out_names + grad_names,
                        [v.type for v in results])
        Rewriter.insert_op(vjp, InsertPoint.after(fn))
        return [vjp]
    bwd_block = Block()
    bw = Backward(bwd_block, split=True)
    seeds = [bwd_block.insert_arg(t, len(bwd_block.args)) for t in out_types] if ct_names else \
        [bw.constant(1.0, t) if _is_float_type(t) else None for t in out_types]
    if ct_names:
        seeds = [s if _is_float_type(s.type) else None for s in seeds]
    grads = _backward(bw, plan, fwd, seeds)
    bwd_block.add_op(func.ReturnOp(*grads))
    saved_names = [f"saved:{k}" for k in range(len(bw.saved))]
    fwd_results = list(ret.arguments) + bw.saved
    Rewriter.replace_op(ret, func.ReturnOp(*fwd_results))
    forward = _function(f"{name}_forward", block, in_names, out_names + saved_names,
                        [v.type for v in fwd_results])
    backward = _function(f"{name}_backward", bwd_block, saved_names + ct_names, grad_names,
                         [g.type for g in grads])
    Rewriter.insert_op([forward, backward], InsertPoint.after(fn))
    return [forward, backward]


def _is_float_type(t) -> bool:
    return isinstance(t, TensorType) and isinstance(t.element_type, nn.FLOAT_TYPES)


def _function(name: str, block: Block, arg_names: list[str], res_names: list[str],
              res_types: list) -> func.FuncOp:
    if block.parent is not None:
        block.parent.detach_block(block)
    f = func.FuncOp(name, ([a.type for a in block.args], res_types), Region([block]),
                    arg_attrs=_name_attrs(arg_names), res_attrs=_name_attrs(res_names))
    return f


# ---------------------------------------------------------------------------
# The pass


@dataclass(frozen=True)
class AutodiffPass(ModulePass):
    """Reverse-mode autodiff: @f_forward (results + saved values) and @f_backward (gradients) per nn function.

    @f_forward also returns the values its backward reads; @f_backward takes
    them and the results' cotangents and returns the gradients. `function`:
    only that function; `frozen=w1,w2`: weights that get no gradient;
    `inputs=false`: no input gradients."""

    name = "autodiff"
    function: str = ""
    frozen: tuple[str, ...] = ()
    inputs: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from ncc.passes.lowering.nn_to_loops import is_nn_function

        fns = [f for f in op.ops if is_nn_function(f)]
        if self.function:
            fns = [_find(op, self.function)]
        for f in fns:
            differentiate(op, f, frozen=self.frozen, inputs=self.inputs, mode="split")
