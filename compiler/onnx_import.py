"""ONNX import: an ONNX model (opsets 6 to the newest onnx defines: 28 with onnx 1.23) decomposed into `nn` ops.

    module = ncc.import_onnx("model.onnx")      # or a ModelProto, or the bytes
    ncc-translate --import-onnx model.onnx

The graph becomes one `func.func @main`: graph inputs are arguments and graph
outputs results, each named by its ONNX name (`ncc.name`). Initializers become
`nn.weight` symbols holding the numpy arrays (parameters), values of Constant
nodes `nn.constant` literals, each created only where a value is used as a
tensor (a Reshape's shape is read statically). Nodes and nn ops whose inputs
are all constant are evaluated at import (a Conv bias reshaped to [C, 1, 1]
becomes the weight itself, under the initializer's name). The exporter maps
weights back to initializers and literals to Constant nodes, so import ->
export -> import gives the same module.
Each ONNX op is decomposed by one small function of the table `OPS`
(Gemm -> transpose/matmul/mul/add, Sum -> adds, ...); result types come from
the nn builders' shape rules, after onnx's own shape inference has typed the
graph. Only the first dimension of an input may be symbolic: it becomes `?`.

Composite ops are decompositions too: normalizations and losses into
reductions, nn.layer_norm and gathers (a label's class weight, a position's
mask: lookups in constant tables where a comparison would be needed);
Attention into matmuls and softmax with every mask an additive bias;
recurrences (RNN, GRU, LSTM, LinearAttention, Scan) unrolled over their static
length; DFT and STFT as one matmul or conv with constant cosines and sines.
Graph attributes (Scan and If bodies, FlexAttention's modifiers) are imported
in place. OPS entries of other domains are keyed "domain.Op".

`import_onnx(model, constants={"axes": array})` imports the named graph inputs
as constants: the function's signature omits them, and ops that need a value
at import time (a Reshape's shape, the axes of a reduction, a Slice's starts,
...) may read it. Each value must match its input's declared type: its rank
and static dimensions, and its element type (another numeric dtype is
converted only if every value is kept). When an op needs such a value and it
comes from graph inputs, the NccError's `needs_constant` lists those inputs
(what `ncc.backend` specializes on).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import VerifyException

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of

MIN_OPSET = 6  # opset 6's legacy forms (explicit broadcast, is_test) are read too

# ONNX TensorProto element types ncc represents (others: a clear error).
_ELEMENT = {1: np.float32, 11: np.float64, 10: np.float16, 7: np.int64, 6: np.int32,
            3: np.int8, 9: np.bool_}


def _load(source: Any) -> tuple[Any, str]:
    """(ModelProto, display name) from a ModelProto, a path or bytes."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(source, onnx.ModelProto):
        return source, source.graph.name or "<model>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where, base = bytes(source), "<bytes>", None
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        try:
            with open(where, "rb") as f:
                data = f.read()
        except OSError as e:
            raise NccError(f"cannot read the ONNX file: {e.strerror}", where) from None
        base = os.path.dirname(os.path.abspath(where))
    else:
        raise NccError(f"import_onnx takes a ModelProto, a path or bytes, not {type(source).__name__}")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise NccError(f"not a valid ONNX model (malformed or truncated protobuf: {e})", where) from None
    if not model.HasField("graph"):
        raise NccError("not a valid ONNX model (no graph)", where)
    if base is not None and any(t.data_location == onnx.TensorProto.EXTERNAL
                                for t in model.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, base)
        except (OSError, ValueError) as e:
            raise NccError(f"cannot load external tensor data: {e}", where) from None
    return model, where


def _check_model(model: Any, where: str) -> None:
    """Every node against its schema with onnx's checker, as onnxruntime
    validates a graph on load: a node it rejects (an attribute its opset does
    not define, a wrong attribute type, a missing required input) is an error
    naming the node, never a model that runs. (onnx's whole-model check also
    demands a shape on every graph output, which onnxruntime does not.)"""
    import onnx

    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version or onnx.IR_VERSION
    ctx.opset_imports = {o.domain: o.version for o in model.opset_import}
    scope = onnx.checker.C.LexicalScopeContext()
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx") or any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            continue  # another domain's schemas are not onnx's; a subgraph reads the outer scope,
            # which a lone node's check cannot see
        try:
            onnx.checker.C.check_node(n.SerializeToString(), ctx, scope)
        except onnx.checker.ValidationError as e:
            first = next((line for line in str(e).splitlines() if line.strip()), str(e))
            if "is deprecated" in first:  # onnxruntime still runs a deprecated op's last version
                continue
            raise NccError(f"node '{n.name or (n.output[0] if n.output else n.op_type)}' ({n.op_type}) "
                           f"fails onnx's checker: {first}", where) from None


def _opset(model: Any, where: str) -> int:
    import onnx

    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise NccError("the model imports no version of the default ONNX domain", where)
    v, newest = versions[0], onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= v <= newest:
        raise NccError(f"ONNX opset {v} is not supported (supported: {MIN_OPSET} to {newest})", where)
    return v


FOLD_LIMIT = 1 << 16  # constant inputs up to this many elements: fold even supported ops

# A model's parameters are its float initializers, as the file declares them:
# an op on one stays an op (so that training differentiates through it and
# `params` keeps the file's names, shapes and layouts); ncc.compile folds it
# for inference (passes/fold_weights.py). Integer and bool initializers (shape
# arithmetic, indices) are data, folded at import.


def _constant_inputs(n: Any, consts: Any) -> bool:
    inputs = [i for i in n.input if i]
    return bool(inputs) and all(i in consts for i in inputs)


def op_key(n: Any) -> str:
    """A node's entry in OPS: its op type, prefixed by its domain unless that is ONNX's own."""
    return n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"


def _check_supported(graph: Any, where: str, given: Sequence[str] = ()) -> None:
    """One diagnostic naming every unsupported op type and its nodes. A node of
    constants only (shape arithmetic, say) is folded instead: any op will do."""
    consts = {t.name for t in graph.initializer} | set(given)
    unsupported: dict[str, list[str]] = {}
    for n in graph.node:
        if n.op_type in ("Constant", "Shape") or _constant_inputs(n, consts):
            consts.update(n.output)
            continue
        if op_key(n) not in OPS:
            unsupported.setdefault(op_key(n), []).append(n.name or n.output[0])
    if unsupported:
        parts = [f"{k} ({'nodes' if len(v) > 1 else 'node'} {', '.join(v)})" for k, v in unsupported.items()]
        raise NccError(f"unsupported ONNX ops: {', '.join(parts)}", where)


def _np_dtype(elem: int, what: str, where: str) -> np.dtype:
    import onnx

    if elem not in _ELEMENT:
        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else elem
        raise NccError(f"{what} has element type {name}, which ncc does not support "
                       "(supported: FLOAT, DOUBLE, FLOAT16, INT64, INT32, INT8, BOOL)", where)
    return np.dtype(_ELEMENT[elem])


class Importer:
    """Walks the graph once, keeping each ONNX value as an SSA value or, for
    initializers and Constant outputs, as a numpy array (made an nn.weight on use)."""

    def __init__(self, model: Any, where: str, constants: Any = None):
        import onnx

        self.where = where
        self.given = _given_constants(model.graph, constants, where)
        _check_supported(model.graph, where, list(self.given))
        self.opset = _opset(model, where)
        _check_model(model, where)
        try:  # fills value_info; the importer's own shape rules decide the types
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 -- inference is optional here
            pass
        self.graph = model.graph
        self.values: dict[str, SSAValue] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.weights: dict[str, nn.WeightOp] = {}
        self.ops: list[Operation] = []
        self.node: Any = None
        self.used_names: set[str] = set()
        # Constants computed from initializers are weights (parameters); those of
        # Constant nodes only are nn.constant literals. The exporter maps them
        # back (weight -> initializer, nn.constant -> Constant node), so that
        # import -> export -> import gives the same module.
        self.from_initializers: set[str] = set()
        self.weight_source: dict[str, str] = {}  # weight symbol -> its constant's name
        self.arg_names: list[str] = []
        # operands removed by a fold -> their constant's name (None: a literal):
        # a converter may still hold such a value and use it again
        self.folded_away: dict[SSAValue, str | None] = {}

    # -- errors -----------------------------------------------------------

    def error(self, message: str) -> NccError:
        if self.node is not None:
            n = self.node
            message = f"node '{n.name or n.output[0]}' ({n.op_type}): {message}"
        return NccError(message, self.where)

    # -- values -----------------------------------------------------------

    def emit(self, op: Operation) -> SSAValue:
        self.ops.append(op)
        return op.results[0]

    def build(self, cls: Callable[..., Operation], *args: Any, **kw: Any) -> SSAValue:
        """Build an nn op; a shape-rule failure is a diagnostic at the node. An
        op of constants only is folded (as MLIR's folders do)."""
        try:
            op = cls(*args, **kw)
        except (VerifyException, ValueError) as e:
            raise self.error(str(e)) from None
        if any(v in self.folded_away for v in op.operands):
            op.operands = [self._revive(v) if v in self.folded_away else v for v in op.operands]
        folded = self.fold_op(op)
        return folded if folded is not None else self.emit(op)

    def fold_op(self, op: Operation) -> SSAValue | None:
        """The value of `op` when its operands are all weights or literals (of at
        most FOLD_LIMIT elements, the rule for ONNX nodes too): a weight named
        after its first weight operand, else a literal. Operands left unused
        are removed, so the folded weight takes the operand's name."""
        from ncc.reference import EVAL

        owners = [o.owner for o in op.operands]
        if (len(op.results) != 1 or not owners or type(op) not in EVAL
                or not all(isinstance(w, (nn.WeightRefOp, nn.ConstantOp)) for w in owners)
                or any(isinstance(w, nn.WeightRefOp) and self.is_parameter(self.weight_source[w.sym])
                       for w in owners)):
            return None
        names = [self.weight_source[w.sym] if isinstance(w, nn.WeightRefOp) else None for w in owners]
        arrays = [self.consts[n] if n is not None else w.data for n, w in zip(names, owners)]
        if sum(a.size for a in arrays) > FOLD_LIMIT:
            return None
        try:
            with np.errstate(all="ignore"):
                value = np.asarray(EVAL[type(op)](op, *arrays))
            value = value.astype(nn.numpy_dtype(op.results[0].type.element_type), copy=False)
        except Exception:  # noqa: BLE001 -- not foldable here: the op stays
            return None
        op.drop_all_references()
        for w, name in zip(owners, names):
            if w.results[0].uses or w not in self.ops:
                continue
            # The ONNX names bound to it: a constant's is made again on its next
            # use, but an identity's output (a CastLike to the same type) is only
            # this value, which then stays.
            keys = [k for k, v in self.values.items() if v is w.results[0]]
            if all(k in self.consts for k in keys):
                self.ops.remove(w)
                self.folded_away[w.results[0]] = name
                for key in keys:
                    del self.values[key]
                if isinstance(w, nn.WeightRefOp) and not self._has_refs(w.sym):
                    self.used_names.discard(w.sym)
                    del self.weights[name], self.weight_source[w.sym]
        source = next((n for n in names if n is not None), None)
        if source is None:
            return self.emit(nn.ConstantOp(value))
        key = f"{source}#{len(self.consts)}"
        self.consts[key] = value
        self.from_initializers.add(key)
        return self.weight(key, symbol=source)

    def is_parameter(self, name: str) -> bool:
        """Constant `name` is a parameter: a float initializer (never folded)."""
        return name in self.from_initializers and self.consts[name].dtype.kind in "fc"

    def _revive(self, v: SSAValue) -> SSAValue:
        """A value removed by an earlier fold, used again: its constant anew."""
        name = self.folded_away[v]
        if name is None:
            return self.emit(nn.ConstantOp(v.owner.data))
        return self.weight(name)

    def _has_refs(self, sym: str) -> bool:
        return any(isinstance(o, nn.WeightRefOp) and o.sym == sym for o in self.ops)

    def weight(self, name: str, symbol: str | None = None) -> SSAValue:
        """Constant `name` as a value: an nn.weight (named after `symbol` or the
        constant) when it comes from initializers, else an nn.constant literal."""
        if name in self.values:
            return self.values[name]
        if name not in self.from_initializers:
            try:
                self.values[name] = self.emit(nn.ConstantOp(self.consts[name]))
            except ValueError as e:
                raise self.error(f"constant '{name}': {e}") from None
            return self.values[name]
        if name not in self.weights:
            sym = re.sub(r"[^\w.$-]", "_", symbol or name) or "w"
            base, k = sym, 1
            while sym in self.used_names:
                sym, k = f"{base}_{k}", k + 1
            self.used_names.add(sym)
            try:
                self.weights[name] = nn.WeightOp(sym, self.consts[name])
            except ValueError as e:
                raise self.error(f"constant '{name}': {e}") from None
            self.weight_source[sym] = name
        self.values[name] = self.emit(nn.WeightRefOp(self.weights[name]))
        return self.values[name]

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def v(self, i: int) -> SSAValue:
        """Input i of the current node as an SSA value."""
        if not self.has(i):
            raise self.error(f"input {i} is required")
        name = self.node.input[i]
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            return self.weight(name)
        raise self.error(f"input '{name}' is not defined by any node, graph input or initializer")

    def static(self, i: int) -> np.ndarray:
        """Input i as a constant array: an initializer or a Constant output."""
        if not self.has(i):
            raise self.error(f"input {i} is required")
        name = self.node.input[i]
        if name not in self.consts:
            if name in self.values:
                needs = self.inputs_behind(name)
                hint = "" if not needs else (
                    f"; it comes from graph input '{needs[0]}': give its value in constants="
                    if len(needs) == 1 else f"; it comes from graph inputs "
                    f"{', '.join(repr(n) for n in needs)}: give their values in constants=")
                e = self.error(f"input {i} ('{name}') must be a constant (an initializer or "
                               f"a Constant node): ncc needs it at import time{hint}")
                e.needs_constant = needs
                raise e
            raise self.error(f"input '{name}' is not defined by any node, graph input or initializer")
        return self.consts[name]

    def inputs_behind(self, name: str) -> list[str]:
        """The graph inputs (function arguments) that value `name` is computed
        from, in graph-input order: given as constants, they make it constant."""
        producer = {o: n for n in self.graph.node for o in n.output if o}
        args, found, seen, todo = set(self.arg_names), set(), set(), [name]
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in args:
                found.add(v)
            elif v in producer:
                todo.extend(x for x in producer[v].input if x)
        return [a for a in self.arg_names if a in found]

    def ints(self, i: int) -> list[int]:
        return [int(x) for x in np.asarray(self.static(i)).reshape(-1)]

    def scalar(self, value: float, like: SSAValue) -> SSAValue:
        dtype = nn.numpy_dtype(like.type.element_type)
        return self.emit(nn.ConstantOp(np.asarray(value, dtype=dtype)))

    def foldable(self, n: Any) -> bool:
        """Node `n` is evaluated at import: its inputs are constants, and it is
        an op ncc does not import or a small one on data, not on parameters."""
        if n.op_type in ("Constant", "ConstantOfShape") or not _constant_inputs(n, self.consts):
            return False
        if op_key(n) not in OPS:
            return True
        inputs = [i for i in n.input if i]
        return (not any(self.is_parameter(i) for i in inputs)
                and sum(self.consts[i].size for i in inputs) <= FOLD_LIMIT)

    def fold(self, n: Any, required: bool) -> bool:
        """Evaluate a node of constants with onnx's reference implementation;
        if that fails, a supported op is imported as usual instead."""
        from onnx.reference import ReferenceEvaluator

        domain = n.domain or ""
        try:
            ev = ReferenceEvaluator(n, opsets={domain: self.opset if domain in ("", "ai.onnx") else 1})
            outs = ev.run(None, {i: self.consts[i] for i in n.input if i})
        except Exception as e:  # noqa: BLE001 -- any failure of the evaluation is the node's
            if not required:
                return False
            raise self.error(f"cannot evaluate on its constant inputs: {str(e).splitlines()[0]}") from None
        if not all(isinstance(v, (np.ndarray, np.generic)) for name, v in zip(n.output, outs) if name):
            if not required:  # a sequence or an optional: not a tensor, not a constant of ncc's
                return False
            raise self.error("evaluates to a sequence or an optional; ncc imports tensors only")
        for name, val in zip(n.output, outs):
            if name:
                self.consts[name] = np.asarray(val)
                if any(i in self.from_initializers for i in n.input):
                    self.from_initializers.add(name)
        return True

    # -- the graph --------------------------------------------------------

    def run(self) -> ModuleOp:
        import onnx
        from onnx import numpy_helper

        g = self.graph
        for t in g.initializer:
            _np_dtype(t.data_type, f"initializer '{t.name}'", self.where)
            self.from_initializers.add(t.name)
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:  # noqa: BLE001 -- onnx raises several kinds here
                raise NccError(f"initializer '{t.name}' is malformed: {e}", self.where) from None
        self.consts.update(self.given)  # graph inputs imported as constants
        arg_types, arg_names = [], []
        for inp in g.input:
            if inp.name in self.consts:
                continue  # an initializer listed as an input too (a weight with a default), or given
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
                raise NccError(f"graph input '{inp.name}' needs a tensor type with a shape", self.where)
            dtype = _np_dtype(tt.elem_type, f"graph input '{inp.name}'", self.where)
            dims = []
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(d.dim_value)
                elif k == 0:
                    dims.append(DYN)
                else:
                    sym = d.dim_param or "unknown"
                    raise NccError(f"graph input '{inp.name}': dimension {k} is symbolic ('{sym}'); "
                                   "only the first (batch) dimension may be", self.where)
            arg_types.append(TensorType(nn.element_type_of(dtype), dims))
            arg_names.append(inp.name)

        self.arg_names = arg_names
        fn = func.FuncOp("main", (arg_types, []))
        for name, arg in zip(arg_names, fn.body.block.args):
            self.values[name] = arg
            if re.fullmatch(r"[A-Za-z_]\w*", name):
                arg.name_hint = name

        for n in g.node:
            self.node = n
            if self.foldable(n):
                if self.fold(n, required=op_key(n) not in OPS):
                    continue
            outs = OPS[op_key(n)](self, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            if outs is None:  # a constant: its value is in self.consts
                continue
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for name, val in zip(n.output, outs):
                if name:
                    self.values[name] = val
        self.node = None

        results = []
        for o in g.output:
            if o.name in self.values:
                results.append(self.values[o.name])
            elif o.name in self.consts:
                results.append(self.weight(o.name))
            else:
                raise NccError(f"graph output '{o.name}' is not computed by any node", self.where)
        self.ops.append(func.ReturnOp(*results))
        fn.body.block.add_ops(self.ops)
        res_types = [r.type for r in results]
        fn.function_type = func.FunctionType.from_lists(arg_types, res_types)
        named = lambda names: ArrayAttr([DictionaryAttr({"ncc.name": StringAttr(x)}) for x in names])  # noqa: E731
        fn.arg_attrs = named(arg_names)
        fn.res_attrs = named([o.name for o in g.output])
        return ModuleOp([*self.weights.values(), fn])


def import_onnx(source: Any, constants: Any = None) -> ModuleOp:
    """Import an ONNX model (a ModelProto, a path or the serialized bytes)
    into a module of nn ops. `constants` maps graph input names to values
    imported as constants (see the module docstring). Raises NccError on
    anything it cannot import."""
    model, where = load_model(source)
    return import_model(model, where, constants)


def load_model(source: Any) -> tuple[Any, str]:
    """(ModelProto, name used in diagnostics) from a ModelProto, a path or bytes,
    for importing one model several times (`import_model`)."""
    return _load(source)


def import_model(model: Any, where: str, constants: Any = None) -> ModuleOp:
    """import_onnx of a loaded ModelProto; `where` names it in diagnostics."""
    module = Importer(model, where, constants).run()
    try:
        module.verify()
    except VerifyException as e:
        raise NccError(f"the imported module does not verify: {e}", where) from None
    return module


def _given_constants(graph: Any, constants: Any, where: str) -> dict[str, np.ndarray]:
    """`constants` checked against the graph inputs' declared types: name -> array."""
    import onnx
    from collections.abc import Mapping

    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise NccError(f"constants must map graph input names to arrays, not "
                       f"{type(constants).__name__}", where)
    inputs = {i.name: i for i in graph.input}
    out: dict[str, np.ndarray] = {}
    for name, value in constants.items():
        if name not in inputs:
            raise NccError(f"constants: '{name}' is not a graph input (inputs: "
                           f"{', '.join(inputs) or 'none'})", where)
        what = f"constant '{name}'"
        try:
            arr = np.array(value)  # a copy: the module keeps it, the caller may reuse theirs
        except Exception as e:  # noqa: BLE001 -- numpy raises several kinds here
            raise NccError(f"{what} is not an array: {e}", where) from None
        if arr.dtype.kind not in "biuf":
            raise NccError(f"{what} has dtype {arr.dtype}, not a number type", where)
        t = inputs[name].type
        if not t.HasField("tensor_type"):
            raise NccError(f"{what}: graph input '{name}' is not a tensor", where)
        tt = t.tensor_type
        elem = onnx.TensorProto.DataType.Name(tt.elem_type) \
            if tt.elem_type in onnx.TensorProto.DataType.values() else str(tt.elem_type)
        try:
            want = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:  # noqa: BLE001 -- an element type numpy has no dtype for
            raise NccError(f"{what}: graph input '{name}' has element type {elem}, which "
                           "ncc cannot take as a constant", where) from None
        if arr.dtype != want:
            if not np.can_cast(arr.dtype, want, "same_kind"):
                raise NccError(f"{what} has dtype {arr.dtype}, expected {want} (graph input "
                               f"'{name}' is {elem})", where)
            with np.errstate(all="ignore"):
                cast = arr.astype(want)
            if not np.array_equal(cast, arr, equal_nan=arr.dtype.kind == "f"):
                raise NccError(f"{what}: its {arr.dtype} values change when converted to {want} "
                               f"(graph input '{name}' is {elem})", where)
            arr = cast
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if arr.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, arr.shape)):
                declared = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
                raise NccError(f"{what} has shape {list(arr.shape)}, the graph input's is "
                               f"{declared}", where)
        out[name] = arr
    return out


# ---------------------------------------------------------------------------
# The op table: ONNX op type -> f(importer, attributes) -> SSA value(s)

Conv = Callable[[Importer, dict], Any]
OPS: dict[str, Conv] = {}


def op(*names: str) -> Callable[[Conv], Conv]:
    def reg(f: Conv) -> Conv:
        for n in names:
            OPS[n] = f
        return f
    return reg


def _unary(name: str) -> Conv:
    return lambda b, a: b.build(nn.UNARY_OPS[name], b.v(0))


for _onnx, _nn in {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
                   "Exp": "exp", "Log": "log", "Neg": "neg", "Sqrt": "sqrt", "Abs": "abs",
                   "Reciprocal": "reciprocal", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
                   "Sin": "sin", "Cos": "cos", "Acos": "acos", "Asin": "asin", "Atan": "atan",
                   "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh",
                   "Atanh": "atanh", "Round": "round", "Sign": "sign"}.items():
    OPS[_onnx] = _unary(_nn)


def _binary(b: Importer, name: str, x: SSAValue, y: SSAValue) -> SSAValue:
    return b.build(nn.BINARY_OPS[name], x, y)


def legacy_broadcast(b: Importer, a: dict, x: SSAValue, y: SSAValue) -> SSAValue:
    """Before opset 7, binary ops broadcast only when asked (`broadcast=1`), and
    then B lines up with A from `axis` (default: B's dims are A's last ones)."""
    if b.opset >= 7:
        return y
    xs, ys = shape_of(x.type), shape_of(y.type)
    if not a.get("broadcast", 0):
        if xs != ys:
            raise b.error(f"shapes {list(xs)} and {list(ys)} differ and broadcast is not set (opset {b.opset})")
        return y
    axis = a.get("axis", len(xs) - len(ys))
    if axis < 0:
        axis += len(xs)
    if not 0 <= axis <= len(xs) - len(ys):
        raise b.error(f"broadcast axis {a.get('axis')} does not fit B {list(ys)} into A {list(xs)}")
    trailing = len(xs) - axis - len(ys)
    return b.build(nn.ReshapeOp, y, list(ys) + [1] * trailing) if trailing else y


for _onnx, _nn in {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}.items():
    OPS[_onnx] = (lambda name: lambda b, a: _binary(b, name, b.v(0),
                                                    legacy_broadcast(b, a, b.v(0), b.v(1))))(_nn)


for _onnx, _nn in {"Equal": "equal", "Less": "less", "LessOrEqual": "less_equal",
                   "Greater": "greater", "GreaterOrEqual": "greater_equal"}.items():
    OPS[_onnx] = (lambda name: lambda b, a: b.build(nn.COMPARE_OPS[name], b.v(0), b.v(1)))(_nn)
for _onnx, _nn in {"And": "and", "Or": "or", "Xor": "xor"}.items():
    OPS[_onnx] = (lambda name: lambda b, a: b.build(nn.LOGICAL_OPS[name], b.v(0), b.v(1)))(_nn)
OPS.update({
    "Not": lambda b, a: b.build(nn.NotOp, b.v(0)),
    "Where": lambda b, a: b.build(nn.SelectOp, b.v(0), b.v(1), b.v(2)),
    "IsNaN": lambda b, a: b.build(nn.IsNanOp, b.v(0)),
    "IsInf": lambda b, a: b.build(nn.IsInfOp, b.v(0), a.get("detect_positive", 1),
                                  a.get("detect_negative", 1)),
    # fmod=0: the divisor's sign (ONNX requires fmod=1 on floats; its reference
    # implementation, like nn.mod, takes numpy's floor modulo there too)
    "Mod": lambda b, a: _binary(b, "fmod" if a.get("fmod", 0) else "mod", b.v(0), b.v(1)),
})


@op("Pow")
def _pow(b, a):
    x = b.v(0)
    if b.node.input[1] in b.consts:  # an exponent of another element type (opset 12+)
        e = b.static(1).astype(nn.numpy_dtype(x.type.element_type))
        y = b.emit(nn.ConstantOp(e)) if e.size == 1 else b.v(1)
        return _binary(b, "pow", x, y)
    return _binary(b, "pow", x, b.v(1))


def _variadic(name: str, mean: bool = False) -> Conv:
    def f(b, a):
        acc = b.v(0)
        for i in range(1, len(b.node.input)):
            acc = _binary(b, name, acc, b.v(i))
        if mean and len(b.node.input) > 1:
            acc = _binary(b, "div", acc, b.scalar(len(b.node.input), acc))
        return acc
    return f


OPS.update({"Max": _variadic("max"), "Min": _variadic("min"), "Sum": _variadic("add"),
            "Mean": _variadic("add", mean=True)})


@op("Identity", "Dropout")
def _identity(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    if b.node.op_type == "Dropout" and b.opset >= 12 and b.has(2) and (
            b.node.input[2] not in b.consts or b.static(2).any()):
        raise b.error("training mode (random dropout) is not supported: training_mode must be "
                      "a constant false")
    if b.node.op_type == "Dropout" and len(b.node.output) > 1 and b.node.output[1] and DYN not in shape:
        b.consts[b.node.output[1]] = np.ones(shape, np.bool_)  # inference: nothing is dropped
    return x


@op("LeakyRelu")
def _leaky_relu(b, a):
    x, alpha = b.v(0), a.get("alpha", 0.01)
    if np.float32(alpha) == np.float32(0.01):
        return b.build(nn.UNARY_OPS["leaky_relu"], x)
    neg = _binary(b, "min", x, b.scalar(0, x))  # relu(x) + alpha * min(x, 0)
    return _binary(b, "add", b.build(nn.UNARY_OPS["relu"], x), _binary(b, "mul", neg, b.scalar(alpha, x)))


@op("PRelu")
def _prelu(b, a):
    x = b.v(0)
    neg = _binary(b, "min", x, b.scalar(0, x))
    slope, xs = b.v(1), shape_of(x.type)
    if b.opset < 7 and len(xs) > 2 and shape_of(slope.type) == (xs[1],):  # opset 6: per channel
        slope = b.build(nn.ReshapeOp, slope, [xs[1]] + [1] * (len(xs) - 2))
    return _binary(b, "add", b.build(nn.UNARY_OPS["relu"], x), _binary(b, "mul", neg, slope))


@op("Elu")
def _elu(b, a):
    x, alpha = b.v(0), a.get("alpha", 1.0)
    if alpha == 1.0:
        return b.build(nn.UNARY_OPS["elu"], x)
    em1 = _binary(b, "sub", b.build(nn.UNARY_OPS["exp"], _binary(b, "min", x, b.scalar(0, x))),
                  b.scalar(1, x))
    return _binary(b, "add", b.build(nn.UNARY_OPS["relu"], x), _binary(b, "mul", em1, b.scalar(alpha, x)))


@op("Clip")
def _clip(b, a):
    x = b.v(0)
    if b.opset < 11:
        lo, hi = a.get("min"), a.get("max")
        lo = None if lo is None else b.scalar(lo, x)
        hi = None if hi is None else b.scalar(hi, x)
    else:
        lo = b.v(1) if b.has(1) else None
        hi = b.v(2) if b.has(2) else None
    if lo is not None:
        x = _binary(b, "max", x, lo)
    if hi is not None:
        x = _binary(b, "min", x, hi)
    return x


@op("MatMul")
def _matmul(b, a):
    return b.build(nn.MatmulOp, b.v(0), b.v(1))


@op("Gemm")
def _gemm(b, a):
    x, w = b.v(0), b.v(1)
    if a.get("transA", 0):
        x = b.build(nn.TransposeOp, x, [1, 0])
    if a.get("transB", 0):
        w = b.build(nn.TransposeOp, w, [1, 0])
    y = b.build(nn.MatmulOp, x, w)
    if (alpha := a.get("alpha", 1.0)) != 1.0:
        y = _binary(b, "mul", y, b.scalar(alpha, y))
    if b.has(2):
        c = b.v(2)
        if (beta := a.get("beta", 1.0)) != 1.0:
            c = _binary(b, "mul", c, b.scalar(beta, c))
        y = _binary(b, "add", y, c)
    return y


def _window(b: Importer, a: dict, x: SSAValue, kernel: Sequence[int], dilations: Sequence[int]
            ) -> tuple[list[int], list[int]]:
    """(strides, pads) of a conv or pool, with auto_pad resolved on static sizes."""
    k = len(kernel)
    strides = list(a.get("strides", [1] * k))
    pads = list(a.get("pads", [0] * 2 * k))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        spatial = shape_of(x.type)[2:]
        if DYN in spatial:
            raise b.error(f"auto_pad {auto} needs static spatial sizes, got {x.type}")
        for i, (n, kk, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
            total = max((-(-n // s) - 1) * s + (kk - 1) * d + 1 - n, 0)
            small = total // 2
            pads[i], pads[i + k] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
    elif auto == "VALID":
        pads = [0] * 2 * k
    elif auto != "NOTSET":
        raise b.error(f"unknown auto_pad '{auto}'")
    return strides, pads


@op("Conv")
def _conv(b, a):
    x, w = b.v(0), b.v(1)
    wshape = shape_of(w.type)
    kernel = list(a.get("kernel_shape", wshape[2:]))
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = _window(b, a, x, kernel, dil)
    y = b.build(nn.ConvOp, x, w, strides=strides, pads=pads, dilations=dil, group=a.get("group", 1))
    if b.has(2):  # bias[c] broadcast over the spatial dimensions
        bias = b.build(nn.ReshapeOp, b.v(2), [-1] + [1] * len(kernel))
        y = _binary(b, "add", y, bias)
    return y


def _ceil_mode_pads(b: Importer, x: SSAValue, kernel: Sequence[int], strides: Sequence[int],
                    pads: Sequence[int], dil: Sequence[int]) -> list[int]:
    """Pads with extra end padding that turns the floor division of the output
    size into a ceil division (ceil_mode), the last window starting inside."""
    k, spatial, pads = len(kernel), shape_of(x.type)[2:], list(pads)
    for i, (n, kk, s, d) in enumerate(zip(spatial, kernel, strides, dil)):
        if n == DYN:
            raise b.error("ceil_mode needs static spatial sizes")
        kk = (kk - 1) * d + 1  # the dilated window
        span = n + pads[i] + pads[i + k] - kk
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pads[i]:  # the last window must start inside
            out -= 1
        pads[i + k] += max((out - 1) * s + kk - (n + pads[i] + pads[i + k]), 0)
    return pads


def _pool(b: Importer, a: dict, cls: type, **extra: Any) -> SSAValue | list[SSAValue]:
    x = b.v(0)
    kernel = list(a["kernel_shape"]) if "kernel_shape" in a else None
    if kernel is None:
        raise b.error("attribute kernel_shape is required")
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = _window(b, a, x, kernel, dil)
    if a.get("ceil_mode", 0):
        k, given = len(kernel), list(pads)
        pads = _ceil_mode_pads(b, x, kernel, strides, pads, dil)
        if cls is nn.AvgPoolOp and extra.get("count_include_pad") and pads != given:
            # The given pads count, the ceil mode's extra end cells do not: pad
            # with zeros explicitly, then average over the cells that exist.
            x = b.build(nn.PadOp, x, [0, 0, *given[:k], 0, 0, *given[k:]])
            pads = [0] * k + [p - g for p, g in zip(pads[k:], given[k:])]
            extra["count_include_pad"] = False
    y = b.build(cls, x, kernel, strides=strides, pads=pads, dilations=dil, **extra)
    if cls is nn.MaxPoolOp and len(b.node.output) > 1 and b.node.output[1]:  # the Indices output
        return [y, b.build(nn.MaxPoolIndicesOp, x, kernel, strides=strides, pads=pads, dilations=dil,
                           column_major=bool(a.get("storage_order", 0)))]
    return y


OPS["MaxPool"] = lambda b, a: _pool(b, a, nn.MaxPoolOp)
OPS["AveragePool"] = lambda b, a: _pool(b, a, nn.AvgPoolOp,
                                        count_include_pad=bool(a.get("count_include_pad", 0)))


@op("MaxUnpool")
def _max_unpool(b, a):
    # each value to its place in zeros of the pool's input shape: the indices
    # are MaxPool's, flat into that whole tensor (row-major); within the
    # value's (n, c) plane that is the index modulo the plane size, so one
    # scatter_elements per plane (the batch stays in dimension 0). A larger
    # output_shape pads zeros at the end (as onnx's reference).
    x, idx = b.v(0), b.v(1)
    n, c, *spatial = shape_of(x.type)
    kernel = list(a.get("kernel_shape", []))
    k = len(kernel)
    if k != len(spatial) or DYN in spatial or c == DYN:
        raise b.error(f"kernel_shape {kernel} does not fit the input {x.type} (static sizes but the batch)")
    strides, pads = list(a.get("strides", [1] * k)), list(a.get("pads", [0] * 2 * k))
    shape = [(s - 1) * st + kk - pads[i] - pads[i + k]
             for i, (s, st, kk) in enumerate(zip(spatial, strides, kernel))]
    out = b.ints(2)[2:] if b.has(2) else shape  # output_shape: (N, C, spatial...)
    if len(out) != k or any(o < s for o, s in zip(out, shape)):
        raise b.error(f"output_shape spatial sizes {out} are smaller than the unpooled {shape}")
    batch = -1 if n == DYN else n
    plane, m = math.prod(shape), math.prod(spatial)
    local = _binary(b, "mod", _reshape_to(b, idx, [batch, c, m]), b.scalar(plane, idx))
    zeros = b.build(nn.BroadcastOp, b.scalar(0, x), nn.tensor_type([n, c, plane], x.type.element_type))
    y = b.build(nn.ScatterElementsOp, zeros, local, _reshape_to(b, x, [batch, c, m]), 2)
    y = _reshape_to(b, y, [batch, c, *shape])
    if out != shape:
        y = b.build(nn.PadOp, y, [0] * (k + 2) + [0, 0, *(o - s for o, s in zip(out, shape))])
    return y


def _global(name: str) -> Conv:
    def f(b, a):
        x = b.v(0)
        return b.build(nn.REDUCE_OPS[name], x, list(range(2, len(shape_of(x.type)))), keepdims=True)
    return f


OPS.update({"GlobalAveragePool": _global("reduce_mean"), "GlobalMaxPool": _global("reduce_max")})


@op("BatchNormalization")
def _batch_norm(b, a):
    if a.get("training_mode", 0) or sum(1 for o in b.node.output if o) > 1 or not a.get("is_test", 1):
        raise b.error("only inference mode (one output) is supported")
    if not a.get("spatial", 1):  # opsets 7-8: per-activation statistics
        raise b.error("spatial=0 (per-activation statistics) is not supported")
    return b.build(nn.BatchNormOp, b.v(0), b.v(1), b.v(2), b.v(3), b.v(4),
                   epsilon=a.get("epsilon", 1e-5))


def _softmax(cls: type) -> Conv:
    def f(b, a):
        x = b.v(0)
        shape = shape_of(x.type)
        if b.opset >= 13:
            return b.build(cls, x, a.get("axis", -1))
        # Before opset 13: over the flattened dimensions [axis, rank).
        axis = a.get("axis", 1) % max(len(shape), 1)
        if axis == len(shape) - 1:
            return b.build(cls, x, -1)
        flat = _flatten(b, x, axis)
        return b.build(nn.ReshapeOp, b.build(cls, flat, -1), x.type)
    return f


OPS.update({"Softmax": _softmax(nn.SoftmaxOp), "LogSoftmax": _softmax(nn.LogSoftmaxOp)})


def _flatten(b: Importer, x: SSAValue, axis: int) -> SSAValue:
    shape = shape_of(x.type)
    inner = shape[axis:]
    if DYN in inner:
        raise b.error(f"cannot flatten {x.type} at axis {axis}: a trailing dimension is dynamic")
    outer = -1 if DYN in shape[:axis] else math.prod(shape[:axis])
    return b.build(nn.ReshapeOp, x, [outer, math.prod(inner)])


@op("Flatten")
def _flatten_op(b, a):
    x = b.v(0)
    axis = a.get("axis", 1)
    return _flatten(b, x, axis + len(shape_of(x.type)) if axis < 0 else axis)


def _reshape_to(b: Importer, x: SSAValue, dims: Sequence[int]) -> SSAValue:
    if sum(1 for d in dims if d in (-1, DYN)) > 1:
        raise b.error(f"cannot reshape {x.type} to {nn.fmt_shape(dims)}: more than one unknown dimension")
    return b.build(nn.ReshapeOp, x, dims)


@op("Reshape")
def _reshape(b, a):
    x = b.v(0)
    if b.opset < 5 or "shape" in a:
        target = list(a["shape"])
    else:
        target = b.ints(1)
    shape = shape_of(x.type)
    if not a.get("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    return _reshape_to(b, x, target)


@op("Transpose")
def _transpose(b, a):
    x = b.v(0)
    return b.build(nn.TransposeOp, x, a.get("perm", list(range(len(shape_of(x.type))))[::-1]))


@op("Concat")
def _concat(b, a):
    return b.build(nn.ConcatOp, [b.v(i) for i in range(len(b.node.input)) if b.has(i)], a["axis"])


def _axes_input(b: Importer, a: dict, i: int, since: int) -> list[int] | None:
    """`axes`: an attribute before opset `since`, an optional input from it."""
    if b.opset < since:
        return list(a["axes"]) if "axes" in a else None
    return b.ints(i) if b.has(i) else None


@op("Slice")
def _slice(b, a):
    x = b.v(0)
    if b.opset < 10:
        starts, ends, axes, steps = list(a["starts"]), list(a["ends"]), a.get("axes"), None
    else:
        starts, ends = b.ints(1), b.ints(2)
        axes = b.ints(3) if b.has(3) else None
        steps = b.ints(4) if b.has(4) else None
    return b.build(nn.SliceOp, x, starts, ends, None if axes is None else list(axes), steps)


@op("Gather")
def _gather(b, a):
    x, axis = b.v(0), a.get("axis", 0)
    name = b.node.input[1]
    if name in b.consts and (b.consts[name] < 0).any():  # negative indices count from the end
        dim = shape_of(x.type)[axis]
        idx = b.consts[name]
        fixed = np.where(idx < 0, idx + dim, idx).astype(idx.dtype)
        return b.build(nn.GatherOp, x, b.emit(nn.ConstantOp(fixed)), axis)
    return b.build(nn.GatherOp, x, b.v(1), axis)


@op("Pad")
def _pad(b, a):
    x = b.v(0)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    rank = len(shape_of(x.type))
    if b.opset < 11:
        pads, value = list(a.get("pads", a.get("paddings", []))), a.get("value", 0.0)
    else:
        pads = b.ints(1)
        value = float(b.static(2).reshape(-1)[0]) if b.has(2) else 0.0
        if b.has(3):  # opset 18: pads for the listed axes only
            axes = [ax % rank for ax in b.ints(3)]
            full = [0] * 2 * rank
            for j, ax in enumerate(axes):
                full[ax], full[ax + rank] = pads[j], pads[j + len(axes)]
            pads = full
    if min(pads, default=0) < 0:
        raise b.error(f"negative pads {pads} are not supported")
    return b.build(nn.PadOp, x, pads, mode, value)


def _reduce(name: str, since: int) -> Conv:
    def f(b, a):
        x = b.v(0)
        axes = _axes_input(b, a, 1, since)
        if not axes:  # none or empty: all axes, or nothing with noop_with_empty_axes
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = None
        return b.build(nn.REDUCE_OPS[name], x, axes, keepdims=bool(a.get("keepdims", 1)))
    return f


OPS.update({"ReduceSum": _reduce("reduce_sum", 13), "ReduceMean": _reduce("reduce_mean", 18),
            "ReduceMax": _reduce("reduce_max", 18), "ReduceMin": _reduce("reduce_min", 18),
            "ReduceProd": _reduce("reduce_prod", 18)})


@op("Squeeze")
def _squeeze(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    axes = _axes_input(b, a, 1, 13)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [ax % len(shape) for ax in axes]
    for ax in axes:
        if shape[ax] != 1:
            raise b.error(f"cannot squeeze axis {ax} of {x.type}: its size is not 1")
    return _reshape_to(b, x, [d for i, d in enumerate(shape) if i not in axes])


@op("Unsqueeze")
def _unsqueeze(b, a):
    x = b.v(0)
    shape = list(shape_of(x.type))
    axes = _axes_input(b, a, 1, 13) or []
    rank = len(shape) + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        shape.insert(ax, 1)
    return _reshape_to(b, x, shape)


@op("LRN")
def _lrn(b, a):
    # y = x / (bias + alpha/size * sum of x^2 over `size` neighbouring channels)^beta;
    # the channel window sum is an average pool over a (N, 1, C, H*W) view.
    x = b.v(0)
    size = a["size"]
    n, c, *spatial = shape_of(x.type)
    if c == DYN or DYN in spatial:
        raise b.error(f"needs static channel and spatial sizes, got {x.type}")
    sq = _binary(b, "mul", x, x)
    view = b.build(nn.ReshapeOp, sq, [-1 if n == DYN else n, 1, c, math.prod(spatial)])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    avg = b.build(nn.AvgPoolOp, view, [size, 1], pads=[lo, 0, hi, 0], count_include_pad=True)
    avg = b.build(nn.ReshapeOp, avg, x.type)
    scaled = _binary(b, "mul", avg, b.scalar(a.get("alpha", 1e-4), x))
    den = _binary(b, "pow", _binary(b, "add", scaled, b.scalar(a.get("bias", 1.0), x)),
                  b.scalar(a.get("beta", 0.75), x))
    return _binary(b, "div", x, den)


@op("Constant")
def _constant(b, a):
    from onnx import numpy_helper

    if "value" in a:
        t = a["value"]
        _np_dtype(t.data_type, f"Constant '{b.node.output[0]}'", b.where)
        arr = numpy_helper.to_array(t)
    elif "value_float" in a or "value_floats" in a:
        arr = np.asarray(a.get("value_float", a.get("value_floats")), dtype=np.float32)
    elif "value_int" in a or "value_ints" in a:
        arr = np.asarray(a.get("value_int", a.get("value_ints")), dtype=np.int64)
    else:
        raise b.error(f"unsupported value attribute ({', '.join(a) or 'none'})")
    b.consts[b.node.output[0]] = arr


@op("ConstantOfShape")
def _constant_of_shape(b, a):
    from onnx import numpy_helper

    value = numpy_helper.to_array(a["value"]).reshape(-1) if "value" in a else np.zeros(1, np.float32)
    shape = b.ints(0)
    if min(shape, default=0) < 0:
        raise b.error(f"shape {shape} has a negative dimension")
    b.consts[b.node.output[0]] = np.full(shape, value[0], dtype=value.dtype)


# Activations and reductions that are compositions of nn ops: f(b, x, attrs).

def _u(b: Importer, name: str, x: SSAValue) -> SSAValue:
    return b.build(nn.UNARY_OPS[name], x)


def _k(b: Importer, x: SSAValue, v: float) -> SSAValue:
    return b.scalar(v, x)


def _hard_sigmoid(b, x, alpha, beta):
    lin = _binary(b, "add", _binary(b, "mul", x, _k(b, x, alpha)), _k(b, x, beta))
    return _binary(b, "min", _binary(b, "max", lin, _k(b, x, 0)), _k(b, x, 1))


def _elu_of(b, x, alpha):  # relu(x) + alpha * (exp(min(x, 0)) - 1)
    em1 = _binary(b, "sub", _u(b, "exp", _binary(b, "min", x, _k(b, x, 0))), _k(b, x, 1))
    return _binary(b, "add", _u(b, "relu", x), _binary(b, "mul", em1, _k(b, x, alpha)))


def _gelu(b, x, a):
    approx = a.get("approximate", b"none")
    if (approx.decode() if isinstance(approx, bytes) else approx) == "tanh":
        cube = _binary(b, "mul", _binary(b, "mul", x, x), x)
        inner = _binary(b, "add", x, _binary(b, "mul", cube, _k(b, x, 0.044715)))
        t = _u(b, "tanh", _binary(b, "mul", inner, _k(b, x, math.sqrt(2 / math.pi))))
    else:
        t = _u(b, "erf", _binary(b, "mul", x, _k(b, x, 1 / math.sqrt(2))))
    return _binary(b, "mul", _binary(b, "mul", x, _k(b, x, 0.5)), _binary(b, "add", t, _k(b, x, 1)))


def _select(b: Importer, cond: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
    return b.build(nn.SelectOp, cond, x, y)


def _cmp(b: Importer, name: str, x: SSAValue, y: SSAValue) -> SSAValue:
    return b.build(nn.COMPARE_OPS[name], x, y)


def _shrink(b, x, a):  # x + bias where x < -lambd, x - bias where x > lambd, else 0
    lambd, bias = a.get("lambd", 0.5), a.get("bias", 0.0)
    upper = _select(b, _cmp(b, "greater", x, _k(b, x, lambd)), _binary(b, "sub", x, _k(b, x, bias)),
                    _k(b, x, 0))
    return _select(b, _cmp(b, "less", x, _k(b, x, -lambd)), _binary(b, "add", x, _k(b, x, bias)), upper)


def _swish(b, x, a):  # x * sigmoid(alpha * x); alpha = 1 is silu
    alpha = a.get("alpha", 1.0)
    if np.float32(alpha) == 1:
        return _u(b, "silu", x)
    return _binary(b, "mul", x, _u(b, "sigmoid", _binary(b, "mul", x, _k(b, x, alpha))))


COMPOSITE: dict[str, Callable[[Importer, SSAValue, dict], SSAValue]] = {
    "ThresholdedRelu": lambda b, x, a: _select(b, _cmp(b, "greater", x, _k(b, x, a.get("alpha", 1.0))),
                                               x, _k(b, x, 0)),
    "Shrink": _shrink,
    "Swish": _swish,
    "HardSigmoid": lambda b, x, a: _hard_sigmoid(b, x, a.get("alpha", 0.2), a.get("beta", 0.5)),
    "HardSwish": lambda b, x, a: _binary(b, "mul", x, _hard_sigmoid(b, x, 1 / 6, 0.5)),
    "Selu": lambda b, x, a: _binary(b, "mul", _elu_of(b, x, a.get("alpha", 1.67326319217681884765625)),
                                    _k(b, x, a.get("gamma", 1.05070102214813232421875))),
    "Celu": lambda b, x, a: _celu(b, x, a.get("alpha", 1.0)),
    "Softsign": lambda b, x, a: _binary(b, "div", x, _binary(b, "add", _u(b, "abs", x), _k(b, x, 1))),
    "Mish": lambda b, x, a: _binary(b, "mul", x, _u(b, "tanh", _u(b, "softplus", x))),
    "Gelu": _gelu,
    "Tan": lambda b, x, a: _binary(b, "div", _u(b, "sin", x), _u(b, "cos", x)),
    "ReduceSumSquare": lambda b, x, a: _reduce_of(b, _binary(b, "mul", x, x), "reduce_sum", a, 18),
    "ReduceL1": lambda b, x, a: _reduce_of(b, _u(b, "abs", x), "reduce_sum", a, 18),
    "ReduceL2": lambda b, x, a: _u(b, "sqrt", _reduce_of(b, _binary(b, "mul", x, x), "reduce_sum", a, 18)),
    "ReduceLogSum": lambda b, x, a: _u(b, "log", _reduce_of(b, x, "reduce_sum", a, 18)),
}


def _celu(b, x, alpha):  # max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    e = _binary(b, "sub", _u(b, "exp", _binary(b, "div", x, _k(b, x, alpha))), _k(b, x, 1))
    neg = _binary(b, "min", _binary(b, "mul", e, _k(b, x, alpha)), _k(b, x, 0))
    return _binary(b, "add", _u(b, "relu", x), neg)


def _reduce_of(b: Importer, x: SSAValue, name: str, a: dict, since: int) -> SSAValue:
    axes = _axes_input(b, a, 1, since) or None
    return b.build(nn.REDUCE_OPS[name], x, axes, keepdims=bool(a.get("keepdims", 1)))


for _name, _f in COMPOSITE.items():
    OPS[_name] = (lambda f: lambda b, a: f(b, b.v(0), a))(_f)


@op("Shape")
def _shape(b, a):
    shape = list(shape_of(b.v(0).type))
    start, end = a.get("start", 0), a.get("end", len(shape))
    part = shape[start:end]
    if DYN in part:
        raise b.error(f"the shape of '{b.node.input[0]}' is dynamic ({b.v(0).type}): "
                      "ncc needs it at import time")
    b.consts[b.node.output[0]] = np.array(part, np.int64)


@op("Cast", "CastLike")
def _cast(b, a):
    x = b.v(0)
    if b.node.op_type == "Cast":
        to = np.dtype(_np_dtype(a["to"], "the target type", b.where))
    else:
        to = nn.numpy_dtype(b.v(1).type.element_type)
    src = nn.numpy_dtype(x.type.element_type)
    if src == to:
        return x
    if to == np.bool_:  # nonzero (NaN included) is true
        return b.build(nn.NotOp, _cmp(b, "equal", x, b.scalar(0, x)))
    if src == np.bool_:
        one, zero = (b.emit(nn.ConstantOp(np.asarray(v, to))) for v in (1, 0))
        return _select(b, x, one, zero)
    return b.build(nn.CastOp, x, to)  # between numeric types


@op("LayerNormalization")
def _layer_norm(b, a):
    x, scale = b.v(0), b.v(1)
    bias = b.v(2) if b.has(2) else b.emit(nn.ConstantOp(
        np.zeros(shape_of(scale.type), nn.numpy_dtype(scale.type.element_type))))
    y = b.build(nn.LayerNormOp, x, scale, bias, a.get("axis", -1), a.get("epsilon", 1e-5))
    if not any(b.node.output[1:]):
        return y
    return [y, *_layer_norm_stats(b, x, a)]  # Mean, InvStdDev: see "Normalizations and losses"


@op("Expand")
def _expand(b, a):
    """x broadcast to the shape (numpy's rules: the shape may also be smaller), any element type."""
    x = b.v(0)
    try:
        out = nn.broadcast_shapes(shape_of(x.type), b.ints(1))
    except ValueError as e:
        raise b.error(str(e)) from None
    if list(out) == list(shape_of(x.type)):
        return x
    return b.build(nn.BroadcastOp, x, TensorType(x.type.element_type, out))


@op("Split")
def _split(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    axis = a.get("axis", 0) % len(shape)
    n_out = len(b.node.output)
    sizes = list(a["split"]) if "split" in a else (b.ints(1) if b.opset >= 13 and b.has(1) else None)
    if sizes is None:
        if shape[axis] == DYN:
            raise b.error(f"cannot split the dynamic axis {axis} of {x.type}")
        n = a.get("num_outputs", n_out)
        step = -(-shape[axis] // n)
        sizes = [min(step, shape[axis] - k * step) for k in range(n)]
    outs, start = [], 0
    for size in sizes:
        outs.append(b.build(nn.SliceOp, x, [start], [start + size], [axis]))
        start += size
    return outs


# ---------------------------------------------------------------------------
# Structural ops: index reductions, scans, element gathers and scatters,
# triangles, transposed convolution, resize, and rearrangements of other ops.


def _full_like(b: Importer, value: float, x: SSAValue) -> SSAValue:
    """A constant of x's element type and rank, all sizes 1 (broadcasts to x)."""
    shape = (1,) * len(shape_of(x.type))
    return b.emit(nn.ConstantOp(np.full(shape, value, nn.numpy_dtype(x.type.element_type))))


def _str_attr(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def _arg_reduce(name: str) -> Conv:
    def f(b, a):
        return b.build(nn.ARG_REDUCE_OPS[name], b.v(0), a.get("axis", 0),
                       keepdims=bool(a.get("keepdims", 1)),
                       select_last_index=bool(a.get("select_last_index", 0)))
    return f


OPS.update({"ArgMax": _arg_reduce("argmax"), "ArgMin": _arg_reduce("argmin")})


def _one_value(b: Importer, i: int, what: str) -> int:
    vals = b.ints(i)
    if len(vals) != 1:
        raise b.error(f"{what} must hold one value, got {len(vals)}")
    return vals[0]


@op("CumSum")
def _cumsum(b, a):
    return b.build(nn.CumSumOp, b.v(0), _one_value(b, 1, "axis"),
                   exclusive=bool(a.get("exclusive", 0)), reverse=bool(a.get("reverse", 0)))


@op("GatherElements")
def _gather_elements(b, a):
    return b.build(nn.GatherElementsOp, b.v(0), b.v(1), a.get("axis", 0))


@op("ScatterElements", "Scatter")
def _scatter_elements(b, a):
    return b.build(nn.ScatterElementsOp, b.v(0), b.v(1), b.v(2), a.get("axis", 0),
                   _str_attr(a, "reduction", "none"))


@op("ScatterND")
def _scatter_nd(b, a):
    return b.build(nn.ScatterNDOp, b.v(0), b.v(1), b.v(2), _str_attr(a, "reduction", "none"))


@op("TensorScatter")
def _tensor_scatter(b, a):
    """The update written into the cache along `axis` from each batch row's
    write index: a scatter_elements whose indices are write index + position
    (wrapped once past the end in circular mode)."""
    past, upd = b.v(0), b.v(1)
    ps, us = shape_of(past.type), shape_of(upd.type)
    r = len(ps)
    axis = a.get("axis", -2)
    if not -r <= axis < r or axis % r == 0:
        raise b.error(f"axis {axis} must name a non-batch axis of {past.type}")
    axis %= r
    mode = _str_attr(a, "mode", "linear")
    if mode not in ("linear", "circular"):
        raise b.error(f"unknown mode '{mode}' (known: linear, circular)")
    if DYN in us:
        raise b.error(f"needs an update of static shape, got {upd.type}")
    positions = np.arange(us[axis]).reshape([-1 if i == axis else 1 for i in range(r)])
    idx = b.emit(nn.ConstantOp(np.ascontiguousarray(np.broadcast_to(positions, us), np.int64)))
    if b.has(2):
        w = b.v(2)
        if w.type.element_type != nn.i64:
            raise b.error(f"write_indices must be int64, got {w.type}")
        idx = _binary(b, "add", idx, _reshape_to(b, w, [us[0]] + [1] * (r - 1)))
    if mode == "circular":  # past the end: one wrap around
        size = ps[axis]
        over = _binary(b, "min", _binary(b, "max", _binary(b, "sub", idx, _full_like(b, size - 1, idx)),
                                          _full_like(b, 0, idx)), _full_like(b, 1, idx))
        idx = _binary(b, "sub", idx, _binary(b, "mul", over, _full_like(b, size, idx)))
    return b.build(nn.ScatterElementsOp, past, idx, upd, axis)


@op("Trilu")
def _trilu(b, a):
    k = _one_value(b, 1, "k") if b.has(1) else 0
    return b.build(nn.TRIANGLE_OPS["triu" if a.get("upper", 1) else "tril"], b.v(0), k)


@op("Tile")
def _tile(b, a):
    """Copies concatenated along each axis (exact, any element type)."""
    x = b.v(0)
    reps = b.ints(1)
    rank = len(shape_of(x.type))
    if len(reps) != rank or min(reps, default=0) < 0:
        raise b.error(f"repeats {reps} must be {rank} values >= 0 (one per axis of {x.type})")
    for axis, r in enumerate(reps):
        if r == 0:
            x = b.build(nn.SliceOp, x, [0], [0], [axis])
        elif r > 1:
            x = b.build(nn.ConcatOp, [x] * r, axis)
    return x


def _space_depth(b: Importer, a: dict, to_space: bool) -> SSAValue:
    """DepthToSpace / SpaceToDepth: a reshape, a transpose, a reshape."""
    x = b.v(0)
    bs = a["blocksize"]
    mode = _str_attr(a, "mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise b.error(f"unknown mode '{mode}' (known: DCR, CRD)")
    shape = shape_of(x.type)
    if len(shape) != 4 or DYN in shape[1:]:
        raise b.error(f"needs an input (N, C, H, W) with static C, H, W, got {x.type}")
    n, c, h, w = shape
    n = -1 if n == DYN else n
    if to_space:
        if c % (bs * bs):
            raise b.error(f"{c} channels are not divisible by blocksize^2 = {bs * bs}")
        cb = c // (bs * bs)
        if mode == "DCR":
            parts, perm = [n, bs, bs, cb, h, w], [0, 3, 4, 1, 5, 2]
        else:
            parts, perm = [n, cb, bs, bs, h, w], [0, 1, 4, 2, 5, 3]
        out = [n, cb, h * bs, w * bs]
    else:
        if h % bs or w % bs:
            raise b.error(f"spatial size {h}x{w} is not divisible by the blocksize {bs}")
        parts = [n, c, h // bs, bs, w // bs, bs]
        perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
        out = [n, c * bs * bs, h // bs, w // bs]
    y = b.build(nn.TransposeOp, _reshape_to(b, x, parts), perm)
    return _reshape_to(b, y, out)


OPS.update({"DepthToSpace": lambda b, a: _space_depth(b, a, True),
            "SpaceToDepth": lambda b, a: _space_depth(b, a, False)})


@op("EyeLike")
def _eye_like(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    if len(shape) != 2 or DYN in shape:
        raise b.error(f"needs a static 2-D input, got {x.type}")
    dtype = (_np_dtype(a["dtype"], "the dtype attribute", b.where) if "dtype" in a
             else nn.numpy_dtype(x.type.element_type))
    b.consts[b.node.output[0]] = np.eye(*shape, k=a.get("k", 0), dtype=dtype)


@op("Range")
def _range(b, a):
    # Its inputs' values give its length: constant inputs were folded already.
    start, limit, delta = (b.static(i).reshape(()) for i in range(3))
    b.consts[b.node.output[0]] = np.arange(start, limit, delta, dtype=start.dtype)


def _eye_rows(b: Importer, depth: int, dtype: np.dtype, off: float = 0.0, on: float = 1.0) -> SSAValue:
    """A (depth + 2, depth) table: row i + 1 is one-hot at i (`on`, else `off`);
    rows 0 and depth + 1 are all `off` (the rows of indices out of range)."""
    table = np.full((depth + 2, depth), off, dtype=dtype)
    table[np.arange(1, depth + 1), np.arange(depth)] = on
    return b.emit(nn.ConstantOp(table))


def _one_hot_rows(b: Importer, idx: SSAValue, depth: int) -> SSAValue:
    """The row of `_eye_rows` for each integer index: negative indices count
    from the end, out-of-range ones pick a row of `off` (comparison-free:
    integer min/max arithmetic)."""
    k = lambda v: _full_like(b, v, idx)  # noqa: E731
    neg = _binary(b, "min", _binary(b, "max", _binary(b, "sub", k(0), idx), k(0)), k(1))  # idx < 0
    idx = _binary(b, "add", idx, _binary(b, "mul", neg, k(depth)))
    return _binary(b, "add", _binary(b, "min", _binary(b, "max", idx, k(-1)), k(depth)), k(1))


def _move_last_axis(b: Importer, y: SSAValue, axis: int) -> SSAValue:
    rank = len(shape_of(y.type))
    axis %= rank
    if axis == rank - 1:
        return y
    perm = [*range(axis), rank - 1, *range(axis, rank - 1)]
    return b.build(nn.TransposeOp, y, perm)


@op("OneHot")
def _one_hot(b, a):
    idx = b.v(0)
    depth = int(np.asarray(b.static(1)).reshape(-1)[0])
    if depth < 1:
        raise b.error(f"depth must be >= 1, got {depth}")
    axis = a.get("axis", -1)
    rank = len(shape_of(idx.type)) + 1
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for the output's rank {rank}")
    values = b.v(2)
    if idx.type.element_type not in (nn.i64, nn.i32):  # float indices, truncated
        if values.type.element_type != idx.type.element_type:
            raise b.error(f"float indices ({idx.type.element_type}) need values of their type, "
                          f"got {values.type} (ncc has no cast from float to integer)")
        return _move_last_axis(b, _one_hot_float(b, idx, depth, values), axis)
    rows = _one_hot_rows(b, idx, depth)
    if b.node.input[2] in b.consts:  # off/on known: the table holds them
        off, on = np.asarray(b.consts[b.node.input[2]]).reshape(-1)[:2]
        y = b.build(nn.GatherOp, _eye_rows(b, depth, np.asarray(off).dtype, off, on), rows, 0)
    else:
        hot = b.build(nn.GatherOp, _eye_rows(b, depth, nn.numpy_dtype(values.type.element_type)), rows, 0)
        y = _off_on(b, hot, values)
    return _move_last_axis(b, y, axis)


def _off_on(b: Importer, hot: SSAValue, values: SSAValue) -> SSAValue:
    """off + (on - off) * hot, for values = [off, on]."""
    if shape_of(values.type) != (2,):
        raise b.error(f"values must be [off, on], got {values.type}")
    ones = [1] * len(shape_of(hot.type))
    off = _reshape_to(b, b.build(nn.SliceOp, values, [0], [1]), ones)
    on = _reshape_to(b, b.build(nn.SliceOp, values, [1], [2]), ones)
    return _binary(b, "add", _binary(b, "mul", hot, _binary(b, "sub", on, off)), off)


def _one_hot_float(b: Importer, idx: SSAValue, depth: int, values: SSAValue) -> SSAValue:
    """One-hot of float indices (truncated toward zero, as ONNX casts them):
    hot[..., j] = max(1 - |t - j|, 0), exact for integral t."""
    k = lambda v: _full_like(b, v, idx)  # noqa: E731
    t = _binary(b, "add", _u(b, "ceil", _binary(b, "min", idx, k(0))),
                _u(b, "floor", _binary(b, "max", idx, k(0))))
    neg = _binary(b, "min", _binary(b, "max", _u(b, "neg", t), k(0)), k(1))  # t <= -1
    t = _binary(b, "add", t, _binary(b, "mul", neg, k(depth)))
    t = _reshape_to(b, t, [*shape_of(idx.type), 1])
    j = b.emit(nn.ConstantOp(np.arange(depth, dtype=nn.numpy_dtype(idx.type.element_type))))
    one = _full_like(b, 1, t)
    hot = _binary(b, "max", _binary(b, "sub", one, _u(b, "abs", _binary(b, "sub", t, j))),
                  _full_like(b, 0, t))
    return _off_on(b, hot, values)


@op("Hardmax")
def _hardmax(b, a):
    """1 at the first maximum along the axis, else 0: argmax, then the rows of
    an identity table."""
    x = b.v(0)
    shape = shape_of(x.type)
    if b.opset < 13:  # over the flattened dimensions [axis, rank)
        axis = a.get("axis", 1) % max(len(shape), 1)
        flat = _flatten(b, x, axis)
        return b.build(nn.ReshapeOp, _hardmax_last(b, flat), x.type)
    axis = a.get("axis", -1)
    rank = len(shape)
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if shape[axis] == DYN:
        raise b.error(f"the axis {axis} of {x.type} is dynamic")
    moved = x if axis == rank - 1 else b.build(
        nn.TransposeOp, x, [*range(axis), *range(axis + 1, rank), axis])
    return _move_last_axis(b, _hardmax_last(b, moved), axis)


def _hardmax_last(b: Importer, x: SSAValue) -> SSAValue:
    n = shape_of(x.type)[-1]
    idx = b.build(nn.ARG_REDUCE_OPS["argmax"], x, -1)
    eye = b.emit(nn.ConstantOp(np.eye(n, dtype=nn.numpy_dtype(x.type.element_type))))
    return b.build(nn.GatherOp, eye, idx, 0)


@op("LpPool")
def _lp_pool(b, a):
    """(sum over the window of |x|^p)^(1/p): the window sums are a depthwise
    convolution with a kernel of ones (padding adds nothing)."""
    x = b.v(0)
    kernel = list(a["kernel_shape"]) if "kernel_shape" in a else None
    if kernel is None:
        raise b.error("attribute kernel_shape is required")
    p = a.get("p", 2)
    c = shape_of(x.type)[1] if len(shape_of(x.type)) > 2 else DYN
    if c == DYN:
        raise b.error(f"needs an input (N, C, spatial...) with a static C, got {x.type}")
    dil = list(a.get("dilations", [1] * len(kernel)))
    strides, pads = _window(b, a, x, kernel, dil)
    if a.get("ceil_mode", 0):
        pads = _ceil_mode_pads(b, x, kernel, strides, pads, dil)
    powered = _binary(b, "mul", x, x) if p == 2 else _u(b, "abs", x) if p == 1 else \
        _binary(b, "pow", _u(b, "abs", x), _full_like(b, p, x))
    ones = b.emit(nn.ConstantOp(np.ones((c, 1, *kernel), nn.numpy_dtype(x.type.element_type))))
    total = b.build(nn.ConvOp, powered, ones, strides=strides, pads=pads, dilations=dil, group=c)
    if p in (1, 2):
        return total if p == 1 else _u(b, "sqrt", total)
    return _binary(b, "pow", total, _full_like(b, 1 / p, x))


@op("ConvTranspose")
def _conv_transpose(b, a):
    x, w = b.v(0), b.v(1)
    kernel = list(a.get("kernel_shape", shape_of(w.type)[2:]))
    k = len(kernel)
    strides = list(a.get("strides", [1] * k))
    dil = list(a.get("dilations", [1] * k))
    opad = list(a.get("output_padding", [0] * k))
    pads = list(a.get("pads", [0] * 2 * k))
    auto = _str_attr(a, "auto_pad", "NOTSET")
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise b.error(f"unknown auto_pad '{auto}'")
    spatial = shape_of(x.type)[2:]
    base = [(s - 1) * st + (kk - 1) * d + 1 for s, st, kk, d in zip(spatial, strides, kernel, dil)]
    if "output_shape" in a or auto.startswith("SAME"):
        if DYN in spatial:
            raise b.error(f"output_shape and auto_pad need static spatial sizes, got {x.type}")
        out = list(a["output_shape"])[-k:] if "output_shape" in a else \
            [s * st for s, st in zip(spatial, strides)]
        total = [bs + op - o for bs, op, o in zip(base, opad, out)]
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        if auto == "VALID":
            pads = [0] * 2 * k
        begin = pads[:k]
        out = [bs + op - p0 - p1 for bs, op, p0, p1 in zip(base, opad, pads[:k], pads[k:])]
    if min(begin) < 0:
        raise b.error(f"the output shape {out} needs negative begin pads {begin}, which are not supported")
    # The end: cropped by pads, or extended by output_padding.
    end = [bs - p0 - o for bs, p0, o in zip(base, begin, out)]
    y = b.build(nn.ConvTransposeOp, x, w, strides=strides, dilations=dil, group=a.get("group", 1),
                pads=[*begin, *(max(e, 0) for e in end)], output_padding=[max(-e, 0) for e in end])
    if b.has(2):  # bias[c] broadcast over the spatial dimensions
        y = _binary(b, "add", y, b.build(nn.ReshapeOp, b.v(2), [-1] + [1] * k))
    return y


def _floats_input(b: Importer, i: int) -> list[float] | None:
    """An optional float list input (roi, scales); absent or empty: None."""
    if not b.has(i):
        return None
    vals = np.asarray(b.static(i), dtype=np.float64).reshape(-1)
    return [float(v) for v in vals] if vals.size else None


@op("Resize", "Upsample")
def _resize(b, a):
    x = b.v(0)
    shape = list(shape_of(x.type))
    r = len(shape)
    mode = _str_attr(a, "mode", "nearest")
    mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    params: dict[str, Any] = {}
    old = b.node.op_type == "Upsample" or b.opset < 11  # scales only; asymmetric coordinates
    if old:
        scales = list(a["scales"]) if "scales" in a else _floats_input(b, 1)
        sizes, roi = None, None
        params["coordinate_transformation_mode"] = "asymmetric"
    else:
        ctm = _str_attr(a, "coordinate_transformation_mode", "half_pixel")
        params.update(coordinate_transformation_mode=ctm,
                      nearest_mode=_str_attr(a, "nearest_mode", "round_prefer_floor"),
                      cubic_coeff_a=a.get("cubic_coeff_a", -0.75),
                      exclude_outside=bool(a.get("exclude_outside", 0)),
                      antialias=bool(a.get("antialias", 0)),
                      extrapolation_value=a.get("extrapolation_value", 0.0))
        roi = _floats_input(b, 1) if ctm == "tf_crop_and_resize" else None
        scales = _floats_input(b, 2)
        sizes = b.ints(3) if b.has(3) and np.asarray(b.static(3)).size else None
    if (scales is None) == (sizes is None):
        raise b.error("exactly one of scales and sizes must be given")
    axes = [ax % r for ax in a.get("axes", range(r))]
    given = scales if scales is not None else sizes
    if len(given) != len(axes) or (roi is not None and len(roi) != 2 * len(axes)):
        raise b.error(f"{'scales' if scales is not None else 'sizes'} and roi need one value "
                      f"(roi: two) per resized axis ({len(axes)})")
    full_scales, out = [1.0] * r, list(shape)
    if roi is not None:
        full_roi = [0.0] * r + [1.0] * r
        for j, ax in enumerate(axes):
            full_roi[ax], full_roi[ax + r] = roi[j], roi[j + len(axes)]
        params["roi"] = full_roi
    for ax, s in zip(axes, given):
        if shape[ax] == DYN and (sizes is not None or s != 1):
            raise b.error(f"cannot resize the dynamic axis {ax} of {x.type}")
    if scales is not None:
        for ax, s in zip(axes, scales):
            full_scales[ax] = s
            out[ax] = shape[ax] if shape[ax] == DYN else int(np.floor(shape[ax] * s))
    else:
        policy = _str_attr(a, "keep_aspect_ratio_policy", "stretch")
        ratios = [o / shape[ax] for ax, o in zip(axes, sizes)]
        if policy == "stretch":
            for ax, o, s in zip(axes, sizes, ratios):
                full_scales[ax], out[ax] = s, o
        elif policy in ("not_larger", "not_smaller"):
            s = min(ratios) if policy == "not_larger" else max(ratios)
            for ax in axes:
                full_scales[ax], out[ax] = s, int(s * shape[ax] + 0.5)
        else:
            raise b.error(f"unknown keep_aspect_ratio_policy '{policy}'")
    if old and mode == "nearest":  # onnxruntime's rule before opset 11
        down, up = min(full_scales) < 1, max(full_scales) > 1
        if down and up:
            raise b.error(f"scales {full_scales} both up- and downsample (opset {b.opset})")
        params["nearest_mode"] = "ceil" if down else "floor"
    return b.build(nn.ResizeOp, x, out, full_scales, mode, **params)


# ---------------------------------------------------------------------------
# Normalizations and losses: decompositions into reductions, elementwise ops,
# nn.layer_norm and gathers.


def _array(b: Importer, value: Any, like: SSAValue) -> SSAValue:
    """An nn.constant holding `value` in the element type of `like`."""
    return b.emit(nn.ConstantOp(np.asarray(value, dtype=nn.numpy_dtype(like.type.element_type))))


def _tail_axes(b: Importer, x: SSAValue, axis: int) -> list[int]:
    """The axes [axis, rank) of x (axis may be negative)."""
    rank = len(shape_of(x.type))
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range for {x.type}")
    return list(range(axis % rank, rank))


def _mean_over(b: Importer, x: SSAValue, axes: Sequence[int]) -> SSAValue:
    return b.build(nn.REDUCE_OPS["reduce_mean"], x, list(axes), keepdims=True)


def _centered(b: Importer, x: SSAValue, axes: Sequence[int]) -> tuple[SSAValue, SSAValue, SSAValue]:
    """(mean, x - mean, variance) over `axes`, kept as size-1 dimensions."""
    mean = _mean_over(b, x, axes)
    d = _binary(b, "sub", x, mean)
    return mean, d, _mean_over(b, _binary(b, "mul", d, d), axes)


def _layer_norm_stats(b: Importer, x: SSAValue, a: dict) -> list[SSAValue | None]:
    """LayerNormalization's optional outputs Mean and InvStdDev = 1 / sqrt(var + eps)
    over the normalized axes, kept as size-1 dimensions, computed in (and of)
    the stash type (the main output stays one nn.layer_norm)."""
    stash = _np_dtype(a.get("stash_type", 1), "stash_type", b.where)
    if stash != nn.numpy_dtype(x.type.element_type):
        x = b.build(nn.CastOp, x, stash)
    mean, _, var = _centered(b, x, _tail_axes(b, x, a.get("axis", -1)))
    if len(b.node.output) < 3 or not b.node.output[2]:
        return [mean]
    std = _u(b, "sqrt", _binary(b, "add", var, b.scalar(a.get("epsilon", 1e-5), x)))
    return [mean, _u(b, "reciprocal", std)]


@op("RMSNormalization")
def _rms_norm(b, a):
    # x / sqrt(mean(x^2 over [axis, rank)) + eps) * scale
    x, scale = b.v(0), b.v(1)
    ms = _mean_over(b, _binary(b, "mul", x, x), _tail_axes(b, x, a.get("axis", -1)))
    rms = _u(b, "sqrt", _binary(b, "add", ms, b.scalar(a.get("epsilon", 1e-5), x)))
    return _binary(b, "mul", _binary(b, "div", x, rms), scale)


def _standardize(b: Importer, x: SSAValue, axis: int, eps: float) -> SSAValue:
    """(x - mean) / sqrt(var + eps) over the dimensions [axis, rank): one
    nn.layer_norm with a unit scale and a zero bias."""
    inner = shape_of(x.type)[axis:]
    if DYN in inner:
        raise b.error(f"needs static sizes after dimension {axis - 1}, got {x.type}")
    dtype = nn.numpy_dtype(x.type.element_type)
    ones = b.emit(nn.ConstantOp(np.ones(inner, dtype)))
    zeros = b.emit(nn.ConstantOp(np.zeros(inner, dtype)))
    return b.build(nn.LayerNormOp, x, ones, zeros, axis, eps)


def _per_channel(b: Importer, v: SSAValue, rank: int) -> SSAValue:
    """A [C] vector as [C, 1, ...]: broadcast along dimension 1 of a rank-`rank` tensor."""
    return b.build(nn.ReshapeOp, v, [-1] + [1] * (rank - 2))


def _channels_input(b: Importer, x: SSAValue) -> tuple[int, int, list[int]]:
    shape = shape_of(x.type)
    if len(shape) < 3:
        raise b.error(f"the input must be (N, C, spatial...), got {x.type}")
    n, c, *spatial = shape
    if c == DYN or DYN in spatial:
        raise b.error(f"needs static channel and spatial sizes, got {x.type}")
    return n, c, spatial


@op("InstanceNormalization")
def _instance_norm(b, a):
    # per instance and channel over the spatial dimensions, then scale[c], bias[c]
    x, scale, bias = b.v(0), b.v(1), b.v(2)
    _channels_input(b, x)
    rank = len(shape_of(x.type))
    y = _standardize(b, x, 2, a.get("epsilon", 1e-5))
    y = _binary(b, "mul", y, _per_channel(b, scale, rank))
    return _binary(b, "add", y, _per_channel(b, bias, rank))


@op("GroupNormalization")
def _group_norm(b, a):
    # standardized per instance over each group of C/G channels: (N, G, C/G * spatial);
    # scale and bias per channel (opset 21) or per group (opset 18)
    x, scale, bias = b.v(0), b.v(1), b.v(2)
    n, c, spatial = _channels_input(b, x)
    g = a.get("num_groups")
    if not g or c % g:
        raise b.error(f"num_groups {g} must divide the {c} channels")
    grouped = b.build(nn.ReshapeOp, x, [-1 if n == DYN else n, g, c // g * math.prod(spatial)])
    y = _standardize(b, grouped, 2, a.get("epsilon", 1e-5))
    if b.opset < 21:
        y = _binary(b, "mul", y, _per_channel(b, scale, 3))
        return b.build(nn.ReshapeOp, _binary(b, "add", y, _per_channel(b, bias, 3)), x.type)
    rank = len(shape_of(x.type))
    y = _binary(b, "mul", b.build(nn.ReshapeOp, y, x.type), _per_channel(b, scale, rank))
    return _binary(b, "add", y, _per_channel(b, bias, rank))


@op("MeanVarianceNormalization")
def _mvn(b, a):
    # (x - mean) / (sqrt(var) + 1e-9) over `axes`, as the function body of the
    # spec (with the variance of the centered values, which cannot go negative)
    x = b.v(0)
    _, d, var = _centered(b, x, list(a.get("axes", [0, 2, 3])))
    return _binary(b, "div", d, _binary(b, "add", _u(b, "sqrt", var), b.scalar(1e-9, x)))


@op("LpNormalization")
def _lp_norm(b, a):
    # x / ||x||_p along `axis`; an all-zero row (norm 0) gives 0: the norm is
    # at least the smallest normal float, and 0 / that is 0
    x, p, axis = b.v(0), a.get("p", 2), a.get("axis", -1)
    if p not in (1, 2):
        raise b.error(f"p must be 1 or 2, got {p}")
    if not isinstance(x.type.element_type, nn.FLOAT_TYPES):
        raise b.error(f"the input must be a float tensor, got {x.type}")
    terms = _u(b, "abs", x) if p == 1 else _binary(b, "mul", x, x)
    norm = b.build(nn.REDUCE_OPS["reduce_sum"], terms, [axis], keepdims=True)
    if p == 2:
        norm = _u(b, "sqrt", norm)
    tiny = np.finfo(nn.numpy_dtype(x.type.element_type)).tiny
    return _binary(b, "div", x, _binary(b, "max", norm, b.scalar(tiny, x)))


@op("ReduceLogSumExp")
def _reduce_log_sum_exp(b, a):
    # max + log(sum(exp(x - max))): never overflows
    x = b.v(0)
    shape = shape_of(x.type)
    axes = _axes_input(b, a, 1, 18)
    if not axes:
        if axes is not None and a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(len(shape)))
    axes = [ax % len(shape) if -len(shape) <= ax < len(shape) else ax for ax in axes]
    mx = b.build(nn.REDUCE_OPS["reduce_max"], x, axes, keepdims=True)
    s = b.build(nn.REDUCE_OPS["reduce_sum"], _u(b, "exp", _binary(b, "sub", x, mx)), axes,
                keepdims=True)
    y = _binary(b, "add", _u(b, "log", s), mx)
    if a.get("keepdims", 1):
        return y
    return _reshape_to(b, y, [d for i, d in enumerate(shape) if i not in axes])


def _reduction(b: Importer, a: dict) -> str:
    r = a.get("reduction", b"mean")
    r = r.decode() if isinstance(r, bytes) else r
    if r not in ("none", "sum", "mean"):
        raise b.error(f"unknown reduction '{r}' (known: none, sum, mean)")
    return r


def _pick(b: Importer, x: SSAValue, idx: SSAValue) -> SSAValue:
    """x[n, idx[n, d...], d...] for x (N, C, d...) and integer idx (N, d...) in [0, C):
    one gather_elements along the classes."""
    shape = list(shape_of(idx.type))
    lead = [-1 if shape[0] == DYN else shape[0]]
    at = _reshape_to(b, idx, lead + [1] + shape[1:])
    return _reshape_to(b, b.build(nn.GatherElementsOp, x, at, 1), lead + shape[1:])


def _nll(b: Importer, logp: SSAValue, target: SSAValue, weight: SSAValue | None,
         ignore_index: int | None, reduction: str) -> SSAValue:
    """NegativeLogLikelihoodLoss of log-probabilities logp (N, C, d...) at the
    integer labels target (N, d...): loss = -logp[n, target, d...] * weight[target],
    0 where target == ignore_index; reduced by sum, or by the mean weighted by
    the gathered weights. The ignored label is recognised without comparisons:
    a per-class weight table holds 0 at its slot (ignore_index itself when it
    is a class, else one extra slot that a clamp of the labels leads to)."""
    ls, ts = shape_of(logp.type), shape_of(target.type)
    if len(ls) < 2 or len(ts) != len(ls) - 1 or not all(
            nn.dims_compatible(p, q) for p, q in zip(ts, ls[:1] + ls[2:])):
        raise b.error(f"the input (N, C, d...) and the target (N, d...) do not match: "
                      f"{logp.type} and {target.type}")
    if nn.numpy_dtype(target.type.element_type).kind != "i":
        raise b.error(f"the target must hold integer labels, got {target.type}")
    c = ls[1]
    if c == DYN or DYN in ls[2:]:
        raise b.error(f"needs a static number of classes and sizes, got {logp.type}")
    ii = ignore_index
    cls = slot = target
    table = weight
    if ii is not None:
        size = c if 0 <= ii < c else c + 1
        keep = np.ones(size)
        if 0 <= ii < c:
            keep[ii] = 0
        elif ii < 0:  # labels are in [0, C) or ii: max(t, -1) + 1 takes ii to slot 0
            keep[0] = 0
            slot = _binary(b, "add", _binary(b, "max", target, b.scalar(-1, target)), b.scalar(1, target))
            cls = _binary(b, "max", target, b.scalar(0, target))
            if table is not None:
                table = b.build(nn.ConcatOp, [_array(b, [0], table), table], 0)
        else:  # ii >= C: min(t, C) takes ii to slot C
            keep[c] = 0
            slot = _binary(b, "min", target, b.scalar(c, target))
            cls = _binary(b, "min", target, b.scalar(c - 1, target))
            if table is not None:
                table = b.build(nn.ConcatOp, [table, _array(b, [0], table)], 0)
        table = _array(b, keep, logp) if table is None else _binary(b, "mul", table, _array(b, keep, table))
    picked = _pick(b, logp, cls)
    w = None if table is None else b.build(nn.GatherOp, table, slot, 0)
    loss = _u(b, "neg", picked if w is None else _binary(b, "mul", picked, w))
    if reduction == "none":
        return loss
    if reduction == "sum" or w is None:
        return b.build(nn.REDUCE_OPS["reduce_" + reduction], loss, None)
    total = b.build(nn.REDUCE_OPS["reduce_sum"], loss, None)
    return _binary(b, "div", total, b.build(nn.REDUCE_OPS["reduce_sum"], w, None))


@op("NegativeLogLikelihoodLoss")
def _nll_loss(b, a):
    return _nll(b, b.v(0), b.v(1), b.v(2) if b.has(2) else None, a.get("ignore_index"),
                _reduction(b, a))


@op("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(b, a):
    # the negative log-likelihood of log_softmax over the classes (axis 1); the
    # optional second output is that log_softmax
    x = b.v(0)
    if len(shape_of(x.type)) < 2:
        raise b.error(f"the scores must be (N, C, d...), got {x.type}")
    logp = b.build(nn.LogSoftmaxOp, x, 1)
    loss = _nll(b, logp, b.v(1), b.v(2) if b.has(2) else None, a.get("ignore_index"),
                _reduction(b, a))
    return [loss, logp]


# ---------------------------------------------------------------------------
# Attention (opsets 23 to 25) and RotaryEmbedding: matmuls, softmax, reshapes,
# transposes and slices; every mask becomes an additive bias of 0 and -inf.


def _split_heads(b: Importer, x: SSAValue, heads: int) -> SSAValue:
    """(B, S, heads * D) -> (B, heads, S, D)."""
    n, s, hidden = shape_of(x.type)
    if hidden % heads:
        raise b.error(f"the hidden size of {x.type} is not a multiple of {heads} heads")
    x = b.build(nn.ReshapeOp, x, [-1 if n == DYN else n, s, heads, hidden // heads])
    return b.build(nn.TransposeOp, x, [0, 2, 1, 3])


def _frontier(e: np.ndarray, causal: bool, left: int, right: int) -> np.ndarray:
    """Whether a query at position p attends key j, from e = j - p: causally
    (j <= p) and within the windows (p - left <= j <= p + right; -1: unbounded)."""
    ok = np.ones(e.shape, np.bool_)
    if causal:
        ok &= e <= 0
    if left >= 0:
        ok &= -e <= left
    if right >= 0:
        ok &= e <= right
    return ok


def _bias_of(ok: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.where(ok, 0, -np.inf).astype(dtype)


def _attention_bias(b: Importer, a: dict, q_len: int, kv_len: int, past: int,
                    like: SSAValue) -> tuple[SSAValue | None, bool]:
    """The sum of every additive bias (attn_mask, is_causal, the windows,
    nonpad_kv_seqlen's padding) and whether some query row may have no key
    left (a row the softmax must turn into zeros, as the spec asks)."""
    dtype = nn.numpy_dtype(like.type.element_type)
    causal, left, right = (bool(a.get("is_causal", 0)), a.get("left_window_size", -1),
                           a.get("right_window_size", -1))
    static: np.ndarray | None = None  # the constant part
    parts: list[SSAValue] = []  # the computed parts
    j = np.arange(kv_len)
    nonpad = b.v(6) if b.opset >= 24 and b.has(6) else None
    if nonpad is not None:
        # Per batch, keys j < n[b] are valid and query i sits at p = i + n[b] - q_len.
        # nn has no comparisons: both tests are lookups, in constant tables, of
        # integer differences: j - n[b] (padding) and e = j - p (the frontier).
        if past:
            raise b.error("nonpad_kv_seqlen cannot be combined with past_key and past_value")
        if nn.numpy_dtype(nonpad.type.element_type) != np.int64:
            raise b.error(f"nonpad_kv_seqlen must be int64, got {nonpad.type}")
        lens = b.build(nn.ReshapeOp, nonpad, [-1, 1])
        rel = _binary(b, "sub", b.emit(nn.ConstantOp(j + kv_len)), lens)  # j - n + kv_len
        table = _bias_of(np.arange(2 * kv_len) < kv_len, dtype)
        pad = b.build(nn.GatherOp, b.emit(nn.ConstantOp(table)), rel, 0)  # (B, kv)
        parts.append(b.build(nn.ReshapeOp, pad, [-1, 1, 1, kv_len]))
        if causal or left >= 0 or right >= 0:
            lens3 = b.build(nn.ReshapeOp, nonpad, [-1, 1, 1])
            base = j[None, :] - np.arange(q_len)[:, None] + q_len + kv_len - 1  # e + kv_len - 1 + n
            e_idx = _binary(b, "sub", b.emit(nn.ConstantOp(base)), lens3)  # (B, q, kv)
            e = np.arange(2 * kv_len + q_len - 1) - (kv_len - 1)
            table = _bias_of(_frontier(e, causal, left, right), dtype)
            front = b.build(nn.GatherOp, b.emit(nn.ConstantOp(table)), e_idx, 0)
            parts.append(b.build(nn.ReshapeOp, front, [-1, 1, q_len, kv_len]))
    elif causal or left >= 0 or right >= 0:
        static = _bias_of(_frontier(j[None, :] - (np.arange(q_len)[:, None] + past),
                                    causal, left, right), dtype)
    if b.has(3):
        name, mask = b.node.input[3], b.v(3)
        mshape = shape_of(mask.type)
        if not mshape or mshape[-1] == DYN or mshape[-1] > kv_len:
            raise b.error(f"attn_mask {mask.type} does not fit {kv_len} keys")
        short = kv_len - mshape[-1]  # a shorter mask is padded with -inf (or False)
        if mask.type.element_type == nn.i1 and name in b.consts:
            m = _bias_of(np.pad(b.consts[name], [(0, 0)] * (len(mshape) - 1) + [(0, short)]), dtype)
            static = m if static is None else static + m
        else:
            if mask.type.element_type == nn.i1:  # True attends: 0, False: -inf
                mask = b.build(nn.SelectOp, mask, b.scalar(0, like), b.scalar(-np.inf, like))
            if short:
                pads = [0] * (2 * len(mshape))
                pads[-1] = short
                mask = b.build(nn.PadOp, mask, pads, "constant", -np.inf)
            parts.append(mask)
    may_empty = bool(parts) or (static is not None and bool(np.isneginf(static).all(-1).any()))
    bias = None if static is None else b.emit(nn.ConstantOp(static))
    for p in parts:
        bias = p if bias is None else _binary(b, "add", bias, p)
    return bias, may_empty


def _kv_for_q_heads(b: Importer, t: SSAValue, hq: int) -> SSAValue:
    """K or V (B, Hkv, S, D) for hq query heads: GQA's head h reads head h // (hq / Hkv)."""
    hkv = shape_of(t.type)[1]
    if hkv == hq:
        return t
    idx = b.emit(nn.ConstantOp(np.arange(hq, dtype=np.int64) // (hq // hkv)))
    return b.build(nn.GatherOp, t, idx, 1)


def _softmax_or_zero(b: Importer, s: SSAValue) -> SSAValue:
    """Softmax over the last axis, with a row of -inf only giving zeros (not
    NaN): its max is raised to the lowest float, so exp gives 0 and a sum of
    0, which the division by max(sum, tiny) keeps at 0. Any other row has a
    sum >= 1 and is the plain softmax."""
    finfo = np.finfo(nn.numpy_dtype(s.type.element_type))
    mx = b.build(nn.REDUCE_OPS["reduce_max"], s, [-1], keepdims=True)
    e = _u(b, "exp", _binary(b, "sub", s, _binary(b, "max", mx, b.scalar(finfo.min, s))))
    total = b.build(nn.REDUCE_OPS["reduce_sum"], e, [-1], keepdims=True)
    return _binary(b, "div", e, _binary(b, "max", total, b.scalar(finfo.tiny, s)))


@op("Attention")
def _attention(b, a):
    # Y = softmax(softcap(Q K^T * scale) + bias) V per head; 3-D inputs are
    # split into heads first; GQA repeats each K/V head for its group of Q heads.
    # The softmax runs in the inputs' precision (softmax_precision aside).
    q, k, v = b.v(0), b.v(1), b.v(2)
    rank = len(shape_of(q.type))
    if rank not in (3, 4) or any(len(shape_of(t.type)) != rank for t in (k, v)):
        raise b.error(f"Q, K and V must all be 3-D or all 4-D, got {q.type}, {k.type}, {v.type}")
    if rank == 3:
        hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
        if not hq or not hkv:
            raise b.error("3-D inputs need the attributes q_num_heads and kv_num_heads")
        q, k, v = _split_heads(b, q, hq), _split_heads(b, k, hkv), _split_heads(b, v, hkv)
    if b.has(4) != b.has(5):
        raise b.error("past_key and past_value must be given together")
    past = 0
    if b.has(4):
        past = shape_of(b.v(4).type)[2]
        k = b.build(nn.ConcatOp, [b.v(4), k], 2)
        v = b.build(nn.ConcatOp, [b.v(5), v], 2)
    n, hq, q_len, head = shape_of(q.type)
    hkv, kv_len = shape_of(k.type)[1:3]
    if DYN in (hq, q_len, head, hkv, kv_len, past) or hq % hkv:
        raise b.error(f"needs static sizes but the batch and q heads a multiple of kv heads, "
                      f"got Q {q.type} and K {k.type}")
    kx, vx = _kv_for_q_heads(b, k, hq), _kv_for_q_heads(b, v, hq)
    scale = a.get("scale", 1 / math.sqrt(head))
    scores = b.build(nn.MatmulOp, _binary(b, "mul", q, b.scalar(scale, q)),
                     b.build(nn.TransposeOp, kx, [0, 1, 3, 2]))
    stages = [scores]  # qk_matmul_output by mode: 0 raw, 1 softcapped, 2 biased, 3 softmax
    if (cap := a.get("softcap", 0.0)) > 0:
        t = _u(b, "tanh", _binary(b, "div", scores, b.scalar(cap, scores)))
        scores = _binary(b, "mul", t, b.scalar(cap, scores))
    stages.append(scores)
    bias, may_empty = _attention_bias(b, a, q_len, kv_len, past, q)
    if bias is not None:
        scores = _binary(b, "add", scores, bias)
    stages.append(scores)
    probs = _softmax_or_zero(b, scores) if may_empty else b.build(nn.SoftmaxOp, scores, -1)
    stages.append(probs)
    y = b.build(nn.MatmulOp, probs, vx)
    if rank == 3:
        y = b.build(nn.TransposeOp, y, [0, 2, 1, 3])
        y = b.build(nn.ReshapeOp, y, [-1 if n == DYN else n, q_len, hq * shape_of(v.type)[3]])
    mode = a.get("qk_matmul_output_mode", 0)
    if not 0 <= mode <= 3:
        raise b.error(f"qk_matmul_output_mode must be 0 to 3, got {mode}")
    return [y, k, v, stages[mode]]


@op("RotaryEmbedding")
def _rotary_embedding(b, a):
    # The first rotary_embedding_dim features of each head are rotated as
    # pairs (halves, or even/odd with `interleaved`) by the angle whose cos
    # and sin the caches hold at each position; the others pass through.
    x, cos, sin = b.v(0), b.v(1), b.v(2)
    given, shape = x.type, shape_of(x.type)
    n = -1 if shape[0] == DYN else shape[0]
    if len(shape) == 4:  # (B, H, S, D)
        heads, seq, head = shape[1:]
    elif len(shape) == 3:  # (B, S, H * D), viewed as (B, S, H, D)
        heads = a.get("num_heads", 0)
        if not heads or shape[2] % heads:
            raise b.error(f"a 3-D input needs num_heads dividing its hidden size, got {x.type} "
                          f"and num_heads {heads}")
        seq, head = shape[1], shape[2] // heads
        x = b.build(nn.ReshapeOp, x, [n, seq, heads, head])
    else:
        raise b.error(f"the input must be 3-D or 4-D, got {x.type}")
    rot = a.get("rotary_embedding_dim", 0) or head
    half = rot // 2
    if rot % 2 or rot > head:
        raise b.error(f"rotary_embedding_dim {rot} must be even and at most the head size {head}")
    if b.has(3):  # caches indexed by position: (max positions, rot / 2) -> (B, S, rot / 2)
        cos, sin = b.build(nn.GatherOp, cos, b.v(3), 0), b.build(nn.GatherOp, sin, b.v(3), 0)
    for t in (cos, sin):
        if len(shape_of(t.type)) != 3 or shape_of(t.type)[-1] != half:
            raise b.error(f"the cos and sin caches must be (batch, sequence, {half}), got {t.type}")
    at = [-1, 1, seq, half] if len(shape) == 4 else [-1, seq, 1, half]
    cos, sin = b.build(nn.ReshapeOp, cos, at), b.build(nn.ReshapeOp, sin, at)
    if a.get("interleaved", 0):
        x1, x2 = (b.build(nn.SliceOp, x, [s], [rot], [3], [2]) for s in (0, 1))
    else:
        x1, x2 = (b.build(nn.SliceOp, x, [s], [s + half], [3]) for s in (0, half))
    real = _binary(b, "sub", _binary(b, "mul", cos, x1), _binary(b, "mul", sin, x2))
    imag = _binary(b, "add", _binary(b, "mul", sin, x1), _binary(b, "mul", cos, x2))
    lead = list(shape_of(real.type)[:3])
    lead[0] = n
    if a.get("interleaved", 0):
        pairs = [b.build(nn.ReshapeOp, t, [*lead, half, 1]) for t in (real, imag)]
        y = b.build(nn.ReshapeOp, b.build(nn.ConcatOp, pairs, 4), [*lead, rot])
    else:
        y = b.build(nn.ConcatOp, [real, imag], 3)
    if rot < head:
        y = b.build(nn.ConcatOp, [y, b.build(nn.SliceOp, x, [rot], [head], [3])], 3)
    return y if len(shape) == 4 else b.build(nn.ReshapeOp, y, given)


# ---------------------------------------------------------------------------
# Einsum, SwiGLU, CenterCropPad: more decompositions.


def _einsum_labels(b: Importer, equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Each operand's labels and the output's; '...' stands for labels of its
    own (right-aligned across operands: '...0', '...1', ...)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise b.error(f"equation '{equation}' has {len(terms)} operands, the node {len(ranks)}")
    for t in [*terms, rhs]:
        if not re.fullmatch(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*", t):
            raise b.error(f"cannot read the einsum term '{t}' of '{equation}'")
    ell = max((r - len(t) + 3 for t, r in zip(terms, ranks) if "..." in t), default=0)

    def expand(term: str, rank: int) -> list[str]:
        head, dots, tail = term.partition("...")
        k = rank - len(head) - len(tail) if dots else 0
        if k < 0 or (not dots and len(term) != rank):
            raise b.error(f"einsum term '{term}' does not fit an operand of rank {rank}")
        return [*head, *(f"...{i}" for i in range(ell - k, ell)), *tail]

    labels = [expand(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        out = expand(rhs, len(rhs) - 3 + ell if "..." in rhs else len(rhs))
    else:  # implicit: the broadcast labels, then the labels used once, sorted
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                counts[lab] = counts.get(lab, 0) + 1
        out = [f"...{i}" for i in range(ell)] + sorted(x for x, c in counts.items() if c == 1 and len(x) == 1)
    if len(set(out)) != len(out) or not set(out) <= {x for ls in labels for x in ls}:
        raise b.error(f"the output of einsum '{equation}' repeats a label or has one no operand has")
    return labels, out


def _einsum_diagonals(b: Importer, x: SSAValue, labels: list[str]) -> tuple[SSAValue, list[str]]:
    """A label repeated within one operand takes the diagonal: both axes moved
    last, merged, and sliced with a step of n + 1."""
    while len(set(labels)) != len(labels):
        lab = next(x for x in labels if labels.count(x) > 1)
        i = labels.index(lab)
        j = labels.index(lab, i + 1)
        shape = shape_of(x.type)
        n = shape[i]
        if n == DYN or shape[j] != n:
            raise b.error(f"the diagonal of label '{lab}' needs equal static sizes, got {x.type}")
        others = [k for k in range(len(labels)) if k not in (i, j)]
        x = b.build(nn.TransposeOp, x, [*others, i, j])
        x = _reshape_to(b, x, [-1 if shape[k] == DYN else shape[k] for k in others] + [n * n])
        x = b.build(nn.SliceOp, x, [0], [n * n], [-1], [n + 1])
        labels = [labels[k] for k in others] + [lab]
    return x, labels


def _einsum_sum(b: Importer, x: SSAValue, labels: list[str], keep: set[str]) -> tuple[SSAValue, list[str]]:
    axes = [i for i, lab in enumerate(labels) if lab not in keep]
    if axes:
        x = b.build(nn.REDUCE_OPS["reduce_sum"], x, axes)
        labels = [lab for lab in labels if lab in keep]
    return x, labels


def _permuted(b: Importer, x: SSAValue, labels: list[str], order: list[str]) -> SSAValue:
    perm = [labels.index(lab) for lab in order]
    return x if perm == list(range(len(perm))) else b.build(nn.TransposeOp, x, perm)


def _einsum_pair(b: Importer, x: SSAValue, xl: list[str], y: SSAValue, yl: list[str],
                 keep: set[str]) -> tuple[SSAValue, list[str]]:
    """x and y contracted over their shared labels not in `keep`, as one
    batched matmul (batch..., left..., shared) @ (batch..., 1..., shared, right):
    x's own labels stay dimensions (the last is the matmul's rows, the others
    broadcast), so a dynamic batch among them stays dimension 0; the shared
    labels merge, and so do y's own (the operands swap if y holds the batch)."""
    if any(d == DYN for lab, d in zip(yl, shape_of(y.type)) if lab not in xl):
        x, xl, y, yl = y, yl, x, xl
    batch = [lab for lab in xl if lab in yl and lab in keep]
    shared = [lab for lab in xl if lab in yl and lab not in keep]
    left = [lab for lab in xl if lab not in yl]
    right = [lab for lab in yl if lab not in xl]
    xs, ys = dict(zip(xl, shape_of(x.type))), dict(zip(yl, shape_of(y.type)))
    if any(xs[lab] != ys[lab] for lab in shared):
        raise b.error(f"einsum: the summed labels {shared} have sizes "
                      f"{[xs[lab] for lab in shared]} and {[ys[lab] for lab in shared]}")

    def dims(sizes: dict[str, int], labels: list[str]) -> list[int]:
        return [-1 if sizes[lab] == DYN else sizes[lab] for lab in labels]

    k = math.prod(xs[lab] for lab in shared)
    rows = dims(xs, left) or [1]
    x = _reshape_to(b, _permuted(b, x, xl, batch + left + shared), dims(xs, batch) + rows + [k])
    y = _reshape_to(b, _permuted(b, y, yl, batch + shared + right),
                    dims(ys, batch) + [1] * (len(rows) - 1) + [k, math.prod(ys[lab] for lab in right)])
    z = b.build(nn.MatmulOp, x, y)
    out = [-1 if d == DYN else d for d in shape_of(z.type)[:len(batch) + len(left)]]
    return _reshape_to(b, z, out + dims(ys, right)), batch + left + right


@op("Einsum")
def _einsum(b, a):
    # diagonals and labels of one operand only are summed first; then the
    # operands are contracted pairwise, left to right, by batched matmuls;
    # last, the labels not in the output are summed and the rest permuted
    eq = a["equation"].decode() if isinstance(a["equation"], bytes) else a["equation"]
    xs = [b.v(i) for i in range(len(b.node.input))]
    labels, out = _einsum_labels(b, eq, [len(shape_of(x.type)) for x in xs])
    ops = [_einsum_diagonals(b, x, ls) for x, ls in zip(xs, labels)]
    acc, acc_l = ops[0]
    for i in range(1, len(ops) + 1):
        later = {lab for _, ls in ops[i + 1:] for lab in ls} | set(out)
        if i == len(ops):
            acc, acc_l = _einsum_sum(b, acc, acc_l, set(out))
            break
        y, yl = ops[i]
        acc, acc_l = _einsum_sum(b, acc, acc_l, later | set(yl))
        y, yl = _einsum_sum(b, y, yl, later | set(acc_l))
        acc, acc_l = _einsum_pair(b, acc, acc_l, y, yl, later)
    return _permuted(b, acc, acc_l, out)


def _swish_gate(b: Importer, x: SSAValue, alpha: float) -> SSAValue:
    """x * sigmoid(alpha * x): nn.silu when alpha is 1."""
    if np.float32(alpha) == np.float32(1.0):
        return _u(b, "silu", x)
    return _binary(b, "mul", x, _u(b, "sigmoid", _binary(b, "mul", x, b.scalar(alpha, x))))


# Swish, unless an earlier entry of the table already imports it
OPS.setdefault("Swish", lambda b, a: _swish_gate(b, b.v(0), a.get("alpha", 1.0)))


@op("SwiGLU")
def _swiglu(b, a):
    # swish(A) * B, A and B of one shape
    x, y = b.v(0), b.v(1)
    if shape_of(x.type) != shape_of(y.type):
        raise b.error(f"A and B must have one shape, got {x.type} and {y.type}")
    return _binary(b, "mul", _swish_gate(b, x, a.get("alpha", 1.0)), y)


@op("CenterCropPad")
def _center_crop_pad(b, a):
    # per axis: a centered slice when the input is longer, zero padding (the
    # extra one at the end) when it is shorter
    x = b.v(0)
    shape = shape_of(x.type)
    target = b.ints(1)
    axes = [ax % len(shape) for ax in a.get("axes", range(len(shape)))]
    if len(target) != len(axes):
        raise b.error(f"shape {target} must have one size per axis {axes}")
    pads = [0] * (2 * len(shape))
    for ax, t in zip(axes, target):
        n = shape[ax]
        if n == DYN:
            raise b.error(f"cannot crop or pad the dynamic axis {ax} of {x.type}")
        if n > t:
            x = b.build(nn.SliceOp, x, [(n - t) // 2], [(n - t) // 2 + t], [ax])
        elif n < t:
            pads[ax], pads[ax + len(shape)] = (t - n) // 2, t - n - (t - n) // 2
    return b.build(nn.PadOp, x, pads) if any(pads) else x


@op("CausalConvWithState")
def _causal_conv_with_state(b, a):
    # a depthwise conv over the input with the past state (or zeros) before it;
    # the present state is the last k - 1 positions of that padded input
    x, w = b.v(0), b.v(1)
    shape, wshape = shape_of(x.type), shape_of(w.type)
    if len(shape) != 3 or len(wshape) != 3 or DYN in shape[1:] or DYN in wshape:
        raise b.error(f"the input must be (batch, channels, length) and the weight (channels, 1, k), "
                      f"with static sizes but the batch: got {x.type} and {w.type}")
    c, k = shape[1], wshape[2]
    act = a.get("activation", b"none")
    act = act.decode() if isinstance(act, bytes) else act
    if act not in ("none", "silu", "swish"):
        raise b.error(f"unknown activation '{act}' (known: none, silu, swish)")
    if b.has(3):
        padded = b.build(nn.ConcatOp, [b.v(3), x], 2)
    else:
        padded = b.build(nn.PadOp, x, [0, 0, k - 1, 0, 0, 0])
    y = b.build(nn.ConvOp, padded, w, group=c)
    if b.has(2):
        y = _binary(b, "add", y, _per_channel(b, b.v(2), 3))
    if act != "none":
        y = _u(b, "silu", y)
    total = shape_of(padded.type)[2]
    return [y, b.build(nn.SliceOp, padded, [total - (k - 1)], [total], [2])]


UNROLLED_STEPS = 256  # recurrences (LinearAttention, RNN, GRU, LSTM) are unrolled: at most this many steps


@op("LinearAttention")
def _linear_attention(b, a):
    # The recurrence over the T tokens, unrolled (T is static): per token, with
    # S (B, Hkv, dk, dv), k_t and v_t as rows of their heads:
    #   gated: S *= exp(g_t)            delta: v_t = beta_t * (v_t - k_t S)
    #   S += k_t^T v_t                  o_t = scale * q_t S (GQA: each group of
    # q heads as the rows of one matmul with its kv head's state)
    q, k, v = b.v(0), b.v(1), b.v(2)
    rule = a.get("update_rule", b"gated_delta")
    rule = rule.decode() if isinstance(rule, bytes) else rule
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise b.error(f"unknown update_rule '{rule}' (known: linear, gated, delta, gated_delta)")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != b.has(4) or delta != b.has(5):
        raise b.error(f"update_rule '{rule}' {'needs' if gated else 'takes no'} decay and "
                      f"{'needs' if delta else 'takes no'} beta")
    hq, hkv = a.get("q_num_heads", 0), a.get("kv_num_heads", 0)
    shapes = [shape_of(t.type) for t in (q, k, v)]
    if hq <= 0 or hkv <= 0 or hq % hkv or any(len(s) != 3 or DYN in s[1:] for s in shapes):
        raise b.error(f"needs q_num_heads a multiple of kv_num_heads and (B, T, heads * d) inputs "
                      f"with static sizes but the batch, got {q.type}, {k.type}, {v.type}")
    n, steps = shapes[0][:2]
    if steps > UNROLLED_STEPS:
        raise b.error(f"{steps} tokens: the recurrence is unrolled, at most {UNROLLED_STEPS}")
    dk, dv, g = shapes[0][2] // hq, shapes[2][2] // hkv, hq // hkv
    lead = -1 if n == DYN else n

    def token(x: SSAValue, i: int, dims: list[int]) -> SSAValue:
        return b.build(nn.ReshapeOp, b.build(nn.SliceOp, x, [i], [i + 1], [1]), [lead, *dims])

    state = b.v(3) if b.has(3) else None  # None: zeros, so far
    if gated:
        decay = _u(b, "exp", b.v(4))
        dg = shape_of(decay.type)[2] // hkv
    if delta:
        beta, hb = b.v(5), shape_of(b.v(5).type)[2]
    scale = a.get("scale", 0.0) or 1 / math.sqrt(dk)
    outs = []
    for i in range(steps):
        v_t = token(v, i, [hkv, 1, dv])
        if gated and state is not None:
            state = _binary(b, "mul", state, token(decay, i, [hkv, dg, 1]))
        if delta:
            err = v_t if state is None else _binary(
                b, "sub", v_t, b.build(nn.MatmulOp, token(k, i, [hkv, 1, dk]), state))
            v_t = _binary(b, "mul", token(beta, i, [hb, 1, 1]), err)
        outer = b.build(nn.MatmulOp, token(k, i, [hkv, dk, 1]), v_t)
        state = outer if state is None else _binary(b, "add", state, outer)
        o = b.build(nn.MatmulOp, token(q, i, [hkv, g, dk]), state)
        outs.append(b.build(nn.ReshapeOp, o, [lead, 1, hq * dv]))
    y = outs[0] if steps == 1 else b.build(nn.ConcatOp, outs, 1)
    return [_binary(b, "mul", y, b.scalar(scale, y)), state]


# RNN, GRU and LSTM: the recurrence unrolled over the (static) sequence, with
# the input projections of all steps done first as one matmul per gate.

# ONNX activation name -> (default alpha, default beta, f(b, x, alpha, beta));
# None: the function takes no such value
RNN_ACTIVATIONS: dict[str, tuple[float | None, float | None, Callable[..., SSAValue]]] = {
    "Sigmoid": (None, None, lambda b, x, al, be: _u(b, "sigmoid", x)),
    "Tanh": (None, None, lambda b, x, al, be: _u(b, "tanh", x)),
    "Relu": (None, None, lambda b, x, al, be: _u(b, "relu", x)),
    "Softsign": (None, None, lambda b, x, al, be: COMPOSITE["Softsign"](b, x, {})),
    "Softplus": (None, None, lambda b, x, al, be: _u(b, "softplus", x)),
    "LeakyRelu": (0.01, None, lambda b, x, al, be: _binary(
        b, "add", _u(b, "relu", x), _binary(b, "mul", _binary(b, "min", x, _k(b, x, 0)), _k(b, x, al)))),
    "ThresholdedRelu": (1.0, None, lambda b, x, al, be: _binary(
        b, "mul", x, _u(b, "step", _binary(b, "sub", x, _k(b, x, al))))),
    "Elu": (1.0, None, lambda b, x, al, be: _elu_of(b, x, al)),
    "HardSigmoid": (0.2, 0.5, lambda b, x, al, be: _hard_sigmoid(b, x, al, be)),
    "Affine": (1.0, 0.0, lambda b, x, al, be: _binary(b, "add", _binary(b, "mul", x, _k(b, x, al)),
                                                       _k(b, x, be))),
    "ScaledTanh": (1.0, 1.0, lambda b, x, al, be: _binary(
        b, "mul", _u(b, "tanh", _binary(b, "mul", x, _k(b, x, be))), _k(b, x, al))),
}
RNN_DEFAULTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
RNN_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}  # gate order: RNN i, GRU z r h, LSTM i o f c


def _rnn_activations(b: Importer, a: dict, kind: str, dirs: int) -> list[list[Callable]]:
    """Each direction's activation functions; activation_alpha/beta are taken
    in order by the functions that have such a parameter."""
    names = [n.decode() if isinstance(n, bytes) else n for n in a.get("activations", [])]
    per = len(RNN_DEFAULTS[kind])
    names = names or RNN_DEFAULTS[kind] * dirs
    if len(names) != per * dirs:
        raise b.error(f"{kind} takes {per * dirs} activations here, got {len(names)}")
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    by_lower = {k.lower(): k for k in RNN_ACTIVATIONS}
    fns = []
    for name in names:
        if name.lower() not in by_lower:
            raise b.error(f"unknown activation '{name}' (known: {', '.join(RNN_ACTIVATIONS)})")
        da, db, f = RNN_ACTIVATIONS[by_lower[name.lower()]]
        al = alphas.pop(0) if da is not None and alphas else da
        be = betas.pop(0) if db is not None and betas else db
        fns.append(lambda x, f=f, al=al, be=be: f(b, x, al, be))
    return [fns[d * per:(d + 1) * per] for d in range(dirs)]


def _recurrent(kind: str) -> Conv:
    def f(b, a):
        x, w, r = b.v(0), b.v(1), b.v(2)
        layout = a.get("layout", 0)
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "reverse", "bidirectional"):
            raise b.error(f"unknown direction '{direction}' (known: forward, reverse, bidirectional)")
        dirs, gates, hid = 2 if direction == "bidirectional" else 1, RNN_GATES[kind], a.get("hidden_size")
        xs = shape_of(x.type)
        if len(xs) != 3 or DYN in xs[layout:] or not hid:
            order = "(batch, seq, input)" if layout else "(seq, batch, input)"
            raise b.error(f"needs hidden_size and an input {order} with static sizes"
                          f"{' but the batch' if layout else ''}, got {x.type}")
        steps, n, isize = (xs[1], xs[0], xs[2]) if layout else xs
        if steps > UNROLLED_STEPS:
            raise b.error(f"{steps} steps: the recurrence is unrolled, at most {UNROLLED_STEPS}")
        for what, t, shape in (("W", w, [dirs, gates * hid, isize]), ("R", r, [dirs, gates * hid, hid])):
            if list(shape_of(t.type)) != shape:
                raise b.error(f"{what} must be {nn.fmt_shape(shape)}, got {t.type}")
        # Every state is (1, N, H) in layout 0 and (N, 1, H) in layout 1: a step
        # of the input projections, sliced along the sequence axis, has that shape.
        lead, taxis = -1 if n == DYN else n, layout
        acts = _rnn_activations(b, a, kind, dirs)
        clip = a.get("clip")
        lbr, coupled = a.get("linear_before_reset", 0), a.get("input_forget", 0)
        opt = lambda i: b.v(i) if b.has(i) else None  # noqa: E731
        bias, lens, h0, c0 = opt(3), opt(4), opt(5), opt(6) if kind == "LSTM" else None
        peep = opt(7) if kind == "LSTM" else None
        if lens is not None:  # step t counts for batch entry j iff t < lens[j]: a lookup at t - lens + T
            steps_table = _array(b, (np.arange(2 * steps + 1) < steps).astype(np.float64), x)

        def rows(v: SSAValue, d: int, start: int, size: int) -> SSAValue:
            """v[d, start:start + size] of a (dirs, rows, ...) tensor, without the dirs axis."""
            v = b.build(nn.SliceOp, v, [d, start], [d + 1, start + size], [0, 1])
            return b.build(nn.ReshapeOp, v, list(shape_of(v.type)[1:]))

        def gate(v: SSAValue, g: int, count: int = 1) -> SSAValue:
            return b.build(nn.SliceOp, v, [g * hid], [(g + count) * hid], [-1])

        def cl(v: SSAValue) -> SSAValue:
            if clip is None:
                return v
            return _binary(b, "min", _binary(b, "max", v, b.scalar(-clip, v)), b.scalar(clip, v))

        def plus_matmul(v: SSAValue, state: SSAValue | None, weight: SSAValue) -> SSAValue:
            return v if state is None else _binary(b, "add", v, b.build(nn.MatmulOp, state, weight))

        ys, hs, cs = [], [], []
        for d in range(dirs):
            fa, ga, ha = (acts[d] + [None, None])[:3]
            wt = b.build(nn.TransposeOp, rows(w, d, 0, gates * hid), [1, 0])  # (I, G*H)
            rt = b.build(nn.TransposeOp, rows(r, d, 0, gates * hid), [1, 0])  # (H, G*H)
            xw = b.build(nn.MatmulOp, x, wt)  # every step's input projection
            rec_h_bias = None
            if bias is not None:  # Wb + Rb, but GRU's Rb_h with linear_before_reset stays inside r * (...)
                rb = rows(bias, d, gates * hid, gates * hid)
                if kind == "GRU" and lbr:
                    rec_h_bias = gate(rb, 2)
                    rb = _binary(b, "mul", rb, _array(b, np.repeat([1, 1, 0], hid), rb))
                xw = _binary(b, "add", xw, _binary(b, "add", rows(bias, d, 0, gates * hid), rb))
            if kind == "GRU":
                rt_zr, rt_h = (b.build(nn.SliceOp, rt, [s], [e], [1])
                               for s, e in ((0, 2 * hid), (2 * hid, 3 * hid)))
            h = b.build(nn.SliceOp, h0, [d], [d + 1], [taxis]) if h0 is not None else None  # None: zeros
            c = b.build(nn.SliceOp, c0, [d], [d + 1], [taxis]) if c0 is not None else None
            outs: list[SSAValue | None] = [None] * steps
            for t in (range(steps - 1, -1, -1) if direction == "reverse" or d == 1 else range(steps)):
                xt = b.build(nn.SliceOp, xw, [t], [t + 1], [taxis])
                c_new = None
                if kind == "RNN":
                    h_new = fa(cl(plus_matmul(xt, h, rt)))
                elif kind == "GRU":
                    zr = plus_matmul(gate(xt, 0, 2), h, rt_zr)
                    z, rr = fa(cl(gate(zr, 0))), fa(cl(gate(zr, 1)))
                    if lbr:  # r * (h R_h + Rb_h)
                        rec = None if h is None else b.build(nn.MatmulOp, h, rt_h)
                        if rec_h_bias is not None:
                            rec = rec_h_bias if rec is None else _binary(b, "add", rec, rec_h_bias)
                        cand = gate(xt, 2) if rec is None else _binary(
                            b, "add", gate(xt, 2), _binary(b, "mul", rr, rec))
                    else:  # (r * h) R_h
                        cand = plus_matmul(gate(xt, 2), None if h is None else _binary(b, "mul", rr, h), rt_h)
                    cand = ga(cl(cand))
                    # (1 - z) * cand + z * h
                    h_new = _binary(b, "sub", cand, _binary(b, "mul", z, cand)) if h is None else \
                        _binary(b, "add", cand, _binary(b, "mul", z, _binary(b, "sub", h, cand)))
                else:  # LSTM: gates i o f c, peepholes i o f
                    pre = plus_matmul(xt, h, rt)
                    gi, go, gf, gc = (gate(pre, g) for g in range(4))
                    if peep is not None and c is not None:
                        gi = _binary(b, "add", gi, _binary(b, "mul", rows(peep, d, 0, hid), c))
                        gf = _binary(b, "add", gf, _binary(b, "mul", rows(peep, d, 2 * hid, hid), c))
                    gi = fa(cl(gi))
                    gf = _binary(b, "sub", b.scalar(1, gi), gi) if coupled else fa(cl(gf))
                    c_new = _binary(b, "mul", gi, ga(cl(gc)))
                    if c is not None:
                        c_new = _binary(b, "add", c_new, _binary(b, "mul", gf, c))
                    if peep is not None:
                        go = _binary(b, "add", go, _binary(b, "mul", rows(peep, d, hid, hid), c_new))
                    h_new = _binary(b, "mul", fa(cl(go)), ha(c_new))
                if lens is not None:  # past a sequence's end: output 0, the states kept
                    at = _binary(b, "sub", b.scalar(t + steps, lens), lens)
                    m = b.build(nn.ReshapeOp, b.build(nn.GatherOp, steps_table, at, 0),
                                [lead, 1, 1] if layout else [1, lead, 1])
                    outs[t] = _binary(b, "mul", m, h_new)
                    h = outs[t] if h is None else _binary(
                        b, "add", h, _binary(b, "mul", m, _binary(b, "sub", h_new, h)))
                    if c_new is not None:
                        c = _binary(b, "mul", m, c_new) if c is None else _binary(
                            b, "add", c, _binary(b, "mul", m, _binary(b, "sub", c_new, c)))
                else:
                    outs[t], h, c = h_new, h_new, c_new
            if b.node.output and b.node.output[0]:  # Y: (T, dirs, N, H) or (N, T, dirs, H)
                y = outs[0] if steps == 1 else b.build(nn.ConcatOp, outs, taxis)
                ys.append(b.build(nn.ReshapeOp, y,
                                  [lead, steps, 1, hid] if layout else [steps, 1, lead, hid]))
            hs.append(h)
            cs += [c] if c is not None else []

        def join(vs: list[SSAValue], axis: int) -> SSAValue | None:
            return None if not vs else vs[0] if len(vs) == 1 else b.build(nn.ConcatOp, vs, axis)

        return [join(ys, 2 if layout else 1), join(hs, taxis), join(cs, taxis)]
    return f


OPS.update({"RNN": _recurrent("RNN"), "GRU": _recurrent("GRU"), "LSTM": _recurrent("LSTM")})


def _subgraph(b: Importer, g: Any, inputs: Sequence[SSAValue | np.ndarray], what: str) -> list[SSAValue]:
    """The outputs of a graph attribute on `inputs` (values, or arrays known at
    import time): its nodes imported in place, as the main graph's are
    (constants folded); names it does not define come from the enclosing graph."""
    import onnx
    from onnx import numpy_helper

    if len(g.input) != len(inputs):
        raise b.error(f"the {what} subgraph must take {len(inputs)} inputs, it takes {len(g.input)}")
    for o in g.output:
        kind = o.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):
            raise b.error(f"the {what} subgraph returns a {kind.replace('_type', '')} ('{o.name}'); "
                          "ncc imports tensors only")
    local = ([i.name for i in g.input] + [t.name for t in g.initializer]
             + [o for n in g.node for o in n.output])
    saved = {k: (b.values.pop(k, None), b.consts.pop(k, None)) for k in local}
    node = b.node
    try:
        for i, v in zip(g.input, inputs):
            if isinstance(v, np.ndarray):
                b.consts[i.name] = v
            else:
                b.values[i.name] = v
        for t in g.initializer:
            b.consts[t.name] = numpy_helper.to_array(t)
            b.from_initializers.add(t.name)
        for n in g.node:
            b.node = n
            key = op_key(n)
            if b.foldable(n):
                if b.fold(n, required=key not in OPS):
                    continue
            if key not in OPS:
                raise b.error(f"ncc does not import {key} (in the {what} subgraph)")
            outs = OPS[key](b, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            if outs is None:
                continue
            for name, val in zip(n.output, outs if isinstance(outs, (list, tuple)) else [outs]):
                if name:
                    b.values[name] = val
        b.node = node
        results = []
        for o in g.output:
            if o.name not in b.values and o.name not in b.consts:
                raise b.error(f"the {what} subgraph does not compute its output '{o.name}'")
            results.append(b.values[o.name] if o.name in b.values else b.weight(o.name))
    finally:
        b.node = node
        for k, (val, const) in saved.items():
            b.values.pop(k, None)
            b.consts.pop(k, None)
            if val is not None:
                b.values[k] = val
            if const is not None:
                b.consts[k] = const
    return results


@op("ai.onnx.preview.FlexAttention")
def _flex_attention(b, a):
    # softmax(score_mod(Q K^T * scale)), prob_mod applied, times V; the
    # modifiers are subgraphs imported in place (the softmax runs in the
    # inputs' precision)
    q, k, v = b.v(0), b.v(1), b.v(2)
    if any(len(shape_of(t.type)) != 4 for t in (q, k, v)):
        raise b.error(f"Q, K and V must be 4-D, got {q.type}, {k.type}, {v.type}")
    hq, head, hkv = shape_of(q.type)[1], shape_of(q.type)[3], shape_of(k.type)[1]
    if DYN in (hq, head, hkv) or hq % hkv:
        raise b.error(f"the q heads must be a multiple of the kv heads, got {q.type} and {k.type}")
    scale = a.get("scale", 1 / math.sqrt(head))
    scores = b.build(nn.MatmulOp, _binary(b, "mul", q, b.scalar(scale, q)),
                     b.build(nn.TransposeOp, _kv_for_q_heads(b, k, hq), [0, 1, 3, 2]))
    if "score_mod" in a:
        scores, = _subgraph(b, a["score_mod"], [scores], "score_mod")
    probs = b.build(nn.SoftmaxOp, scores, -1)
    if "prob_mod" in a:
        probs, = _subgraph(b, a["prob_mod"], [probs], "prob_mod")
    return b.build(nn.MatmulOp, probs, _kv_for_q_heads(b, v, hq))


# Control flow with static trip counts: Scan unrolled, If on a constant
# condition; their bodies are imported in place.


@op("Scan")
def _scan(b, a):
    # per step t: the body maps (states, the t-th slices of the scan inputs)
    # to (new states, per-step outputs), which are stacked along their axes
    if b.opset < 9:
        raise b.error("Scan of opset 8 (with a batch axis and sequence_lens) is not supported")
    body, m = a["body"], a["num_scan_inputs"]
    ins = [b.v(i) for i in range(len(b.node.input))]
    n_state = len(ins) - m
    states, scans = ins[:n_state], ins[n_state:]
    k = len(body.output) - n_state
    in_axes = [ax % len(shape_of(x.type)) for ax, x in zip(a.get("scan_input_axes", [0] * m), scans)]
    in_rev = a.get("scan_input_directions", [0] * m)
    out_axes, out_rev = a.get("scan_output_axes", [0] * k), a.get("scan_output_directions", [0] * k)
    lengths = {shape_of(x.type)[ax] for x, ax in zip(scans, in_axes)}
    if len(lengths) != 1 or DYN in lengths:
        raise b.error(f"the scan inputs must have one static length, got {sorted(lengths)}")
    steps = lengths.pop()
    if steps > UNROLLED_STEPS:
        raise b.error(f"{steps} steps: Scan is unrolled, at most {UNROLLED_STEPS}")
    per_step: list[list[SSAValue]] = [[] for _ in range(k)]
    for t in range(steps):
        slices = []
        for x, ax, rev in zip(scans, in_axes, in_rev):
            i = steps - 1 - t if rev else t
            shape = [d for j, d in enumerate(shape_of(x.type)) if j != ax]
            slices.append(_reshape_to(b, b.build(nn.SliceOp, x, [i], [i + 1], [ax]), shape))
        outs = _subgraph(b, body, states + slices, "Scan body")
        states = outs[:n_state]
        for j, y in enumerate(outs[n_state:]):
            per_step[j].append(y)
    stacked = []
    for ys, ax, rev in zip(per_step, out_axes, out_rev):
        shape = list(shape_of(ys[0].type))
        ax %= len(shape) + 1
        parts = [_reshape_to(b, y, shape[:ax] + [1] + shape[ax:]) for y in (ys[::-1] if rev else ys)]
        stacked.append(parts[0] if len(parts) == 1 else b.build(nn.ConcatOp, parts, ax))
    return states + stacked


@op("If")
def _if(b, a):
    # the branch the (import-time) condition selects
    cond = np.asarray(b.static(0)).reshape(-1)
    if cond.size != 1:
        raise b.error(f"the condition must hold one value, got {cond.size}")
    branch = "then_branch" if cond[0] else "else_branch"
    return _subgraph(b, a[branch], [], branch)


# Fourier transforms: one matmul (DFT) or one strided conv (STFT) with a
# constant matrix of cosines and sines.


def _dft_matrix(n_in: int, c_in: int, length: int, inverse: bool, onesided: bool
                ) -> tuple[np.ndarray, int, int]:
    """(M, bins, c_out): the transform of a signal of n_in points (c_in = 1
    real, 2 complex, interleaved: row n * c_in + j) as x @ M, bins of c_out
    interleaved components (column k * c_out + j). The signal is cut or
    zero-padded to `length` points; the inverse one-sided transform (IRFFT)
    takes bins 0..length/2 of a Hermitian spectrum to a real signal."""
    irfft = inverse and onesided
    bins = length if inverse else (length // 2 + 1 if onesided else length)
    used = min(n_in, length // 2 + 1 if irfft else length)
    n = np.arange(used)[:, None]
    theta = 2 * np.pi * n * np.arange(bins)[None, :] / length
    cos, sin = np.cos(theta), np.sin(theta)
    c_out = 1 if irfft else 2
    m = np.zeros((n_in, c_in, bins, c_out))
    if irfft:  # x_k = sum_n w_n (Re X_n cos - Im X_n sin) / L; w = 1 at 0 and at L/2
        w = np.where((n == 0) | (2 * n == length), 1.0, 2.0) / length
        m[:used, 0, :, 0], m[:used, 1, :, 0] = w * cos, -w * sin
    elif inverse:  # (Re + i Im)(cos + i sin) / L
        m[:used, 0, :, 0], m[:used, 0, :, 1] = cos / length, sin / length
        if c_in == 2:
            m[:used, 1, :, 0], m[:used, 1, :, 1] = -sin / length, cos / length
    else:  # (Re + i Im)(cos - i sin)
        m[:used, 0, :, 0], m[:used, 0, :, 1] = cos, -sin
        if c_in == 2:
            m[:used, 1, :, 0], m[:used, 1, :, 1] = sin, cos
    return m.reshape(n_in * c_in, bins * c_out), bins, c_out


@op("DFT")
def _dft(b, a):
    # the signal axis moved next to the components, merged with them, times M
    x = b.v(0)
    shape = list(shape_of(x.type))
    r = len(shape)
    axis = (b.ints(2)[0] if b.has(2) else -2) if b.opset >= 20 else a.get("axis", 1)
    if not (-r <= axis <= -2 or 0 <= axis <= r - 2) or shape[-1] not in (1, 2):
        raise b.error(f"needs a signal (..., 1 or 2) and an axis before the last, got {x.type} "
                      f"and axis {axis}")
    axis %= r
    inverse, onesided = bool(a.get("inverse", 0)), bool(a.get("onesided", 0))
    c_in, n_in = shape[-1], shape[axis]
    if n_in == DYN or DYN in shape[1:]:
        raise b.error(f"needs static sizes but the batch, got {x.type}")
    if onesided and (c_in == 2) == (not inverse):
        raise b.error("a one-sided DFT takes a real signal, its inverse a complex one")
    length = b.ints(1)[0] if b.has(1) else (2 * (n_in - 1) if inverse and onesided else n_in)
    if length < 1:
        raise b.error(f"dft_length must be positive, got {length}")
    m, bins, c_out = _dft_matrix(n_in, c_in, length, inverse, onesided)
    perm = [i for i in range(r - 1) if i != axis] + [axis, r - 1]
    xt = _permuted(b, x, list(range(r)), perm)
    lead = [-1 if d == DYN else d for d in shape_of(xt.type)[:-2]]
    y = b.build(nn.MatmulOp, _reshape_to(b, xt, lead + [n_in * c_in]), _array(b, m, x))
    y = _reshape_to(b, y, lead + [bins, c_out])
    return _permuted(b, y, perm, list(range(r)))


@op("STFT")
def _stft(b, a):
    # frames of frame_length every frame_step, windowed, transformed: a conv
    # whose 2 * bins filters are the window times the cosines and sines
    x = b.v(0)
    shape = shape_of(x.type)
    if len(shape) != 3 or shape[2] not in (1, 2) or DYN in shape[1:]:
        raise b.error(f"the signal must be (batch, length, 1 or 2) with a static length, got {x.type}")
    n, length, c = shape
    step = b.ints(1)[0]
    window = b.v(2) if b.has(2) else None
    size = b.ints(3)[0] if b.has(3) else shape_of(window.type)[0] if window is not None else length
    onesided = bool(a.get("onesided", 1))
    if onesided and c == 2:
        raise b.error("a one-sided STFT takes a real signal")
    if not 1 <= size <= length or step < 1:
        raise b.error(f"frame_length {size} and frame_step {step} do not fit a signal of {length}")
    m, bins, _ = _dft_matrix(size, c, size, False, onesided)
    filters = _array(b, m.reshape(size, c, bins * 2).transpose(2, 1, 0), x)  # (2 * bins, c, size)
    if window is not None:
        filters = _binary(b, "mul", filters, b.build(nn.ReshapeOp, window, [1, 1, size]))
    y = b.build(nn.ConvOp, b.build(nn.TransposeOp, x, [0, 2, 1]), filters, strides=[step])
    y = b.build(nn.TransposeOp, y, [0, 2, 1])  # (batch, frames, 2 * bins)
    return _reshape_to(b, y, [-1 if n == DYN else n, shape_of(y.type)[1], bins, 2])


# Indexing and grids

@op("Size")
def _size(b, a):
    shape = shape_of(b.v(0).type)
    if DYN in shape:
        raise b.error(f"the size of '{b.node.input[0]}' is dynamic ({b.v(0).type}): ncc needs it at "
                      "import time")
    b.consts[b.node.output[0]] = np.array(math.prod(shape), np.int64)


@op("Compress")
def _compress(b, a):
    # a gather of the positions where the (import-time) condition holds
    x = b.v(0)
    keep = np.flatnonzero(np.asarray(b.static(1)).reshape(-1))
    if "axis" not in a:
        x, axis = _reshape_to(b, x, [-1]), 0
    else:
        axis = a["axis"] % len(shape_of(x.type))
    n = shape_of(x.type)[axis]
    if keep.size and (n == DYN or keep[-1] >= n):
        raise b.error(f"the condition selects position {keep[-1]} of an axis of size {n}")
    return b.build(nn.GatherOp, x, b.emit(nn.ConstantOp(keep.astype(np.int64))), axis)


@op("GatherND")
def _gather_nd(b, a):
    # the index tuples as linear positions into data with the indexed axes
    # merged (batch entries offset), then one gather; an index -s..-1 is taken
    # to s-1..0 by a lookup (nn has no comparisons)
    data, idx = b.v(0), b.v(1)
    ds, ish = shape_of(data.type), shape_of(idx.type)
    bd = a.get("batch_dims", 0)
    k = ish[-1] if ish else 0
    if DYN in ds or DYN in ish or not 1 <= k <= len(ds) - bd or list(ds[:bd]) != list(ish[:bd]):
        raise b.error(f"data {data.type} and indices {idx.type} (batch_dims {bd}) do not fit, "
                      "or have dynamic sizes")
    itype = nn.numpy_dtype(idx.type.element_type)
    dims = ds[bd:bd + k]
    strides = [math.prod(dims[j + 1:]) for j in range(k)]
    lin = None
    for j, (d, st) in enumerate(zip(dims, strides)):
        comp = _reshape_to(b, b.build(nn.SliceOp, idx, [j], [j + 1], [-1]), list(ish[:-1]))
        wrap = b.emit(nn.ConstantOp(np.concatenate([np.arange(d), np.arange(d)]).astype(itype)))
        comp = b.build(nn.GatherOp, wrap, _binary(b, "add", comp, b.scalar(d, comp)), 0)
        term = comp if st == 1 else _binary(b, "mul", comp, b.scalar(st, comp))
        lin = term if lin is None else _binary(b, "add", lin, term)
    inner, batch = math.prod(dims), math.prod(ds[:bd])
    if bd:
        offsets = (np.arange(batch) * inner).reshape(list(ds[:bd]) + [1] * (len(ish) - 1 - bd))
        lin = _binary(b, "add", lin, b.emit(nn.ConstantOp(offsets.astype(itype))))
    flat = _reshape_to(b, data, [batch * inner, *ds[bd + k:]])
    return b.build(nn.GatherOp, flat, lin, 0)


@op("AffineGrid")
def _affine_grid(b, a):
    # theta (N, 2, 3) or (N, 3, 4) applied to the constant grid of (x, y[, z], 1)
    # positions: one matmul
    theta = b.v(0)
    size = b.ints(1)
    spatial = size[2:]
    r = len(spatial)
    if r not in (2, 3) or list(shape_of(theta.type)[1:]) != [r, r + 1]:
        raise b.error(f"theta must be (N, {r}, {r + 1}) for size {size}, got {theta.type}")

    def positions(n: int) -> np.ndarray:
        if a.get("align_corners", 0):
            return np.linspace(-1, 1, n) if n > 1 else np.zeros(1)
        return (2 * np.arange(n) + 1) / n - 1

    axes = np.meshgrid(*(positions(n) for n in spatial), indexing="ij")  # (D,) H, W
    base = np.stack([*(ax.reshape(-1) for ax in axes[::-1]), np.ones(math.prod(spatial))], -1)
    grid = b.build(nn.MatmulOp, _array(b, base, theta), b.build(nn.TransposeOp, theta, [0, 2, 1]))
    n = shape_of(theta.type)[0]
    return _reshape_to(b, grid, [-1 if n == DYN else n, *spatial, r])
