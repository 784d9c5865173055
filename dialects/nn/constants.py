"""The nn constants family: literals (`nn.constant`) and module-level weights
(`nn.weight`, `nn.weight_ref`)."""

from __future__ import annotations

import contextvars

from typing import Any, Callable

import numpy as np
from xdsl.dialects.builtin import StringAttr, SymbolNameConstraint, SymbolRefAttr, TensorType
from xdsl.dialects.builtin import UnitAttr
from xdsl.ir import Attribute
from xdsl.irdl import IRDLOperation, irdl_op_definition, opt_prop_def, prop_def, result_def, traits_def
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import Pure, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, TensorData, element_type_of, fmt_shape, format_literal, numpy_dtype
from ncc.dialects.nn.base import parse_dense, shape_of, take_angle_body


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
        body = take_angle_body(parser)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        ttype = parser.parse_type()
        if not isinstance(ttype, TensorType):
            parser.raise_error(f"expected a tensor type, got {ttype}")
        op = cls(parse_dense(parser, ttype, start, body), ttype)
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
                data = parse_dense(parser, ttype, start, take_angle_body(parser))
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



# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    ConstantOp: lambda op: op.data,
}
