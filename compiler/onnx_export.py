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

Every nn op maps to ONNX by one rule in `RULES`; fused ops expand back into
their parts (fused_matmul -> MatMul, Add, activation; fused_conv -> Conv with
its bias, activation), a sparse_matmul with constant values becomes a MatMul
with the dense weight (with computed values: ScatterND into zeros, then
MatMul), a conv_weight_grad becomes one Conv over the batch (as channels),
and activations ONNX has no op for are decomposed (silu = x *
sigmoid(x), gaussian = exp(-x*x), step = cast(x > 0); mod on floats, which
ONNX Mod only takes with fmod=1: the C remainder, plus the divisor where the
signs differ).
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
from ncc.dialects.nn import DYN, numpy_dtype, shape_of

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
    from ncc.reference import arg_names, result_names, select_function

    f = select_function(module, function)
    if not isinstance(f, func.FuncOp):
        raise NccError(f"cannot export '{f.name}': expected an nn function")
    g = _Graph(module, opset)
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
    from ncc.dialects.neuron import NetOp

    if isinstance(module, ModuleOp) and any(isinstance(op, NetOp) for op in module.ops):
        from ncc.pipeline import run_passes

        module = module.clone()
        run_passes(module, "layerize")
    return module


def _elem(t: TensorType) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(numpy_dtype(t.element_type))


def _value_info(name: str, t: Any) -> Any:
    from onnx import helper

    if not isinstance(t, TensorType):
        raise NccError(f"'{name}' has type {t}: only tensors can be exported")
    dims = [(BATCH_DIM if i == 0 else None) if d == DYN else d for i, d in enumerate(shape_of(t))]
    return helper.make_tensor_value_info(name, _elem(t), dims)


class _Graph:
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
                rule = RULES.get(type(op))
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

    def activation(self, name: str, x: str, like: SSAValue) -> str:
        return ACTIVATIONS[name](self, x, like)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        if not axes:  # numpy: reducing over no axes changes nothing
            return self.node("Identity", [x])
        keep = int(bool(keepdims))
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.const(list(axes))], keepdims=keep)
        return self.node(op_type, [x], axes=list(axes), keepdims=keep)


def _simple(op_type: str, **attrs: Any) -> Callable[[_Graph, str, SSAValue], str]:
    return lambda g, x, like: g.node(op_type, [x], **attrs)


# Activation name -> rule (graph, input name, a value of the element type) -> output name.
ACTIVATIONS: dict[str, Callable[[_Graph, str, SSAValue], str]] = {
    "identity": lambda g, x, like: x,
    "relu": _simple("Relu"), "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "leaky_relu": _simple("LeakyRelu", alpha=0.01), "elu": _simple("Elu", alpha=1.0),
    "softplus": _simple("Softplus"), "sin": _simple("Sin"), "abs": _simple("Abs"),
    "silu": lambda g, x, like: g.node("Mul", [x, g.node("Sigmoid", [x])]),
    "gaussian": lambda g, x, like: g.node("Exp", [g.node("Neg", [g.node("Mul", [x, x])])]),
    "step": lambda g, x, like: g.node("Cast", [g.node("Greater", [x, g.scalar(0, like)])],
                                      to=_elem(like.type)),
    "exp": _simple("Exp"), "log": _simple("Log"), "neg": _simple("Neg"), "sqrt": _simple("Sqrt"),
    "reciprocal": _simple("Reciprocal"), "erf": _simple("Erf"), "floor": _simple("Floor"),
    "ceil": _simple("Ceil"), "cos": _simple("Cos"),
    "acos": _simple("Acos"), "asin": _simple("Asin"), "atan": _simple("Atan"),
    "sinh": _simple("Sinh"), "cosh": _simple("Cosh"), "asinh": _simple("Asinh"),
    "acosh": _simple("Acosh"), "atanh": _simple("Atanh"), "round": _simple("Round"),
    "sign": _simple("Sign"),
}


def _mod(g: "_Graph", op: Operation, ins: list[str]) -> str:
    """nn.mod: ONNX Mod on integers; on floats (where ONNX requires fmod=1)
    the C remainder plus the divisor where the signs differ."""
    if not isinstance(op.result.type.element_type, nn.FLOAT_TYPES):
        return g.node("Mod", ins)
    r = g.node("Mod", ins, fmod=1)
    zero = g.scalar(0, op.result)
    signs = g.node("Xor", [g.node("Less", [r, zero]), g.node("Less", [ins[1], zero])])
    adjust = g.node("And", [g.node("Not", [g.node("Equal", [r, zero])]), signs])
    return g.node("Where", [adjust, g.node("Add", [r, ins[1]]), r])


def _select(g: "_Graph", op: Operation, ins: list[str]) -> str:
    """Where; between bools (which onnxruntime's Where does not take) c & x | !c & y."""
    c, x, y = ins
    if op.result.type.element_type != nn.i1:
        return g.node("Where", ins)
    return g.node("Or", [g.node("And", [c, x]), g.node("And", [g.node("Not", [c]), y])])


# nn binary op -> ONNX op type, or a rule (graph, op, input names) -> output name
BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
          "pow": "Pow", "mod": _mod, "fmod": lambda g, op, ins: g.node("Mod", ins, fmod=1)}
COMPARE = {"equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
           "greater_equal": "GreaterOrEqual"}
LOGICAL = {"and": "And", "or": "Or", "xor": "Xor"}
REDUCE = {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
          "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}


def _conv(g: _Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    y = g.node("Conv", ins, kernel_shape=list(shape_of(op.weight.type)[2:]), strides=list(p.strides),
               pads=list(p.pads), dilations=list(p.dilations), group=p.group)
    return g.activation(getattr(p, "activation", "identity"), y, op.result)


def _fused_matmul(g: _Graph, op: Operation, ins: list[str]) -> str:
    y = g.node("MatMul", ins[:2])
    if len(ins) > 2:
        y = g.node("Add", [y, ins[2]])
    return g.activation(op.params.activation, y, op.result)


def _sparse_matmul(g: _Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    src = op.values.owner
    data = (g.weights[src.sym].data if isinstance(src, nn.WeightRefOp) and src.sym in g.weights
            else src.data if isinstance(src, nn.ConstantOp) else None)
    if data is not None:  # constant values: the dense weight itself
        w = g.const(op.dense_weight(data), data.dtype)
    else:  # computed values: scattered into zeros at run time
        zeros = g.const(np.zeros((p.in_features, p.out_features)), numpy_dtype(op.result.type.element_type))
        w = g.node("ScatterND", [zeros, g.const(np.stack([p.rows, p.cols], 1).reshape(-1, 2)), ins[1]])
    return g.node("MatMul", [ins[0], w])


def _pool(op_type: str) -> Callable[[_Graph, Operation, list[str]], str]:
    def rule(g: _Graph, op: Operation, ins: list[str]) -> str:
        p = op.params
        extra = {"count_include_pad": int(p.count_include_pad)} if op_type == "AveragePool" else {}
        if max(p.dilations) > 1:  # AveragePool has dilations from opset 19
            if op_type == "AveragePool" and g.opset < 19:
                raise NccError.at_op(op, f"a dilated average pool needs ONNX opset 19 or newer "
                                         f"(exporting opset {g.opset})")
            extra["dilations"] = list(p.dilations)
        return g.node(op_type, ins, kernel_shape=list(p.kernel), strides=list(p.strides),
                      pads=list(p.pads), **extra)
    return rule


def _broadcast(g: _Graph, op: Operation, ins: list[str]) -> str:
    src, dst = shape_of(op.operands[0].type), shape_of(op.result.type)
    src = (1,) * (len(dst) - len(src)) + tuple(src)
    if not any(d == DYN and s == 1 for s, d in zip(src, dst)):  # Expand keeps a dim where 1 is given
        return g.node("Expand", [ins[0], g.const([1 if d == DYN else d for d in dst])])
    if g.batch_of is None or DYN in dst[1:]:  # verified IR has the batch in dimension 0 only
        raise NccError.at_op(op, "nn.broadcast to a `?` dimension that no input's dimension 0 carries")
    batch = g.node("Shape", [g.batch_of], start=0, end=1)
    return g.node("Expand", [ins[0], g.node("Concat", [batch, g.const(list(dst[1:]))], axis=0)])


def _reshape(g: _Graph, op: Operation, ins: list[str]) -> str:
    dims = [-1 if d == DYN else d for d in shape_of(op.result.type)]
    # allowzero: a 0 in the target is a zero-size dimension, not "copy the input's"
    return g.node("Reshape", [ins[0], g.const(dims)], allowzero=int(0 in dims))


def _slice(g: _Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    return g.node("Slice", [ins[0], *(g.const(list(v)) for v in (p.starts, p.ends, p.axes, p.steps))])


def _pad(g: _Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    extra = [g.scalar(p.value, op.result)] if p.mode == "constant" else []
    return g.node("Pad", [ins[0], g.const(list(p.pads)), *extra], mode=p.mode)


def _epsilon(op: Operation) -> dict[str, float]:
    # nn's default epsilon is ONNX's (1e-5): written only when the op sets its
    # own, since an ONNX float attribute holds float32(1e-5), not 1e-5.
    return {"epsilon": op.params.epsilon} if "epsilon" in op.properties else {}


RULES: dict[type, Callable[[_Graph, Operation, list[str]], str]] = {
    **{cls: (lambda g, op, ins, n=n: g.activation(n, ins[0], op.result))
       for n, cls in nn.UNARY_OPS.items()},
    **{cls: BINARY[n] if callable(BINARY[n]) else (lambda g, op, ins, t=BINARY[n]: g.node(t, ins))
       for n, cls in nn.BINARY_OPS.items()},
    **{cls: (lambda g, op, ins, t=COMPARE[n]: g.node(t, ins)) for n, cls in nn.COMPARE_OPS.items()},
    **{cls: (lambda g, op, ins, t=LOGICAL[n]: g.node(t, ins)) for n, cls in nn.LOGICAL_OPS.items()},
    nn.NotOp: lambda g, op, ins: g.node("Not", ins),
    nn.SelectOp: _select,
    nn.IsNanOp: lambda g, op, ins: g.node("IsNaN", ins),
    nn.IsInfOp: lambda g, op, ins: g.node("IsInf", ins, detect_positive=op.params.detect_positive,
                                          detect_negative=op.params.detect_negative),
    **{cls: (lambda g, op, ins, t=REDUCE[n]: g.reduce(t, ins[0], op.params.axes, op.params.keepdims))
       for n, cls in nn.REDUCE_OPS.items()},
    nn.MatmulOp: lambda g, op, ins: g.node("MatMul", ins),
    nn.MatmulTransposeAOp: lambda g, op, ins: g.node(
        "MatMul", [g.node("Transpose", ins[:1], perm=[1, 0]), ins[1]]),
    nn.FusedMatmulOp: _fused_matmul,
    nn.ConvOp: _conv,
    nn.FusedConvOp: _conv,
    nn.SparseMatmulOp: _sparse_matmul,
    nn.MaxPoolOp: _pool("MaxPool"),
    nn.AvgPoolOp: _pool("AveragePool"),
    nn.SoftmaxOp: lambda g, op, ins: g.node("Softmax", ins, axis=op.params.axis),
    nn.LogSoftmaxOp: lambda g, op, ins: g.node("LogSoftmax", ins, axis=op.params.axis),
    nn.BatchNormOp: lambda g, op, ins: g.node("BatchNormalization", ins, **_epsilon(op)),
    nn.LayerNormOp: lambda g, op, ins: g.node("LayerNormalization", ins, axis=op.params.axis,
                                              **_epsilon(op)),
    nn.ReshapeOp: _reshape,
    nn.BroadcastOp: _broadcast,
    nn.TransposeOp: lambda g, op, ins: g.node("Transpose", ins, perm=list(op.params.perm)),
    nn.ConcatOp: lambda g, op, ins: g.node("Concat", ins, axis=op.params.axis),
    nn.SliceOp: _slice,
    nn.GatherOp: lambda g, op, ins: g.node("Gather", ins, axis=op.params.axis),
    nn.PadOp: _pad,
    nn.CastOp: lambda g, op, ins: g.node("Cast", ins, to=_elem(op.result.type)),
}


# ---------------------------------------------------------------------------
# Index reductions, scans, element gathers and scatters, triangles,
# transposed convolution, resize


def _needs_opset(g: _Graph, op: Operation, since: int, what: str) -> None:
    if g.opset < since:
        raise NccError.at_op(op, f"{what} needs ONNX opset {since} or newer (exporting opset {g.opset})")


def _scatter(op_type: str) -> Callable[[_Graph, Operation, list[str]], str]:
    def rule(g: _Graph, op: Operation, ins: list[str]) -> str:
        p = op.params
        if p.reduction in ("max", "min"):
            _needs_opset(g, op, 18, f"reduction {p.reduction}")
        axis = {"axis": p.axis} if op_type == "ScatterElements" else {}
        return g.node(op_type, ins, reduction=p.reduction, **axis)
    return rule


def _conv_transpose(g: _Graph, op: Operation, ins: list[str]) -> str:
    p = op.params
    return g.node("ConvTranspose", ins, kernel_shape=list(shape_of(op.weight.type)[2:]),
                  strides=list(p.strides), pads=list(p.pads), dilations=list(p.dilations),
                  group=p.group, output_padding=list(p.output_padding))


def _resize(g: _Graph, op: Operation, ins: list[str]) -> str:
    """Resize with the scales when ONNX's floor(size * scale) gives the result's
    sizes, else with the sizes when the scales are their ratios."""
    p = op.params
    si, so = shape_of(op.input.type), shape_of(op.result.type)
    sizes = [i if o == DYN else o for i, o in zip(si, so)]
    ins_ = [ins[0], g.const(list(p.roi), np.float32) if p.coordinate_transformation_mode ==
            "tf_crop_and_resize" else ""]
    scales32 = np.asarray(p.scales, np.float32)
    if all(i == DYN or int(np.floor(i * np.float64(s))) == o for i, o, s in zip(si, so, scales32)):
        ins_.append(g.const(scales32, np.float32))
    elif all(i == DYN or np.isclose(o / i, s, rtol=1e-6) for i, o, s in zip(si, so, p.scales)):
        ins_ += ["", g.const(sizes, np.int64)]
    else:
        raise NccError.at_op(op, f"scales {list(p.scales)} are neither the ratios of the sizes "
                                 f"nor give them: ONNX Resize cannot express this op")
    if p.antialias:
        _needs_opset(g, op, 18, "antialias")
    extra = {"antialias": 1} if p.antialias else {}
    return g.node("Resize", ins_, mode=p.mode,
                  coordinate_transformation_mode=p.coordinate_transformation_mode,
                  nearest_mode=p.nearest_mode, cubic_coeff_a=p.cubic_coeff_a,
                  exclude_outside=int(p.exclude_outside),
                  extrapolation_value=p.extrapolation_value, **extra)


def _max_pool_indices(g: _Graph, op: Operation, ins: list[str]) -> str:
    """MaxPool's second output (its first, the values, unused)."""
    p = op.params
    indices = g.fresh("v")
    g.node("MaxPool", ins, [g.fresh("v"), indices], kernel_shape=list(p.kernel),
           strides=list(p.strides), pads=list(p.pads), dilations=list(p.dilations),
           storage_order=int(p.column_major))
    return indices


def _conv_weight_grad(g: _Graph, op: Operation, ins: list[str]) -> str:
    """One Conv with the batch as the channels it sums over: x as (C/group,
    group * N, spatial) images, dy as (M, N, out) filters, the conv's strides
    and dilations swapped; the result (C/group, M, kernel'...) transposed, and
    cut to the kernel where the sizes leave room for more offsets."""
    p = op.params
    (_, c, *spatial), (_, m, *out) = shape_of(op.input.type), shape_of(op.output_grad.type)
    k, grp = len(spatial), p.group
    rest = list(range(3, 3 + k))
    xt = g.node("Reshape", [ins[0], g.const([0, grp, c // grp, *spatial])])
    xt = g.node("Transpose", [xt], perm=[2, 1, 0, *rest])
    xt = g.node("Reshape", [xt, g.const([c // grp, -1, *spatial])])
    dt = g.node("Reshape", [ins[1], g.const([0, grp, m // grp, *out])])
    dt = g.node("Transpose", [dt], perm=[1, 2, 0, *rest])
    dt = g.node("Reshape", [dt, g.const([m, -1, *out])])
    y = g.node("Conv", [xt, dt], kernel_shape=list(out), strides=list(p.dilations),
               dilations=list(p.strides), pads=list(p.pads), group=grp)
    y = g.node("Transpose", [y], perm=[1, 0, *range(2, 2 + k)])
    full = [(s + p.pads[i] + p.pads[i + k] - p.strides[i] * (o - 1) - 1) // p.dilations[i] + 1
            for i, (s, o) in enumerate(zip(spatial, out))]
    if full != list(p.kernel):
        y = g.node("Slice", [y, g.const([0] * k), g.const(list(p.kernel)), g.const(list(range(2, 2 + k)))])
    return y


RULES.update({
    **{cls: (lambda g, op, ins, t={"argmax": "ArgMax", "argmin": "ArgMin"}[n]: g.node(
        t, ins, axis=op.params.axis, keepdims=int(op.params.keepdims),
        select_last_index=int(op.params.select_last_index)))
       for n, cls in nn.ARG_REDUCE_OPS.items()},
    **{cls: (lambda g, op, ins, upper=int(n == "triu"): g.node(
        "Trilu", [ins[0], g.const(op.params.k)], upper=upper))
       for n, cls in nn.TRIANGLE_OPS.items()},
    nn.CumSumOp: lambda g, op, ins: g.node("CumSum", [ins[0], g.const(op.params.axis)],
                                           exclusive=int(op.params.exclusive),
                                           reverse=int(op.params.reverse)),
    nn.GatherElementsOp: lambda g, op, ins: g.node("GatherElements", ins, axis=op.params.axis),
    nn.ScatterElementsOp: _scatter("ScatterElements"),
    nn.ScatterNDOp: _scatter("ScatterND"),
    nn.ConvTransposeOp: _conv_transpose,
    nn.ResizeOp: _resize,
    nn.MaxPoolIndicesOp: _max_pool_indices,
    nn.ConvWeightGradOp: _conv_weight_grad,
})
