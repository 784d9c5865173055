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

This module is the walk over the graph and what every rule builds with (the
`Importer`); the rules themselves live with their op family
(ncc/onnx/<family>.py), one `@from_onnx("Op")` function each (Gemm ->
transpose/matmul/mul/add, Sum -> adds, ...). Result types come from the nn
builders' shape rules, after onnx's own shape inference has typed the graph.
Only the first dimension of an input may be symbolic: it becomes `?`.

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

import functools
import math
import os
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import VerifyException

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.reference import EVAL

MIN_FROM_ONNXET = 6  # opset 6's legacy forms (explicit broadcast, is_test) are read too


# ONNX TensorProto element types ncc represents (others: a clear error).
_ELEMENT = {1: np.float32, 11: np.float64, 10: np.float16, 7: np.int64, 6: np.int32,
            3: np.int8, 2: np.uint8, 9: np.bool_}


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

    _check_axis_attributes(model.graph, where)
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


AXIS_ATTRIBUTES = ("axis", "axes", "perm", "batch_dims", "num_outputs", "blocksize", "group")
INT32 = range(-(1 << 31), 1 << 31)


def _check_axis_attributes(graph: Any, where: str) -> None:
    """Axes, permutations and counts within int32, in every node (subgraphs
    too): onnx's shape inference reads them as C++ ints and crashes the
    process on one beyond (LayerNormalization's axis 2^31: a segfault)."""
    import onnx

    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _check_axis_attributes(a.g, where)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _check_axis_attributes(g, where)
            elif a.name in AXIS_ATTRIBUTES and any(v not in INT32 for v in ([a.i] if a.type == a.INT else a.ints)):
                name = n.name or (n.output[0] if n.output else n.op_type)
                raise NccError(f"node '{name}' ({n.op_type}): attribute '{a.name}' is out of range "
                               f"({a.i if a.type == a.INT else list(a.ints)})", where)


def _opset(model: Any, where: str) -> int:
    import onnx

    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise NccError("the model imports no version of the default ONNX domain", where)
    v, newest = versions[0], onnx.defs.onnx_opset_version()
    if not MIN_FROM_ONNXET <= v <= newest:
        raise NccError(f"ONNX opset {v} is not supported (supported: {MIN_FROM_ONNXET} to {newest})", where)
    return v


FOLD_LIMIT = 1 << 16  # constant inputs up to this many elements: fold even supported ops
# Never evaluated at import: a DequantizeLinear of a constant keeps its int8
# weight (4x smaller, read by the integer kernels)
NEVER_FOLDED = ("Constant", "ConstantOfShape", "DequantizeLinear")


def _constant_inputs(n: Any, consts: Any) -> bool:
    inputs = [i for i in n.input if i]
    return bool(inputs) and all(i in consts for i in inputs)


def op_key(n: Any) -> str:
    """A node's entry in FROM_ONNX: its op type, prefixed by its domain unless that is ONNX's own."""
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
        if op_key(n) not in FROM_ONNX:
            unsupported.setdefault(op_key(n), []).append(n.name or n.output[0])
    if unsupported:
        parts = [f"{k} ({'nodes' if len(v) > 1 else 'node'} {', '.join(v)})" for k, v in unsupported.items()]
        raise NccError(f"unsupported ONNX ops: {', '.join(parts)}", where)


def element_dtype(elem: int, what: str, where: str) -> np.dtype:
    """The numpy dtype of ONNX element type `elem`; NccError naming `what` if ncc has none."""
    import onnx

    if elem not in _ELEMENT:
        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else elem
        raise NccError(f"{what} has element type {name}, which ncc does not support "
                       "(supported: FLOAT, DOUBLE, FLOAT16, INT64, INT32, INT8, UINT8, BOOL)", where)
    return np.dtype(_ELEMENT[elem])


def _declares_dims_beyond_int32(graph: Any) -> bool:
    """Whether a declared tensor has a dimension of 2^31 or more: onnx's shape
    inference then works per element of it (an Expand whose shape input had
    2^31 entries gave no answer in 10 s), so the importer's own rules decide
    alone, and its size checks refuse what cannot exist."""
    infos = [*graph.input, *graph.output, *graph.value_info]
    dims = [d.dim_value for v in infos for d in v.type.tensor_type.shape.dim]
    dims += [d for t in graph.initializer for d in t.dims]
    return any(d >= 2 ** 31 for d in dims)


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
            if not _declares_dims_beyond_int32(model.graph):
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
            message = f"node '{n.name or (n.output[0] if n.output else n.op_type)}' ({n.op_type}): {message}"
        return NccError(message, self.where)

    # -- values -----------------------------------------------------------

    def emit(self, op: Operation) -> SSAValue:
        for r in op.results:
            if isinstance(r.type, TensorType):
                self.check_size(shape_of(r.type), nn.numpy_dtype(r.type.element_type), f"{op.name}'s result")
        self.ops.append(op)
        return op.results[0]

    def check_size(self, shape: Sequence[int], dtype: Any, what: str) -> None:
        """An error naming the node (or `what`) if a tensor of `shape` would exceed
        MAX_TENSOR_BYTES: checked before it is allocated or computed."""
        nbytes = nn.tensor_bytes(shape, np.dtype(dtype).itemsize)
        if nbytes > nn.MAX_TENSOR_BYTES:
            message = (f"{what} of shape {list(shape)} would take {nbytes} bytes, more than ncc's limit of "
                       f"{nn.MAX_TENSOR_BYTES} (16 GiB)")
            raise self.error(message) if self.node is not None else NccError(message, self.where)

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
        owners = [o.owner for o in op.operands]
        if (len(op.results) != 1 or not owners or type(op) not in EVAL or isinstance(op, nn.DequantizeOp)
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

    def axis(self, axis: int, rank: int, what: str = "axis") -> int:
        """`axis` in [-rank, rank) as a non-negative axis; else an error naming the node."""
        if not isinstance(axis, int) or not -rank <= axis < rank:
            raise self.error(f"{what} {axis} is out of range for rank {rank}")
        return axis % rank

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
        if n.op_type in NEVER_FOLDED or not _constant_inputs(n, self.consts):
            return False
        if op_key(n) not in FROM_ONNX:
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

    def import_node(self, n: Any, within: str | None = None) -> None:
        """Node `n` folded (constants only) or imported by its FROM_ONNX rule;
        `within` names the subgraph it belongs to, for the error of an op ncc
        does not import (the main graph is checked for those up front)."""
        self.node = n
        try:
            outs = self._import_node(n, within)
        except NccError:
            raise
        except MemoryError as e:  # a constant the node computes at import does not fit
            raise self.error(f"its constants need more memory than this machine has ({e})") from None
        except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, AttributeError, OverflowError) as e:
            # the last line, not the mechanism: what a rule did not foresee is still located
            raise self.error(f"internal error ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                             "please report it with the model") from e
        if outs is None:  # a constant: its value is in self.consts
            return
        for name, val in zip(n.output, outs if isinstance(outs, (list, tuple)) else [outs]):
            if name:
                self.values[name] = val

    def _import_node(self, n: Any, within: str | None) -> Any:
        key = op_key(n)
        if self.foldable(n) and self.fold(n, required=key not in FROM_ONNX):
            return None
        if key not in FROM_ONNX:
            raise self.error(f"ncc does not import {key} (in the {within} subgraph)")
        return FROM_ONNX[key](self, Attributes(self, n))

    def subgraph(self, g: Any, inputs: Sequence[SSAValue | np.ndarray], what: str) -> list[SSAValue]:
        """The outputs of a graph attribute on `inputs` (values, or arrays known at
        import time): its nodes imported in place, as the main graph's are
        (constants folded); names it does not define come from the enclosing graph."""
        from onnx import numpy_helper

        if len(g.input) != len(inputs):
            raise self.error(f"the {what} subgraph must take {len(inputs)} inputs, it takes {len(g.input)}")
        for o in g.output:
            kind = o.type.WhichOneof("value")
            if kind not in (None, "tensor_type"):
                raise self.error(f"the {what} subgraph returns a {kind.replace('_type', '')} ('{o.name}'); "
                                 "ncc imports tensors only")
        local = ([i.name for i in g.input] + [t.name for t in g.initializer]
                 + [o for n in g.node for o in n.output])
        saved = {k: (self.values.pop(k, None), self.consts.pop(k, None)) for k in local}
        node = self.node
        try:
            for i, v in zip(g.input, inputs):
                if isinstance(v, np.ndarray):
                    self.consts[i.name] = v
                else:
                    self.values[i.name] = v
            for t in g.initializer:
                self.consts[t.name] = numpy_helper.to_array(t)
                self.from_initializers.add(t.name)
            for n in g.node:
                self.import_node(n, within=what)
            self.node = node
            results = []
            for o in g.output:
                if o.name not in self.values and o.name not in self.consts:
                    raise self.error(f"the {what} subgraph does not compute its output '{o.name}'")
                results.append(self.values[o.name] if o.name in self.values else self.weight(o.name))
        finally:
            self.node = node
            for k, (val, const) in saved.items():
                self.values.pop(k, None)
                self.consts.pop(k, None)
                if val is not None:
                    self.values[k] = val
                if const is not None:
                    self.consts[k] = const
        return results

    # -- building blocks of the rules ----------------------------------------
    # (ONNX conventions the op families share: input and attribute forms,
    # constants of a value's element type, the nn ops most rules compose)

    def unary(self, name: str, x: SSAValue) -> SSAValue:
        return self.build(nn.UNARY_OPS[name], x)

    def binary(self, name: str, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.build(nn.BINARY_OPS[name], x, y)

    def compare(self, name: str, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.build(nn.COMPARE_OPS[name], x, y)

    def select(self, cond: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.build(nn.SelectOp, cond, x, y)

    def full_like(self, value: float, x: SSAValue) -> SSAValue:
        """A constant of x's element type and rank, all sizes 1 (broadcasts to x)."""
        shape = (1,) * len(shape_of(x.type))
        return self.emit(nn.ConstantOp(np.full(shape, value, nn.numpy_dtype(x.type.element_type))))

    def array(self, value: Any, like: SSAValue) -> SSAValue:
        """An nn.constant holding `value` in the element type of `like`."""
        return self.emit(nn.ConstantOp(np.asarray(value, dtype=nn.numpy_dtype(like.type.element_type))))

    def reshape_to(self, x: SSAValue, dims: Sequence[int]) -> SSAValue:
        if sum(1 for d in dims if d in (-1, DYN)) > 1:
            raise self.error(f"cannot reshape {x.type} to {nn.fmt_shape(dims)}: more than one unknown dimension")
        return self.build(nn.ReshapeOp, x, dims)

    def flatten(self, x: SSAValue, axis: int) -> SSAValue:
        """x as 2-D: the dimensions before `axis` and from it, each merged."""
        shape = shape_of(x.type)
        inner = shape[axis:]
        if DYN in inner:
            raise self.error(f"cannot flatten {x.type} at axis {axis}: a trailing dimension is dynamic")
        outer = -1 if DYN in shape[:axis] else math.prod(shape[:axis])
        return self.build(nn.ReshapeOp, x, [outer, math.prod(inner)])

    def per_channel(self, v: SSAValue, rank: int) -> SSAValue:
        """A [C] vector as [C, 1, ...]: broadcast along dimension 1 of a rank-`rank` tensor."""
        return self.build(nn.ReshapeOp, v, [-1] + [1] * (rank - 2))

    def permuted(self, x: SSAValue, labels: list, order: list) -> SSAValue:
        """x with its axes (named by `labels`) in the order `order`."""
        perm = [labels.index(lab) for lab in order]
        return x if perm == list(range(len(perm))) else self.build(nn.TransposeOp, x, perm)

    def move_last_axis(self, y: SSAValue, axis: int) -> SSAValue:
        """y's last axis moved to position `axis`."""
        rank = len(shape_of(y.type))
        axis %= rank
        if axis == rank - 1:
            return y
        return self.build(nn.TransposeOp, y, [*range(axis), rank - 1, *range(axis, rank - 1)])

    def axes_input(self, a: dict, i: int, since: int) -> list[int] | None:
        """`axes`: an attribute before opset `since`, an optional input from it."""
        if self.opset < since:
            return list(a["axes"]) if "axes" in a else None
        return self.ints(i) if self.has(i) else None

    def one_value(self, i: int, what: str) -> int:
        vals = self.ints(i)
        if len(vals) != 1:
            raise self.error(f"{what} must hold one value, got {len(vals)}")
        return vals[0]

    def floats_input(self, i: int) -> list[float] | None:
        """An optional float list input (roi, scales); absent or empty: None."""
        if not self.has(i):
            return None
        vals = np.asarray(self.static(i), dtype=np.float64).reshape(-1)
        return [float(v) for v in vals] if vals.size else None

    def window(self, a: dict, x: SSAValue, kernel: Sequence[int], dilations: Sequence[int]
               ) -> tuple[list[int], list[int]]:
        """(strides, pads) of a conv or pool, with auto_pad resolved on static sizes."""
        k = len(kernel)
        strides = list(a.get("strides", [1] * k))
        pads = list(a.get("pads", [0] * 2 * k))
        auto = str_attr(a, "auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            spatial = shape_of(x.type)[2:]
            if DYN in spatial:
                raise self.error(f"auto_pad {auto} needs static spatial sizes, got {x.type}")
            for i, (n, kk, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
                total = max((-(-n // s) - 1) * s + (kk - 1) * d + 1 - n, 0)
                small = total // 2
                pads[i], pads[i + k] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
        elif auto == "VALID":
            pads = [0] * 2 * k
        elif auto != "NOTSET":
            raise self.error(f"unknown auto_pad '{auto}'")
        return strides, pads

    def ceil_mode_pads(self, x: SSAValue, kernel: Sequence[int], strides: Sequence[int],
                       pads: Sequence[int], dil: Sequence[int]) -> list[int]:
        """Pads with extra end padding that turns the floor division of the output
        size into a ceil division (ceil_mode), the last window starting inside."""
        k, spatial, pads = len(kernel), shape_of(x.type)[2:], list(pads)
        for i, (n, kk, s, d) in enumerate(zip(spatial, kernel, strides, dil)):
            if n == DYN:
                raise self.error("ceil_mode needs static spatial sizes")
            kk = (kk - 1) * d + 1  # the dilated window
            span = n + pads[i] + pads[i + k] - kk
            out = -(-span // s) + 1
            if (out - 1) * s >= n + pads[i]:  # the last window must start inside
                out -= 1
            pads[i + k] += max((out - 1) * s + kk - (n + pads[i] + pads[i + k]), 0)
        return pads

    # -- the graph --------------------------------------------------------

    def run(self) -> ModuleOp:
        from onnx import numpy_helper

        g = self.graph
        for t in g.initializer:
            dtype = element_dtype(t.data_type, f"initializer '{t.name}'", self.where)
            if min(t.dims, default=0) < 0:
                raise NccError(f"initializer '{t.name}' has a negative dimension: {list(t.dims)}", self.where)
            self.check_size(list(t.dims), dtype, f"initializer '{t.name}'")
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
            dtype = element_dtype(tt.elem_type, f"graph input '{inp.name}'", self.where)
            dims = []
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(d.dim_value)
                elif k == 0:
                    dims.append(DYN)
                else:
                    sym = d.dim_param or "unknown"
                    raise NccError(f"graph input '{inp.name}': dimension {k} is symbolic ('{sym}'); "
                                   "only the first (batch) dimension may be (give it a size: ncc.onnx.with_dims, "
                                   f"ncc-stats --dim {sym}=N)", self.where)
            self.check_size(dims, dtype, f"graph input '{inp.name}'")
            arg_types.append(TensorType(nn.element_type_of(dtype), dims))
            arg_names.append(inp.name)

        self.arg_names = arg_names
        fn = func.FuncOp("main", (arg_types, []))
        for name, arg in zip(arg_names, fn.body.block.args):
            self.values[name] = arg
            if re.fullmatch(r"[A-Za-z_]\w*", name):
                arg.name_hint = name

        for n in g.node:
            self.import_node(n)
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


def with_dims(model: Any, dims: Mapping[str, int], where: str) -> Any:
    """A copy of `model` whose graph inputs have the symbolic dimensions named
    in `dims` (dim_param -> size) fixed: the sizes ncc's static shapes need
    for a model exported with a dynamic sequence length, say."""
    copy = type(model)()
    copy.CopyFrom(model)
    named = {d.dim_param for i in copy.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    unknown = sorted(set(dims) - named)
    if unknown:
        raise NccError(f"no graph input has a dimension named {', '.join(map(repr, unknown))} "
                       f"(symbolic dimensions: {', '.join(sorted(named)) or 'none'})", where)
    for name, size in dims.items():
        if not isinstance(size, int) or size < 1:
            raise NccError(f"dimension '{name}' must be a positive integer, got {size!r}", where)
    for i in copy.graph.input:
        for d in i.type.tensor_type.shape.dim:
            if d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    return copy


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
# The rules: ONNX op type -> rule(importer, attributes) -> SSA value(s), or None
# for a constant (its value put in importer.consts). The op families
# (ncc/onnx/<family>.py) register theirs with @from_onnx.

ImportRule = Callable[[Importer, dict], Any]
FROM_ONNX: dict[str, ImportRule] = {}
UNROLLED_STEPS = 256  # recurrences (LinearAttention, RNN, GRU, LSTM, Scan) are unrolled: at most this many steps


def from_onnx(*names: str) -> Callable[[ImportRule], ImportRule]:
    """Register the decorated rule as the import of ONNX ops `names` ("domain.Op"
    outside ONNX's own domain)."""
    def register(rule: ImportRule) -> ImportRule:
        for n in names:
            if n in FROM_ONNX:
                raise ValueError(f"two import rules for ONNX {n}")
            FROM_ONNX[n] = rule
        return rule
    return register


def str_attr(a: dict, key: str, default: str) -> str:
    """A string attribute (Attributes gives it decoded)."""
    return a.get(key, default)


# Attribute types of the ops of other domains ncc imports (onnx has no schema for them)
CONTRIB_ATTRIBUTES: dict[str, dict[str, str]] = {
    "com.microsoft.QGemm": {"alpha": "FLOAT", "transA": "INT", "transB": "INT"},
}


@functools.lru_cache(maxsize=None)
def _schema_attributes(op_type: str, domain: str, opset: int) -> tuple[dict[str, str], frozenset[str]] | None:
    """(attribute name -> type name, required names) of the op's schema at the
    opset, or None when onnx defines none (another domain: CONTRIB_ATTRIBUTES)."""
    import onnx

    key = op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"
    if key in CONTRIB_ATTRIBUTES:
        return CONTRIB_ATTRIBUTES[key], frozenset()
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None
    names = onnx.AttributeProto.AttributeType.Name
    return ({n: names(a.type) for n, a in schema.attributes.items()},
            frozenset(n for n, a in schema.attributes.items() if a.required))


class Attributes(dict):
    """A node's attributes as Python values (strings decoded, as UTF-8), each
    checked against the op's schema at the model's opset: an attribute of
    another type, one the op does not define, or a required one missing is an
    error naming the node and the attribute, and so is reading one that is
    absent (a[key]); a.get(key, default) gives the default."""

    def __init__(self, importer: "Importer", n: Any):
        import onnx

        super().__init__()
        self.importer = importer
        spec = _schema_attributes(n.op_type, n.domain, importer.opset)
        types, required = spec if spec is not None else ({}, frozenset())
        names = onnx.AttributeProto.AttributeType.Name
        for a in n.attribute:
            if a.ref_attr_name:
                raise importer.error(f"attribute '{a.name}' refers to a function's attribute "
                                     f"'{a.ref_attr_name}': ncc imports no function bodies")
            given = names(a.type) if a.type in onnx.AttributeProto.AttributeType.values() else str(a.type)
            if spec is not None and a.name not in types:
                raise importer.error(f"unknown attribute '{a.name}' (the op has: {', '.join(sorted(types)) or 'none'})")
            if spec is not None and given != types[a.name]:
                raise importer.error(f"attribute '{a.name}' must be {types[a.name]}, got {given}")
            value = onnx.helper.get_attribute_value(a)
            try:
                if isinstance(value, bytes):
                    value = value.decode()
                elif isinstance(value, list) and value and isinstance(value[0], bytes):
                    value = [v.decode() for v in value]
            except UnicodeDecodeError:
                raise importer.error(f"attribute '{a.name}' is not UTF-8 text") from None
            self[a.name] = value
        missing = sorted(required - self.keys())
        if missing:
            raise importer.error(f"missing required attribute{'s' if len(missing) > 1 else ''} "
                                 + ", ".join(f"'{m}'" for m in missing))

    def __missing__(self, key: str):
        raise self.importer.error(f"missing attribute '{key}'")
