"""Fourier transforms in ONNX (import only): one matmul (DFT) or one strided
conv (STFT) with a constant matrix of cosines and sines.
"""

from __future__ import annotations

import numpy as np

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.importer import from_onnx


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


@from_onnx("DFT")
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
    xt = b.permuted(x, list(range(r)), perm)
    lead = [-1 if d == DYN else d for d in shape_of(xt.type)[:-2]]
    y = b.build(nn.MatmulOp, b.reshape_to(xt, lead + [n_in * c_in]), b.array(m, x))
    y = b.reshape_to(y, lead + [bins, c_out])
    return b.permuted(y, perm, list(range(r)))


@from_onnx("STFT")
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
    filters = b.array(m.reshape(size, c, bins * 2).transpose(2, 1, 0), x)  # (2 * bins, c, size)
    if window is not None:
        filters = b.binary("mul", filters, b.build(nn.ReshapeOp, window, [1, 1, size]))
    y = b.build(nn.ConvOp, b.build(nn.TransposeOp, x, [0, 2, 1]), filters, strides=[step])
    y = b.build(nn.TransposeOp, y, [0, 2, 1])  # (batch, frames, 2 * bins)
    return b.reshape_to(y, [-1 if n == DYN else n, shape_of(y.type)[1], bins, 2])
