"""The signal op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import ncc
from ncc.onnx import import_onnx

import test_onnx_decompositions as decomposition_tests

# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("opset,c,axis,inverse,onesided,length", [
    (17, 1, 1, 0, 0, None), (17, 2, 2, 0, 0, 12), (17, 1, 1, 0, 1, None), (20, 2, -2, 1, 0, 6),
    (20, 2, 1, 1, 1, None), (20, 1, 2, 0, 1, 7)])
def test_import_dft(opset, c, axis, inverse, onesided, length):
    shape = [2, 8, 5, c]
    names, inits = ["x", "" if length is None else "n"], {}
    if length is not None:
        inits["n"] = np.array(length, np.int64)
    attrs = {"inverse": inverse, "onesided": onesided}
    if opset >= 20:
        names.append("a")
        inits["a"] = np.array(axis, np.int64)
    else:
        attrs["axis"] = axis
    while not names[-1]:
        names.pop()
    m = decomposition_tests.model([helper.make_node("DFT", names, ["y"], **attrs)], {"x": (decomposition_tests.F, ["N", *shape[1:]])},
              inits=inits, opset=opset)
    decomposition_tests.check(m, {"x": decomposition_tests.randn(*shape)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length", [9, 10, 16])
def test_import_dft_inverse_one_sided_of_a_given_length_against_numpy(length):
    # onnxruntime's IRFFT of a dft_length other than 2 * (bins - 1) differs from
    # numpy.fft.irfft, which onnx's reference (and ncc) follow
    m = decomposition_tests.model([helper.make_node("DFT", ["x", "n", "a"], ["y"], inverse=1, onesided=1)], {"x": (decomposition_tests.F, [2, 8, 5, 2])},
              inits={"n": np.array(length, np.int64), "a": np.array(1, np.int64)}, opset=20)
    x = decomposition_tests.randn(2, 8, 5, 2)
    want = [np.fft.irfft(x[..., 0] + 1j * x[..., 1], n=length, axis=1)[..., None].astype(np.float32)]
    decomposition_tests.check_against_onnx_reference(m, {"x": x})
    decomposition_tests.same(ncc.reference.run(import_onnx(m), {"x": x}), want, 1e-4, 1e-5)


@pytest.mark.parametrize("c,window,onesided", [(1, False, 1), (1, True, 1), (2, True, 0)])
def test_import_stft(c, window, onesided):
    names = ["x", "step", "w" if window else "", "" if window else "size"]
    while not names[-1]:
        names.pop()
    inits = {"step": np.array(3, np.int64), "size": np.array(8, np.int64)}
    inputs = {"x": (decomposition_tests.F, ["N", 30, c])}
    if window:
        inputs["w"] = (decomposition_tests.F, [8])
    m = decomposition_tests.model([helper.make_node("STFT", names, ["y"], onesided=onesided)], inputs, inits=inits, opset=17)
    feeds = {"x": decomposition_tests.randn(2, 30, c)}
    if window:
        feeds["w"] = np.hanning(8).astype(np.float32)
    decomposition_tests.check(m, feeds, rtol=1e-4, atol=1e-4)


