"""Reference semantics of ncc's IR in numpy: the oracle the tests compare against.

    ncc.reference.run(module, [x])                  # positional inputs
    ncc.reference.run(module, {"input": x})         # by argument name
    ncc.reference.run(net, x_batch)                 # a neuron.net: [batch, n_inputs]

Functions are `func.func`s of `nn` ops (plus `func.call`/`func.return`). An
argument's name is its `ncc.name` argument attribute (`{ncc.name = "input"}`),
else `arg<i>`. Weights come from `params` (by symbol name) first, then from
the `nn.weight` data. Every op is evaluated by the rule `EVAL[type(op)]`, its
result cast to the op's element type and checked against its static shape (so
that a wrong shape rule and a wrong reference cannot agree silently).
"""

from __future__ import annotations

from functools import reduce
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import activations, nn
from ncc.dialects.neuron import NetOp
from ncc.dialects.nn import DYN, numpy_dtype, shape_of

Inputs = Sequence[Any] | Mapping[str, Any] | np.ndarray


def run(module_or_op: Operation, inputs: Inputs, *, function: str | None = None,
        params: Mapping[str, Any] | None = None, seed: int = 0) -> list[np.ndarray]:
    """Evaluate a function (or neuron net) of `module_or_op` on `inputs`.

    `function` picks a `func.func` or `neuron.net` by name; by default the only
    one, else `main`. `params` overrides weights by symbol name (for a neuron
    net: any weight or bias symbol, as a scalar). `seed` is the seeded initial
    rule's seed for neuron weights without values."""
    target = select_function(module_or_op, function)
    params = dict(params or {})
    with np.errstate(all="ignore"):  # numpy semantics: inf/nan, not warnings
        if isinstance(target, NetOp):
            return [run_net(target, _single_input(target, inputs), params, seed)]
        weights = _weights_of(target)
        unknown = sorted(set(params) - set(weights))
        if unknown:
            raise NccError(f"params name no weight of the module: {', '.join(unknown)} "
                           f"(weights: {', '.join(sorted(weights)) or 'none'})")
        return _Interpreter(weights, params).call(target, bind_inputs(target, inputs))


# ---------------------------------------------------------------------------
# Choosing what to run, binding inputs


def select_function(root: Operation, name: str | None) -> func.FuncOp | NetOp:
    if isinstance(root, (func.FuncOp, NetOp)):
        return root
    if not isinstance(root, ModuleOp):
        raise NccError(f"cannot run a '{root.name}': expected a module, func.func or neuron.net")
    found = {op.sym_name.data: op for op in root.ops
             if isinstance(op, NetOp) or (isinstance(op, func.FuncOp) and op.body.blocks)}
    return pick_function(found, name, "in the module")


def pick_function(found: Mapping[str, Operation], name: str | None, where: str) -> Any:
    """The function called `name`, else the only one, else `main` (as mlir-cpu-runner)."""
    if name is not None:
        if name not in found:
            raise NccError(f"no function '{name}' {where} (has: {', '.join(found) or 'none'})")
        return found[name]
    if len(found) == 1:
        return next(iter(found.values()))
    if "main" in found:
        return found["main"]
    raise NccError(f"the module has {len(found)} functions ({', '.join(found) or 'none'}): "
                   "pass function=NAME")


def ncc_names(count: int, attrs: Any, prefix: str) -> list[str]:
    """Each entry's `ncc.name` attribute (of arg_attrs/res_attrs), else `<prefix><i>`."""
    names = [f"{prefix}{i}" for i in range(count)]
    for i, entry in enumerate(attrs.data if attrs else ()):
        if isinstance(name := entry.data.get("ncc.name"), StringAttr):
            names[i] = name.data
    return names


def arg_names(f: func.FuncOp) -> list[str]:
    """Each argument's `ncc.name` attribute, else its name in the IR (`%x`),
    else `arg<i>`: the model's input names."""
    names = ncc_names(len(f.function_type.inputs), f.arg_attrs, "arg")
    named = _named(f.arg_attrs)
    args = f.body.block.args if f.body.blocks else ()
    return _with_hints(names, named, [a.name_hint for a in args], set())


def result_names(f: func.FuncOp, prefix: str = "out") -> list[str]:
    """Each result's `ncc.name` attribute, else the name in the IR of the value
    returned (`func.return %y`), else `<prefix><i>`: the model's output names.
    A returned argument or weight keeps the positional name (inputs, weights
    and outputs have distinct names)."""
    names = ncc_names(len(f.function_type.outputs), f.res_attrs, prefix)
    ret = f.body.block.last_op if f.body.blocks else None
    values = list(ret.operands) if isinstance(ret, func.ReturnOp) else []
    args = set(f.body.block.args) if f.body.blocks else set()
    hints = [None if v in args or isinstance(v.owner, nn.WeightRefOp) else v.name_hint for v in values]
    return _with_hints(names, _named(f.res_attrs), hints, set(arg_names(f)))


def _named(attrs: Any) -> set[int]:
    return {i for i, entry in enumerate(attrs.data if attrs else ())
            if isinstance(entry.data.get("ncc.name"), StringAttr)}


def _with_hints(names: list[str], named: set[int], hints: Sequence[str | None], taken: set[str]) -> list[str]:
    """`names` with each entry not named by an attribute replaced by its hint,
    where it has one that no other entry (or `taken`) uses."""
    out = list(names)
    used = {names[i] for i in named} | taken
    for i, hint in enumerate(hints):
        if i not in named and hint and hint not in used and hint not in names:
            out[i] = hint
        used.add(out[i])
    return out


def bind_inputs(f: func.FuncOp, inputs: Inputs) -> list[np.ndarray]:
    """Check inputs against the function's argument types (count, names, rank,
    static dims, dtype kind) and convert them to its element types."""
    names = arg_names(f)
    types = f.function_type.inputs.data
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        extra = [k for k in inputs if k not in names]
        if missing or extra:
            raise NccError(f"@{f.sym_name.data} takes inputs {', '.join(names) or '(none)'}"
                           + (f"; missing: {', '.join(missing)}" if missing else "")
                           + (f"; unknown: {', '.join(map(str, extra))}" if extra else ""))
        values = [inputs[n] for n in names]
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise NccError(f"@{f.sym_name.data} takes {len(names)} inputs ({', '.join(names)}), "
                           f"got {len(values)}")
    return [_convert(v, t, f"input '{n}'") for v, t, n in zip(values, types, names)]


def _convert(value: Any, t: Any, what: str) -> np.ndarray:
    a = np.asarray(value)
    if not isinstance(t, TensorType):
        raise NccError(f"{what} has type {t}; the reference interpreter runs tensors only")
    dt = numpy_dtype(t.element_type)
    if not np.can_cast(a.dtype, dt, "same_kind"):
        raise NccError(f"{what} has dtype {a.dtype}, expected {t.element_type} ({dt})")
    shape = shape_of(t)
    if a.ndim != len(shape) or any(d != DYN and d != s for d, s in zip(shape, a.shape)):
        raise NccError(f"{what} has shape {list(a.shape)}, expected {nn.fmt_shape(shape)} ({t})")
    return a.astype(dt, copy=False)


def _single_input(net: NetOp, inputs: Inputs) -> np.ndarray:
    if isinstance(inputs, Mapping):
        inputs = list(inputs.values())
    if isinstance(inputs, np.ndarray):
        return inputs
    if len(inputs) != 1:
        raise NccError(f"neuron net @{net.sym_name.data} takes one input array "
                       f"[batch, n_inputs], got {len(inputs)}")
    return np.asarray(inputs[0])


# ---------------------------------------------------------------------------
# nn functions


def _weights_of(f: func.FuncOp) -> dict[str, nn.WeightOp]:
    module = f.parent_op()
    ops = module.regions[0].block.ops if module is not None else ()
    return {op.sym: op for op in ops if isinstance(op, nn.WeightOp)}


def weight_value(w: nn.WeightOp, params: Mapping[str, Any]) -> np.ndarray:
    if w.sym in params:
        return _convert(params[w.sym], w.type, f"params['{w.sym}']")
    if w.data is not None:
        return w.data
    if w.elided is not None:
        raise NccError(f"weight @{w.sym} has no data: it was elided when printed "
                       f"(dense_resource<__elided__>); pass it in params")
    raise NccError(f"weight @{w.sym} is a parameter without data: pass params={{'{w.sym}': array}}")


class _Interpreter:
    def __init__(self, weights: dict[str, nn.WeightOp], params: Mapping[str, Any]):
        self.weights, self.params = weights, params

    batch: int | None = None  # the run-time batch: dimension 0 of the first input where it is `?`

    def call(self, f: func.FuncOp, args: list[np.ndarray]) -> list[np.ndarray]:
        env: dict[SSAValue, np.ndarray] = dict(zip(f.body.block.args, args))
        if self.batch is None:
            self.batch = next((np.shape(a)[0] for a, t in zip(args, f.function_type.inputs.data)
                               if isinstance(t, TensorType) and shape_of(t)[:1] == (DYN,)), None)
        for op in f.body.block.ops:
            if isinstance(op, func.ReturnOp):
                return [env[v] for v in op.arguments]
            if isinstance(op, func.CallOp):
                callee = self._callee(op)
                outs = self.call(callee, [env[v] for v in op.arguments])
            else:
                outs = [self._eval(op, [env[v] for v in op.operands])]
            for res, out in zip(op.results, outs):
                env[res] = _check_result(op, res, out)
        raise NccError.at_op(f, f"@{f.sym_name.data} has no func.return")

    def _callee(self, op: func.CallOp) -> func.FuncOp:
        module = op.parent_op().parent_op() if op.parent_op() else None
        name = op.callee.root_reference.data
        for cand in (module.regions[0].block.ops if module else ()):
            if isinstance(cand, func.FuncOp) and cand.sym_name.data == name and cand.body.blocks:
                return cand
        raise NccError.at_op(op, f"func.call: no function body for @{name}")

    def _eval(self, op: Operation, args: list[np.ndarray]) -> np.ndarray:
        if isinstance(op, nn.WeightRefOp):
            if op.sym not in self.weights:
                raise NccError.at_op(op, f"nn.weight_ref: unknown weight @{op.sym}")
            return weight_value(self.weights[op.sym], self.params)
        if isinstance(op, nn.BroadcastOp):  # a `?` the operand does not carry is the batch
            shape = [d if d != DYN else (self.batch if s == 1 else s) for d, s in
                     zip(shape_of(op.result.type), (1,) * (len(shape_of(op.result.type)) - args[0].ndim)
                         + args[0].shape)]
            if None in shape:
                raise NccError.at_op(op, "nn.broadcast to a `?` dimension, but no input carries "
                                         "the batch size")
            return np.broadcast_to(args[0], shape)
        rule = EVAL.get(type(op))
        if rule is None:
            raise NccError.at_op(op, f"the reference interpreter has no rule for '{op.name}'")
        try:
            return rule(op, *args)
        except (ValueError, IndexError) as e:
            raise NccError.at_op(op, f"{op.name}: {e}") from None


def _check_result(op: Operation, res: SSAValue, out: Any) -> np.ndarray:
    t = res.type
    out = np.asarray(out)
    if isinstance(t, TensorType):
        out = out.astype(numpy_dtype(t.element_type), copy=False)
        shape = shape_of(t)
        if out.ndim != len(shape) or any(d != DYN and d != s for d, s in zip(shape, out.shape)):
            raise NccError.at_op(op, f"{op.name} computed shape {list(out.shape)}, but its result "
                                     f"type is {t}")
    return out


# Reference rules, one tiny function per op.


def _spatial_pads(x: np.ndarray, pads: Sequence[int]) -> list[tuple[int, int]]:
    k = x.ndim - 2
    return [(0, 0), (0, 0)] + [(pads[i], pads[i + k]) for i in range(k)]


def _windows(xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int]):
    """For each kernel offset: the strided view of the (padded) input it meets
    (the spatial dimensions are the last len(kernel))."""
    out = [(size - d * (kk - 1) - 1) // s + 1
           for size, kk, s, d in zip(xp.shape[xp.ndim - len(kernel):], kernel, strides, dilations)]
    for off in np.ndindex(*kernel):
        yield off, xp[(..., *(slice(o * d, o * d + s * (n - 1) + 1, s)
                              for o, d, s, n in zip(off, dilations, strides, out)))]


def conv(x: np.ndarray, w: np.ndarray, strides, pads, dilations, group: int) -> np.ndarray:
    """Grouped N-d cross-correlation: one einsum per kernel offset."""
    xp = np.pad(x, _spatial_pads(x, pads))
    n, (m, cg, *kernel) = x.shape[0], w.shape
    xg = xp.reshape(n, group, cg, *xp.shape[2:])
    wg = w.reshape(group, m // group, cg, *kernel)
    out = None
    for off, xs in _windows(xg, kernel, strides, dilations):
        term = np.einsum("ngc...,gmc->ngm...", xs, wg[(..., *off)])
        out = term if out is None else out + term
    return out.reshape(n, m, *out.shape[3:])


def max_pool(x, kernel, strides, pads, dilations=None) -> np.ndarray:
    xp = np.pad(x, _spatial_pads(x, pads), constant_values=-np.inf)
    return reduce(np.maximum, (v for _, v in _windows(xp, kernel, strides, dilations or (1,) * len(kernel))))


def max_pool_indices(x, kernel, strides, pads, dilations, column_major: bool) -> np.ndarray:
    """The flat index into x of each window's first maximum (padding never wins)."""
    n, c, *spatial = x.shape
    k = len(kernel)
    xp = np.pad(x, _spatial_pads(x, pads), constant_values=-np.inf)
    order = range(k) if column_major else reversed(range(k))
    step, steps = 1, [0] * k
    for i in order:
        steps[i], step = step, step * spatial[i]
    base = (np.arange(n * c) * step).reshape(n, c, *(1,) * k)
    best = found = index = None
    for off, v in _windows(xp, kernel, strides, dilations):
        lin, ok = base, True
        for i in range(k):  # the input coordinate along axis i of each output point
            pos = np.arange(v.shape[2 + i]) * strides[i] + off[i] * dilations[i] - pads[i]
            shape = (1, 1, *(-1 if j == i else 1 for j in range(k)))
            lin = lin + (pos * steps[i]).reshape(shape)
            ok = ok & ((pos >= 0) & (pos < spatial[i])).reshape(shape)
        if best is None:
            best, found, index = v, np.broadcast_to(ok, v.shape), np.broadcast_to(lin, v.shape)
            continue
        take = ok & (~found | (v > best))
        best, found, index = np.where(take, v, best), found | ok, np.where(take, lin, index)
    return index


def avg_pool(x, kernel, strides, pads, count_include_pad: bool, dilations=None) -> np.ndarray:
    def window_sum(a):
        ap = np.pad(a, _spatial_pads(a, pads))
        return sum(v for _, v in _windows(ap, kernel, strides, dilations or (1,) * len(kernel)))
    count = np.prod(kernel) if count_include_pad else window_sum(np.ones_like(x))
    return window_sum(x) / count


def softmax(x, axis) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax(x, axis) -> np.ndarray:
    s = x - x.max(axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis, keepdims=True))


def batch_norm(x, scale, bias, mean, var, eps) -> np.ndarray:
    c = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + eps) * scale.reshape(c) + bias.reshape(c)


def layer_norm(x, scale, bias, axis, eps) -> np.ndarray:
    axes = tuple(range(axis % x.ndim, x.ndim))
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def slice_(x, starts, ends, axes, steps) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = nn.onnx_slice(x.shape[a], s, e, st)
    return x[tuple(index)]


def pad(x, pads, mode, value) -> np.ndarray:
    r = x.ndim
    widths = [(pads[i], pads[i + r]) for i in range(r)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=value)
    return np.pad(x, widths, mode=mode)


def arg_reduce(fn, x, axis: int, keepdims: bool, last: bool) -> np.ndarray:
    """numpy's argmax/argmin (first index on ties), or the last index on ties."""
    idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis) if last else fn(x, axis=axis)
    return np.expand_dims(idx, axis) if keepdims else idx


def cumsum(x, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    y = np.flip(x, axis) if reverse else x
    c = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:  # shifted by one: the sum of the elements before
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)),
                            np.take(c, range(c.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(c, axis) if reverse else c


def _from_end(idx: np.ndarray, dim: int) -> np.ndarray:
    return np.where(idx < 0, idx + dim, idx)


def gather_elements(x, idx, axis: int) -> np.ndarray:
    # indices may be smaller than x in the other dimensions: their leading part
    part = x[tuple(slice(None) if i == axis else slice(n) for i, n in enumerate(idx.shape))]
    return np.take_along_axis(part, _from_end(idx, x.shape[axis]).astype(np.intp), axis=axis)


_SCATTER = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(x, where: tuple, upd, reduction: str) -> np.ndarray:
    """x with x[where] set to (or combined with) upd; repeated positions combine
    in order (reduction none: the last one wins)."""
    out = x.copy()
    if reduction == "none":
        out[where] = upd
    else:
        _SCATTER[reduction].at(out, where, upd)
    return out


def scatter_elements(x, idx, upd, axis: int, reduction: str) -> np.ndarray:
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = _from_end(idx, x.shape[axis])
    return _scatter(x, tuple(np.broadcast_arrays(*where)), upd, reduction)


def scatter_nd(x, idx, upd, reduction: str) -> np.ndarray:
    k = idx.shape[-1]
    where = tuple(_from_end(idx[..., t], x.shape[t]) for t in range(k))
    return _scatter(x, where, upd, reduction)


def conv_transpose(x, w, strides, pads, dilations, group: int, output_padding) -> np.ndarray:
    """Each input point adds x * kernel into the output at stride steps (one
    einsum per kernel offset into the uncropped output), then the pads are cropped."""
    n, c, *spatial = x.shape
    _, mg, *kernel = w.shape
    k = len(kernel)
    full = [(s - 1) * st + (kk - 1) * d + 1 + op
            for s, st, kk, d, op in zip(spatial, strides, kernel, dilations, output_padding)]
    out = np.zeros((n, group, mg, *full), dtype=np.result_type(x, w))
    xg = x.reshape(n, group, c // group, *spatial)
    wg = w.reshape(group, c // group, mg, *kernel)
    for off in np.ndindex(*kernel):
        at = tuple(slice(o * d, o * d + st * (s - 1) + 1, st)
                   for o, d, st, s in zip(off, dilations, strides, spatial))
        out[(slice(None), slice(None), slice(None), *at)] += np.einsum(
            "ngc...,gcm->ngm...", xg, wg[(..., *off)])
    crop = tuple(slice(pads[i], full[i] - pads[i + k]) for i in range(k))
    return out.reshape(n, group * mg, *full)[(slice(None), slice(None), *crop)]


def conv_weight_grad(x, dy, kernel, strides, pads, dilations, group: int) -> np.ndarray:
    """dw[m, c, k] = sum over n, o of dy[n, m, o] * x_padded[n, c of m's group, o * s + k * d]:
    one einsum per kernel offset, over the strided view of x it meets."""
    xp = np.pad(x, _spatial_pads(x, pads))
    n, c, m = x.shape[0], x.shape[1], dy.shape[1]
    xg = xp.reshape(n, group, c // group, *xp.shape[2:])
    dyg = dy.reshape(n, group, m // group, -1)  # the output positions flattened
    out = np.zeros((group, m // group, c // group, *kernel), dtype=np.result_type(x, dy))
    for off, xs in _windows(xg, kernel, strides, dilations):
        out[(..., *off)] = np.einsum("ngcp,ngmp->gmc", xs.reshape(*xs.shape[:3], -1), dyg)
    return out.reshape(m, c // group, *kernel)


def resize(op, x) -> np.ndarray:
    """Separable: one resized axis at a time, each output position the weighted
    sum of its taps (in float64), then the extrapolation value where outside."""
    y = x.astype(np.float64) if x.dtype.kind == "f" else x
    for t in op.taps():
        g = np.take(y, t.index, axis=t.axis)  # ..., out, taps, ...
        if t.weights.shape[1] == 1 and (t.weights == 1).all():
            y = g.squeeze(t.axis + 1)
        else:
            w = t.weights.reshape((1,) * t.axis + t.weights.shape + (1,) * (y.ndim - t.axis - 1))
            y = (g * w).sum(axis=t.axis + 1)
        if t.outside is not None:
            mask = t.outside.reshape((1,) * t.axis + (-1,) + (1,) * (y.ndim - t.axis - 1))
            y = np.where(mask, op.params.extrapolation_value, y)
    return y


def _act(name: str) -> Callable[[np.ndarray], np.ndarray]:
    return activations.BY_NAME[name].fn


def _fused_conv(op, x, w, b=None):
    p = op.params
    y = conv(x, w, p.strides, p.pads, p.dilations, p.group)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return _act(p.activation)(y)


def _fused_matmul(op, x, w, b=None):
    y = np.matmul(x, w)
    return _act(op.params.activation)(y if b is None else y + b)


EVAL: dict[type, Callable[..., np.ndarray]] = {
    **{cls: (lambda op, x: type(op).fn(x)) for cls in nn.UNARY_OPS.values()},
    **{cls: (lambda op, a, b: type(op).fn(a, b)) for cls in nn.BINARY_OPS.values()},
    **{cls: (lambda op, x: type(op).fn(x, axis=op.params.axes, keepdims=op.params.keepdims))
       for cls in nn.REDUCE_OPS.values()},
    **{cls: (lambda op, a, b: type(op).fn(a, b))
       for cls in (*nn.COMPARE_OPS.values(), *nn.LOGICAL_OPS.values())},
    nn.NotOp: lambda op, x: np.logical_not(x),
    nn.SelectOp: lambda op, c, x, y: np.where(c, x, y),
    nn.IsNanOp: lambda op, x: np.isnan(x),
    nn.IsInfOp: lambda op, x: ((x == np.inf) & bool(op.params.detect_positive))
    | ((x == -np.inf) & bool(op.params.detect_negative)),
    nn.MatmulOp: lambda op, a, b: np.matmul(a, b),
    nn.MatmulTransposeAOp: lambda op, a, b: np.matmul(a.T, b),
    nn.FusedMatmulOp: _fused_matmul,
    nn.ConvOp: lambda op, x, w: conv(x, w, op.params.strides, op.params.pads,
                                     op.params.dilations, op.params.group),
    nn.FusedConvOp: _fused_conv,
    nn.SparseMatmulOp: lambda op, x, v: np.matmul(x, op.dense_weight(v)),
    nn.MaxPoolOp: lambda op, x: max_pool(x, op.params.kernel, op.params.strides, op.params.pads,
                                         op.params.dilations),
    nn.AvgPoolOp: lambda op, x: avg_pool(x, op.params.kernel, op.params.strides, op.params.pads,
                                         op.params.count_include_pad, op.params.dilations),
    nn.SoftmaxOp: lambda op, x: softmax(x, op.params.axis),
    nn.LogSoftmaxOp: lambda op, x: log_softmax(x, op.params.axis),
    nn.BatchNormOp: lambda op, x, s, b, m, v: batch_norm(x, s, b, m, v, op.params.epsilon),
    nn.LayerNormOp: lambda op, x, s, b: layer_norm(x, s, b, op.params.axis, op.params.epsilon),
    nn.ReshapeOp: lambda op, x: x.reshape([-1 if d == DYN else d for d in shape_of(op.result.type)]),
    nn.TransposeOp: lambda op, x: np.transpose(x, op.params.perm),
    nn.ConcatOp: lambda op, *xs: np.concatenate(xs, axis=op.params.axis),
    nn.SliceOp: lambda op, x: slice_(x, op.params.starts, op.params.ends, op.params.axes,
                                     op.params.steps),
    nn.GatherOp: lambda op, x, i: np.take(x, i, axis=op.params.axis),
    nn.PadOp: lambda op, x: pad(x, op.params.pads, op.params.mode, op.params.value),
    nn.CastOp: lambda op, x: x.astype(numpy_dtype(op.result.type.element_type)),
    nn.ConstantOp: lambda op: op.data,
    **{cls: (lambda op, x: arg_reduce(type(op).fn, x, op.params.axis % x.ndim, op.params.keepdims,
                                      op.params.select_last_index))
       for cls in nn.ARG_REDUCE_OPS.values()},
    **{cls: (lambda op, x: type(op).fn(x, op.params.k)) for cls in nn.TRIANGLE_OPS.values()},
    nn.CumSumOp: lambda op, x: cumsum(x, op.params.axis % x.ndim, op.params.exclusive,
                                      op.params.reverse),
    nn.GatherElementsOp: lambda op, x, i: gather_elements(x, i, op.params.axis % x.ndim),
    nn.ScatterElementsOp: lambda op, x, i, u: scatter_elements(x, i, u, op.params.axis % x.ndim,
                                                               op.params.reduction),
    nn.ScatterNDOp: lambda op, x, i, u: scatter_nd(x, i, u, op.params.reduction),
    nn.ConvTransposeOp: lambda op, x, w: conv_transpose(x, w, op.params.strides, op.params.pads,
                                                        op.params.dilations, op.params.group,
                                                        op.params.output_padding),
    nn.ResizeOp: resize,
    nn.ConvWeightGradOp: lambda op, x, dy: conv_weight_grad(x, dy, op.params.kernel, op.params.strides,
                                                            op.params.pads, op.params.dilations,
                                                            op.params.group),
    nn.MaxPoolIndicesOp: lambda op, x: max_pool_indices(x, op.params.kernel, op.params.strides,
                                                        op.params.pads, op.params.dilations,
                                                        op.params.column_major),
}


# ---------------------------------------------------------------------------
# neuron nets


def run_net(net: NetOp, x: np.ndarray, params: Mapping[str, Any] | None = None,
            seed: int = 0) -> np.ndarray:
    """Evaluate a neuron net on x [batch, n_inputs] (input neurons in index
    order), in float64, column by column in topological order; returns
    [batch, n_outputs] in the net's output order."""
    g = net.graph()
    params = dict(params or {})
    symbols = {s for ws in g.weights for s in ws} | {b for b in g.bias if b is not None}
    unknown = sorted(set(params) - symbols)
    if unknown:
        raise NccError(f"params name no weight or bias of net @{net.sym_name.data}: {', '.join(unknown)}")
    scalars = {}
    for k, v in params.items():
        a = np.asarray(v, dtype=np.float64)
        if a.size != 1:
            raise NccError(f"params['{k}'] must be a scalar (a neuron weight), got shape {list(a.shape)}")
        scalars[k] = float(a.reshape(()))
    x = np.asarray(x, dtype=np.float64)
    ins = g.input_indices
    if x.ndim != 2 or x.shape[1] != len(ins):
        raise NccError(f"neuron net @{net.sym_name.data} takes an input of shape [batch, {len(ins)}], "
                       f"got {list(x.shape)}")
    vals = np.zeros((g.size, x.shape[0]))
    vals[ins] = x.T
    for j in g.topological_order():
        act = g.activation[j]
        if act is None:
            continue
        w = g.weight_values(j, seed)
        w = np.array([scalars.get(s, w[k]) for k, s in enumerate(g.weights[j])], dtype=np.float64)
        b = scalars.get(g.bias[j], None) if g.bias[j] is not None else None
        z = w @ vals[g.inputs[j]] + (g.bias_of(j, seed) if b is None else b)
        vals[j] = activations.BY_NAME[act].fn(z)
    return vals[list(g.outputs or [])].T.copy()
