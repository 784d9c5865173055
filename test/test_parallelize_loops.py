"""parallelize-loops natively: loops split over an OpenMP team give the results
of one thread, bit for bit, for every op family whose loops split (the IR
before and after is in test/lit/lowering/parallelize-loops)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import ncc
from ncc.passes.lowering import parallelize_loops
from ncc.runtime import engine
from onnx_models import onnx_model

rng = np.random.default_rng(0)


def _randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _single(op, shape, inits=(), inputs=("x",), **attrs):
    """A model of one node on input x of `shape` (dimension 0 the batch)."""
    init = dict(inits)
    node = helper.make_node(op, [*inputs, *init], ["y"], **attrs)
    return onnx_model([node], {"x": (1, ["N", *shape[1:]])}, inits=init)


def _cases(big: bool):
    """(id, model, input, splits at the default thresholds): `big` sizes are
    large enough for the default MIN_WORK; the small ones are primes and odd
    sizes, for MIN_WORK = 0."""
    s = (lambda b, small: b) if big else (lambda b, small: small)
    c, hw = s(32, 5), s(56, 13)
    x4 = _randn(2, c, hw, hw)
    yield "max_pool", _single("MaxPool", x4.shape, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), x4, True
    yield "depthwise", _single("Conv", x4.shape, {"w": _randn(c, 1, 3, 3)}.items(), group=c,
                               pads=[1, 1, 1, 1]), x4, True
    yield "avg_pool", _single("AveragePool", x4.shape, kernel_shape=[2, 2], strides=[2, 2]), x4, None
    yield "relu", _single("Relu", x4.shape), x4, True
    yield "transpose", _single("Transpose", x4.shape, perm=[0, 2, 3, 1]), x4, None
    yield "global_avg_pool", _single("GlobalAveragePool", x4.shape), x4, None
    rows = _randn(s(128, 7), s(1024, 31))
    yield "softmax", _single("Softmax", rows.shape, axis=-1), rows, True
    yield "layer_norm", _single("LayerNormalization", rows.shape,
                                {"g": _randn(rows.shape[1]), "b": _randn(rows.shape[1])}.items(), axis=-1), rows, None
    for axis in (0, 1):
        yield f"reduce_sum_{axis}", _single("ReduceSum", rows.shape, {"axes": np.array([axis])}.items()), rows, None
    k, n = s(512, 37), s(1000, 83)
    w = {"w": _randn(k, n)}
    vector = _randn(1, k)
    matvec = onnx_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": (1, [1, k])}, inits=w)
    yield "matvec", matvec, vector, True  # batch 1: the columns split into tiles
    yield "matmul_3_rows", _single("MatMul", (3, k), w.items()), _randn(3, k), None
    # a batch of 1 through the weight's GEMM panels (the loops of a dynamic batch below 4 rows)
    yield "matvec_panels", _single("MatMul", (1, k), w.items()), vector, True
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r"], ["y"], axis=1)]
    yield "concat", onnx_model(nodes, {"x": (1, ["N", *x4.shape[1:]])}), x4, None


BIG = list(_cases(big=True))


def _run(model, x, threads):
    compiled = ncc.compile(model, threads=threads, cache=False)
    return np.asarray(compiled(x)), compiled.llvm_ir


def _check(model, x, splits, thread_counts=(2, 3)):
    one, _ = _run(model, x, 1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(one, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
    for t in thread_counts:
        got, ir = _run(model, x, t)
        assert np.array_equal(got, one), f"{t} threads differ from one"
        if splits is not None:
            assert ("_parallel_team" in ir) == splits, ir.count("_parallel_team")


@pytest.mark.parametrize("case", BIG, ids=[c[0] for c in BIG])
def test_threads_give_the_results_of_one(case):
    if engine.openmp_runtime() is None:
        pytest.skip("no OpenMP runtime (libgomp) on this system")
    _, model, x, splits = case
    _check(model, x, splits)


@pytest.fixture
def split_everything(monkeypatch):
    """Every loop proven parallel splits, however little work it does."""
    monkeypatch.setattr(parallelize_loops, "MIN_WORK", 0)
    monkeypatch.setattr(parallelize_loops, "MAX_LAUNCHES", 1 << 30)


SMALL = list(_cases(big=False))


@pytest.mark.parametrize("case", SMALL, ids=[c[0] for c in SMALL])
def test_every_proven_loop_split_gives_the_results_of_one(case, split_everything):
    _, model, x, _ = case
    _check(model, x, None, thread_counts=(2, 3, 5))


def test_without_libgomp_the_threads_run_in_turn(monkeypatch, split_everything):
    """A system without libgomp: the kernel defines GOMP_parallel itself and
    runs the team's shares one after another (the same results)."""
    monkeypatch.setattr(engine, "openmp_runtime", lambda: None)
    _, model, x, _ = SMALL[0]
    one, _ = _run(model, x, 1)
    got, ir = _run(model, x, 3)
    assert "declare void @GOMP_parallel" not in ir and "@ncc_serial_team" in ir
    assert np.array_equal(got, one)


def _cnn():
    w = {"w1": _randn(8, 3, 3, 3), "b1": _randn(8), "dw": _randn(8, 1, 3, 3), "fc": _randn(8 * 4 * 4, 5)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "dw"], ["d"], group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 3, 16, 16])}, inits=w)


def test_gradients_with_threads_are_those_of_one(split_everything):
    model, x = _cnn(), _randn(3, 3, 16, 16)
    dy = _randn(3, 5)
    grads = [ncc.compile(model, threads=t, cache=False).vjp(x, dy) for t in (1, 3)]
    assert set(grads[0]) == set(grads[1])
    for name in grads[0]:
        assert np.array_equal(grads[0][name], grads[1][name]), name


@st.composite
def _random_case(draw):
    """One op on a random 4-D shape with random parameters (odd sizes, primes)."""
    shape = [draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(3, 13)), draw(st.integers(3, 13))]
    op = draw(st.sampled_from(["MaxPool", "AveragePool", "DepthwiseConv", "Transpose", "Concat", "ReduceSum",
                               "Softmax"]))
    attrs, inits, inputs = {}, {}, ["x"]
    if op in ("MaxPool", "AveragePool", "DepthwiseConv"):
        k = [draw(st.integers(1, 3)) for _ in range(2)]
        attrs = {"strides": [draw(st.integers(1, 3)) for _ in range(2)],
                 "pads": [draw(st.integers(0, kk - 1)) for kk in k + k]}
        if op == "DepthwiseConv":
            op, attrs["group"] = "Conv", shape[1]
            inits = {"w": _randn(shape[1], 1, *k)}
        else:
            attrs["kernel_shape"] = k
    elif op == "Transpose":
        attrs["perm"] = draw(st.permutations(range(4)))
    elif op == "Concat":
        attrs["axis"] = draw(st.integers(0, 3))
        inputs = ["x", "x"]
    elif op == "ReduceSum":
        inits = {"axes": np.array(sorted(draw(st.sets(st.integers(0, 3), min_size=1, max_size=3))))}
    else:
        attrs["axis"] = draw(st.integers(-1, 3))
    node = helper.make_node(op, [*inputs, *inits], ["y"], **attrs)
    return onnx_model([node], {"x": (1, shape)}, inits=inits), _randn(*shape)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_random_case(), st.sampled_from([2, 3, 5]))
def test_random_ops_split_give_the_results_of_one(split_everything, case, threads):
    model, x = case
    one, _ = _run(model, x, 1)
    got, _ = _run(model, x, threads)
    assert np.array_equal(got, one)
