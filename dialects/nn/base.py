"""Types, shapes, dense literals and the shared op mechanism (`NNOp` and its `PARAMS`
table) of the nn dialect, and the element-type checks the shape rules share."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, DenseArrayBase, Float16Type, Float32Type, Float64Type
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType, Signedness, StringAttr, TensorType, UnitAttr
from xdsl.dialects.builtin import f16
from xdsl.dialects.builtin import f32, f64, i1, i32, i64
from xdsl.ir import Attribute, Data, Operation, SSAValue
from xdsl.irdl import IRDLOperation, irdl_attr_definition, irdl_op_definition, opt_prop_def, prop_def
from xdsl.irdl import result_def, traits_def
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import Pure
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
i8 = IntegerType(8)
ui8 = IntegerType(8, Signedness.UNSIGNED)  # quantized data only: see need_signless
_NUMPY = {f16: np.float16, f32: np.float32, f64: np.float64, i64: np.int64, i32: np.int32,
          i8: np.int8, ui8: np.uint8, i1: np.bool_}


def numpy_dtype(element_type: Attribute) -> np.dtype:
    if element_type not in _NUMPY:
        raise ValueError(f"no numpy dtype for element type {element_type}")
    return np.dtype(_NUMPY[element_type])


def element_type_of(dtype: np.dtype | type) -> Attribute:
    dt = np.dtype(dtype)
    for attr, np_type in _NUMPY.items():
        if np.dtype(np_type) == dt:
            return attr
    raise ValueError(f"unsupported dtype {dt} (supported: f16, f32, f64, i64, i32, i8, ui8, bool)")


# The largest tensor ncc takes, in bytes (a dynamic batch counted as 1): sizes
# are checked against it where they enter -- an ONNX model's inputs,
# initializers and values, the loop level's buffers -- before anything is allocated
MAX_TENSOR_BYTES = 1 << 34  # 16 GiB


def tensor_bytes(shape: Sequence[int], itemsize: int) -> int:
    """Bytes of a tensor of `shape` (a dynamic dimension counted as 1)."""
    return math.prod(1 if d == DYN else d for d in shape) * itemsize


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
    if a.size > 1 and not any(a.strides):  # one value broadcast (a parsed splat): never expanded
        return _element_texts(a.reshape(-1)[:1])[0]
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


def take_angle_body(parser: AttrParser) -> str:
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


def parse_dense(parser: AttrParser, ttype: TensorType, start: int, body: str) -> np.ndarray:
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
            body = take_angle_body(parser)
            parser.parse_punctuation(":")
            ttype = parser.parse_type()
            if not isinstance(ttype, TensorType):
                parser.raise_error(f"expected a tensor type, got {ttype}")
            return parse_dense(parser, ttype, start, body)

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


def add_param_props(cls: type) -> type:
    for p in getattr(cls, "PARAMS", ()):  # its own, or a shared base's (packed_sparse_matmul and _conv)
        setattr(cls, p.name, (prop_def if p.default is REQUIRED else opt_prop_def)(_PROP_TYPES[p.kind]))
    return cls


def nn_op(cls: type) -> type:
    """Register an nn op: properties from its PARAMS, then the IRDL definition."""
    return irdl_op_definition(add_param_props(cls))


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

def need_float(t: TensorType, what: str) -> None:
    if not isinstance(t.element_type, FLOAT_TYPES):
        raise VerifyException(f"{what} must have a float element type, got {t}")


def need_numeric(t: TensorType, what: str) -> None:
    """A number type the arithmetic ops take: not i1, and signless (ui8 is
    quantized data, which the quant ops, nn.cast and the shape ops take)."""
    need_number(t, what)
    need_signless(t, what)


def need_number(t: TensorType, what: str) -> None:
    if t.element_type == i1:
        raise VerifyException(f"{what} must have a numeric element type, got {t} "
                              "(i1 tensors take the logical ops and nn.select)")


def need_signless(t: TensorType, what: str) -> None:
    e = t.element_type
    if isinstance(e, IntegerType) and e.signedness.data != Signedness.SIGNLESS:
        raise VerifyException(f"{what} must not be {e}: {e} tensors hold quantized data, which "
                              "nn.dequantize, nn.cast and the shape ops take")


def need_bool(t: TensorType, what: str) -> None:
    if t.element_type != i1:
        raise VerifyException(f"{what} must have element type i1 (bool), got {t}")


def broadcast(types: Sequence[TensorType]) -> Shape:
    try:
        return broadcast_shapes(*(shape_of(t) for t in types))
    except ValueError as e:
        raise VerifyException(str(e)) from None


def broadcasts_along(shape: Sequence[int], out: Sequence[int], axis: int) -> bool:
    """An operand of `shape` broadcast (numpy's rule, aligned from the right)
    against an `out`-shaped result varies along `axis` of out at most: every
    dimension 1 but the one aligned with `axis`, which may be out[axis]. (A
    bias along a layer's output features; with prod(shape) == out[axis], one
    value per feature.)"""
    off = len(out) - len(shape)
    axis %= len(out)
    return off >= 0 and all(d == 1 or (i + off == axis and d == out[axis]) for i, d in enumerate(shape))


def same_element(types: Sequence[TensorType], what: str = "operands") -> Attribute:
    elts = {t.element_type for t in types}
    if len(elts) > 1:
        raise VerifyException(f"{what} must have one element type, got "
                              + ", ".join(str(t) for t in types))
    return types[0].element_type


def need_rank(t: TensorType, rank: int, what: str, at_least: bool = False) -> None:
    r = len(shape_of(t))
    if r < rank if at_least else r != rank:
        raise VerifyException(f"{what} must have rank {'>= ' if at_least else ''}{rank}, got {t}")


def need_shape(t: TensorType, shape: Sequence[int], what: str) -> None:
    s = shape_of(t)
    if len(s) != len(shape) or not all(dims_compatible(a, b) for a, b in zip(s, shape)):
        raise VerifyException(f"{what} must have shape {fmt_shape(shape)}, got {t}")


def need_len(values: Sequence[int], n: int, what: str) -> None:
    if len(values) != n:
        raise VerifyException(f"{what} must have {n} entries, got {len(values)}")


def spatial_pads(x: np.ndarray, pads: Sequence[int]) -> list[tuple[int, int]]:
    k = x.ndim - 2
    return [(0, 0), (0, 0)] + [(pads[i], pads[i + k]) for i in range(k)]


def windows(xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int]):
    """For each kernel offset: the strided view of the (padded) input it meets
    (the spatial dimensions are the last len(kernel))."""
    out = [(size - d * (kk - 1) - 1) // s + 1
           for size, kk, s, d in zip(xp.shape[xp.ndim - len(kernel):], kernel, strides, dilations)]
    for off in np.ndindex(*kernel):
        yield off, xp[(..., *(slice(o * d, o * d + s * (n - 1) + 1, s)
                              for o, d, s, n in zip(off, dilations, strides, out)))]


def activation_fn(name: str) -> Callable[[np.ndarray], np.ndarray]:
    return activations.BY_NAME[name].fn
