"""The autodiff engine and pass: activity analysis, the backward in reverse order with
the rules gathered from every family's `VJP` table, `differentiate` and `--autodiff`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.passes.autodiff.core import Rule
from ncc.passes.autodiff.core import Backward, MODES, input_names, is_float, name_attrs, result_names
from ncc.passes.autodiff.core import trainable_weights
from ncc.passes.lowering.nn_to_loops import is_nn_function
from ncc.passes.autodiff import (conv, elementwise, gather_scatter, matmul, normalization, pool,  # noqa: E501
    quant, reduce, resize, shape, softmax, sparse)
FAMILIES = (elementwise, matmul, conv, sparse, pool, reduce, softmax, normalization, shape, gather_scatter,
            resize, quant)
# Each op's rule, from its family's VJP table.
VJP: dict[type, Rule] = {cls: rule for family in FAMILIES for cls, rule in family.VJP.items()}



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
        chosen = [i for i, a in enumerate(args) if is_float(a)]
    elif inputs is False:
        chosen = []
    else:
        wanted = list(inputs)
        bad = [n for n in wanted if n not in names]
        if bad:
            raise NccError(f"no input named {', '.join(bad)} (inputs: {', '.join(names)})")
        chosen = [i for i, n in enumerate(names) if n in wanted]
        ints = [names[i] for i in chosen if not is_float(args[i])]
        if ints:
            raise NccError(f"input {', '.join(ints)} is not a float tensor: it has no gradient")
    return _Plan(fn, weights, chosen)


def _active(ops: list[Operation], sources: set[SSAValue], returned: list[SSAValue]) -> set[SSAValue]:
    varied = set(sources)
    for op in ops:
        if any(o in varied for o in op.operands):  # a quantize's integers too: straight-through (autodiff/quant.py)
            varied.update(r for r in op.results if is_float(r) or isinstance(op, nn.QuantizeOp))
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
            if d.type != operand.type and not is_float(operand) and shape_of(d.type) == shape_of(operand.type):
                pass  # a quantized value's straight-through cotangent is a float tensor of its shape
            elif d.type != operand.type:
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
    nn.unfuse_all(block)  # a fused chain is differentiated op by op (and fused again after)
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
                    arg_attrs=name_attrs(arg_names), res_attrs=name_attrs(res_names))
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
        fns = [f for f in op.ops if is_nn_function(f)]
        if self.function:
            fns = [_find(op, self.function)]
        for f in fns:
            differentiate(op, f, frozen=self.frozen, inputs=self.inputs, mode="split")
