"""The nn elementwise family: unary and binary ops generated from tables,
comparisons, logical ops, `nn.not`, `nn.select`, `nn.is_nan`, `nn.is_inf`, `nn.cast`."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
from xdsl.dialects.builtin import TensorType, i1
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import irdl_op_definition, operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import activations

from ncc.dialects.nn.base import NNOp, Param, broadcast, broadcast_shapes, dims_compatible, element_type_of, numpy_dtype
from ncc.dialects.nn.base import fmt_shape, need_bool, need_float, need_number, need_numeric, nn_op, same_element, shape_of


# ---------------------------------------------------------------------------
# Elementwise ops, generated from tables.


def _erf(z: np.ndarray) -> np.ndarray:
    return activations.ERF(z).astype(z.dtype, copy=False)


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
        need_float(types[0], "operand")
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
        elt = same_element(types)
        if cls.FLOAT_ONLY:
            need_float(types[0], "operands")
        need_numeric(types[0], "operands")
        try:
            return TensorType(elt, broadcast_shapes(shape_of(types[0]), shape_of(types[1])))
        except ValueError as e:
            raise VerifyException(str(e)) from None


def _class_name(op: str) -> str:
    return "".join(w.capitalize() for w in op.split("_")) + "Op"


def generate(base: type, op: str, namespace: dict[str, Any], into: dict[str, Any]) -> type:
    """The registered op class `nn.<op>` (`AddOp` for add), a subclass of `base`,
    also bound in `into` (the defining module's globals)."""
    cls = type(_class_name(op), (base,), {"name": f"nn.{op}", "__module__": into["__name__"],
                                          "__qualname__": _class_name(op), **namespace})
    cls = irdl_op_definition(cls)
    into[cls.__name__] = cls
    return cls


UNARY_OPS: dict[str, type[UnaryOp]] = {
    n: generate(UnaryOp, n, {"fn": staticmethod(f), "__doc__": f"nn.{n}: elementwise {n}."}, globals())
    for n, f in UNARY.items()}
BINARY_OPS: dict[str, type[BinaryOp]] = {
    n: generate(BinaryOp, n, {"fn": staticmethod(f), "FLOAT_ONLY": flt,
                               "__annotations__": {"FLOAT_ONLY": ClassVar[bool]},
                               "__doc__": f"nn.{n}: elementwise {n} with broadcasting."}, globals())
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
        same_element(types)
        if cls.name != "nn.equal":
            need_numeric(types[0], "operands")
        return TensorType(i1, broadcast(types))


class LogicalOp(NNOp):
    """z = x <op> y on i1 (bool) tensors, with broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        self._build([lhs, rhs])

    @classmethod
    def infer(cls, types, p):
        for t in types:
            need_bool(t, "operands")
        return TensorType(i1, broadcast(types))


COMPARE_OPS: dict[str, type[CompareOp]] = {
    n: generate(CompareOp, n, {"fn": staticmethod(f),
                                "__doc__": f"nn.{n}: elementwise {n} with broadcasting, an i1 result."}, globals())
    for n, f in COMPARE.items()}
LOGICAL_OPS: dict[str, type[LogicalOp]] = {
    n: generate(LogicalOp, n, {"fn": staticmethod(f),
                                "__doc__": f"nn.{n}: elementwise logical {n} of i1 tensors."}, globals())
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
        need_bool(types[0], "operand")
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
        need_bool(types[0], "the condition")
        elt = same_element(types[1:], "the two values")
        return TensorType(elt, broadcast(types))


@nn_op
class IsNanOp(NNOp):
    """True where a float element is NaN."""

    name = "nn.is_nan"
    input = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation):
        self._build([x])

    @classmethod
    def infer(cls, types, p):
        need_float(types[0], "operand")
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
        need_float(types[0], "operand")
        for name in ("detect_positive", "detect_negative"):
            if getattr(p, name) not in (0, 1):
                raise VerifyException(f"{name} must be 0 or 1, got {getattr(p, name)}")
        return TensorType(i1, shape_of(types[0]))


@nn_op
class CastOp(NNOp):
    """Convert each element to the result's numeric element type (f16, f32, f64,
    i8, ui8, i32, i64), as numpy's astype and ONNX's Cast: floats round to nearest
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
        need_number(types[0], "operand")
        return None  # the target element type is the result type's; checked in verify_

    def verify_(self) -> None:
        super().verify_()
        src, dst = self.input.type, self.result.type
        need_number(dst, "the result")
        s, d = shape_of(src), shape_of(dst)
        if len(s) != len(d) or not all(dims_compatible(a, b) for a, b in zip(s, d)):
            raise VerifyException(f"the result must have the operand's shape {fmt_shape(s)}, got {dst}")



# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    **{cls: (lambda op, x: type(op).fn(x)) for cls in UNARY_OPS.values()},
    **{cls: (lambda op, a, b: type(op).fn(a, b)) for cls in BINARY_OPS.values()},
    **{cls: (lambda op, a, b: type(op).fn(a, b))
       for cls in (*COMPARE_OPS.values(), *LOGICAL_OPS.values())},
    NotOp: lambda op, x: np.logical_not(x),
    SelectOp: lambda op, c, x, y: np.where(c, x, y),
    IsNanOp: lambda op, x: np.isnan(x),
    IsInfOp: lambda op, x: ((x == np.inf) & bool(op.params.detect_positive))
    | ((x == -np.inf) & bool(op.params.detect_negative)),
    CastOp: lambda op, x: x.astype(numpy_dtype(op.result.type.element_type)),
}
