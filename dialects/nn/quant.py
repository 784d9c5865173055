"""The nn quant family: int8 data and the integer contractions, with ONNX's
meaning (QuantizeLinear, DequantizeLinear, MatMulInteger, ConvInteger; the
requantize step of QLinearMatMul and QLinearConv):

    nn.quantize    y = saturate(round_half_even(x / scale) + zero_point)   f32 -> i8 | ui8
    nn.dequantize  y = (x - zero_point) * scale                            i8 | ui8 | i32 -> f32
    nn.qmatmul     y = (a - a_zero) @ (b - b_zero)                         int8 -> i32
                   (nn.packed_qmatmul: b prepacked by nn.qpack, for the int8 GEMM)
    nn.qconv       y = conv(x - x_zero, w - w_zero)                        int8 -> i32
                   (nn.packed_qconv: w prepacked by nn.qpack_rows)
    nn.requantize  y = saturate(round_half_even(float(acc) * scale) + zero_point)   i32 -> i8 | ui8

A scale and zero point are one per tensor (rank 0) or one per index of `axis`
(rank 1); the zero point's element type is the quantized type. int8 is `i8`,
uint8 `ui8`. A bias is an `nn.add` of i32 before `nn.requantize`, as
QLinearConv adds it. `pack-weights` folds that chain into the packed op's
epilogue: three more operands (bias, scale, zero point) and an activation,

    nn.packed_qconv %x, %rows, %xz, %wz, %bias, %scale, %yz ...  -> i8 | ui8
        y = requantize(qconv(...) + bias[c], scale, yz)

which the int8 GEMM applies in its tile (QLinearConv, QLinearMatMul in one op).
nn.packed_qconv_nhwc is its channels-last form (weights of zero point 0):
the image's rows are the GEMM's A, read in place; `channels-last` makes it."""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType, f32, i32
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import operand_def, var_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, i8, matmul_shape, need_rank, nn_op, normalize_axis
from ncc.dialects.nn.base import shape_of, ui8
from ncc.dialects.nn.constants import ConstantOp
from ncc.dialects.nn.conv import CONV_PARAMS, conv_reference, conv_shape
from ncc.dialects.nn.elementwise import BINARY_OPS, COMPARE_OPS, UNARY_OPS, CastOp, SelectOp
from ncc.dialects.nn.reduce import ReduceMaxOp, ReduceMinOp


QUANTIZED = (i8, ui8)  # the element types of quantized data
QPANEL = 32  # columns of a panel of nn.qpack's layout (the int8 GEMM's widest tile)
# MLAS's rounding, which native code follows: r + ROUNDING_MAGIC (1.5 * 2^23) holds
# round_half_even(r) in its low bits for |r| < 2^22; ROUNDING_MAGIC_BITS is its bit pattern
ROUNDING_MAGIC, ROUNDING_MAGIC_BITS = 12582912.0, 0x4B400000
RANGE = {i8: (-128, 127), ui8: (0, 255)}
REQUANTIZE_ACTIVATIONS = ("identity", "relu")  # relu: the output clamped below at its zero point


def _need_quantized(t: TensorType, what: str, also: Sequence[Attribute] = ()) -> None:
    allowed = (*QUANTIZED, *also)
    if t.element_type not in allowed:
        raise VerifyException(f"{what} must have element type {' or '.join(map(str, allowed))}, got {t}")


def _need_f32(t: TensorType, what: str) -> None:
    if t.element_type != f32:
        raise VerifyException(f"{what} must have element type f32, got {t}")


def check_scale(data: TensorType, scale: TensorType, zero: TensorType | None, axis: int,
                what: str = "scale") -> None:
    """A scale (and zero point) per tensor (rank 0) or per index of `axis` of data (rank 1)."""
    _need_f32(scale, what)
    rank = len(shape_of(scale))
    if rank > 1:
        raise VerifyException(f"{what} must have rank 0 (per tensor) or 1 (per axis), got {scale}")
    if zero is not None and shape_of(zero) != shape_of(scale):
        raise VerifyException(f"the zero point {zero} must have the shape of the {what} {scale}")
    if rank == 1:
        dims = shape_of(data)
        a = normalize_axis(axis, len(dims), "axis")
        n, k = shape_of(scale)[0], dims[a]
        if n != DYN and k != DYN and n != k:
            raise VerifyException(f"a per-axis {what} needs one value per index of axis {a} ({k}), got {scale}")


def along(v: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A per-tensor (rank 0) or per-axis (rank 1) parameter shaped to broadcast against rank-`rank` data."""
    if v.ndim == 0:
        return v
    shape = [1] * rank
    shape[axis % rank] = -1
    return v.reshape(shape)


def saturate(r: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round half to even, clamp to dtype's range: float values to int8 or uint8."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(r), info.min, info.max).astype(dtype)


_AXIS = Param("axis", "int", 1)


class AffineQuantOp(NNOp):
    """An op of data, its scale and its zero point (per tensor, or along `axis`)."""

    PARAMS: ClassVar[tuple[Param, ...]] = (_AXIS,)
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    zero_point = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, scale: SSAValue | Operation, zero_point: SSAValue | Operation,
                 axis: int | None = None):
        self._build([x, scale, zero_point], axis=axis)


@nn_op
class QuantizeOp(AffineQuantOp):
    """y = saturate(round_half_even(x / scale) + zero_point), the zero point's element type."""

    name = "nn.quantize"

    @classmethod
    def infer(cls, types, p):
        x, scale, zero = types
        _need_f32(x, "input")
        _need_quantized(zero, "zero point")
        check_scale(x, scale, zero, p.axis)
        return TensorType(zero.element_type, shape_of(x))


@nn_op
class DequantizeOp(AffineQuantOp):
    """y = (x - zero_point) * scale in f32 (x of i8, ui8, or i32 with zero point 0)."""

    name = "nn.dequantize"

    @classmethod
    def infer(cls, types, p):
        x, scale, zero = types
        _need_quantized(x, "input", (i32,))
        if zero.element_type != x.element_type:
            raise VerifyException(f"the zero point {zero} must have the input's element type {x.element_type}")
        check_scale(x, scale, zero, p.axis)
        return TensorType(f32, shape_of(x))


@nn_op
class QmatmulOp(NNOp):
    """(a - a_zero) @ (b - b_zero) accumulated in i32, numpy.matmul's shapes
    (MatMulInteger): a_zero per tensor, b_zero per tensor or per column of b."""

    name = "nn.qmatmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    lhs_zero = operand_def(TensorType)
    rhs_zero = operand_def(TensorType)

    def __init__(self, a: SSAValue | Operation, b: SSAValue | Operation, a_zero: SSAValue | Operation,
                 b_zero: SSAValue | Operation):
        self._build([a, b, a_zero, b_zero])

    @classmethod
    def infer(cls, types, p):
        a, b, az, bz = types
        for t, z, what in ((a, az, "lhs"), (b, bz, "rhs")):
            _need_quantized(t, what)
            if z.element_type != t.element_type:
                raise VerifyException(f"the {what} zero point {z} must have the {what}'s element type")
        need_rank(az, 0, "the lhs zero point (one per tensor)")
        need_rank(b, 2, "rhs [K, N]", at_least=True)
        if len(shape_of(bz)) > 1 or (shape_of(bz) and shape_of(bz)[0] != shape_of(b)[-1]):
            raise VerifyException(f"the rhs zero point must be one per tensor or one per column "
                                  f"({shape_of(b)[-1]}), got {bz}")
        try:
            return TensorType(i32, matmul_shape(shape_of(a), shape_of(b)))
        except ValueError as e:
            raise VerifyException(str(e)) from None


@nn_op
class QconvOp(NNOp):
    """conv(x - x_zero, w - w_zero) accumulated in i32 (ConvInteger): padding
    holds the input's zero point; x_zero per tensor, w_zero per tensor or per
    output channel."""

    name = "nn.qconv"
    PARAMS: ClassVar[tuple[Param, ...]] = CONV_PARAMS
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    input_zero = operand_def(TensorType)
    weight_zero = operand_def(TensorType)

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation, x_zero: SSAValue | Operation,
                 w_zero: SSAValue | Operation, *, strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None,
                 group: int | None = None):
        self._build([x, w, x_zero, w_zero], strides=strides, pads=pads, dilations=dilations, group=group)

    @classmethod
    def infer(cls, types, p):
        x, w, xz, wz = types
        for t, z, what in ((x, xz, "input"), (w, wz, "weight")):
            _need_quantized(t, what)
            if z.element_type != t.element_type:
                raise VerifyException(f"the {what} zero point {z} must have the {what}'s element type")
        need_rank(xz, 0, "the input zero point (one per tensor)")
        shape = conv_shape(x, w, p)
        if len(shape_of(wz)) > 1 or (shape_of(wz) and shape_of(wz)[0] != shape[1]):
            raise VerifyException(f"the weight zero point must be one per tensor or one per output "
                                  f"channel ({shape[1]}), got {wz}")
        return TensorType(i32, shape)


@nn_op
class RequantizeOp(NNOp):
    """y = saturate(round_half_even(float(acc) * scale) + zero_point): an i32
    accumulator to i8/ui8 at a multiplier per tensor or per index of `axis`
    (QLinearConv's x_scale * w_scale / y_scale, computed in f32);
    activation relu clamps below at the zero point."""

    name = "nn.requantize"
    PARAMS: ClassVar[tuple[Param, ...]] = (_AXIS, Param("activation", "str", "identity"))
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    zero_point = operand_def(TensorType)

    def __init__(self, acc: SSAValue | Operation, scale: SSAValue | Operation, zero_point: SSAValue | Operation,
                 axis: int | None = None, activation: str = "identity"):
        self._build([acc, scale, zero_point], axis=axis, activation=activation)

    @classmethod
    def infer(cls, types, p):
        acc, scale, zero = types
        if acc.element_type != i32:
            raise VerifyException(f"input must have element type i32, got {acc}")
        _need_quantized(zero, "zero point")
        need_rank(zero, 0, "zero point (one per tensor)")
        check_scale(acc, scale, None, p.axis)
        if p.activation not in REQUANTIZE_ACTIVATIONS:
            raise VerifyException(f"activation must be one of {', '.join(REQUANTIZE_ACTIVATIONS)}, "
                                  f"got '{p.activation}'")
        return TensorType(zero.element_type, shape_of(acc))


def check_epilogue(acc: TensorType, epilogue: Sequence[TensorType], activation: str, axis: int) -> TensorType:
    """The result type of a packed int8 contraction whose i32 result `acc` goes
    through `epilogue`: none (i32; activation identity), or (bias, scale,
    zero point): a bias of i32 along `axis` (the output channels or columns),
    a scale per tensor or along `axis`, a zero point per tensor; the result
    has the zero point's element type."""
    if not epilogue:
        if activation != "identity":
            raise VerifyException(f"activation '{activation}' needs the requantize epilogue (bias, scale, zero point)")
        return acc
    if len(epilogue) != 3:
        raise VerifyException(f"the epilogue is bias, scale and zero point: expected 3 operands, got {len(epilogue)}")
    bias, scale, zero = epilogue
    channels = shape_of(acc)[axis]
    if bias.element_type != i32 or list(shape_of(bias)) != [channels]:
        raise VerifyException(f"the bias must be tensor<{channels}xi32> (one per output channel), got {bias}")
    check_scale(acc, scale, None, axis)
    _need_quantized(zero, "zero point")
    need_rank(zero, 0, "zero point (one per tensor)")
    if activation not in REQUANTIZE_ACTIVATIONS:
        raise VerifyException(f"activation must be one of {', '.join(REQUANTIZE_ACTIVATIONS)}, got '{activation}'")
    return TensorType(zero.element_type, shape_of(acc))


def dynamic_parameters(emit: Callable[[Operation], SSAValue], x: SSAValue) -> tuple[SSAValue, SSAValue]:
    """The uint8 scale and zero point of f32 x at run time (DynamicQuantizeLinear),
    as nn ops given to `emit`: x's range widened to hold 0, scale = (max - min)
    / 255 (1 for a range of zero, as onnxruntime), zero point =
    round(clamp(-min / scale, 0, 255))."""
    def const(v: float) -> SSAValue:
        return emit(ConstantOp(np.asarray(v, np.float32)))

    def binary(name: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return emit(BINARY_OPS[name](a, b))

    zero = const(0.0)
    lo = binary("min", emit(ReduceMinOp(x)), zero)
    hi = binary("max", emit(ReduceMaxOp(x)), zero)
    scale = binary("div", binary("sub", hi, lo), const(255.0))
    scale = emit(SelectOp(emit(COMPARE_OPS["equal"](scale, zero)), const(1.0), scale))
    zp = binary("min", binary("max", binary("sub", zero, binary("div", lo, scale)), zero), const(255.0))
    return scale, emit(CastOp(emit(UNARY_OPS["round"](zp)), ui8))


def quads(k: int) -> int:
    """Groups of four along K: the int8 kernels take four bytes of K at a time."""
    return -(-k // 4)


def pack_quads(w: np.ndarray) -> np.ndarray:
    """A [K, N] int8 or uint8 weight packed once for PACKED_B: per panel of
    QPANEL columns, ceil(K / 4) x QPANEL words (a column's four bytes of K,
    uint8 turned signed by xor 0x80, zeros past K and N), then the QPANEL
    columns' sums of those signed bytes: int32 [ceil(N / QPANEL), quads(K) * QPANEL + QPANEL]."""
    k, n = w.shape
    q, p = quads(k), -(-n // QPANEL)
    signed = (w.view(np.uint8) ^ np.uint8(0x80)).view(np.int8) if w.dtype == np.uint8 else w.astype(np.int8)
    full = np.zeros((4 * q, p * QPANEL), np.int8)
    full[:k, :n] = signed
    quads_ = full.reshape(q, 4, p, QPANEL).transpose(2, 0, 3, 1)  # [panel, quad, column, byte]
    words = np.ascontiguousarray(quads_).view(np.int32).reshape(p, q * QPANEL)
    sums = full.astype(np.int32).sum(axis=0, dtype=np.int32).reshape(p, QPANEL)
    return np.concatenate([words, sums], axis=1)


def pack_rows(w: np.ndarray) -> np.ndarray:
    """An [M, K] int8 or uint8 weight packed once as the int8 GEMM's A (PACKED_A,
    nn.qpack_rows): per row, its bytes four at a time as words (int8 turned
    unsigned by xor 0x80, zeros past K), then the row's sum of those bytes:
    int32 [M, ceil(K / 4) + 1]."""
    m, k = w.shape
    q = quads(k)
    unsigned = w.astype(np.uint8) if w.dtype == np.uint8 else (w.view(np.uint8) ^ np.uint8(0x80))
    full = np.zeros((m, 4 * q), np.uint8)
    full[:, :k] = unsigned
    sums = full.astype(np.int32).sum(axis=1, dtype=np.int32)[:, None]
    return np.concatenate([full.view(np.int32), sums], axis=1)


def unpack_rows(packed: np.ndarray, k: int, signed: bool) -> np.ndarray:
    """The [M, K] weight `pack_rows` packed (int8 again if `signed`)."""
    full = np.ascontiguousarray(packed[:, :-1]).view(np.uint8)[:, :k]
    return (full ^ np.uint8(0x80)).view(np.int8) if signed else full.copy()


def unpack_quads(packed: np.ndarray, k: int, n: int, unsigned: bool) -> np.ndarray:
    """The [K, N] weight `pack_quads` packed (uint8 again if `unsigned`)."""
    q = quads(k)
    p = packed.shape[0]
    words = np.ascontiguousarray(packed[:, :q * QPANEL]).view(np.int8).reshape(p, q, QPANEL, 4)
    full = words.transpose(1, 3, 0, 2).reshape(4 * q, p * QPANEL)[:k, :n]
    return (full.view(np.uint8) ^ np.uint8(0x80)) if unsigned else full.copy()


class QpackBaseOp(NNOp):
    """A 2-D int8 or uint8 weight in one of the int8 GEMM's prepacked layouts:
    an op on a weight, which `fold-weights` computes once (`pack-weights` makes it)."""

    input = operand_def(TensorType)

    def __init__(self, w: SSAValue | Operation):
        self._build([w])

    @staticmethod
    def packed_shape(rows: int, cols: int) -> list[int]:
        raise NotImplementedError

    @classmethod
    def infer(cls, types, p):
        _need_quantized(types[0], "input")
        need_rank(types[0], 2, "input (a 2-D weight)")
        rows, cols = shape_of(types[0])
        if DYN in (rows, cols):
            raise VerifyException(f"input must have a static shape, got {types[0]}")
        return TensorType(i32, cls.packed_shape(rows, cols))


@nn_op
class QpackOp(QpackBaseOp):
    """A [K, N] weight as the int8 GEMM's B (`pack_quads`): int32 [ceil(N / 32), ceil(K / 4) * 32 + 32]."""

    name = "nn.qpack"

    @staticmethod
    def packed_shape(k: int, n: int) -> list[int]:
        return [-(-n // QPANEL), quads(k) * QPANEL + QPANEL]


@nn_op
class PackedQmatmulOp(NNOp):
    """nn.qmatmul with its 2-D rhs prepacked by nn.qpack (`pack-weights`):
    the int8 GEMM reads the panels as they are, not packing them per call."""

    name = "nn.packed_qmatmul"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("depth", "int"), Param("columns", "int"),
                                           Param("rhs_unsigned", "flag", False), Param("activation", "str", "identity"))
    lhs = operand_def(TensorType)
    panels = operand_def(TensorType)
    lhs_zero = operand_def(TensorType)
    rhs_zero = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # none, or bias [N] (i32), scale, zero point: check_epilogue

    def __init__(self, a: SSAValue | Operation, panels: SSAValue | Operation, a_zero: SSAValue | Operation,
                 b_zero: SSAValue | Operation, depth: int, columns: int, rhs_unsigned: bool = False,
                 epilogue: Sequence[SSAValue | Operation] = (), activation: str = "identity"):
        self._build([a, panels, a_zero, b_zero, list(epilogue)], depth=depth, columns=columns,
                    rhs_unsigned=rhs_unsigned, activation=activation)

    @classmethod
    def infer(cls, types, p):
        a, panels, az, bz, *epilogue = types
        _need_quantized(a, "lhs")
        if az.element_type != a.element_type:
            raise VerifyException(f"the lhs zero point {az} must have the lhs's element type")
        need_rank(az, 0, "the lhs zero point (one per tensor)")
        want = TensorType(i32, QpackOp.packed_shape(p.depth, p.columns))
        if panels != want:
            raise VerifyException(f"panels must be {want} (nn.qpack of a {p.depth} x {p.columns} weight), got {panels}")
        if bz.element_type != (ui8 if p.rhs_unsigned else i8) or len(shape_of(bz)) > 1 or \
                (shape_of(bz) and shape_of(bz)[0] != p.columns):
            raise VerifyException(f"the rhs zero point must be {'ui8' if p.rhs_unsigned else 'i8'}, one per "
                                  f"tensor or per column ({p.columns}), got {bz}")
        if not shape_of(a) or shape_of(a)[-1] not in (p.depth, DYN):
            raise VerifyException(f"lhs {a} does not end in K = {p.depth}")
        return check_epilogue(TensorType(i32, [*shape_of(a)[:-1], p.columns]), epilogue, p.activation, -1)


@nn_op
class QpackRowsOp(QpackBaseOp):
    """A [M, K] weight as the int8 GEMM's A (`pack_rows`): int32 [M, ceil(K / 4) + 1]."""

    name = "nn.qpack_rows"

    @staticmethod
    def packed_shape(m: int, k: int) -> list[int]:
        return [m, quads(k) + 1]


@nn_op
class PackedQconvOp(NNOp):
    """nn.qconv with its weight prepacked by nn.qpack_rows (`pack-weights`):
    [M, C / group x kernel] rows, the int8 GEMM's A read as it is."""

    name = "nn.packed_qconv"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), Param("weight_signed", "flag", False),
                                           *CONV_PARAMS, Param("activation", "str", "identity"))
    input = operand_def(TensorType)
    rows = operand_def(TensorType)
    input_zero = operand_def(TensorType)
    weight_zero = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # none, or bias [M] (i32), scale, zero point: check_epilogue

    def __init__(self, x: SSAValue | Operation, rows: SSAValue | Operation, x_zero: SSAValue | Operation,
                 w_zero: SSAValue | Operation, kernel: Sequence[int], weight_signed: bool, *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None,
                 epilogue: Sequence[SSAValue | Operation] = (), activation: str = "identity"):
        self._build([x, rows, x_zero, w_zero, list(epilogue)], kernel=kernel, weight_signed=weight_signed,
                    strides=strides, pads=pads, dilations=dilations, group=group, activation=activation)

    def weight_type(self) -> TensorType:
        """The [M, C / group, kernel...] weight the rows hold."""
        return _rows_weight(shape_of(self.input.type), shape_of(self.rows.type), self.params)

    @classmethod
    def infer(cls, types, p):
        x, rows, xz, wz, *epilogue = types
        _need_quantized(x, "input")
        if xz.element_type != x.element_type:
            raise VerifyException(f"the input zero point {xz} must have the input's element type")
        need_rank(xz, 0, "the input zero point (one per tensor)")
        need_rank(wz, 0, "the weight zero point (one per tensor)")
        if wz.element_type != (i8 if p.weight_signed else ui8):
            raise VerifyException(f"the weight zero point must be {'i8' if p.weight_signed else 'ui8'}, got {wz}")
        need_rank(rows, 2, "rows [M, ceil(K / 4) + 1]")
        w = _rows_weight(shape_of(x), shape_of(rows), p)
        want = TensorType(i32, QpackRowsOp.packed_shape(shape_of(w)[0], math.prod(shape_of(w)[1:])))
        if rows != want:
            raise VerifyException(f"rows must be {want} (nn.qpack_rows of the weight {w}), got {rows}")
        return check_epilogue(TensorType(i32, conv_shape(x, w, p)), epilogue, p.activation, 1)


@nn_op
class PackedQconvNhwcOp(NNOp):
    """An int8 convolution of a channels-last image by a weight of zero point
    0 (symmetric, as quantize_static makes them), group 1: x [N, spatial...,
    C] -> [N, out spatial..., M]; `panels` the [kernel..., C, M] weight as a
    [prod(kernel) C, M] matrix prepacked by nn.qpack (the int8 GEMM's B).
    The image's rows are the GEMM's A, read where they are: no per-call
    packing (onnxruntime's NHWC QLinearConv). `channels-last` makes it from
    nn.packed_qconv; the epilogue is packed_qconv's, along the last axis."""

    name = "nn.packed_qconv_nhwc"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), Param("channels", "int"), *CONV_PARAMS,
                                           Param("activation", "str", "identity"))
    input = operand_def(TensorType)
    panels = operand_def(TensorType)
    input_zero = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # none, or bias [M] (i32), scale, zero point: check_epilogue

    def __init__(self, x: SSAValue | Operation, panels: SSAValue | Operation, x_zero: SSAValue | Operation,
                 kernel: Sequence[int], channels: int, *, strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None,
                 group: int | None = None, epilogue: Sequence[SSAValue | Operation] = (),
                 activation: str = "identity"):
        self._build([x, panels, x_zero, list(epilogue)], kernel=kernel, channels=channels, strides=strides,
                    pads=pads, dilations=dilations, group=group, activation=activation)

    def weight_type(self) -> TensorType:
        """The [M, C, kernel...] weight (NCHW's layout) the panels hold."""
        return TensorType(i8, [self.params.channels, shape_of(self.input.type)[-1], *self.params.kernel])

    @classmethod
    def infer(cls, types, p):
        x, panels, xz, *epilogue = types
        _need_quantized(x, "input")
        if xz.element_type != x.element_type:
            raise VerifyException(f"the input zero point {xz} must have the input's element type")
        need_rank(xz, 0, "the input zero point (one per tensor)")
        if p.group != 1:
            raise VerifyException(f"a channels-last int8 convolution has group 1, got {p.group}")
        need_rank(x, len(p.kernel) + 2, f"input (N, {len(p.kernel)} spatial dimensions, C)")
        n, *spatial, c = shape_of(x)
        if c == DYN:
            raise VerifyException(f"the input's channels must be static, got {x}")
        want = TensorType(i32, QpackOp.packed_shape(math.prod(p.kernel) * c, p.channels))
        if panels != want:
            raise VerifyException(f"panels must be {want} (nn.qpack of the {math.prod(p.kernel) * c} x "
                                  f"{p.channels} weight), got {panels}")
        w = TensorType(i8, [p.channels, c, *p.kernel])
        n_, m, *out = conv_shape(TensorType(x.element_type, [n, c, *spatial]), w, p)
        return check_epilogue(TensorType(i32, [n, *out, m]), epilogue, p.activation, -1)


def nhwc_weight(w: np.ndarray) -> np.ndarray:
    """An [M, C, kernel...] weight as nn.packed_qconv_nhwc's [prod(kernel) C, M] matrix (before nn.qpack)."""
    rank = w.ndim
    return np.ascontiguousarray(w.transpose(*range(2, rank), 1, 0)).reshape(-1, w.shape[0])


def _rows_weight(x: Sequence[int], rows: Sequence[int], p) -> TensorType:
    c = x[1] if len(x) > 1 else DYN
    return TensorType(i8, [rows[0], c // p.group if c != DYN and p.group else DYN, *p.kernel])


# ---------------------------------------------------------------------------
# Reference semantics: onnxruntime's arithmetic, step by step (f32 division and
# product, rounding half to even, saturation).


def _quantize(op, x, scale, zero):
    r = len(x.shape)
    q = np.rint(x / along(scale, op.params.axis, r)) + along(zero, op.params.axis, r).astype(np.float32)
    return saturate(q, zero.dtype)


def _dequantize(op, x, scale, zero):
    r = len(x.shape)
    d = x.astype(np.int64) - along(zero, op.params.axis, r).astype(np.int64)
    return (d.astype(np.float32) * along(scale, op.params.axis, r)).astype(np.float32)


def _qmatmul(op, a, b, az, bz):
    return np.matmul(a.astype(np.int64) - az.astype(np.int64),
                     b.astype(np.int64) - bz.astype(np.int64)).astype(np.int32)


def _qconv(op, x, w, xz, wz):
    p = op.params
    wd = w.astype(np.int64) - along(wz, 0, w.ndim).astype(np.int64)
    return conv_reference(x.astype(np.int64) - xz.astype(np.int64), wd, p.strides, p.pads, p.dilations,
                          p.group).astype(np.int32)


def _requantized(acc, scale, zero, axis, activation):
    y = acc.astype(np.float32) * along(scale, axis, acc.ndim)
    q = saturate(y + zero.astype(np.float32), zero.dtype)
    return np.maximum(q, zero) if activation == "relu" else q


def _requantize(op, acc, scale, zero):
    return _requantized(acc, scale, zero, op.params.axis, op.params.activation)


def _epilogue(op, acc, axis, bias=None, scale=None, zero=None):
    """A packed contraction's result: acc, or requantized (acc + bias along `axis`)."""
    if bias is None:
        return acc
    total = (acc.astype(np.int64) + along(bias, axis, acc.ndim)).astype(np.int32)
    return _requantized(total, scale, zero, axis, op.params.activation)


def _packed_qmatmul(op, a, panels, az, bz, *epilogue):
    p = op.params
    return _epilogue(op, _qmatmul(op, a, unpack_quads(panels, p.depth, p.columns, p.rhs_unsigned), az, bz), -1,
                     *epilogue)


def _packed_qconv(op, x, rows, xz, wz, *epilogue):
    w_shape = shape_of(op.weight_type())
    w = unpack_rows(rows, math.prod(w_shape[1:]), op.params.weight_signed).reshape(w_shape)
    return _epilogue(op, _qconv(op, x, w, xz, wz), 1, *epilogue)


def _packed_qconv_nhwc(op, x, panels, xz, *epilogue):
    p = op.params
    m, c, *kernel = shape_of(op.weight_type())
    w = unpack_quads(panels, math.prod(kernel) * c, m, False).reshape(*kernel, c, m)
    w = w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2))  # [M, C, kernel...]
    acc = conv_reference(np.moveaxis(x.astype(np.int64) - xz.astype(np.int64), -1, 1), w.astype(np.int64),
                         p.strides, p.pads, p.dilations, 1).astype(np.int32)
    return _epilogue(op, np.ascontiguousarray(np.moveaxis(acc, 1, -1)), -1, *epilogue)


REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    QuantizeOp: _quantize, DequantizeOp: _dequantize, QmatmulOp: _qmatmul, QconvOp: _qconv,
    RequantizeOp: _requantize, QpackOp: lambda op, w: pack_quads(w), PackedQmatmulOp: _packed_qmatmul,
    QpackRowsOp: lambda op, w: pack_rows(w), PackedQconvOp: _packed_qconv, PackedQconvNhwcOp: _packed_qconv_nhwc,
}

