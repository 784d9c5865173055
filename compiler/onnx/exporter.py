"""ONNX export: an `nn` function (after any passes) as an ONNX model.

    model = ncc.export_onnx(module, "net.onnx")          # returns the onnx.ModelProto too
    ncc-translate net.mlir --export-onnx -o net.onnx

The model uses the default ONNX domain at opset `DEFAULT_OPSET` (18; any of
17 .. the installed onnx's newest may be asked for: 17 is the first with
LayerNormalization). Weights become initializers named by their symbols,
`nn.constant`s Constant nodes; graph inputs and outputs take their
`ncc.name` argument/result attributes, else `arg<i>` / `out<i>`. A `?` in
dimension 0 is the symbolic dimension "batch"; other `?`s are left unnamed.
A module at the neuron level is layerized first (on a copy), and `func.call`s
are inlined.

This module is the walk over the function and the `Graph` being built; every
nn op maps to ONNX by one rule registered with `@to_onnx(OpClass)` in its op
family (ncc/onnx/<family>.py). Fused ops expand back into their parts
(fused_matmul -> MatMul, Add, activation; fused_conv -> Conv with its bias,
activation), a sparse_matmul with constant values becomes a MatMul with the
dense weight, a conv_weight_grad one Conv over the batch (as channels), and
activations ONNX has no op for are written out from their IR form in the
activation table (silu, gaussian, step).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.neuron import NetOp
from ncc.dialects.nn import DYN, numpy_dtype, shape_of
from ncc.pipeline import run_passes
from ncc.passes.prune.nn import MASK_OF, fold_masks
from ncc.reference import arg_names, result_names, select_function

DEFAULT_OPSET = 18
MIN_OPSET = 17
BATCH_DIM = "batch"


def export_onnx(module: Operation, path: str | os.PathLike | None = None, *,
                function: str | None = None, opset: int | None = None) -> Any:
    """The ONNX model (onnx.ModelProto) of `function` of `module` (by default its
    only function, else `main`); written to `path` if given. NccError on what
    cannot be exported (a weight without data, an op with no ONNX form). A
    compiled model (`ncc.compile`) is exported with its current `params`
    (`model.export_onnx`)."""
    import onnx
    from onnx import helper

    if hasattr(module, "export_onnx") and hasattr(module, "params"):  # a CompiledModel: its
        return module.export_onnx(path, opset=opset)                  # current params
    opset = DEFAULT_OPSET if opset is None else int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise NccError(f"ONNX export supports opsets {MIN_OPSET}..{newest}, got {opset}")
    module = _at_nn_level(module)
    f = select_function(module, function)
    if not isinstance(f, func.FuncOp):
        raise NccError(f"cannot export '{f.name}': expected an nn function")
    g = Graph(module, opset)
    in_names, out_names = arg_names(f), result_names(f)
    g.names.update(in_names + out_names)
    # A result computed by an op is named by its output name directly; any
    # other (an input, a weight, a value returned twice) goes through Identity.
    ret = f.body.block.last_op
    direct: dict[SSAValue, str] = {}
    if isinstance(ret, func.ReturnOp):
        for v, name in zip(ret.arguments, out_names):
            if v not in direct and isinstance(v.owner, Operation) \
                    and not isinstance(v.owner, (nn.WeightRefOp, nn.ConstantOp)):
                direct[v] = name
    outs = g.emit_function(f, in_names, direct)
    for v, name in zip(outs, out_names):
        if v != name:
            g.node("Identity", [v], [name])
    graph = helper.make_graph(
        g.nodes, f.sym_name.data,
        [_value_info(n, t) for n, t in zip(in_names, f.function_type.inputs.data)],
        [_value_info(n, t) for n, t in zip(out_names, f.function_type.outputs.data)],
        initializer=g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="ncc",
                              ir_version=helper.find_min_ir_version_for(opsets))
    if path is not None:
        try:
            onnx.save_model(model, os.fspath(path))
        except OSError as e:
            raise NccError(f"cannot write the model: {e}", os.fspath(path)) from None
    return model


def _at_nn_level(module: Operation) -> Operation:
    """An nn module to export: a neuron net layerized; prune's masks folded into
    their weights (the pruned model is its weights with zeros); fused elementwise
    chains, nn.attention and nn.rms_norm given back as their ops (nn.DECOMPOSITION)."""
    if isinstance(module, ModuleOp) and any(isinstance(op, NetOp) for op in module.ops):
        module = module.clone()
        run_passes(module, "layerize")
    if isinstance(module, ModuleOp) and any(isinstance(op, nn.WeightOp) and MASK_OF in op.attributes
                                            for op in module.ops):
        module = module.clone()
        fold_masks(module)
    if isinstance(module, ModuleOp) and any(type(op) in nn.DECOMPOSITION
                                            for op in module.walk()):
        module = module.clone()
        for fn in module.ops:
            if isinstance(fn, func.FuncOp) and fn.body.blocks:
                nn.unfuse_all(fn.body.block)
    return module


def element_type_code(t: TensorType) -> int:
    """The ONNX TensorProto element type of tensor type t."""
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(numpy_dtype(t.element_type))


def _value_info(name: str, t: Any) -> Any:
    from onnx import helper

    if not isinstance(t, TensorType):
        raise NccError(f"'{name}' has type {t}: only tensors can be exported")
    dims = [(BATCH_DIM if i == 0 else None) if d == DYN else d for i, d in enumerate(shape_of(t))]
    return helper.make_tensor_value_info(name, element_type_code(t), dims)


class Graph:
    """ONNX nodes and initializers being built, with unique value names."""

    def __init__(self, module: Operation, opset: int):
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()
        self.counts: dict[str, int] = {}
        root = module if isinstance(module, ModuleOp) else module.parent_op()
        ops = list(root.ops) if isinstance(root, ModuleOp) else []
        self.weights = {op.sym: op for op in ops if isinstance(op, nn.WeightOp)}
        self.funcs = {op.sym_name.data: op for op in ops
                      if isinstance(op, func.FuncOp) and op.body.blocks}
        self.weight_names: dict[str, str] = {}
        self.schema_defaults: dict[str, dict[str, Any]] = {}
        self.batch_of: str | None = None

    def fresh(self, hint: str) -> str:
        k = self.counts.get(hint, 0)
        while (name := f"{hint}{k}") in self.names:
            k += 1
        self.counts[hint] = k + 1
        self.names.add(name)
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             **attrs: Any) -> str:
        """Add a node; returns its (first) output's name."""
        from onnx import helper

        outputs = list(outputs) if outputs else [self.fresh("v")]
        defaults = self._defaults(op_type)
        # Integer attributes at the schema's default are left out (a plainer model).
        attrs = {k: v for k, v in attrs.items() if k not in defaults or v != defaults[k]}
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs,
                                           name=self.fresh(op_type + "_"), **attrs))
        return outputs[0]

    def _defaults(self, op_type: str) -> dict[str, Any]:
        if op_type not in self.schema_defaults:
            import onnx
            from onnx import helper

            schema = onnx.defs.get_schema(op_type, self.opset)
            self.schema_defaults[op_type] = {
                k: helper.get_attribute_value(a.default_value)
                for k, a in schema.attributes.items() if a.default_value.type == 2}  # INT
        return self.schema_defaults[op_type]

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        """A constant the export needs (a Reshape's shape, axes): a Constant node,
        so that the initializers are the model's parameters only."""
        from onnx import numpy_helper

        return self.node("Constant", [], [self.fresh("c")],
                         value=numpy_helper.from_array(np.asarray(value, dtype=dtype)))

    def initializer(self, value: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        self.names.add(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, sym: str, op: Operation) -> str:
        if sym not in self.weight_names:
            w = self.weights.get(sym)
            if w is None or w.data is None:
                raise NccError.at_op(op, f"weight @{sym} has no data to export"
                                     + ("" if w is None else " (a run-time parameter or elided)"))
            name = sym if sym not in self.names else self.fresh(sym + "_")
            self.weight_names[sym] = self.initializer(w.data, name)
        return self.weight_names[sym]

    def emit_function(self, f: func.FuncOp, args: Sequence[str],
                      direct: dict[SSAValue, str] | None = None) -> list[str]:
        """Emit f's body with its arguments named `args`; the names of its results."""
        env: dict[SSAValue, str] = dict(zip(f.body.block.args, args))
        direct = direct or {}
        if self.batch_of is None:  # the graph input whose dimension 0 is the batch
            self.batch_of = next((n for a, n in zip(f.body.block.args, args) if isinstance(a.type, TensorType)
                                  and shape_of(a.type)[:1] == (DYN,)), None)
        for op in f.body.block.ops:
            if isinstance(op, func.ReturnOp):
                return [env[v] for v in op.arguments]
            ins = [env[v] for v in op.operands]
            if isinstance(op, func.CallOp):
                callee = self.funcs.get(op.callee.root_reference.data)
                if callee is None:
                    raise NccError.at_op(op, f"func.call: no function body for {op.callee}")
                outs = self.emit_function(callee, ins)
            elif isinstance(op, nn.WeightRefOp):
                outs = [self.weight(op.sym, op)]
            elif isinstance(op, nn.ConstantOp):  # inline literal -> Constant node
                from onnx import numpy_helper

                outs = [self.node("Constant", [], value=numpy_helper.from_array(np.asarray(op.data)))]
            else:
                rule = TO_ONNX.get(type(op))
                if rule is None:
                    raise NccError.at_op(op, f"'{op.name}' has no ONNX form")
                out = rule(self, op, ins)
                if op.results[0] in direct:  # rename the last node's output
                    outs = [direct[op.results[0]]]
                    last = self.nodes[-1] if self.nodes else None
                    if last is not None and out in last.output and out not in ins:
                        last.output[list(last.output).index(out)] = outs[0]
                    else:
                        self.node("Identity", [out], outs)
                else:
                    outs = [out]
            env.update(zip(op.results, outs))
        raise NccError.at_op(f, f"@{f.sym_name.data} has no func.return")

    # -- helpers shared by rules ----------------------------------------------

    def scalar(self, value: float, like: SSAValue) -> str:
        return self.const(value, numpy_dtype(like.type.element_type))

    def needs_opset(self, op: Operation, since: int, what: str) -> None:
        if self.opset < since:
            raise NccError.at_op(op, f"{what} needs ONNX opset {since} or newer (exporting opset {self.opset})")

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        if not axes:  # numpy: reducing over no axes changes nothing
            return self.node("Identity", [x])
        keep = int(bool(keepdims))
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.const(list(axes))], keepdims=keep)
        return self.node(op_type, [x], axes=list(axes), keepdims=keep)


# ---------------------------------------------------------------------------
# The rules: nn op class -> rule(graph, op, input names) -> the name of its
# (first) result. The op families (ncc/onnx/<family>.py) register theirs
# with @to_onnx.

ExportRule = Callable[[Graph, Operation, list], str]
TO_ONNX: dict[type, ExportRule] = {}


def to_onnx(*classes: type) -> Callable[[ExportRule], ExportRule]:
    """Register the decorated rule as the export of nn op classes `classes`."""
    def register(rule: ExportRule) -> ExportRule:
        for cls in classes:
            if cls in TO_ONNX:
                raise ValueError(f"two export rules for {cls.__name__}")
            TO_ONNX[cls] = rule
        return rule
    return register
