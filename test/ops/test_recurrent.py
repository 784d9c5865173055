"""The recurrent op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ncc
from ncc.onnx import import_onnx

import test_onnx_decompositions as decomposition_tests

# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


def recurrent_case(kind, *, steps=3, n=3, isize=5, hid=4, direction="forward", layout=0, bias=True,
                   h0=False, c0=False, peepholes=False, lens=None, batch="static",
                   outputs=("Y", "Y_h"), **attrs):
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    dirs = 2 if direction == "bidirectional" else 1
    lead = "N" if batch == "dynamic" else n

    def shape(*dims):  # the layout's order: (seq or dirs, batch, ...) or (batch, seq or dirs, ...)
        return [dims[1], dims[0], *dims[2:]] if layout else list(dims)

    inputs = {"X": (decomposition_tests.F, shape(steps, lead, isize))}
    inits = {"W": decomposition_tests.randn(dirs, gates * hid, isize) / 2, "R": decomposition_tests.randn(dirs, gates * hid, hid) / 2}
    names = ["X", "W", "R", "", "", "", "", ""]
    if bias:
        inits["B"], names[3] = decomposition_tests.randn(dirs, 2 * gates * hid) / 2, "B"
    if lens is not None:
        inputs["L"], names[4] = (TensorProto.INT32, [n]), "L"
    if h0:
        inputs["h0"], names[5] = (decomposition_tests.F, shape(dirs, lead, hid)), "h0"
    if c0:
        inputs["c0"], names[6] = (decomposition_tests.F, shape(dirs, lead, hid)), "c0"
    if peepholes:
        inits["P"], names[7] = decomposition_tests.randn(dirs, 3 * hid), "P"
    while not names[-1]:
        names.pop()
    feeds = {k: decomposition_tests.randn(*[n if d == "N" else d for d in s]) for k, (t, s) in inputs.items() if t == decomposition_tests.F}
    if lens is not None:
        feeds["L"] = np.asarray(lens, np.int32)
    node = helper.make_node(kind, names, list(outputs), hidden_size=hid, direction=direction,
                            layout=layout, **attrs)
    return decomposition_tests.model([node], inputs, tuple(o for o in outputs if o), inits, opset=22), feeds


RECURRENT_CASES = [
    ("RNN", {}),
    ("RNN", dict(direction="reverse", h0=True, activations=["Relu"])),
    ("RNN", dict(direction="bidirectional", activations=["LeakyRelu", "ScaledTanh"],
                 activation_alpha=[0.2, 1.5], activation_beta=[0.7])),
    ("GRU", {}),
    ("GRU", dict(linear_before_reset=1, h0=True)),
    ("GRU", dict(linear_before_reset=1, bias=False, activations=["HardSigmoid", "Affine"],
                 activation_alpha=[0.3, 2.0], activation_beta=[0.4, 0.1])),
    ("GRU", dict(direction="bidirectional", lens=[3, 2, 1], clip=0.8)),
    ("LSTM", dict(outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(peepholes=True, h0=True, c0=True, lens=[2, 3, 1], outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(direction="bidirectional", peepholes=True, lens=[2, 3, 0], outputs=("Y", "Y_h", "Y_c"))),
    ("LSTM", dict(input_forget=1, clip=0.5, outputs=("", "Y_h", "Y_c"))),
    ("LSTM", dict(activations=["Elu", "Softsign", "ThresholdedRelu"], activation_alpha=[0.5, 0.1],
                  direction="reverse", lens=[1, 3, 2])),
]


NATIVE_RECURRENT = {1, 6, 9, 11}  # compiling unrolled recurrences takes seconds: natively, a few


@pytest.mark.parametrize("case", range(len(RECURRENT_CASES)))
def test_import_recurrent(case):
    kind, kw = RECURRENT_CASES[case]
    m, feeds = recurrent_case(kind, **kw)
    decomposition_tests.check(m, feeds, native=case in NATIVE_RECURRENT)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_import_recurrent_batch_first_with_a_dynamic_batch(kind):
    # layout 1 (onnxruntime has none): the same weights in layout 0, inputs and outputs transposed
    outputs = ("Y", "Y_h", "Y_c") if kind == "LSTM" else ("Y", "Y_h")
    kw = dict(direction="bidirectional" if kind == "LSTM" else "reverse", h0=True, c0=kind == "LSTM",
              outputs=outputs)
    m1, feeds1 = recurrent_case(kind, layout=1, batch="dynamic", **kw)
    m0, _ = recurrent_case(kind, **kw)
    for init0, init1 in zip(m0.graph.initializer, m1.graph.initializer):
        init0.CopyFrom(init1)
    feeds0 = {"X": feeds1["X"].transpose(1, 0, 2), "h0": feeds1["h0"].transpose(1, 0, 2)}
    if kind == "LSTM":
        feeds0["c0"] = feeds1["c0"].transpose(1, 0, 2)
    y, *states = decomposition_tests.ort_run(m0, feeds0)
    want = [y.transpose(2, 0, 1, 3), *(s.transpose(1, 0, 2) for s in states)]
    decomposition_tests.same(ncc.reference.run(import_onnx(m1), feeds1), want, 1e-4, 1e-5)
    decomposition_tests.same(ncc.compile(m1).run(feeds1), want, 1e-4, 1e-5)


def test_import_recurrent_diagnostics():
    m, _ = recurrent_case("GRU", activations=["Sigmoid", "Gelu"])
    assert decomposition_tests.diag(m).endswith("(GRU): unknown activation 'Gelu' (known: Sigmoid, Tanh, Relu, Softsign, "
                            "Softplus, LeakyRelu, ThresholdedRelu, Elu, HardSigmoid, Affine, ScaledTanh)")
    m, _ = recurrent_case("LSTM", activations=["Sigmoid", "Tanh"])
    assert decomposition_tests.diag(m).endswith("(LSTM): LSTM takes 3 activations here, got 2")
    m, _ = recurrent_case("RNN", steps=300)
    assert decomposition_tests.diag(m).endswith("(RNN): 300 steps: the recurrence is unrolled, at most 256")


