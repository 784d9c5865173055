"""Reference semantics of ncc's IR in numpy: the oracle the tests compare against.

    ncc.reference.run(module, [x])                  # positional inputs
    ncc.reference.run(module, {"input": x})         # by argument name
    ncc.reference.run(net, x_batch)                 # a neuron.net: [batch, n_inputs]

Functions are `func.func`s of `nn` ops (plus `func.call`/`func.return`). An
argument's name is its `ncc.name` argument attribute (`{ncc.name = "input"}`),
else its name in the IR (`%x`), else `arg<i>`. Weights come from `params` (by
symbol name) first, then from the `nn.weight` data. Every op is evaluated by
its family's rule (`EVAL` is `nn.REFERENCE`, gathered from the `REFERENCE`
tables of dialects/nn/<family>.py), its result cast to the op's element type and checked against its static shape (so
that a wrong shape rule and a wrong reference cannot agree silently).
"""

from __future__ import annotations

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


def run_values(module: Operation, inputs: Inputs, *, function: str | None = None) -> dict[SSAValue, np.ndarray]:
    """Every value the function `function` computes on `inputs` (its arguments
    included), by SSA value: what a profile feeds each op it times alone."""
    target = select_function(module, function)
    if isinstance(target, NetOp):
        raise NccError("run_values takes an nn function, not a neuron net (layerize it first)")
    interpreter = _Interpreter(_weights_of(target), {})
    interpreter.record, interpreter.recorded = {}, target
    with np.errstate(all="ignore"):
        interpreter.call(target, bind_inputs(target, inputs))
    return interpreter.record


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
    if not found:
        raise NccError(f"no function {where} (a function of a nested builtin.module does not count)")
    raise NccError(f"the module has {len(found)} functions ({', '.join(found)}): pass function=NAME")


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
    record: dict[SSAValue, np.ndarray] | None = None  # run_values: the values of function `recorded`
    recorded: func.FuncOp | None = None

    def call(self, f: func.FuncOp, args: list[np.ndarray]) -> list[np.ndarray]:
        env: dict[SSAValue, np.ndarray] = dict(zip(f.body.block.args, args))
        if self.batch is None:
            self.batch = next((np.shape(a)[0] for a, t in zip(args, f.function_type.inputs.data)
                               if isinstance(t, TensorType) and shape_of(t)[:1] == (DYN,)), None)
        for op in f.body.block.ops:
            if isinstance(op, func.ReturnOp):
                if self.record is not None and f is self.recorded:
                    self.record.update(env)
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


# The reference rules are the op families' own (dialects/nn/<family>.py `REFERENCE`).
EVAL: dict[type, Callable[..., np.ndarray]] = nn.REFERENCE


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
