"""The `nn` dialect: a compact, canonical set of tensor ops on ranked tensors.

    nn.weight @fc1_w : tensor<784x128xf32> = dense<[[0.1, ...], ...]>
    func.func @main(%x: tensor<?x784xf32>) -> tensor<?x128xf32> {
      %w = nn.weight_ref @fc1_w : tensor<784x128xf32>
      %y = nn.matmul %x, %w : tensor<?x784xf32>, tensor<784x128xf32> -> tensor<?x128xf32>
      %z = nn.relu %y : tensor<?x128xf32>
      %p = nn.max_pool %a kernel [2, 2] strides [2, 2] : tensor<1x4x8x8xf32> -> tensor<1x4x4x4xf32>
      func.return %z : tensor<?x128xf32>
    }

Syntax of every compute op: operands, then its parameters as `name value`
pairs (`kernel [2, 2]`, `axis 1`, `epsilon 1.0e-05`, `mode reflect`, a bare
flag such as `keepdims`), parameters at their default left out, then
`: operand types -> result type`, shortened to `: type` when all operands and
the result have that one type. One mechanism (`NNOp` and its `PARAMS` table)
gives every op its properties, syntax, defaults and verifier; each op adds
only its shape rule (`infer`). Unary and binary elementwise ops are generated
from the tables `UNARY` and `BINARY`, comparisons (an i1 result) from
`COMPARE`, logical ops on i1 from `LOGICAL` (each is still a registered class:
`nn.ReluOp`, `nn.AddOp`, `nn.LessOp`, `nn.AndOp`, ...). Booleans are i1 tensors
(numpy bool arrays); `nn.select` picks between two tensors by one. Dynamic
dimensions (`?`) are `DYN` in shapes.

Weights are module-level symbols whose data is a read-only numpy array held in
memory (`WeightOp.data`); text prints it as a `dense<...>` literal that
round-trips bit-exactly, or as `dense_resource<__elided__>` when
`ncc.ir.print_module(..., elide_weights_if_larger=n)` asks for it.
"""

from __future__ import annotations

import contextvars

import json
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DenseArrayBase,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
    f16,
    f32,
    f64,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Data, Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import Pure, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import activations

DYN = DYNAMIC_INDEX  # a `?` dimension in TensorType.get_shape()
Shape = tuple[int, ...]

# ---------------------------------------------------------------------------
# Types and shapes


def tensor_type(shape: Sequence[int | None], element_type: Attribute = f32) -> TensorType:
    """`tensor_type((None, 784))` is `tensor<?x784xf32>` (None or -1 means `?`)."""
    return TensorType(element_type, [DYN if d is None or d < 0 else d for d in shape])


FLOAT_TYPES = (Float16Type, Float32Type, Float64Type)
_NUMPY = {f16: np.float16, f32: np.float32, f64: np.float64, i64: np.int64, i32: np.int32,
          IntegerType(8): np.int8, i1: np.bool_}


def numpy_dtype(element_type: Attribute) -> np.dtype:
    if element_type not in _NUMPY:
        raise ValueError(f"no numpy dtype for element type {element_type}")
    return np.dtype(_NUMPY[element_type])


def element_type_of(dtype: np.dtype | type) -> Attribute:
    dt = np.dtype(dtype)
    for attr, np_type in _NUMPY.items():
        if np.dtype(np_type) == dt:
            return attr
    raise ValueError(f"unsupported dtype {dt} (supported: f16, f32, f64, i64, i32, i8, bool)")


def shape_of(t: Attribute) -> Shape:
    return t.get_shape()  # type: ignore[attr-defined]


def dims_compatible(a: int, b: int) -> bool:
    return a == b or a == DYN or b == DYN


def types_compatible(a: TensorType, b: TensorType) -> bool:
    """Same element type and rank, and every dimension equal or `?` on either side."""
    sa, sb = shape_of(a), shape_of(b)
    return (a.element_type == b.element_type and len(sa) == len(sb)
            and all(dims_compatible(x, y) for x, y in zip(sa, sb)))


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join("?" if d == DYN else str(d) for d in shape) + "]"


def broadcast_shapes(*shapes: Sequence[int]) -> Shape:
    """numpy/ONNX broadcasting with `?` dims (a `?` against n > 1 is assumed n)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s, rank - len(s)):
            o = out[i]
            if o == d or d == 1:
                continue
            if o == 1 or o == DYN:
                out[i] = d
            elif d != DYN:
                raise ValueError(f"shapes {', '.join(fmt_shape(x) for x in shapes)} are not "
                                 f"broadcastable (dimension {o} vs {d})")
    return tuple(out)


def matmul_shape(a: Sequence[int], b: Sequence[int]) -> Shape:
    """numpy.matmul's result shape: 1-D operands are promoted then squeezed,
    batch dimensions broadcast."""
    if not a or not b:
        raise ValueError("matmul operands must have rank >= 1")
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if not dims_compatible(a2[-1], b2[-2]):
        raise ValueError(f"contraction dimensions differ: {fmt_shape(a)} @ {fmt_shape(b)} "
                         f"({a2[-1]} vs {b2[-2]})")
    rows = a2[-2:-1] if len(a) > 1 else ()  # a promoted dimension is dropped again
    cols = b2[-1:] if len(b) > 1 else ()
    return (*broadcast_shapes(a2[:-2], b2[:-2]), *rows, *cols)


def window_out(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
               dilation: int = 1) -> int:
    """Output length of a sliding window (conv, pools), floor mode; DYN if unknown."""
    if size == DYN or kernel == DYN:
        return DYN
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise VerifyException(f"{what} {axis} is out of range for rank {rank} "
                              f"(expected {-rank}..{rank - 1})")
    return axis % rank


def normalize_axes(axes: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
    out = tuple(normalize_axis(a, rank) for a in axes)
    if len(set(out)) != len(out):
        raise VerifyException(f"{what} {list(axes)} name an axis twice")
    return out


# ---------------------------------------------------------------------------
# Dense literals: shortest round-tripping decimals, hex bit patterns where a
# decimal would not come back bit-exactly (NaN, inf, rare double roundings).


def _float_text(v: np.floating) -> str:
    s = str(v)
    if "e" in s and "." not in s:  # MLIR float literals need a '.': 1e-05 -> 1.0e-05
        s = s.replace("e", ".0e")
    return s


def _element_texts(a: np.ndarray) -> list[str]:
    flat = a.reshape(-1)
    if a.dtype == np.bool_:
        return ["true" if v else "false" for v in flat.tolist()]
    if a.dtype.kind in "iu":
        return [str(v) for v in flat.tolist()]
    texts = [_float_text(v) for v in flat]
    back = np.array([float(t) for t in texts]).astype(a.dtype)
    ubits = f"u{a.dtype.itemsize}"
    bad = (back.view(ubits) != flat.view(ubits)) | ~np.isfinite(flat)
    for k in np.flatnonzero(bad):
        texts[k] = f"0x{int(flat[k:k + 1].view(ubits)[0]):0{2 * a.dtype.itemsize}X}"
    return texts


def format_literal(a: np.ndarray) -> str:
    """The text inside `dense<...>`: a splat when all elements are bit-identical."""
    a = np.asarray(a)
    if a.size > 1:
        ubits = a.reshape(-1).view(f"u{a.dtype.itemsize}") if a.dtype != np.bool_ else a.reshape(-1)
        if (ubits == ubits[0]).all():
            return _element_texts(a.reshape(-1)[:1])[0]
    texts = _element_texts(np.ascontiguousarray(a))
    if a.ndim == 0:
        return texts[0]

    def nest(off: int, dims: tuple[int, ...]) -> str:
        if len(dims) == 1:
            return "[" + ", ".join(texts[off:off + dims[0]]) + "]"
        step = math.prod(dims[1:])
        return "[" + ", ".join(nest(off + i * step, dims[1:]) for i in range(dims[0])) + "]"

    return nest(0, a.shape)


_HEX = re.compile(r"0x[0-9a-fA-F]+")


def decode_literal(body: str, ttype: TensorType) -> np.ndarray:
    """Parse the text inside `dense<...>` into a read-only array of `ttype`.
    Raises ValueError with what is wrong."""
    dtype = numpy_dtype(ttype.element_type)
    shape = shape_of(ttype)
    if DYN in shape:
        raise ValueError(f"a literal needs a static shape, got {ttype}")
    hexes = _HEX.findall(body)
    is_float = dtype.kind == "f"
    text = _HEX.sub("NaN" if is_float else (lambda m: str(int(m.group(), 16))), body)
    text = text.replace("true", "1").replace("false", "0")
    try:
        raw = np.array(json.loads(text), dtype=np.float64 if is_float else None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"invalid dense literal: {str(e).splitlines()[0]}") from None
    if not is_float and raw.dtype.kind not in "iub":
        raise ValueError(f"an integer literal may only hold integers, got {raw.dtype} values")
    splat = raw.ndim == 0 and shape != ()
    if not splat and raw.shape != shape:
        raise ValueError(f"literal has shape {fmt_shape(raw.shape)} but the type is {ttype}")
    out = np.ascontiguousarray(raw.astype(dtype)).reshape(-1)
    if is_float and hexes:  # the NaN placeholders, in text order, take the hex bit patterns
        placeholder = np.isnan(raw).reshape(-1)
        if len(hexes) != int(placeholder.sum()):
            raise ValueError("invalid dense literal: NaN is written as a hex bit pattern")
        ubits = f"u{dtype.itemsize}"
        out.view(ubits)[placeholder] = np.array([int(h, 16) for h in hexes], dtype=np.uint64).astype(ubits)
    # A splat stays one value, broadcast without copying.
    return _readonly(np.broadcast_to(out, shape) if splat else out.reshape(shape))


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _take_angle_body(parser: AttrParser) -> str:
    """The raw text between `<` and the next `>`: dense literals are sliced
    out of the input (and decoded by numpy) instead of lexed token by token."""
    start = parser.pos
    if parser._current_token.text != "<":  # noqa: SLF001
        parser.raise_error("expected '<'")
    content = parser.lexer.input.content
    end = content.find(">", start)
    if end < 0:
        parser.raise_error("unterminated dense literal", start, start + 1)
    parser._resume_from(end + 1)  # noqa: SLF001
    return content[start + 1:end]


def _parse_dense(parser: AttrParser, ttype: TensorType, start: int, body: str) -> np.ndarray:
    try:
        return decode_literal(body, ttype)
    except ValueError as e:
        parser.raise_error(str(e), start, parser.pos)


@irdl_attr_definition
class TensorData(Data[np.ndarray]):
    """A numpy array held by reference (read-only), e.g. a weight's data.
    Generic syntax: `#nn.data<dense<[1.0, 2.0]> : tensor<2xf32>>`."""

    name = "nn.data"

    def __init__(self, data: np.ndarray):
        super().__init__(_readonly(np.asarray(data)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorData):
            return False
        a, b = self.data, other.data
        return a is b or (a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())

    def __hash__(self) -> int:
        return hash((self.data.dtype.str, self.data.shape))

    @property
    def type(self) -> TensorType:
        return TensorType(element_type_of(self.data.dtype), self.data.shape)

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> np.ndarray:
        with parser.in_angle_brackets():
            parser.parse_keyword("dense")
            start = parser.pos
            body = _take_angle_body(parser)
            parser.parse_punctuation(":")
            ttype = parser.parse_type()
            if not isinstance(ttype, TensorType):
                parser.raise_error(f"expected a tensor type, got {ttype}")
            return _parse_dense(parser, ttype, start, body)

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string(f"<dense<{format_literal(self.data)}> : ")
        printer.print_attribute(self.type)
        printer.print_string(">")


# ---------------------------------------------------------------------------
# The shared op mechanism: a PARAMS table gives properties, syntax, defaults.

REQUIRED: Any = object()
_PROP_TYPES = {"ints": DenseArrayBase, "int": IntegerAttr, "float": FloatAttr,
               "flag": UnitAttr, "str": StringAttr, "floats": DenseArrayBase}


@dataclass(frozen=True)
class Param:
    """One op parameter. kind: ints | int | float | floats | flag | str. `default` is a
    value, or a function (operand types, values so far) -> value; REQUIRED
    parameters are always stored."""

    name: str
    kind: str
    default: Any = REQUIRED

    def default_for(self, types: Sequence[TensorType], values: SimpleNamespace) -> Any:
        return self.default(types, values) if callable(self.default) else self.default

    def to_attr(self, v: Any) -> Attribute:
        if self.kind == "ints":
            return DenseArrayBase.from_list(i64, [int(x) for x in v])
        if self.kind == "floats":
            return DenseArrayBase.from_list(f64, [float(x) for x in v])
        if self.kind == "int":
            return IntegerAttr(int(v), i64)
        if self.kind == "float":
            return FloatAttr(float(v), f64)
        if self.kind == "flag":
            return UnitAttr()
        return StringAttr(str(v))

    def from_attr(self, a: Attribute | None) -> Any:
        if self.kind == "flag":
            return a is not None
        if self.kind in ("ints", "floats"):
            return tuple(a.get_values())  # type: ignore[union-attr]
        if self.kind in ("int", "float"):
            return a.value.data  # type: ignore[union-attr]
        return a.data  # type: ignore[union-attr]

    def print_value(self, a: Attribute, printer: Printer) -> None:
        v = self.from_attr(a)
        if self.kind == "ints":
            text = "[" + ", ".join(map(str, v)) + "]"
        elif self.kind == "floats":
            text = "[" + ", ".join(_float_text(np.float64(x)) for x in v) + "]"
        elif self.kind == "float":
            text = (_float_text(np.float64(v)) if math.isfinite(v)
                    else f"0x{np.array(v).view(np.uint64):016X}")
        elif self.kind == "str":
            text = v if re.fullmatch(r"[A-Za-z_][\w]*", v) else json.dumps(v)
        else:
            text = str(v)
        printer.print_string(" " + text)

    def parse_value(self, parser: Parser) -> Attribute:
        if self.kind == "flag":
            return UnitAttr()
        if self.kind == "ints":
            return self.to_attr(parser.parse_comma_separated_list(
                parser.Delimiter.SQUARE, lambda: parser.parse_integer(allow_boolean=False)))
        if self.kind == "floats":
            return self.to_attr(parser.parse_comma_separated_list(
                parser.Delimiter.SQUARE, parser.parse_number))
        if self.kind == "int":
            return self.to_attr(parser.parse_integer(allow_boolean=False))
        if self.kind == "float":
            if parser._current_token.text.startswith("0x"):  # noqa: SLF001 -- a hex bit pattern
                return self.to_attr(np.array(parser.parse_integer(), np.uint64).view(np.float64))
            return self.to_attr(parser.parse_number())
        return self.to_attr(parser.parse_identifier_or_str_literal(f" (the value of '{self.name}')"))


def _add_param_props(cls: type) -> type:
    for p in cls.__dict__.get("PARAMS", ()):
        setattr(cls, p.name, (prop_def if p.default is REQUIRED else opt_prop_def)(_PROP_TYPES[p.kind]))
    return cls


def nn_op(cls: type) -> type:
    """Register an nn op: properties from its PARAMS, then the IRDL definition."""
    return irdl_op_definition(_add_param_props(cls))


class NNOp(IRDLOperation):
    """Base of nn compute ops: one result, the generic syntax, a verifier that
    checks the given result type against `infer`."""

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    result = result_def(TensorType)
    traits = traits_def(Pure())

    # Subclasses define the shape rule; VerifyException on invalid operands.
    @classmethod
    def infer(cls, types: list[TensorType], p: SimpleNamespace) -> TensorType | None:
        raise NotImplementedError

    @classmethod
    def _values(cls, props: dict[str, Attribute], types: list[TensorType]) -> SimpleNamespace:
        v = SimpleNamespace()
        for p in cls.PARAMS:
            a = props.get(p.name)
            if a is None and p.default is REQUIRED:
                raise VerifyException(f"missing parameter '{p.name}'")
            setattr(v, p.name, p.from_attr(a) if a is not None or p.kind == "flag"
                    else p.default_for(types, v))
        return v

    @property
    def params(self) -> SimpleNamespace:
        """Parameter values with defaults applied (e.g. `conv.params.strides`)."""
        return self._values(self.properties, [o.type for o in self.operands])  # type: ignore[misc]

    def _build(self, operands: Sequence[SSAValue | Operation | Sequence[SSAValue | Operation] | None],
               result_type: Attribute | None = None, **params: Any) -> None:
        defs = [[] if o is None else [SSAValue.get(x) for x in o] if isinstance(o, (list, tuple))
                else SSAValue.get(o) for o in operands]
        types = [v.type for d in defs for v in (d if isinstance(d, list) else [d])]
        props: dict[str, Attribute] = {}
        so_far = SimpleNamespace()
        for p in self.PARAMS:
            given = params.get(p.name)
            value = p.default_for(types, so_far) if given is None and p.default is not REQUIRED else given
            if given is None and p.default is REQUIRED:
                raise ValueError(f"{self.name} needs '{p.name}'")
            if given is not None and given is not False:
                attr = p.to_attr(given)
                value = p.from_attr(attr)
                if p.default is REQUIRED or value != p.default_for(types, so_far):
                    props[p.name] = attr
            setattr(so_far, p.name, value)
        if result_type is None:
            result_type = type(self).infer(types, so_far)  # type: ignore[arg-type]
        super().__init__(operands=defs, result_types=[result_type], properties=props)

    def verify_(self) -> None:
        types = [o.type for o in self.operands]  # ranked tensors: IRDL checked them
        expected = self.infer(types, self._values(self.properties, types))
        res = self.result.type
        if expected is not None and not types_compatible(expected, res):  # type: ignore[arg-type]
            raise VerifyException(f"result type {res} does not match the inferred type {expected}")

    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        for p in self.PARAMS:
            if (a := self.properties.get(p.name)) is not None:
                printer.print_string(" " + p.name)
                if p.kind != "flag":
                    p.print_value(a, printer)
        if self.attributes:
            printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        types = [o.type for o in self.operands]
        res = self.result.type
        if types and all(t == res for t in types):
            printer.print_attribute(res)
            return
        printer.print_list(types, printer.print_attribute)
        printer.print_string(" -> ")
        printer.print_attribute(res)

    @classmethod
    def parse(cls, parser: Parser) -> "NNOp":
        operands = parser.parse_optional_undelimited_comma_separated_list(
            parser.parse_optional_unresolved_operand, parser.parse_unresolved_operand) or []
        by_name = {p.name: p for p in cls.PARAMS}
        props: dict[str, Attribute] = {}
        while (key := parser.parse_optional_keyword_in(by_name)) is not None:
            if key in props:
                parser.raise_error(f"parameter '{key}' is given twice")
            props[key] = by_name[key].parse_value(parser)
        for p in cls.PARAMS:
            if p.default is REQUIRED and p.name not in props:
                parser.raise_error(f"expected parameter '{p.name}'")
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        if parser.parse_optional_punctuation("->") is not None:
            res = parser.parse_type()
        elif len(types) == 1:
            res, types = types[0], types * len(operands)
        else:
            parser.raise_error("expected '->' and the result type", pos, parser.pos)
        if len(types) != len(operands):
            parser.raise_error(f"expected {len(operands)} operand types, got {len(types)}", pos, parser.pos)
        values = parser.resolve_operands(operands, types, pos)
        return cls.create(operands=values, result_types=[res], properties=props, attributes=attrs)


# Element-type checks shared by the shape rules.

def _need_float(t: TensorType, what: str) -> None:
    if not isinstance(t.element_type, FLOAT_TYPES):
        raise VerifyException(f"{what} must have a float element type, got {t}")


def _need_numeric(t: TensorType, what: str) -> None:
    if t.element_type == i1:
        raise VerifyException(f"{what} must have a numeric element type, got {t} "
                              "(i1 tensors take the logical ops and nn.select)")


def _need_bool(t: TensorType, what: str) -> None:
    if t.element_type != i1:
        raise VerifyException(f"{what} must have element type i1 (bool), got {t}")


def _broadcast(types: Sequence[TensorType]) -> Shape:
    try:
        return broadcast_shapes(*(shape_of(t) for t in types))
    except ValueError as e:
        raise VerifyException(str(e)) from None


def _same_element(types: Sequence[TensorType], what: str = "operands") -> Attribute:
    elts = {t.element_type for t in types}
    if len(elts) > 1:
        raise VerifyException(f"{what} must have one element type, got "
                              + ", ".join(str(t) for t in types))
    return types[0].element_type


def _need_rank(t: TensorType, rank: int, what: str, at_least: bool = False) -> None:
    r = len(shape_of(t))
    if r < rank if at_least else r != rank:
        raise VerifyException(f"{what} must have rank {'>= ' if at_least else ''}{rank}, got {t}")


def _need_shape(t: TensorType, shape: Sequence[int], what: str) -> None:
    s = shape_of(t)
    if len(s) != len(shape) or not all(dims_compatible(a, b) for a, b in zip(s, shape)):
        raise VerifyException(f"{what} must have shape {fmt_shape(shape)}, got {t}")


def _need_len(values: Sequence[int], n: int, what: str) -> None:
    if len(values) != n:
        raise VerifyException(f"{what} must have {n} entries, got {len(values)}")


# ---------------------------------------------------------------------------
# Elementwise ops, generated from tables.


def _erf(z: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(z).astype(z.dtype, copy=False)


UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{a.name: a.fn for a in activations.ACTIVATIONS},
    "exp": np.exp, "log": np.log, "neg": np.negative, "sqrt": np.sqrt,
    "reciprocal": np.reciprocal, "erf": _erf, "floor": np.floor, "ceil": np.ceil, "cos": np.cos,
    "acos": np.arccos, "asin": np.arcsin, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "round": np.round,  # half to even, as ONNX Round
    "sign": np.sign,
}


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b; on integers truncated toward zero (C, ONNX), and x / 0 = 0."""
    if a.dtype.kind == "f":
        return np.divide(a, b)
    q, r = np.floor_divide(a, b), np.remainder(a, b)  # both 0 where b == 0
    return q + ((r != 0) & ((a < 0) != (b < 0)))
# name -> (numpy function, float element types only)
BINARY: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], bool]] = {
    "add": (np.add, False), "sub": (np.subtract, False), "mul": (np.multiply, False),
    "div": (_div, False), "max": (np.maximum, False), "min": (np.minimum, False),
    "pow": (np.power, True),
    # remainders: mod takes the divisor's sign (Python's %, ONNX Mod), fmod the
    # dividend's (C's fmod, ONNX Mod fmod=1); an integer x mod 0 is 0
    "mod": (np.mod, False), "fmod": (np.fmod, False),
}


class UnaryOp(NNOp):
    """y = f(x) elementwise, f from UNARY; float tensors."""

    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation):
        self._build([x])

    @classmethod
    def infer(cls, types, p):
        _need_float(types[0], "operand")
        return types[0]


class BinaryOp(NNOp):
    """z = f(x, y) elementwise with numpy broadcasting."""

    FLOAT_ONLY: ClassVar[bool] = False
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = _same_element(types)
        if cls.FLOAT_ONLY:
            _need_float(types[0], "operands")
        _need_numeric(types[0], "operands")
        try:
            return TensorType(elt, broadcast_shapes(shape_of(types[0]), shape_of(types[1])))
        except ValueError as e:
            raise VerifyException(str(e)) from None


def _class_name(op: str) -> str:
    return "".join(w.capitalize() for w in op.split("_")) + "Op"


def _generate(base: type, op: str, namespace: dict[str, Any]) -> type:
    cls = type(_class_name(op), (base,), {"name": f"nn.{op}", "__module__": __name__,
                                          "__qualname__": _class_name(op), **namespace})
    cls = irdl_op_definition(cls)
    globals()[cls.__name__] = cls
    return cls


UNARY_OPS: dict[str, type[UnaryOp]] = {
    n: _generate(UnaryOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: elementwise {n}."})
    for n, f in UNARY.items()}
BINARY_OPS: dict[str, type[BinaryOp]] = {
    n: _generate(BinaryOp, n, {"fn": staticmethod(f), "FLOAT_ONLY": flt,
                               "__annotations__": {"FLOAT_ONLY": ClassVar[bool]},
                               "__doc__": f"nn.{n}: elementwise {n} with broadcasting."})
    for n, (f, flt) in BINARY.items()}


# Comparisons: numeric operands of one element type (also i1 for equal), numpy
# broadcasting, an i1 (bool) result. Floats compare as IEEE: NaN is unequal to
# everything and neither less nor greater.
COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "equal": np.equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
}
# Logical ops on i1 (bool) tensors, with broadcasting.
LOGICAL: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
}


class CompareOp(NNOp):
    """z = x <op> y elementwise with broadcasting, z of element type i1."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        _same_element(types)
        if cls.name != "nn.equal":
            _need_numeric(types[0], "operands")
        return TensorType(i1, _broadcast(types))


class LogicalOp(NNOp):
    """z = x <op> y on i1 (bool) tensors, with broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        for t in types:
            _need_bool(t, "operands")
        return TensorType(i1, _broadcast(types))


COMPARE_OPS: dict[str, type[CompareOp]] = {
    n: _generate(CompareOp, n, {"fn": staticmethod(f),
                                "__doc__": f"nn.{n}: elementwise {n} with broadcasting, an i1 result."})
    for n, f in COMPARE.items()}
LOGICAL_OPS: dict[str, type[LogicalOp]] = {
    n: _generate(LogicalOp, n, {"fn": staticmethod(f),
                                "__doc__": f"nn.{n}: elementwise logical {n} of i1 tensors."})
    for n, f in LOGICAL.items()}


@nn_op
class NotOp(NNOp):
    """Logical not of an i1 (bool) tensor."""

    name = "nn.not"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation):
        self._build([x])

    @classmethod
    def infer(cls, types, p):
        _need_bool(types[0], "operand")
        return types[0]


@nn_op
class SelectOp(NNOp):
    """cond ? x : y elementwise (ONNX Where): cond i1, x and y of one element
    type, the three broadcast together."""

    name = "nn.select"
    cond = operand_def(TensorType)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, cond: SSAValue | Operation, x: SSAValue | Operation, y: SSAValue | Operation):
        self._build([cond, x, y])

    @classmethod
    def infer(cls, types, p):
        _need_bool(types[0], "the condition")
        elt = _same_element(types[1:], "the two values")
        return TensorType(elt, _broadcast(types))


@nn_op
class IsNanOp(NNOp):
    """True where a float element is NaN."""

    name = "nn.is_nan"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation):
        self._build([x])

    @classmethod
    def infer(cls, types, p):
        _need_float(types[0], "operand")
        return TensorType(i1, shape_of(types[0]))


@nn_op
class IsInfOp(NNOp):
    """True where a float element is +inf (if detect_positive) or -inf (if
    detect_negative); both default to 1, as in ONNX IsInf."""

    name = "nn.is_inf"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("detect_positive", "int", 1),
                                           Param("detect_negative", "int", 1))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, detect_positive: int = 1, detect_negative: int = 1):
        self._build([x], detect_positive=detect_positive, detect_negative=detect_negative)

    @classmethod
    def infer(cls, types, p):
        _need_float(types[0], "operand")
        for name in ("detect_positive", "detect_negative"):
            if getattr(p, name) not in (0, 1):
                raise VerifyException(f"{name} must be 0 or 1, got {getattr(p, name)}")
        return TensorType(i1, shape_of(types[0]))


# ---------------------------------------------------------------------------
# Contractions: matmul, conv, sparse matmul and their fused forms.


@nn_op
class MatmulOp(NNOp):
    """numpy.matmul: batched, 1-D promotion, broadcast batch dimensions."""

    name = "nn.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = _same_element(types)
        _need_numeric(types[0], "operands")
        try:
            return TensorType(elt, matmul_shape(shape_of(types[0]), shape_of(types[1])))
        except ValueError as e:
            raise VerifyException(str(e)) from None


@nn_op
class MatmulTransposeAOp(NNOp):
    """lhs^T @ rhs for 2-D operands (MLIR's linalg.matmul_transpose_a): lhs [K, M],
    rhs [K, N] -> [M, N]. The weight gradient x^T @ dy of a dense layer, summed
    over the batch rows without moving the batch out of dimension 0."""

    name = "nn.matmul_transpose_a"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        elt = _same_element(types)
        _need_numeric(types[0], "operands")
        _need_rank(types[0], 2, "lhs [K, M]")
        _need_rank(types[1], 2, "rhs [K, N]")
        (k, m), (k2, n) = shape_of(types[0]), shape_of(types[1])
        if not dims_compatible(k, k2):
            raise VerifyException(f"lhs {types[0]} and rhs {types[1]} differ in dimension 0 (K)")
        return TensorType(elt, [m, n])


def _check_activation(name: str) -> None:
    if name not in activations.BY_NAME:
        raise VerifyException(f"unknown activation '{name}' (known: {', '.join(activations.BY_NAME)})")


def _check_bias(bias: TensorType | None, out: TensorType, what: str) -> None:
    if bias is None:
        return
    if bias.element_type != out.element_type:
        raise VerifyException(f"bias must have element type {out.element_type}, got {bias}")
    try:
        ok = broadcast_shapes(shape_of(out), shape_of(bias)) == shape_of(out)
    except ValueError:
        ok = False
    if not ok:
        raise VerifyException(f"bias {bias} does not broadcast to the {what} shape {fmt_shape(shape_of(out))}")


@nn_op
class FusedMatmulOp(NNOp):
    """act(x @ w + bias): the `fuse` pass's target for matmul (+ add) (+ activation)."""

    name = "nn.fused_matmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("activation", "str", "identity"),)
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation,
                 bias: SSAValue | Operation | None = None, activation: str = "identity"):
        self._build([x, w, [bias] if bias is not None else []], activation=activation)

    @classmethod
    def infer(cls, types, p):
        _check_activation(p.activation)
        _need_float(types[0], "input")
        out = MatmulOp.infer(types[:2], p)
        _check_bias(types[2] if len(types) > 2 else None, out, "matmul result")
        return out


def _ones(ts, v):
    return (1,) * max(len(shape_of(ts[0])) - 2, 0)


def _zeros(ts, v):
    return (0,) * (2 * max(len(shape_of(ts[0])) - 2, 0))


_WINDOW = (Param("strides", "ints", _ones), Param("pads", "ints", _zeros))


def conv_infer(x: TensorType, w: TensorType, p: SimpleNamespace) -> TensorType:
    """NCHW (N-d) convolution shape rule, shared by nn.conv and nn.fused_conv."""
    _need_float(x, "input")
    elt = _same_element([x, w], "input and weight")
    _need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    _need_rank(w, r, "weight (M, C/group, kernel...)")
    k = r - 2
    _need_len(p.strides, k, "strides")
    _need_len(p.dilations, k, "dilations")
    _need_len(p.pads, 2 * k, "pads (begin..., end...)")
    if min(p.strides) < 1 or min(p.dilations) < 1 or min(p.pads, default=0) < 0:
        raise VerifyException("strides and dilations must be >= 1 and pads >= 0")
    if p.group < 1:
        raise VerifyException(f"group must be >= 1, got {p.group}")
    (n, c, *spatial), (m, cg, *kernel) = shape_of(x), shape_of(w)
    if m != DYN and m % p.group:
        raise VerifyException(f"{m} output channels are not divisible by group {p.group}")
    if c != DYN and cg != DYN and c != cg * p.group:
        raise VerifyException(f"input has {c} channels but the weight expects {cg} x group "
                              f"{p.group} = {cg * p.group}")
    out = [window_out(s, kk, st, p.pads[i], p.pads[i + k], d)
           for i, (s, kk, st, d) in enumerate(zip(spatial, kernel, p.strides, p.dilations))]
    if any(o != DYN and o < 1 for o in out):
        raise VerifyException(f"the output would be empty: spatial size {fmt_shape(out)}")
    return TensorType(elt, [n, m, *out])


_CONV = (*_WINDOW, Param("dilations", "ints", _ones), Param("group", "int", 1))


@nn_op
class ConvOp(NNOp):
    """Convolution (cross-correlation, as ONNX Conv), NCHW; pads are [begin..., end...]."""

    name = "nn.conv"
    PARAMS: ClassVar[tuple[Param, ...]] = _CONV
    input = operand_def(TensorType)
    weight = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation, *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None):
        self._build([x, w], strides=strides, pads=pads, dilations=dilations, group=group)

    @classmethod
    def infer(cls, types, p):
        return conv_infer(types[0], types[1], p)


@nn_op
class FusedConvOp(NNOp):
    """act(conv(x, w) + bias[c]): the `fuse` pass's target for conv (+ add) (+ activation)."""

    name = "nn.fused_conv"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("activation", "str", "identity"), *_CONV)
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation,
                 bias: SSAValue | Operation | None = None, activation: str = "identity", *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None):
        self._build([x, w, [bias] if bias is not None else []], activation=activation,
                    strides=strides, pads=pads, dilations=dilations, group=group)

    @classmethod
    def infer(cls, types, p):
        _check_activation(p.activation)
        out = conv_infer(types[0], types[1], p)
        if len(types) > 2:
            _need_shape(types[2], shape_of(out)[1:2], "bias (one per output channel)")
            _same_element([out, types[2]], "input and bias")
        return out


@nn_op
class SparseMatmulOp(NNOp):
    """y[..., cols[e]] += x[..., rows[e]] * values[e]: a sparse (K x N) weight in COO form."""

    name = "nn.sparse_matmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("rows", "ints"), Param("cols", "ints"),
        Param("in_features", "int"), Param("out_features", "int"))
    input = operand_def(TensorType)
    values = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, values: SSAValue | Operation, rows: Sequence[int],
                 cols: Sequence[int], in_features: int, out_features: int):
        self._build([x, values], rows=rows, cols=cols, in_features=in_features,
                    out_features=out_features)

    @classmethod
    def infer(cls, types, p):
        x, vals = types
        _need_float(x, "input")
        _same_element(types, "input and values")
        _need_rank(x, 1, "input", at_least=True)
        k, n = p.in_features, p.out_features
        if k < 1 or n < 1:
            raise VerifyException(f"in_features and out_features must be >= 1, got {k} and {n}")
        if not dims_compatible(shape_of(x)[-1], k):
            raise VerifyException(f"input's last dimension must be in_features = {k}, got {x}")
        nnz = len(p.rows)
        _need_len(p.cols, nnz, "cols (one per row index)")
        _need_shape(vals, (nnz,), "values (one per nonzero)")
        for what, idx, bound in (("row", p.rows, k), ("col", p.cols, n)):
            bad = next((e for e, i in enumerate(idx) if not 0 <= i < bound), None)
            if bad is not None:
                raise VerifyException(f"entry {bad}: {what} {idx[bad]} is out of range [0, {bound})")
        seen: dict[tuple[int, int], int] = {}
        for e, rc in enumerate(zip(p.rows, p.cols)):
            if rc in seen:
                raise VerifyException(f"entries {seen[rc]} and {e} both set (row {rc[0]}, col {rc[1]})")
            seen[rc] = e
        return TensorType(x.element_type, [*shape_of(x)[:-1], n])

    def dense_weight(self, values: np.ndarray) -> np.ndarray:
        """The (in_features x out_features) dense matrix these entries describe."""
        p = self.params
        w = np.zeros((p.in_features, p.out_features), dtype=values.dtype)
        w[list(p.rows), list(p.cols)] = values
        return w


# ---------------------------------------------------------------------------
# Pools


_POOL_WINDOW = (*_WINDOW, Param("dilations", "ints", _ones))


def _pool_infer(x: TensorType, p: SimpleNamespace) -> TensorType:
    _need_float(x, "input")
    _need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    k = len(shape_of(x)) - 2
    _need_len(p.kernel, k, "kernel")
    _need_len(p.strides, k, "strides")
    _need_len(p.pads, 2 * k, "pads (begin..., end...)")
    _need_len(p.dilations, k, "dilations")
    if min(p.kernel) < 1 or min(p.strides) < 1 or min(p.dilations) < 1 or min(p.pads) < 0:
        raise VerifyException("kernel, strides and dilations must be >= 1 and pads >= 0")
    span = [(kk - 1) * d + 1 for kk, d in zip(p.kernel, p.dilations)]  # the dilated window
    if any(pd >= kk for pd, kk in zip(p.pads, span * 2)):
        raise VerifyException(f"pads {list(p.pads)} must be smaller than the kernel {list(p.kernel)}"
                              + (f" dilated by {list(p.dilations)}" if max(p.dilations) > 1 else ""))
    n, c, *spatial = shape_of(x)
    out = [window_out(s, kk, st, p.pads[i], p.pads[i + k], d)
           for i, (s, kk, st, d) in enumerate(zip(spatial, p.kernel, p.strides, p.dilations))]
    if any(o != DYN and o < 1 for o in out):
        raise VerifyException(f"the output would be empty: spatial size {fmt_shape(out)}")
    return TensorType(x.element_type, [n, c, *out])


@nn_op
class MaxPoolOp(NNOp):
    """Max over (dilated) windows (NCHW); padding never wins (it is -inf)."""

    name = "nn.max_pool"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations)

    @classmethod
    def infer(cls, types, p):
        return _pool_infer(types[0], p)


@nn_op
class AvgPoolOp(NNOp):
    """Mean over (dilated) windows (NCHW); padded cells count only with count_include_pad."""

    name = "nn.avg_pool"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW,
                                           Param("count_include_pad", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 count_include_pad: bool = False, dilations: Sequence[int] | None = None):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                    count_include_pad=count_include_pad)

    @classmethod
    def infer(cls, types, p):
        return _pool_infer(types[0], p)


@nn_op
class MaxPoolIndicesOp(NNOp):
    """Where nn.max_pool finds each maximum (ONNX MaxPool's Indices output):
    the flat i64 index into the input of the window's first maximum, the
    spatial position row-major, or column-major with `column_major` (ONNX
    storage_order 1); padding never wins."""

    name = "nn.max_pool_indices"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_POOL_WINDOW,
                                           Param("column_major", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, column_major: bool = False):
        self._build([x], kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                    column_major=column_major)

    @classmethod
    def infer(cls, types, p):
        return TensorType(i64, shape_of(_pool_infer(types[0], p)))


# ---------------------------------------------------------------------------
# Reductions, softmax, norms


def _all_axes(ts, v):
    return tuple(range(len(shape_of(ts[0]))))


class ReduceOp(NNOp):
    """Reduce over `axes` (default: all), keeping them as size 1 with `keepdims`."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axes", "ints", _all_axes),
                                           Param("keepdims", "flag", False))
    FLOAT_ONLY: ClassVar[bool] = False
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axes: Sequence[int] | None = None,
                 keepdims: bool = False):
        self._build([x], axes=axes, keepdims=keepdims)

    @classmethod
    def infer(cls, types, p):
        x = types[0]
        if cls.FLOAT_ONLY:
            _need_float(x, "operand")
        _need_numeric(x, "operand")
        shape = shape_of(x)
        axes = normalize_axes(p.axes, len(shape))
        out = [1 if i in axes else d for i, d in enumerate(shape) if p.keepdims or i not in axes]
        return TensorType(x.element_type, out)


_add_param_props(ReduceOp)
# name -> (numpy reduction, float only)
REDUCE: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "reduce_sum": (np.sum, False), "reduce_mean": (np.mean, True), "reduce_max": (np.max, False),
    "reduce_min": (np.min, False), "reduce_prod": (np.prod, False),
}
REDUCE_OPS: dict[str, type[ReduceOp]] = {
    n: _generate(ReduceOp, n, {"fn": staticmethod(f), "FLOAT_ONLY": flt,
                               "__annotations__": {"FLOAT_ONLY": ClassVar[bool]},
                               "__doc__": f"nn.{n}: {f.__name__} over axes."})
    for n, (f, flt) in REDUCE.items()}


class _AxisOp(NNOp):
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", -1),)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int = -1):
        self._build([x], axis=axis)

    @classmethod
    def infer(cls, types, p):
        _need_float(types[0], "operand")
        normalize_axis(p.axis, len(shape_of(types[0])))
        return types[0]


_add_param_props(_AxisOp)


@nn_op
class SoftmaxOp(_AxisOp):
    """exp(x - max) / sum(exp(x - max)) along `axis` (default -1)."""

    name = "nn.softmax"


@nn_op
class LogSoftmaxOp(_AxisOp):
    """x - max - log(sum(exp(x - max))) along `axis` (default -1)."""

    name = "nn.log_softmax"


@nn_op
class BatchNormOp(NNOp):
    """Inference batch norm over channel axis 1: (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "nn.batch_norm"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("epsilon", "float", 1e-5),)
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    mean = operand_def(TensorType)
    var = operand_def(TensorType)

    def __init__(self, x, scale, bias, mean, var, epsilon: float = 1e-5):
        self._build([x, scale, bias, mean, var], epsilon=epsilon)

    @classmethod
    def infer(cls, types, p):
        x = types[0]
        _need_float(x, "input")
        _need_rank(x, 2, "input (N, C, ...)", at_least=True)
        _same_element(types)
        c = shape_of(x)[1]
        for what, t in zip(("scale", "bias", "mean", "var"), types[1:]):
            _need_shape(t, (c,), f"{what} (one per channel)")
        if p.epsilon < 0:
            raise VerifyException(f"epsilon must be >= 0, got {p.epsilon}")
        return x


@nn_op
class LayerNormOp(NNOp):
    """Normalize over axes [axis, rank): (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "nn.layer_norm"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", -1), Param("epsilon", "float", 1e-5))
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)

    def __init__(self, x, scale, bias, axis: int = -1, epsilon: float = 1e-5):
        self._build([x, scale, bias], axis=axis, epsilon=epsilon)

    @classmethod
    def infer(cls, types, p):
        x = types[0]
        _need_float(x, "input")
        _same_element(types)
        shape = shape_of(x)
        norm = shape[normalize_axis(p.axis, len(shape)):]
        _need_shape(types[1], norm, "scale (the normalized shape)")
        _need_shape(types[2], norm, "bias (the normalized shape)")
        if p.epsilon < 0:
            raise VerifyException(f"epsilon must be >= 0, got {p.epsilon}")
        return x


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
        elt = _same_element(types, "inputs")
        rank = len(shape_of(types[0]))
        for t in types:
            _need_rank(t, rank, "every input")
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
        _need_len(p.ends, n, "ends (one per start)")
        _need_len(p.axes, n, "axes (one per start)")
        _need_len(p.steps, n, "steps (one per start)")
        axes = normalize_axes(p.axes, len(shape))
        if 0 in p.steps:
            raise VerifyException("steps must be nonzero")
        for a, s, e, st in zip(axes, p.starts, p.ends, p.steps):
            shape[a] = slice_length(shape[a], s, e, st)
        return TensorType(types[0].element_type, shape)


@nn_op
class GatherOp(NNOp):
    """ONNX Gather: out = take(x, indices, axis); result = x[:axis] + indices + x[axis+1:]."""

    name = "nn.gather"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation, axis: int = 0):
        self._build([x, indices], axis=axis)

    @classmethod
    def infer(cls, types, p):
        x, idx = types
        if idx.element_type not in (i64, i32):
            raise VerifyException(f"indices must be i64 or i32, got {idx}")
        _need_rank(x, 1, "input", at_least=True)
        shape = shape_of(x)
        a = normalize_axis(p.axis, len(shape))
        return TensorType(x.element_type, [*shape[:a], *shape_of(idx), *shape[a + 1:]])


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
        _need_len(p.pads, 2 * r, "pads (begin..., end...)")
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


@nn_op
class CastOp(NNOp):
    """Convert each element to the result's numeric element type (f16, f32, f64,
    i8, i32, i64), as numpy's astype and ONNX's Cast: floats round to nearest
    even, integers wrap when narrowed, floats truncate toward zero when made
    integers (ONNX leaves a value out of the integer's range undefined: native
    code saturates, the reference wraps as numpy does);
    the shape is kept. Casts to and from bool are comparisons and selects.
    `nn.cast %x : tensor<?x3xf32> -> tensor<?x3xf64>`."""

    name = "nn.cast"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, element_type: Attribute | np.dtype | type):
        x = SSAValue.get(x)
        elt = element_type if isinstance(element_type, Attribute) else element_type_of(element_type)
        self._build([x], TensorType(elt, shape_of(x.type)))
        self.verify_()  # the result type is given, not inferred: check it now, as other builders do

    @classmethod
    def infer(cls, types, p):
        _need_numeric(types[0], "operand")
        return None  # the target element type is the result type's; checked in verify_

    def verify_(self) -> None:
        super().verify_()
        src, dst = self.input.type, self.result.type
        _need_numeric(dst, "the result")
        s, d = shape_of(src), shape_of(dst)
        if len(s) != len(d) or not all(dims_compatible(a, b) for a, b in zip(s, d)):
            raise VerifyException(f"the result must have the operand's shape {fmt_shape(s)}, got {dst}")


# ---------------------------------------------------------------------------
# Index-valued reductions, scans, element gathers and scatters, triangles


def _need_indices(t: TensorType, what: str = "indices") -> None:
    if t.element_type not in (i64, i32):
        raise VerifyException(f"{what} must be i64 or i32, got {t}")


class ArgReduceOp(NNOp):
    """The index (i64) of the extreme element along `axis`: the first one on
    ties, the last with `select_last_index`; the axis stays as size 1 with
    `keepdims`."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0), Param("keepdims", "flag", False),
                                           Param("select_last_index", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int = 0, keepdims: bool = False,
                 select_last_index: bool = False):
        self._build([x], axis=axis, keepdims=keepdims, select_last_index=select_last_index)

    @classmethod
    def infer(cls, types, p):
        _need_numeric(types[0], "operand")
        shape = shape_of(types[0])
        a = normalize_axis(p.axis, len(shape))
        if shape[a] == 0:
            raise VerifyException(f"axis {a} is empty: {cls.name} has no index to give")
        return TensorType(i64, [1 if i == a else d for i, d in enumerate(shape) if p.keepdims or i != a])


_add_param_props(ArgReduceOp)
# name -> numpy rule (the first index of the extreme on ties)
ARG_REDUCE: dict[str, Callable[..., np.ndarray]] = {"argmax": np.argmax, "argmin": np.argmin}
ARG_REDUCE_OPS: dict[str, type[ArgReduceOp]] = {
    n: _generate(ArgReduceOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: {ArgReduceOp.__doc__}"})
    for n, f in ARG_REDUCE.items()}


@nn_op
class CumSumOp(NNOp):
    """Running sum along `axis`: y[j] = x[0] + ... + x[j]; `exclusive` leaves
    x[j] itself out, `reverse` sums from the end (ONNX CumSum)."""

    name = "nn.cumsum"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int"), Param("exclusive", "flag", False),
                                           Param("reverse", "flag", False))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, axis: int, exclusive: bool = False,
                 reverse: bool = False):
        self._build([x], axis=axis, exclusive=exclusive, reverse=reverse)

    @classmethod
    def infer(cls, types, p):
        _need_numeric(types[0], "operand")
        normalize_axis(p.axis, len(shape_of(types[0])))
        return types[0]


def _same_rank_indices(x: TensorType, idx: TensorType, axis: int, what: str = "indices") -> None:
    """indices of an element gather/scatter: the input's rank, and no larger
    than the input in any other dimension (the batch only against the batch)."""
    _need_indices(idx, what)
    sx, si = shape_of(x), shape_of(idx)
    if len(si) != len(sx):
        raise VerifyException(f"{what} must have the input's rank {len(sx)}, got {idx}")
    for i, (dx, di) in enumerate(zip(sx, si)):
        if i != axis and (di > dx if DYN not in (dx, di) else dx != di):
            raise VerifyException(f"{what} dimension {i} ({'?' if di == DYN else di}) exceeds "
                                  f"the input's ({'?' if dx == DYN else dx})")


@nn_op
class GatherElementsOp(NNOp):
    """ONNX GatherElements: out[i] = x[i with i[axis] = indices[i]]; the
    result has the indices' shape. A negative index counts from the end."""

    name = "nn.gather_elements"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation, axis: int = 0):
        self._build([x, indices], axis=axis)

    @classmethod
    def infer(cls, types, p):
        x, idx = types
        _need_rank(x, 1, "input", at_least=True)
        a = normalize_axis(p.axis, len(shape_of(x)))
        _same_rank_indices(x, idx, a)
        return TensorType(x.element_type, shape_of(idx))


SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_reduction(r: str, x: TensorType) -> None:
    if r not in SCATTER_REDUCTIONS:
        raise VerifyException(f"unknown reduction '{r}' (known: {', '.join(SCATTER_REDUCTIONS)})")
    if r != "none":
        _need_numeric(x, f"the input of a reduction {r}")


@nn_op
class ScatterElementsOp(NNOp):
    """ONNX ScatterElements: a copy of x in which, for every position i of
    `indices`, out[i with i[axis] = indices[i]] = updates[i] (reduction none)
    or is combined with it (add, mul, max, min), in row-major order of i."""

    name = "nn.scatter_elements"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("axis", "int", 0), Param("reduction", "str", "none"))
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    updates = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation,
                 updates: SSAValue | Operation, axis: int = 0, reduction: str = "none"):
        self._build([x, indices, updates], axis=axis, reduction=reduction)

    @classmethod
    def infer(cls, types, p):
        x, idx, upd = types
        _check_reduction(p.reduction, x)
        _need_rank(x, 1, "input", at_least=True)
        a = normalize_axis(p.axis, len(shape_of(x)))
        _same_rank_indices(x, idx, a)
        _need_shape(upd, shape_of(idx), "updates (the indices' shape)")
        _same_element([x, upd], "input and updates")
        return x


@nn_op
class ScatterNDOp(NNOp):
    """ONNX ScatterND: a copy of x in which, for every index tuple
    t = indices[j, :] (k = indices' last dimension), the slice out[t] is set
    to updates[j] (reduction none) or combined with it (add, mul, max, min)."""

    name = "nn.scatter_nd"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("reduction", "str", "none"),)
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    updates = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, indices: SSAValue | Operation,
                 updates: SSAValue | Operation, reduction: str = "none"):
        self._build([x, indices, updates], reduction=reduction)

    @classmethod
    def infer(cls, types, p):
        x, idx, upd = types
        _check_reduction(p.reduction, x)
        _need_indices(idx)
        _need_rank(idx, 1, "indices", at_least=True)
        sx, si = shape_of(x), shape_of(idx)
        k = si[-1]
        if k == DYN or not 1 <= k <= len(sx):
            raise VerifyException(f"the indices' last dimension must be 1..{len(sx)} (the input's "
                                  f"rank), got {idx}")
        _need_shape(upd, (*si[:-1], *sx[k:]), "updates (indices' shape[:-1] + input's shape[k:])")
        _same_element([x, upd], "input and updates")
        return x


class TriangleOp(NNOp):
    """The upper (triu) or lower (tril) triangle of the last two dimensions,
    from diagonal `k` (0: the main one, > 0 above, < 0 below); zeros elsewhere."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("k", "int", 0),)
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, k: int = 0):
        self._build([x], k=k)

    @classmethod
    def infer(cls, types, p):
        _need_rank(types[0], 2, "input", at_least=True)
        return types[0]


_add_param_props(TriangleOp)
TRIANGLE: dict[str, Callable[..., np.ndarray]] = {"triu": np.triu, "tril": np.tril}
TRIANGLE_OPS: dict[str, type[TriangleOp]] = {
    n: _generate(TriangleOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: {TriangleOp.__doc__}"})
    for n, f in TRIANGLE.items()}


# ---------------------------------------------------------------------------
# Transposed convolution and resize


def conv_transpose_infer(x: TensorType, w: TensorType, p: SimpleNamespace) -> TensorType:
    _need_float(x, "input")
    elt = _same_element([x, w], "input and weight")
    _need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    _need_rank(w, r, "weight (C, M/group, kernel...)")
    k = r - 2
    _need_len(p.strides, k, "strides")
    _need_len(p.dilations, k, "dilations")
    _need_len(p.pads, 2 * k, "pads (begin..., end...)")
    _need_len(p.output_padding, k, "output_padding")
    if min(p.strides) < 1 or min(p.dilations) < 1 or min(p.pads, default=0) < 0 \
            or min(p.output_padding) < 0:
        raise VerifyException("strides and dilations must be >= 1, pads and output_padding >= 0")
    if p.group < 1:
        raise VerifyException(f"group must be >= 1, got {p.group}")
    (n, c, *spatial), (cw, mg, *kernel) = shape_of(x), shape_of(w)
    if c != DYN and cw != DYN and c != cw:
        raise VerifyException(f"input has {c} channels but the weight has {cw}")
    if cw != DYN and cw % p.group:
        raise VerifyException(f"{cw} input channels are not divisible by group {p.group}")
    out = [DYN if s == DYN or kk == DYN else
           (s - 1) * st + (kk - 1) * d + 1 - p.pads[i] - p.pads[i + k] + op
           for i, (s, kk, st, d, op) in enumerate(zip(spatial, kernel, p.strides, p.dilations,
                                                      p.output_padding))]
    if any(o != DYN and o < 1 for o in out):
        raise VerifyException(f"the output would be empty: spatial size {fmt_shape(out)}")
    return TensorType(elt, [n, DYN if mg == DYN else mg * p.group, *out])


def _zeros_k(ts, v):
    return (0,) * max(len(shape_of(ts[0])) - 2, 0)


@nn_op
class ConvTransposeOp(NNOp):
    """Transposed convolution (ONNX ConvTranspose, the gradient of nn.conv with
    respect to its input), NCHW, weight (C, M/group, kernel...): each input
    point adds its weighted kernel into the output at stride steps. Output
    size (in - 1) * stride + (kernel - 1) * dilation + 1 - pads + output_padding."""

    name = "nn.conv_transpose"
    PARAMS: ClassVar[tuple[Param, ...]] = (*_CONV, Param("output_padding", "ints", _zeros_k))
    input = operand_def(TensorType)
    weight = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation, *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None,
                 output_padding: Sequence[int] | None = None):
        self._build([x, w], strides=strides, pads=pads, dilations=dilations, group=group,
                    output_padding=output_padding)

    @classmethod
    def infer(cls, types, p):
        return conv_transpose_infer(types[0], types[1], p)


def conv_weight_grad_infer(x: TensorType, dy: TensorType, p: SimpleNamespace) -> TensorType:
    _need_float(x, "input")
    elt = _same_element([x, dy], "input and output gradient")
    _need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    _need_rank(dy, r, "output gradient (N, M, spatial...)")
    k = r - 2
    _need_len(p.kernel, k, "kernel")
    _need_len(p.strides, k, "strides")
    _need_len(p.dilations, k, "dilations")
    _need_len(p.pads, 2 * k, "pads (begin..., end...)")
    if min(p.kernel) < 1 or min(p.strides) < 1 or min(p.dilations) < 1 or min(p.pads) < 0:
        raise VerifyException("kernel, strides and dilations must be >= 1 and pads >= 0")
    if p.group < 1:
        raise VerifyException(f"group must be >= 1, got {p.group}")
    (n, c, *spatial), (n2, m, *out) = shape_of(x), shape_of(dy)
    if not dims_compatible(n, n2):
        raise VerifyException(f"input {x} and output gradient {dy} differ in the batch dimension")
    if c == DYN or m == DYN:
        raise VerifyException("the channel counts (dimension 1) must be static")
    for what, v in (("input channels", c), ("output channels", m)):
        if v % p.group:
            raise VerifyException(f"{v} {what} are not divisible by group {p.group}")
    conv = [window_out(s, kk, st, p.pads[i], p.pads[i + k], d)
            for i, (s, kk, st, d) in enumerate(zip(spatial, p.kernel, p.strides, p.dilations))]
    if list(out) != conv:
        raise VerifyException(f"output gradient has spatial size {fmt_shape(out)}, but the conv's "
                              f"output is {fmt_shape(conv)}")
    return TensorType(elt, [m, c // p.group, *p.kernel])


@nn_op
class ConvWeightGradOp(NNOp):
    """The gradient of nn.conv with respect to its weight: x (N, C, spatial...)
    and the output's cotangent dy (N, M, out...) -> (M, C/group, kernel...),
        dw[m, c, k] = sum over n, o of dy[n, m, o] * x[n, g(m) * C/group + c,
                                                    o * stride + k * dilation - pad_begin]
    (g(m) the group of output channel m; padding reads 0). The conv's params,
    and its kernel size (which the shapes do not determine). The sum runs over
    the batch in dimension 0, which may be the run-time `?`: a transposed conv
    would have to move the batch into the channels. Also the weight gradient of
    nn.conv_transpose (x and dy swapped)."""

    name = "nn.conv_weight_grad"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *_CONV)
    input = operand_def(TensorType)
    output_grad = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, dy: SSAValue | Operation, kernel: Sequence[int], *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None):
        self._build([x, dy], kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                    group=group)

    @classmethod
    def infer(cls, types, p):
        return conv_weight_grad_infer(types[0], types[1], p)


RESIZE_MODES = ("nearest", "linear", "cubic")
RESIZE_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                      "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _default_roi(ts, v):
    r = len(shape_of(ts[0]))
    return (0.0,) * r + (1.0,) * r


@dataclass(frozen=True)
class ResizeTaps:
    """How one resized axis reads its input: output position o is
    sum_t weights[o, t] * x[index[o, t]] (index clamped into range), or the
    extrapolation value where `outside[o]` (tf_crop_and_resize only)."""

    axis: int
    index: np.ndarray  # (out, taps) int64
    weights: np.ndarray  # (out, taps) float64
    outside: np.ndarray | None  # (out,) bool, or None when no position is outside


def _resize_source(p: SimpleNamespace, y: np.ndarray, scale: float, n_in: int, n_out: int,
                   roi: tuple[float, float]) -> np.ndarray:
    """The input coordinate of each output coordinate y (ONNX Resize's
    coordinate_transformation_mode)."""
    width = scale * n_in  # the output length the scale implies (not rounded)
    mode = p.coordinate_transformation_mode
    if mode == "align_corners":
        return np.zeros_like(y) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        x = (np.full_like(y, (hi - lo) * (n_in - 1) / 2) if width == 1
             else y * (hi - lo) * (n_in - 1) / (width - 1))
        return x + lo * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return np.full_like(y, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    x = (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":  # the center of the input maps to the center of the output
        x = x + n_in / 2 * (1 - n_out / width)
    return x


def _resize_coefficients(p: SimpleNamespace, ratio: np.ndarray, scale: float) -> np.ndarray:
    """Interpolation weights (out, taps) of the taps at floor-relative offsets,
    for `ratio` in (0, 1] (1 at an integer coordinate), as ONNX defines them."""
    r = ratio[:, None]
    if p.mode == "linear" and not p.antialias:
        return np.concatenate([1 - r, r], axis=1)
    a = p.cubic_coeff_a
    if p.mode == "cubic" and not p.antialias:
        s, t = r + 1, 1 - r
        return np.concatenate([((a * s - 5 * a) * s + 8 * a) * s - 4 * a,
                               ((a + 2) * r - (a + 3)) * r * r + 1,
                               ((a + 2) * t - (a + 3)) * t * t + 1,
                               ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a], axis=1)
    # Antialias: the filter stretched by 1/scale when downsampling, normalized.
    sc = min(scale, 1.0)
    if p.mode == "linear":
        start = int(np.floor(-1 / sc) + 1)
        args = np.abs((np.arange(start, 2 - start)[None, :] - r) * sc)
        c = np.clip(1 - args, 0, 1)
    else:
        start = int(np.floor(-2 / sc) + 1)
        x = np.abs((np.arange(start, 2 - start)[None, :] - r) * sc)
        c = np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                     np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))
    return c / c.sum(axis=1, keepdims=True)


def resize_axis_taps(p: SimpleNamespace, axis: int, n_in: int, n_out: int, scale: float,
                     roi: tuple[float, float]) -> ResizeTaps:
    y = np.arange(n_out, dtype=np.float64)
    x = _resize_source(p, y, scale, n_in, n_out, roi)
    outside = None
    if p.coordinate_transformation_mode == "tf_crop_and_resize":
        out = (x < 0) | (x > n_in - 1)
        outside = out if out.any() else None
    if p.mode == "nearest":
        rounded = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
                   "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                   "floor": np.floor, "ceil": np.ceil}[p.nearest_mode](x)
        index = np.clip(rounded, 0, n_in - 1).astype(np.int64)[:, None]
        return ResizeTaps(axis, index, np.ones((n_out, 1)), outside)
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)  # in (0, 1]: prefer the taps left of x
    coeffs = _resize_coefficients(p, ratio, scale)
    n = coeffs.shape[1]
    # The n taps nearest to x, ties to the left (as ONNX picks its neighbours).
    frac = x - base
    if n % 2 == 0:
        first = np.where(frac == 0, base - n // 2, base - n // 2 + 1)
    else:
        first = np.where(frac <= 0.5, base - (n - 1) // 2, base - (n - 1) // 2 + 1)
    index = first[:, None].astype(np.int64) + np.arange(n)[None, :]
    if p.exclude_outside:
        coeffs = np.where((index < 0) | (index >= n_in), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    return ResizeTaps(axis, np.clip(index, 0, n_in - 1), coeffs, outside)


@nn_op
class ResizeOp(NNOp):
    """ONNX Resize to the result type's shape: per axis, an output coordinate
    maps to an input coordinate (`coordinate_transformation_mode`, using
    `scales` and, for tf_crop_and_resize, `roi` = [starts..., ends...]) that
    is read by `mode`: nearest (rounded by `nearest_mode`), linear or cubic
    (`cubic_coeff_a`, `exclude_outside`), optionally `antialias`ed when
    downsampling. Axes of scale 1 and unchanged size are left as they are."""

    name = "nn.resize"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("mode", "str", "nearest"), Param("scales", "floats"),
        Param("coordinate_transformation_mode", "str", "half_pixel"),
        Param("nearest_mode", "str", "round_prefer_floor"), Param("cubic_coeff_a", "float", -0.75),
        Param("exclude_outside", "flag", False), Param("antialias", "flag", False),
        Param("roi", "floats", _default_roi), Param("extrapolation_value", "float", 0.0))
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, sizes: Sequence[int], scales: Sequence[float],
                 mode: str = "nearest", **params: Any):
        x = SSAValue.get(x)
        rt = TensorType(x.type.element_type, [DYN if d is None or d < 0 else int(d) for d in sizes])
        self._build([x], rt, mode=mode, scales=scales, **params)
        self.verify_()

    @classmethod
    def infer(cls, types, p):
        return None  # the output sizes are the result type's; checked in verify_

    def verify_(self) -> None:
        x, res = self.input.type, self.result.type
        p = self.params
        for name, value, known in (("mode", p.mode, RESIZE_MODES),
                                   ("coordinate_transformation_mode",
                                    p.coordinate_transformation_mode, RESIZE_COORDINATES),
                                   ("nearest_mode", p.nearest_mode, NEAREST_MODES)):
            if value not in known:
                raise VerifyException(f"unknown {name} '{value}' (known: {', '.join(known)})")
        if p.mode != "nearest":
            _need_float(x, f"the input of a {p.mode} resize")
        elif p.antialias:
            raise VerifyException("antialias applies to the linear and cubic modes only")
        if res.element_type != x.element_type:
            raise VerifyException(f"element type changes from {x.element_type} to {res.element_type}")
        si, so = shape_of(x), shape_of(res)
        _need_rank(res, len(si), "the result (the input's rank)")
        _need_len(p.scales, len(si), "scales (one per axis)")
        _need_len(p.roi, 2 * len(si), "roi (starts..., ends...)")
        if not all(math.isfinite(v) for v in (*p.scales, *p.roi)) or min(p.scales, default=1) <= 0:
            raise VerifyException(f"scales must be finite and > 0 and roi finite, got scales "
                                  f"{list(p.scales)}")
        for i, (a, b) in enumerate(zip(si, so)):
            if (a == DYN) != (b == DYN) or (a == DYN and not self._identity(i)):
                raise VerifyException(f"dimension {i} is dynamic: it must keep its size (scale 1)")

    def _identity(self, axis: int) -> bool:
        """Axis left unchanged: scale 1 (up to rounding), same size, the whole roi."""
        p, r = self.params, len(self.params.scales)
        si, so = shape_of(self.input.type), shape_of(self.result.type)
        whole = p.coordinate_transformation_mode != "tf_crop_and_resize" or (
            math.isclose(p.roi[axis], 0.0, abs_tol=1e-9) and math.isclose(p.roi[axis + r], 1.0))
        return math.isclose(p.scales[axis], 1.0) and si[axis] == so[axis] and whole

    def taps(self) -> list[ResizeTaps]:
        """The resized axes (in order) and how each reads its input."""
        p, r = self.params, len(self.params.scales)
        si, so = shape_of(self.input.type), shape_of(self.result.type)
        return [resize_axis_taps(p, a, si[a], so[a], p.scales[a], (p.roi[a], p.roi[a + r]))
                for a in range(r) if not self._identity(a)]


# ---------------------------------------------------------------------------
# Constants and weights


def _data_for(data: Any, ttype: TensorType | None) -> tuple[np.ndarray, TensorType]:
    arr = np.asarray(data) if ttype is None else np.asarray(data, dtype=numpy_dtype(ttype.element_type))
    if ttype is None:
        if arr.dtype == np.float64 and not isinstance(data, np.ndarray):
            arr = arr.astype(np.float32)  # Python floats: the dialect's default element type
        ttype = TensorType(element_type_of(arr.dtype), arr.shape)
    elif arr.shape != shape_of(ttype):
        if arr.ndim != 0:
            raise ValueError(f"data of shape {fmt_shape(arr.shape)} does not fit {ttype}")
        arr = np.broadcast_to(arr, shape_of(ttype))
    return arr, ttype


def _check_data(data: TensorData | None, ttype: Attribute) -> None:
    if not isinstance(ttype, TensorType) or DYN in shape_of(ttype):
        raise VerifyException(f"type must be a tensor type with a static shape, got {ttype}")
    try:
        numpy_dtype(ttype.element_type)
    except ValueError as e:
        raise VerifyException(str(e)) from None
    if data is not None and data.type != ttype:
        raise VerifyException(f"data of type {data.type} does not match the declared type {ttype}")


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A small inline tensor literal: `%c = nn.constant dense<[1.0, 2.0]> : tensor<2xf32>`."""

    name = "nn.constant"
    value = prop_def(TensorData)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, value: Any, type: TensorType | None = None):
        arr, ttype = _data_for(value, type)
        super().__init__(properties={"value": TensorData(arr)}, result_types=[ttype])

    @property
    def data(self) -> np.ndarray:
        return self.value.data

    def verify_(self) -> None:
        _check_data(self.value, self.result.type)

    def print(self, printer: Printer) -> None:
        printer.print_string(f" dense<{format_literal(self.data)}>")
        if self.attributes:
            printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> "ConstantOp":
        parser.parse_keyword("dense")
        start = parser.pos
        body = _take_angle_body(parser)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        ttype = parser.parse_type()
        if not isinstance(ttype, TensorType):
            parser.raise_error(f"expected a tensor type, got {ttype}")
        op = cls(_parse_dense(parser, ttype, start, body), ttype)
        op.attributes.update(attrs)
        return op


# Read by WeightOp's printer, set by ncc.ir.print_module: None prints all weight data.
WEIGHT_ELISION_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "weight_elision_limit", default=None)
# On an nn.weight made from constants (a literal lowered to a buffer): not trainable.
CONSTANT_MARK = "ncc.constant"


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A module-level weight: `nn.weight @name : tensor<4x3xf32> = dense<...>`.

    The data is a read-only numpy array held by reference (never re-encoded per
    use); no data means a run-time parameter (`nn.weight @w : tensor<...>`) or,
    with `elided`, data left out when printed (`= dense_resource<__elided__>`)."""

    name = "nn.weight"
    sym_name = prop_def(SymbolNameConstraint())
    type = prop_def(TensorType)
    value = opt_prop_def(TensorData)
    elided = opt_prop_def(UnitAttr)
    traits = traits_def(SymbolOpInterface())

    def __init__(self, name: str, data: np.ndarray | None, type: TensorType | None = None):
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if data is not None:
            arr, type = _data_for(data, type)
            props["value"] = TensorData(arr)
        elif type is None:
            raise ValueError(f"weight @{name} needs data or a type")
        props["type"] = type
        super().__init__(properties=props)

    @property
    def sym(self) -> str:
        return self.sym_name.data

    @property
    def data(self) -> np.ndarray | None:
        return None if self.value is None else self.value.data

    @data.setter
    def data(self, data: np.ndarray | None) -> None:
        self.properties.pop("elided", None)
        if data is None:
            self.properties.pop("value", None)
        else:
            self.properties["value"] = TensorData(_data_for(data, self.type)[0])

    def verify_(self) -> None:
        _check_data(self.value, self.type)
        if self.value is not None and self.elided is not None:
            raise VerifyException("a weight with data cannot be marked elided")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym)
        if self.attributes:
            printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" : ")
        printer.print_attribute(self.type)
        data = self.data
        limit = WEIGHT_ELISION_LIMIT.get()  # set by ncc.ir.print_module
        if self.elided is not None or (data is not None and limit is not None and data.size > limit):
            printer.print_string(" = dense_resource<__elided__>")
        elif data is not None:
            printer.print_string(f" = dense<{format_literal(data)}>")

    @classmethod
    def parse(cls, parser: Parser) -> "WeightOp":
        name = parser.parse_symbol_name().data
        attrs = parser.parse_optional_attr_dict_with_keyword()
        parser.parse_punctuation(":")
        ttype = parser.parse_type()
        if not isinstance(ttype, TensorType):
            parser.raise_error(f"expected a tensor type, got {ttype}")
        data, elided = None, False
        if parser.parse_optional_punctuation("=") is not None:
            if parser.parse_optional_keyword("dense_resource") is not None:
                with parser.in_angle_brackets():
                    pos = parser.pos
                    if parser.parse_identifier() != "__elided__":
                        parser.raise_error("only dense_resource<__elided__> is supported", pos, parser.pos)
                elided = True
            else:
                parser.parse_keyword("dense", " (a dense<...> literal or dense_resource<__elided__>)")
                start = parser.pos
                data = _parse_dense(parser, ttype, start, _take_angle_body(parser))
        op = cls(name, data, ttype)
        if elided:
            op.properties["elided"] = UnitAttr()
        if attrs:
            op.attributes.update(attrs.data)
        return op


@irdl_op_definition
class WeightRefOp(IRDLOperation):
    """The value of a module-level weight: `%w = nn.weight_ref @name : tensor<4x3xf32>`."""

    name = "nn.weight_ref"
    weight = prop_def(SymbolRefAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$weight attr-dict `:` type($result)"

    def __init__(self, name: str | WeightOp, type: TensorType | None = None):
        if isinstance(name, WeightOp):
            name, type = name.sym, type or name.type
        if type is None:
            raise ValueError(f"weight_ref @{name} needs a type")
        super().__init__(properties={"weight": SymbolRefAttr(name)}, result_types=[type])

    @property
    def sym(self) -> str:
        return self.weight.root_reference.data

    def resolve(self) -> WeightOp:
        """The referenced weight (VerifyException if it is missing or not a weight)."""
        try:
            op = SymbolTable.lookup_symbol(self, self.weight)
        except ValueError:
            raise VerifyException(f"cannot resolve @{self.sym}: not inside a module") from None
        if op is None:
            raise VerifyException(f"refers to an unknown weight @{self.sym}")
        if not isinstance(op, WeightOp):
            raise VerifyException(f"@{self.sym} is a '{op.name}', not an nn.weight")
        return op

    def verify_(self) -> None:
        w = self.resolve()
        if w.type != self.result.type:
            raise VerifyException(f"type {self.result.type} does not match weight @{self.sym} "
                                  f"of type {w.type}")


NN = Dialect("nn", [
    *UNARY_OPS.values(), *BINARY_OPS.values(), *REDUCE_OPS.values(),
    *COMPARE_OPS.values(), *LOGICAL_OPS.values(), NotOp, SelectOp, IsNanOp, IsInfOp,
    MatmulOp, MatmulTransposeAOp, FusedMatmulOp, ConvOp, FusedConvOp, SparseMatmulOp, MaxPoolOp, AvgPoolOp,
    SoftmaxOp, LogSoftmaxOp, BatchNormOp, LayerNormOp, ReshapeOp, BroadcastOp, TransposeOp,
    ConcatOp,
    SliceOp, GatherOp, PadOp, ConstantOp, WeightOp, WeightRefOp,
    CastOp,
    *ARG_REDUCE_OPS.values(), *TRIANGLE_OPS.values(), CumSumOp, GatherElementsOp, ScatterElementsOp,
    ScatterNDOp, ConvTransposeOp, ResizeOp, MaxPoolIndicesOp,
    ConvWeightGradOp,
], [TensorData])
