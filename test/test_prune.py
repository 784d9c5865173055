"""prune: which weights go (against numpy's own ranking), that the pruned
model computes `w * mask` everywhere (reference, native code, onnxruntime on
the export), that training keeps pruned weights at zero, and the neuron
level's folding against the net with those synapses set to zero (the IR
before and after is in test/lit/passes/prune)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.dialects.builtin import ModuleOp, UnitAttr

import ncc
from ncc.dialects import nn
from ncc.dialects.neuron import NeuronGraph
from ncc.pipeline import build_pipeline
from ncc.passes.prune import FROZEN_MARK, PruneOptions
from onnx_models import onnx_model

rng = np.random.default_rng(0)


def _mlp():
    """x[N, 6] -> Gemm(transB) 6->8 -> relu -> MatMul 8->4, and its weights."""
    w = {"W1": rng.standard_normal((8, 6)).astype(np.float32), "B1": rng.standard_normal(8).astype(np.float32),
         "W2": rng.standard_normal((8, 4)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 6])}, inits=w), w


def _cnn():
    w = {"K1": rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "K2": rng.standard_normal((6, 8, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "K1"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "K2"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 4, 7, 7])}, inits=w), w


def _weights(m) -> dict[str, np.ndarray]:
    return {op.sym: op.data for op in m.ops if isinstance(op, nn.WeightOp)}


def _kept_by_numpy(a: np.ndarray, sparsity: float) -> np.ndarray:
    """An independent ranking: the round(s x n) smallest |w| (stable order) go."""
    keep = np.ones(a.size, bool)
    keep[np.argsort(np.abs(a).ravel(), kind="stable")[:round(sparsity * a.size)]] = False
    return keep.reshape(a.shape)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_layer_scope_removes_the_smallest_of_each_weight(sparsity):
    model, w = _mlp()
    m = ncc.import_onnx(model)
    report = ncc.prune(m, sparsity=sparsity)
    got = _weights(m)
    for name in ("W1", "W2"):
        keep = _kept_by_numpy(w[name], sparsity)
        np.testing.assert_array_equal(got[name], np.where(keep, w[name], 0))
        np.testing.assert_array_equal(got[f"{name}_mask"], keep.astype(np.float32))
    np.testing.assert_array_equal(got["B1"], w["B1"])  # a bias is no product's operand
    assert [r.name for r in report] == ["W1", "W2"]
    assert [r.nonzero_after for r in report] == [int(_kept_by_numpy(w[n], sparsity).sum()) for n in ("W1", "W2")]


def test_global_scope_and_threshold_rank_all_weights_together():
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.6, scope="global")
    got = _weights(m)
    both = np.concatenate([w["W1"].ravel(), w["W2"].ravel()])
    keep = _kept_by_numpy(both, 0.6)
    np.testing.assert_array_equal(np.concatenate([got["W1"].ravel(), got["W2"].ravel()]), np.where(keep, both, 0))
    m = ncc.import_onnx(model)
    ncc.prune(m, threshold=0.7)
    got = _weights(m)
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(got[name], np.where(np.abs(w[name]) >= 0.7, w[name], 0))


def test_n_of_m_groups_run_along_the_summed_axis():
    model, w = _mlp()  # W1 [8, 6] is read transposed: it sums along its 6 columns (not a multiple of 4)
    m = ncc.import_onnx(model)
    report = {r.name: r for r in ncc.prune(m, structure="2:4")}
    got = _weights(m)
    assert "not a multiple of 4" in report["W1"].note and np.array_equal(got["W1"], w["W1"])
    groups = got["W2"].T.reshape(4, 2, 4)  # W2 [8, 4] sums along its 8 rows
    assert (np.count_nonzero(groups, axis=-1) == 2).all()
    top = np.sort(np.abs(w["W2"].T.reshape(4, 2, 4)), axis=-1)[..., 2:]
    np.testing.assert_array_equal(np.sort(np.abs(groups), axis=-1)[..., 2:], top)
    model, w = _cnn()
    m = ncc.import_onnx(model)
    ncc.prune(m, structure="1:4")
    got = _weights(m)
    assert (np.count_nonzero(got["K1"], axis=1) == 1).all()  # along the 4 input channels
    assert (np.count_nonzero(got["K2"].reshape(6, 2, 4), axis=-1) == 1).all()  # 8 input channels: 2 groups


def test_frozen_marked_and_named_weights():
    model, w = _mlp()
    m = ncc.import_onnx(model)
    report = {r.name: r for r in ncc.prune(m, sparsity=0.5, frozen="W2")}
    assert report["W2"].note == "frozen" and np.array_equal(_weights(m)["W2"], w["W2"])
    m = ncc.import_onnx(model)
    next(op for op in m.ops if isinstance(op, nn.WeightOp) and op.sym == "W1").attributes[FROZEN_MARK] = UnitAttr()
    ncc.prune(m, sparsity=0.5, weights=["W1", "W2"])
    got = _weights(m)
    assert np.array_equal(got["W1"], w["W1"]) and np.count_nonzero(got["W2"]) == 16
    m = ncc.import_onnx(model)
    with pytest.raises(ncc.NccError, match=r"option weights: B1, fc9 are not weights .*\(those are: W1, W2\)"):
        ncc.prune(m, sparsity=0.5, weights=["B1", "fc9"])


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 1.0}, "option sparsity: must be in \\[0, 1\\), got 1.0"),
    ({"sparsity": -0.1}, "must be in \\[0, 1\\)"),
    ({"sparsity": 0.5, "threshold": 0.1}, "give sparsity or threshold, not both"),
    ({"threshold": float("nan")}, "option threshold: must be a finite number >= 0"),
    ({}, "prune needs sparsity="),
    ({"sparsity": 0.5, "scope": "model"}, "option scope: must be layer or global"),
    ({"structure": "4:2"}, "option structure: must be unstructured, channel or N:M"),
    ({"structure": "block"}, "option structure"),
    ({"structure": "2:4", "sparsity": 0.5}, "2:4 sets the sparsity itself \\(0.5\\)"),
])
def test_bad_options_are_errors_naming_the_option(kwargs, message):
    with pytest.raises(ncc.NccError, match=message):
        PruneOptions(**kwargs)
    m = ncc.import_onnx(_mlp()[0])
    with pytest.raises(ncc.NccError, match=message):
        ncc.prune(m, **kwargs)


def test_nothing_to_prune_is_an_error():
    m = ncc.import_onnx(onnx_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, ["N", 3])}))
    with pytest.raises(ncc.NccError, match="no matmul or convolution of the module reads a weight"):
        ncc.prune(m, sparsity=0.5)


@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_pruned_model_everywhere_computes_w_times_mask(make, tmp_path):
    """Reference, native code and onnxruntime on the export agree with numpy's
    dense product of the pruned weights."""
    model, w = make()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.7)
    pruned = {k: v for k, v in _weights(m).items() if not k.endswith("_mask")}
    x = rng.standard_normal((3, *[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]))
    x = x.astype(np.float32)
    dense = onnx_model(list(model.graph.node), {"x": (1, ["N", *x.shape[1:]])}, inits=pruned)
    want = ort.InferenceSession(dense.SerializeToString()).run(None, {"x": x})[0]
    _agrees_everywhere(m, x, want, tmp_path / "pruned.onnx", rtol=1e-5, atol=1e-5)


def _agrees_everywhere(m, x, want, path, rtol, atol):
    """The reference, native code and onnxruntime on the compiled model's export all give `want`."""
    np.testing.assert_allclose(ncc.reference.run(m, [x])[0], want, rtol=rtol, atol=atol)
    native = ncc.compile(m, cache=False)
    np.testing.assert_allclose(native(x), want, rtol=rtol, atol=atol)
    native.export_onnx(str(path))
    np.testing.assert_allclose(ort.InferenceSession(str(path)).run(None, {"x": x})[0], want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_training_keeps_pruned_weights_at_zero(optimizer):
    model, _ = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.6)
    net = ncc.compile(m, cache=None)
    pruned = {n: net.params[n] == 0 for n in ("W1", "W2")}
    x = rng.standard_normal((32, 6)).astype(np.float32)
    t = rng.standard_normal((32, 4)).astype(np.float32)
    grads = net.grad(x, t, wrt="params")
    for n, zero in pruned.items():
        assert (grads[n][zero] == 0).all() and (grads[n][~zero] != 0).any()
    opt = ncc.optim.SGD(net, lr=0.05, momentum=0.9, weight_decay=0.01) if optimizer == "sgd" else \
        ncc.optim.AdamW(net, lr=0.01)
    history = ncc.train(net, (x, t), epochs=15, batch_size=8, optimizer=opt)
    assert history.epochs[-1] < history.epochs[0]
    for n, zero in pruned.items():
        assert (net.params[n][zero] == 0).all() and (net.params[n][~zero] != 0).all()


def test_pruning_again_tightens_the_same_mask():
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.5)
    report = ncc.prune(m, sparsity=0.75)
    names = [op.sym for op in m.ops if isinstance(op, nn.WeightOp)]
    assert names.count("W1_mask") == 1 and "W1_mask1" not in names
    assert [r.nonzero_before for r in report] == [24, 16] and [r.nonzero_after for r in report] == [12, 8]
    np.testing.assert_array_equal(_weights(m)["W1"], np.where(_kept_by_numpy(w["W1"], 0.75), w["W1"], 0))
    assert sum(isinstance(op, nn.BINARY_OPS["mul"]) for op in m.walk()) == 2


def test_report_counts_parameters_and_flops():
    model, _ = _cnn()
    m = ncc.import_onnx(model)
    report = ncc.prune(m, sparsity=0.5)
    k1, k2 = report
    assert (k1.size, k1.macs_before, k1.macs_after) == (288, 7 * 7 * 288, 7 * 7 * 144)
    assert (k2.size, k2.macs_before, k2.macs_after) == (48, 7 * 7 * 48, 7 * 7 * 24)
    text = str(report)
    assert "K1" in text and "28,224" in text and "50.0 %" in text.splitlines()[-1]


def test_ncc_opt_prune_flag_and_report(tmp_path, capsys):
    from ncc.tools import ncc_opt
    path = tmp_path / "m.mlir"
    path.write_text(ncc.print_module(ncc.import_onnx(_mlp()[0])))
    assert ncc_opt.main([str(path), "--prune=sparsity=0.5 report=true", "-o", str(tmp_path / "out.mlir")]) == 0
    out = capsys.readouterr()
    assert "W1_mask" in (tmp_path / "out.mlir").read_text()
    assert out.err.splitlines()[0].split()[:3] == ["weight", "read", "by"]
    assert [p.name for p in build_pipeline("prune{sparsity=0.5 scope=global}")] == ["prune"]


# ---------------------------------------------------------------------------
# The neuron level: the pruned net equals the net with the pruned synapses at
# zero (folding constants into biases and removing dead neurons change nothing)


def _net_module(g: NeuronGraph):
    return ModuleOp([g.to_net("net")])


@st.composite
def _nets(draw):
    n_in, n = draw(st.integers(1, 3)), draw(st.integers(2, 9))
    acts = ["tanh", "relu", "identity", "sigmoid"]
    activation, inputs, values, bias, bias_value = [], [], [], [], []
    for j in range(n_in + n):
        if j < n_in:
            activation.append(None), inputs.append([]), values.append(None), bias.append(None), bias_value.append(None)
            continue
        ins = sorted(draw(st.sets(st.integers(0, j - 1), max_size=min(j, 4))))
        activation.append(draw(st.sampled_from(acts)))
        inputs.append(ins)
        values.append([draw(st.floats(-2, 2, allow_subnormal=False)) for _ in ins])
        has_bias = draw(st.booleans())
        bias.append(f"b{j:02x}" if has_bias else None)
        bias_value.append(draw(st.floats(-1, 1)) if has_bias else None)
    outs = sorted(draw(st.sets(st.integers(n_in, n_in + n - 1), min_size=1, max_size=3)))
    return NeuronGraph(activation, inputs, values=values, bias=bias, bias_value=bias_value, outputs=outs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=_nets(), threshold=st.floats(0, 1.5))
def test_pruned_net_equals_the_net_with_those_synapses_zero(g, threshold):
    m = _net_module(g)
    zeroed = NeuronGraph(g.activation, [list(i) for i in g.inputs], weights=[list(w) for w in g.weights],
                         values=[None if v is None else [x if abs(x) >= threshold else 0.0 for x in v]
                                 for v in g.values], bias=g.bias, bias_value=g.bias_value, outputs=g.outputs)
    x = rng.standard_normal((4, len(g.input_indices)))
    want = ncc.reference.run(_net_module(zeroed), [x])[0]
    report = ncc.prune(m, threshold=threshold)
    got = ncc.reference.run(m, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    pruned = next(iter(m.ops)).graph()
    assert len(pruned.input_indices) == len(g.input_indices) and len(pruned.outputs) == len(g.outputs)
    assert all(abs(v) >= threshold for vs in pruned.values if vs for v in vs)
    assert report.layers[0].nonzero_after == sum(len(i) for i in pruned.inputs)


def test_neuron_sparsity_scopes_and_errors():
    g = NeuronGraph([None, None, "tanh", "tanh"], [[], [], [0, 1], [0, 1, 2]],
                    values=[None, None, [0.1, 2.0], [0.3, -0.2, 1.0]], outputs=[3])
    m = _net_module(g)
    ncc.prune(m, sparsity=0.5)  # per neuron: round(0.5 x 2) = 1 of n02's, round(0.5 x 3) = 2 of n03's
    assert next(iter(m.ops)).graph().inputs == [[], [], [1], [2]]
    m = _net_module(g)
    ncc.prune(m, sparsity=0.4, scope="global")  # round(0.4 x 5) = 2 of all five: 0.1 and -0.2
    assert next(iter(m.ops)).graph().values[2:] == [[2.0], [0.3, 1.0]]
    with pytest.raises(ncc.NccError, match="structure 2:4 is for nn weights"):
        ncc.prune(_net_module(g), structure="2:4")
    with pytest.raises(ncc.NccError, match="option frozen: w9999 is not a synapse of net @net"):
        ncc.prune(_net_module(g), sparsity=0.5, frozen=["w9999"])
    m = _net_module(g)
    ncc.prune(m, threshold=5, frozen=["w0002"])  # all but w0002 go; n03, the output, has no input left
    pruned = next(iter(m.ops)).graph()  # and n02 (frozen w0002 with it) reaches no output any more
    assert pruned.inputs == [[], [], []] and pruned.outputs == [2] and pruned.activation[2] == "tanh"


# ---------------------------------------------------------------------------
# Pruning a compiled model: masks tightened in place, gradual schedules,
# optimizers that keep pruned weights at zero, export with the zeros


def _compiled_with_masks(sparsity=0.0):
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=sparsity)
    return ncc.compile(m, cache=False), w


def test_compiled_model_prune_tightens_its_masks():
    net, w = _compiled_with_masks()
    x = rng.standard_normal((5, 6)).astype(np.float32)
    report = ncc.prune(net, sparsity=0.5)
    assert [r.nonzero_after for r in report] == [24, 16]
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(net.params[name], np.where(_kept_by_numpy(w[name], 0.5), w[name], 0))
        np.testing.assert_array_equal(net.params[f"{name}_mask"], _kept_by_numpy(w[name], 0.5))
    module = ncc.import_onnx(onnx_model(list(_mlp()[0].graph.node), {"x": (1, ["N", 6])},
                                        inits={**w, "W1": net.params["W1"], "W2": net.params["W2"]}))
    np.testing.assert_allclose(net(x), ncc.reference.run(module, [x])[0], rtol=1e-5, atol=1e-5)
    net.prune(sparsity=0.25)  # looser than the mask: nothing comes back
    assert np.count_nonzero(net.params["W1_mask"]) == 24
    plain = ncc.compile(ncc.import_onnx(_mlp()[0]), cache=False)
    with pytest.raises(ncc.NccError, match="W1, W2 had no mask when the model was compiled"):
        ncc.prune(plain, sparsity=0.5)


def test_optimizers_keep_pruned_weights_zero_after_a_prune_mid_training():
    """Adam's moments from before the prune would move pruned weights again:
    every update ends with weight *= mask."""
    net, _ = _compiled_with_masks()
    x = rng.standard_normal((32, 6)).astype(np.float32)
    t = rng.standard_normal((32, 4)).astype(np.float32)
    opt = ncc.optim.Adam(net, lr=0.05)
    ncc.train(net, (x, t), epochs=3, batch_size=8, optimizer=opt)
    net.prune(sparsity=0.7)
    zero = net.params["W1"] == 0
    ncc.train(net, (x, t), epochs=3, batch_size=8, optimizer=opt)
    assert (net.params["W1"][zero] == 0).all() and (net.params["W1"][~zero] != 0).all()


def test_pruning_schedule_reaches_the_sparsity_gradually():
    net, _ = _compiled_with_masks()
    x = rng.standard_normal((16, 6)).astype(np.float32)
    t = rng.standard_normal((16, 4)).astype(np.float32)
    seen = []
    schedule = ncc.optim.pruning_schedule(net, 0.8, epochs=4, first_epoch=1)
    ncc.train(net, (x, t), epochs=6, batch_size=8, callback=lambda e, loss: (
        schedule(e, loss), seen.append(1 - np.count_nonzero(net.params["W1"]) / net.params["W1"].size)))
    want = [0.0] + [round(0.8 * (1 - (1 - i / 4) ** 3) * 48) / 48 for i in range(1, 5)] + [round(0.8 * 48) / 48]
    np.testing.assert_allclose(seen, want, atol=1e-9)
    with pytest.raises(ncc.NccError, match="sparsity must be in \\[0, 1\\) and epochs >= 1"):
        ncc.optim.pruning_schedule(net, 1.0, epochs=3)


def test_export_writes_the_pruned_weights_and_no_masks():
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.5)
    exported = ncc.export_onnx(m)
    inits = {i.name: i for i in exported.graph.initializer}
    assert set(inits) == {"W1", "B1", "W2"} and "Mul" not in [n.op_type for n in exported.graph.node]
    from onnx import numpy_helper
    np.testing.assert_array_equal(numpy_helper.to_array(inits["W1"]), np.where(_kept_by_numpy(w["W1"], 0.5), w["W1"], 0))
    again = ncc.import_onnx(exported)  # the masks again: the zeros rank first
    ncc.prune(again, sparsity=0.5)
    np.testing.assert_array_equal(_weights(again)["W1_mask"], _weights(m)["W1_mask"])


def test_digits_pruned_to_90_percent_keeps_95_percent_accuracy():
    datasets = pytest.importorskip("sklearn.datasets")
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "prune_digits.py"
    spec = importlib.util.spec_from_file_location("prune_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    dense, pruned, model, report = example.prune_digits(datasets.load_digits(), sparsity=0.9)
    size, _, nonzero, _, _ = report.totals()
    assert nonzero == round(0.1 * 4096) + round(0.1 * 640)
    assert dense >= 0.95 and pruned >= 0.95, (dense, pruned)


# ---------------------------------------------------------------------------
# structure=channel: whole channels go and what reads them shrinks


def _norm_keep(w: np.ndarray, axis: int, sparsity: float) -> np.ndarray:
    """An independent choice: the round(s x M) channels of smallest L1 norm go."""
    norms = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).sum(1)
    return np.sort(np.argsort(norms, kind="stable")[round(sparsity * len(norms)):])


def _cnn_with_head():
    w = {"K1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "B1": rng.standard_normal(8).astype(np.float32),
         "K2": rng.standard_normal((6, 8, 3, 3)).astype(np.float32), "F": rng.standard_normal((6 * 16, 5)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "K1", "B1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "K2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p2"], ["f"]), helper.make_node("MatMul", ["f", "F"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 3, 16, 16])}, inits=w), w


def test_channel_pruning_shrinks_a_cnn_and_what_reads_it(tmp_path):
    model, w = _cnn_with_head()
    m = ncc.import_onnx(model)
    report = {r.name: r for r in ncc.prune(m, structure="channel", sparsity=0.5)}
    keep1 = _norm_keep(w["K1"], 0, 0.5)
    k2 = w["K2"][:, keep1]
    keep2 = _norm_keep(k2, 0, 0.5)
    rows = (keep2[:, None] * 16 + np.arange(16)).ravel()  # flatten: a channel is 16 features
    got = _weights(m)
    np.testing.assert_array_equal(got["K1"], w["K1"][keep1])
    np.testing.assert_array_equal(got["B1"], w["B1"][keep1])
    np.testing.assert_array_equal(got["K2"], k2[keep2])
    np.testing.assert_array_equal(got["F"], w["F"][rows])
    assert report["K1"].note == "channels 8 -> 4" and report["K2"].note == "channels 6 -> 3"
    assert "result of the function" in report["F"].note
    assert (report["K2"].macs_before, report["K2"].macs_after) == (8 * 8 * 6 * 8 * 9, 8 * 8 * 3 * 4 * 9)
    # the same function as the original with the removed channels' readers zeroed
    zeroed = dict(w)
    zeroed["K2"] = w["K2"] * np.isin(np.arange(8), keep1)[None, :, None, None]
    zeroed["F"] = w["F"] * np.isin(np.arange(96), rows)[:, None]
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(onnx_model(list(model.graph.node), {"x": (1, ["N", 3, 16, 16])},
                                           inits=zeroed).SerializeToString()).run(None, {"x": x})[0]
    _agrees_everywhere(m, x, want, tmp_path / "smaller.onnx", rtol=1e-4, atol=1e-3)


def test_channel_pruning_of_an_mlp_through_a_transposed_weight():
    model, w = _mlp()  # W1 [8, 6] read transposed: its output features are its rows
    m = ncc.import_onnx(model)
    ncc.prune(m, structure="channel", sparsity=0.25, norm="l2")
    norms = np.sqrt((w["W1"] ** 2).sum(1))
    keep = np.sort(np.argsort(norms, kind="stable")[2:])
    got = _weights(m)
    np.testing.assert_array_equal(got["W1"], w["W1"][keep])
    np.testing.assert_array_equal(got["B1"], w["B1"][keep])
    np.testing.assert_array_equal(got["W2"], w["W2"][keep])
    x = rng.standard_normal((3, 6)).astype(np.float32)
    h = np.maximum(x @ w["W1"][keep].T + w["B1"][keep], 0)
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x), h @ w["W2"][keep], rtol=1e-5, atol=1e-5)


def _mobile_block():
    """conv 1x1 -> batch norm -> relu -> depthwise 3x3 -> relu -> a fire-like concat of a 1x1 and a 3x3 conv -> relu -> global average -> conv 1x1."""
    c = 8
    w = {"E": rng.standard_normal((c, 4, 1, 1)).astype(np.float32),
         "S1": rng.random(c).astype(np.float32) + 0.5, "T1": rng.standard_normal(c).astype(np.float32),
         "M1": rng.standard_normal(c).astype(np.float32), "V1": rng.random(c).astype(np.float32) + 0.5,
         "D": rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "DB": rng.standard_normal(c).astype(np.float32),
         "P": rng.standard_normal((5, c, 1, 1)).astype(np.float32), "Q": rng.standard_normal((3, c, 3, 3)).astype(np.float32),
         "H": rng.standard_normal((8, 2, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "E"], ["e"]),
             helper.make_node("BatchNormalization", ["e", "S1", "T1", "M1", "V1"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Conv", ["r", "D", "DB"], ["d"], group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["rd"]),
             helper.make_node("Conv", ["rd", "P"], ["p"]), helper.make_node("Conv", ["rd", "Q"], ["q"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["p", "q"], ["cat"], axis=1), helper.make_node("Relu", ["cat"], ["rc"]),
             helper.make_node("ReduceMean", ["rc"], ["g"], axes=[2, 3], keepdims=1),
             helper.make_node("Conv", ["g", "H2"], ["y"])]
    w["H2"] = rng.standard_normal((2, 8, 1, 1)).astype(np.float32)
    del w["H"]
    return onnx_model(nodes, {"x": (1, ["N", 4, 6, 6])}, inits=w, opset=17), w


def test_channel_pruning_through_batch_norm_depthwise_and_concat():
    model, w = _mobile_block()
    m = ncc.import_onnx(model)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    report = {r.name: r for r in ncc.prune(m, structure="channel", sparsity=0.5)}
    got = _weights(m)
    keep = _norm_keep(w["E"], 0, 0.5)
    for name in ("S1", "T1", "M1", "V1", "DB"):
        np.testing.assert_array_equal(got[name], w[name][keep])
    np.testing.assert_array_equal(got["D"], w["D"][keep])
    keep_p, keep_q = _norm_keep(w["P"][:, keep], 0, 0.5), _norm_keep(w["Q"][:, keep], 0, 0.5)
    np.testing.assert_array_equal(got["P"], w["P"][:, keep][keep_p])
    np.testing.assert_array_equal(got["Q"], w["Q"][:, keep][keep_q])
    np.testing.assert_array_equal(got["H2"], w["H2"][:, np.concatenate([keep_p, 5 + keep_q])])
    assert report["P"].note == "channels 5 -> 3" and report["Q"].note == "channels 3 -> 1"
    assert report["D"].note.startswith("left whole")  # depthwise: it shrank with E's channels
    # against the original with the removed channels' readers zeroed
    zeroed = dict(w)
    zeroed["P"] = w["P"] * np.isin(np.arange(8), keep)[None, :, None, None]
    zeroed["Q"] = w["Q"] * np.isin(np.arange(8), keep)[None, :, None, None]
    zeroed["H2"] = w["H2"] * np.isin(np.arange(8), np.concatenate([keep_p, 5 + keep_q]))[None, :, None, None]
    want = ort.InferenceSession(onnx_model(list(model.graph.node), {"x": (1, ["N", 4, 6, 6])}, inits=zeroed,
                                           opset=17).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ncc.reference.run(m, [x])[0], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x), want, rtol=1e-4, atol=1e-4)


def test_channel_pruning_leaves_a_residual_layer_whole():
    w = {"A": rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "B": rng.standard_normal((4, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "A"], ["a"]), helper.make_node("Add", ["a", "x"], ["s"]),
             helper.make_node("Conv", ["s", "B"], ["y"])]
    m = ncc.import_onnx(onnx_model(nodes, {"x": (1, ["N", 4, 3, 3])}, inits=w))
    report = {r.name: r for r in ncc.prune(m, structure="channel", sparsity=0.5)}
    assert report["A"].note == ("left whole: the channels meet a value computed at run time "
                                "(an input of the function): a residual add, say")
    assert np.array_equal(_weights(m)["A"], w["A"])
    with pytest.raises(ncc.NccError, match="structure channel prunes each layer's channels on its own"):
        ncc.prune(m, structure="channel", sparsity=0.5, scope="global")
    with pytest.raises(ncc.NccError, match="option norm: must be l1 or l2"):
        ncc.prune(m, structure="channel", sparsity=0.5, norm="max")


def test_gradients_of_pruned_models_match_finite_differences():
    """The native vjp of a masked MLP and of a channel-pruned one against
    central differences of the same function in float64 numpy; a pruned
    entry's gradient is zero (the function does not depend on it)."""
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.6)
    net = ncc.compile(m, cache=False)
    masks = {n: net.params[f"{n}_mask"].astype(np.float64) for n in ("W1", "W2")}
    x = rng.standard_normal((5, 6))
    cot = rng.standard_normal((5, 4))

    def f(p):
        h = np.maximum(x @ (p["W1"] * masks["W1"]).T + p["B1"], 0)
        return float(np.sum(cot * (h @ (p["W2"] * masks["W2"]))))
    grads = net.vjp(x.astype(np.float32), cot.astype(np.float32))
    params = {n: np.asarray(net.params[n], np.float64) for n in ("W1", "B1", "W2")}
    for name in ("W1", "B1", "W2"):
        fd = np.zeros_like(params[name])
        for i in np.ndindex(fd.shape):
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in params.items()}
                moved[name][i] += sign * 1e-4
                fd[i] += sign * f(moved) / 2e-4
        np.testing.assert_allclose(grads[name], fd, rtol=1e-3, atol=1e-3, err_msg=name)
        if name in masks:
            assert (grads[name][masks[name] == 0] == 0).all()
    # a channel-pruned model is a plain smaller model: its vjp against differences too
    model, w = _mlp()
    m = ncc.import_onnx(model)
    ncc.prune(m, structure="channel", sparsity=0.5)
    small = ncc.compile(m, cache=False)
    p = {n: np.asarray(small.params[n], np.float64) for n in ("W1", "B1", "W2")}
    assert p["W1"].shape == (4, 6) and p["W2"].shape == (4, 4)
    g = small.vjp(x.astype(np.float32), cot.astype(np.float32))
    step = np.zeros_like(p["W2"])
    step[1, 2] = 1e-4
    plus = np.sum(cot * (np.maximum(x @ p["W1"].T + p["B1"], 0) @ (p["W2"] + step)))
    minus = np.sum(cot * (np.maximum(x @ p["W1"].T + p["B1"], 0) @ (p["W2"] - step)))
    np.testing.assert_allclose(g["W2"][1, 2], (plus - minus) / 2e-4, rtol=1e-3, atol=1e-3)


def test_prune_takes_a_module_or_a_compiled_model():
    with pytest.raises(ncc.NccError, match="prune takes a module .* or a compiled model, got str"):
        ncc.prune("model.onnx", sparsity=0.5)
    with pytest.raises(ncc.NccError, match="no nn function and no neuron net"):
        ncc.prune(ModuleOp([]), sparsity=0.5)


def test_a_compiled_mask_only_loses_entries():
    net, _ = _compiled_with_masks(sparsity=0.8)  # the pruned matmuls run on the sparse kernel
    mask = np.array(net.params["W1_mask"])
    with pytest.raises(ncc.NccError, match="cannot set mask 'W1_mask': it may lose entries, not gain them"):
        net.params["W1_mask"] = np.ones_like(mask)
    tighter = mask.copy()
    tighter.reshape(-1)[np.flatnonzero(mask)[:2]] = 0
    net.params["W1_mask"] = tighter  # fewer entries: still the kernel's pattern, with zeros
    x = rng.standard_normal((3, 6)).astype(np.float32)
    w1 = net.params["W1"] * tighter
    h = np.maximum(x @ w1.T + net.params["B1"], 0)
    np.testing.assert_allclose(net(x), h @ (net.params["W2"] * net.params["W2_mask"]), rtol=1e-5, atol=1e-5)
