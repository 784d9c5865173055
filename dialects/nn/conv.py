"""The nn conv family: `nn.conv`, `nn.fused_conv`, `nn.conv_transpose`, `nn.conv_weight_grad`."""

from __future__ import annotations

import math

import numpy as np

from types import SimpleNamespace
from typing import Callable, ClassVar, Sequence

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def, var_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, activation_fn, dims_compatible, fmt_shape, need_float, need_len, need_rank, spatial_pads, windows
from ncc.dialects.nn.base import need_shape, nn_op, same_element, shape_of, window_out
from ncc.dialects.nn.matmul import PANEL, Epilogue, check_activation, check_residual, epilogue_operands
from ncc.dialects.nn.matmul import pack_panels, unpack_panels


def ones(ts, v):
    return (1,) * max(len(shape_of(ts[0])) - 2, 0)


def _zeros(ts, v):
    return (0,) * (2 * max(len(shape_of(ts[0])) - 2, 0))


WINDOW = (Param("strides", "ints", ones), Param("pads", "ints", _zeros))


def conv_infer(x: TensorType, w: TensorType, p: SimpleNamespace) -> TensorType:
    """NCHW (N-d) convolution shape rule, shared by nn.conv and nn.fused_conv."""
    need_float(x, "input")
    elt = same_element([x, w], "input and weight")
    return TensorType(elt, conv_shape(x, w, p))


def conv_shape(x: TensorType, w: TensorType, p: SimpleNamespace) -> tuple[int, ...]:
    """The output shape of an NCHW (N-d) convolution of x by w (the quant family's too)."""
    need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    need_rank(w, r, "weight (M, C/group, kernel...)")
    k = r - 2
    need_len(p.strides, k, "strides")
    need_len(p.dilations, k, "dilations")
    need_len(p.pads, 2 * k, "pads (begin..., end...)")
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
    return (n, m, *out)


CONV_PARAMS = (*WINDOW, Param("dilations", "ints", ones), Param("group", "int", 1))


@nn_op
class ConvOp(NNOp):
    """Convolution (cross-correlation, as ONNX Conv), NCHW; pads are [begin..., end...]."""

    name = "nn.conv"
    PARAMS: ClassVar[tuple[Param, ...]] = CONV_PARAMS
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
class FusedConvOp(Epilogue, NNOp):
    """act(conv(x, w) + bias[c] [+ residual]): the `fuse` pass's target for conv
    (+ add) (+ a residual add) (+ activation)."""

    name = "nn.fused_conv"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("activation", "str", "identity"), *CONV_PARAMS)
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # Epilogue: none, [bias] or [bias, residual]

    def __init__(self, x: SSAValue | Operation, w: SSAValue | Operation,
                 bias: SSAValue | Operation | None = None, activation: str = "identity", *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int | None = None,
                 residual: SSAValue | Operation | None = None):
        self._build([x, w, epilogue_operands(bias, residual)], activation=activation,
                    strides=strides, pads=pads, dilations=dilations, group=group)

    @classmethod
    def infer(cls, types, p):
        check_activation(p.activation)
        out = conv_infer(types[0], types[1], p)
        if len(types) > 2:
            need_shape(types[2], shape_of(out)[1:2], "bias (one per output channel)")
            same_element([out, types[2]], "input and bias")
        check_residual(types[2:], out)
        return out


def pack_conv_panels(w: np.ndarray) -> np.ndarray:
    """A conv weight [M, C, kernel...] as the panels of its transpose [C x
    kernel, M] (`pack_panels`: [ceil(M / 32), C x kernel, 32]), nn.packed_conv's
    layout: the GEMM out^T = col^T @ w^T streams them."""
    return pack_panels(w.reshape(w.shape[0], -1).T)


def unpack_conv_panels(panels: np.ndarray, channels: int, kernel: Sequence[int]) -> np.ndarray:
    w = unpack_panels(panels, channels).T
    return w.reshape(channels, -1, *kernel)


@nn_op
class PackedConvOp(Epilogue, NNOp):
    """act(conv(x, w) + bias[c]) of one group, with w [M, C, kernel...] given
    as the packed panels of its transpose (`pack_conv_panels`): the convolution
    is the GEMM out^T (positions x M) = col^T (positions x C x kernel) @ w^T,
    whose B is a weight packed once (the `pack-weights` pass makes it where
    this orientation computes less than conv's w @ col)."""

    name = "nn.packed_conv"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("channels", "int"), Param("kernel", "ints"),
                                           Param("activation", "str", "identity"), *WINDOW,
                                           Param("dilations", "ints", ones))
    input = operand_def(TensorType)
    panels = operand_def(TensorType)
    epilogue = var_operand_def(TensorType)  # Epilogue: none, [bias] or [bias, residual]

    def __init__(self, x: SSAValue | Operation, panels: SSAValue | Operation, channels: int,
                 kernel: Sequence[int], bias: SSAValue | Operation | None = None,
                 activation: str = "identity", *, strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None,
                 residual: SSAValue | Operation | None = None):
        self._build([x, panels, epilogue_operands(bias, residual)], channels=channels, kernel=kernel,
                    activation=activation, strides=strides, pads=pads, dilations=dilations)

    @classmethod
    def infer(cls, types, p):
        check_activation(p.activation)
        need_float(types[0], "input")
        need_rank(types[1], 3, f"panels [P, C x kernel, {PANEL}]")
        x, panels, m = shape_of(types[0]), shape_of(types[1]), p.channels
        if m < 1 or panels[0] != -(-m // PANEL) or panels[2] != PANEL:
            raise VerifyException(f"panels {types[1]} do not hold {m} output channels as "
                                  f"[{-(-max(m, 1) // PANEL)}, C x kernel, {PANEL}]")
        need_rank(types[0], len(p.kernel) + 2, f"input (N, C, {len(p.kernel)} spatial dimensions)")
        if min(p.kernel) < 1 or x[1] == DYN or x[1] * math.prod(p.kernel) != panels[1]:
            raise VerifyException(f"panels {types[1]} do not hold a kernel {list(p.kernel)} over the "
                                  f"input's {x[1]} channels")
        weight = TensorType(same_element(types[:2], "input and panels"), [m, x[1], *p.kernel])
        out = conv_infer(types[0], weight, SimpleNamespace(strides=p.strides, pads=p.pads,
                                                            dilations=p.dilations, group=1))
        if len(types) > 2:
            need_shape(types[2], [m], "bias (one per output channel)")
            same_element([out, types[2]], "input and bias")
        check_residual(types[2:], out)
        return out


# ---------------------------------------------------------------------------
# Transposed convolution and resize


def conv_transpose_infer(x: TensorType, w: TensorType, p: SimpleNamespace) -> TensorType:
    need_float(x, "input")
    elt = same_element([x, w], "input and weight")
    need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    need_rank(w, r, "weight (C, M/group, kernel...)")
    k = r - 2
    need_len(p.strides, k, "strides")
    need_len(p.dilations, k, "dilations")
    need_len(p.pads, 2 * k, "pads (begin..., end...)")
    need_len(p.output_padding, k, "output_padding")
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
    PARAMS: ClassVar[tuple[Param, ...]] = (*CONV_PARAMS, Param("output_padding", "ints", _zeros_k))
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
    need_float(x, "input")
    elt = same_element([x, dy], "input and output gradient")
    need_rank(x, 3, "input (N, C, spatial...)", at_least=True)
    r = len(shape_of(x))
    need_rank(dy, r, "output gradient (N, M, spatial...)")
    k = r - 2
    need_len(p.kernel, k, "kernel")
    need_len(p.strides, k, "strides")
    need_len(p.dilations, k, "dilations")
    need_len(p.pads, 2 * k, "pads (begin..., end...)")
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
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("kernel", "ints"), *CONV_PARAMS)
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



def conv_reference(x: np.ndarray, w: np.ndarray, strides, pads, dilations, group: int) -> np.ndarray:
    """Grouped N-d cross-correlation: one einsum per kernel offset."""
    xp = np.pad(x, spatial_pads(x, pads))
    n, (m, cg, *kernel) = x.shape[0], w.shape
    xg = xp.reshape(n, group, cg, *xp.shape[2:])
    wg = w.reshape(group, m // group, cg, *kernel)
    out = None
    for off, xs in windows(xg, kernel, strides, dilations):
        term = np.einsum("ngc...,gmc->ngm...", xs, wg[(..., *off)])
        out = term if out is None else out + term
    return out.reshape(n, m, *out.shape[3:])


def _fused_conv(op, x, w, b=None, r=None):
    p = op.params
    y = conv_reference(x, w, p.strides, p.pads, p.dilations, p.group)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return activation_fn(p.activation)(y if r is None else y + r)


def conv_transpose_reference(x, w, strides, pads, dilations, group: int, output_padding) -> np.ndarray:
    """Each input point adds x * kernel into the output at stride steps (one
    einsum per kernel offset into the uncropped output), then the pads are cropped."""
    n, c, *spatial = x.shape
    _, mg, *kernel = w.shape
    k = len(kernel)
    full = [(s - 1) * st + (kk - 1) * d + 1 + op
            for s, st, kk, d, op in zip(spatial, strides, kernel, dilations, output_padding)]
    out = np.zeros((n, group, mg, *full), dtype=np.result_type(x, w))
    xg = x.reshape(n, group, c // group, *spatial)
    wg = w.reshape(group, c // group, mg, *kernel)
    for off in np.ndindex(*kernel):
        at = tuple(slice(o * d, o * d + st * (s - 1) + 1, st)
                   for o, d, st, s in zip(off, dilations, strides, spatial))
        out[(slice(None), slice(None), slice(None), *at)] += np.einsum(
            "ngc...,gcm->ngm...", xg, wg[(..., *off)])
    crop = tuple(slice(pads[i], full[i] - pads[i + k]) for i in range(k))
    return out.reshape(n, group * mg, *full)[(slice(None), slice(None), *crop)]


def conv_weight_grad_reference(x, dy, kernel, strides, pads, dilations, group: int) -> np.ndarray:
    """dw[m, c, k] = sum over n, o of dy[n, m, o] * x_padded[n, c of m's group, o * s + k * d]:
    one einsum per kernel offset, over the strided view of x it meets."""
    xp = np.pad(x, spatial_pads(x, pads))
    n, c, m = x.shape[0], x.shape[1], dy.shape[1]
    xg = xp.reshape(n, group, c // group, *xp.shape[2:])
    dyg = dy.reshape(n, group, m // group, -1)  # the output positions flattened
    out = np.zeros((group, m // group, c // group, *kernel), dtype=np.result_type(x, dy))
    for off, xs in windows(xg, kernel, strides, dilations):
        out[(..., *off)] = np.einsum("ngcp,ngmp->gmc", xs.reshape(*xs.shape[:3], -1), dyg)
    return out.reshape(m, c // group, *kernel)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {
    ConvOp: lambda op, x, w: conv_reference(x, w, op.params.strides, op.params.pads,
                                     op.params.dilations, op.params.group),
    FusedConvOp: _fused_conv,
    PackedConvOp: lambda op, x, panels, *epilogue: _fused_conv(
        SimpleNamespace(params=SimpleNamespace(group=1, **vars(op.params))), x,
        unpack_conv_panels(panels, op.params.channels, op.params.kernel), *epilogue),
    ConvTransposeOp: lambda op, x, w: conv_transpose_reference(x, w, op.params.strides, op.params.pads,
                                                        op.params.dilations, op.params.group,
                                                        op.params.output_padding),
    ConvWeightGradOp: lambda op, x, dy: conv_weight_grad_reference(x, dy, op.params.kernel, op.params.strides,
                                                            op.params.pads, op.params.dilations,
                                                            op.params.group),
}
