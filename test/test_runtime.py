"""ncc.compile and CompiledModel: native results against ncc.reference, params,
varying batch, every class of wrong input (and a fuzz run of them in a
subprocess, so that a crash fails the test instead of killing pytest), and the
on-disk compile cache."""

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ncc
from ncc import NccError
from ncc.runtime.cache import CompileCache

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SEEDS = ["seed_list.txt", "seed_matrix.txt", "seed_edges.txt", "seed_matrix_decorated.txt",
         "ncp19.txt"]
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)

# Two named inputs with a batch, one static input, one index input, two outputs.
MULTI = """\
func.func @main(%a: tensor<?x3xf32> {ncc.name = "a"}, %b: tensor<3xf32> {ncc.name = "b"},
                %i: tensor<2xi64> {ncc.name = "idx"}) -> (tensor<?x3xf32>, tensor<?x2xf32>) {
  %0 = nn.add %a, %b : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %1 = nn.tanh %0 : tensor<?x3xf32>
  %2 = nn.gather %1, %i axis 1 : tensor<?x3xf32>, tensor<2xi64> -> tensor<?x2xf32>
  func.return %1, %2 : tensor<?x3xf32>, tensor<?x2xf32>
}
"""


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """Every compile of this module uses one fresh cache (the default directory
    comes from $NCC_CACHE_DIR)."""
    d = tmp_path_factory.mktemp("ncc-cache")
    old = os.environ.get("NCC_CACHE_DIR")
    os.environ["NCC_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        del os.environ["NCC_CACHE_DIR"]
    else:
        os.environ["NCC_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def xor():
    return ncc.compile(EXAMPLES / "xor_values.txt", neuron_mode="neuron")


@pytest.fixture(scope="module")
def multi():
    return ncc.compile(MULTI)


@pytest.fixture(scope="module")
def mlp():
    """The lit MLP: reshape, matmul + add + relu, a fused matmul whose weight
    @fc2_w has no data (a parameter), softmax."""
    return ncc.compile(ROOT / "test/lit/nn/mlp-dynamic-batch.mlir")


def multi_reference(a, b, i):
    return ncc.reference.run(ncc.parse_module(MULTI), [a, b, i])


# ---------------------------------------------------------------------------
# Results


@pytest.mark.parametrize("mode", ["neuron", "layers"])
def test_xor_is_exact(mode):
    model = ncc.compile(EXAMPLES / "xor_values.txt", neuron_mode=mode)
    assert model.compile_info["neuron_mode"] == mode
    assert model.input_names == ("x",) and model.output_names == ("y",)  # in either mode
    y = model(XOR_X)
    assert y.dtype == np.float32 and y.shape == (4, 1)
    assert np.array_equal(y[:, 0], [0, 1, 1, 0])


@pytest.mark.parametrize("mode", ["auto", "neuron", "layers"])
@pytest.mark.parametrize("seed", SEEDS)
def test_seed_nets_match_the_reference(seed, mode):
    module = ncc.import_adjacency(EXAMPLES / seed)
    model = ncc.compile(EXAMPLES / seed, neuron_mode=mode)
    x = np.random.default_rng(1).standard_normal((37, len(model.input_shapes) and
                                                   model.input_shapes[0][1])).astype(np.float32)
    np.testing.assert_allclose(model(x), ncc.reference.run(module, [x])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fuse", [True, False])
def test_nn_module_with_a_parameter_matches_the_reference(fuse):
    module = ncc.parse_module((ROOT / "test/lit/nn/mlp-dynamic-batch.mlir").read_text())
    model = ncc.compile(module, fuse=fuse)
    x = np.random.default_rng(2).standard_normal((5, 2, 2)).astype(np.float32)
    with pytest.raises(NccError, match="fc2_w"):  # a weight without data must be set first
        model(x)
    w2 = np.random.default_rng(3).standard_normal((3, 2)).astype(np.float32)
    model.params["fc2_w"] = w2
    ref = ncc.reference.run(module, [x], params={"fc2_w": w2})[0]
    np.testing.assert_allclose(model(x), ref, rtol=1e-5, atol=1e-6)
    assert model.input_names == ("input",)


def test_two_outputs_and_named_inputs(multi):
    rng = np.random.default_rng(4)
    a, b, i = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32), \
        np.array([2, 0])
    ref = multi_reference(a, b, i)
    outs = multi(a, b, i)
    assert isinstance(outs, tuple) and len(outs) == 2
    for got, want in zip(outs, ref):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    by_name = multi.run({"idx": i, "b": b, "a": a})
    assert isinstance(by_name, list) and all(np.array_equal(p, q) for p, q in zip(by_name, outs))
    second, first = multi.run({"a": a, "b": b, "idx": i}, output_names=["1", "0"])
    assert np.array_equal(first, outs[0]) and np.array_equal(second, outs[1])
    assert multi.input_names == ("a", "b", "idx") and multi.output_names == ("0", "1")


@pytest.mark.parametrize("batch", [0, 1, 7, 1000, 1])
def test_batch_varies_between_calls(xor, batch):
    x = np.random.default_rng(batch).integers(0, 2, (batch, 2)).astype(np.float32)
    y = xor(x)
    assert y.shape == (batch, 1)
    assert np.array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


def test_outputs_are_fresh_arrays(xor):
    y1, y2 = xor(XOR_X), xor(XOR_X)
    assert not np.shares_memory(y1, y2)


def test_concurrent_calls_from_threads(multi):
    rng = np.random.default_rng(5)
    b, i = rng.standard_normal(3).astype(np.float32), np.array([1, 2])
    batches = [rng.standard_normal((n, 3)).astype(np.float32) for n in (3, 300, 3000, 30)]
    errors = []

    def work(a):
        want = multi_reference(a, b, i)
        for _ in range(50):
            got = multi(a, b, i)
            if not all(np.allclose(g, w, atol=1e-6) for g, w in zip(got, want)):
                errors.append(a.shape)
    threads = [threading.Thread(target=work, args=(a,)) for a in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------------------
# params


def test_neuron_params_are_named_as_in_the_equations_and_writable(xor):
    module = ncc.import_adjacency(EXAMPLES / "xor_values.txt")
    model = ncc.compile(EXAMPLES / "xor_values.txt", neuron_mode="neuron", cache=False)
    assert set(model.params) == {"w0002", "w0102", "w0003", "w0103", "w0204", "w0304", "b03"}
    assert model.params["w0304"].shape == () and float(model.params["w0304"]) == -2.0
    model.params["w0204"] = 3.0                     # assignment copies into the buffer
    model.params["b03"][...] = -0.5                 # so does writing through the view
    ref = ncc.reference.run(module, [XOR_X], params={"w0204": 3.0, "b03": -0.5})[0]
    np.testing.assert_allclose(model(XOR_X), ref, rtol=1e-6)
    assert not np.array_equal(model(XOR_X), xor(XOR_X))
    with pytest.raises(NccError, match="no parameter 'w9999'"):
        model.params["w9999"] = 1.0
    with pytest.raises(NccError, match="cannot set parameter 'w0204'"):
        model.params["w0204"] = [1.0, 2.0]


def test_layer_params_are_views_into_the_layer_tensors():
    """Lowered as layers, a neuron net's params are still its equation symbols,
    each a view of its entry in a layer's weights: writing it changes the kernel."""
    model = ncc.compile(EXAMPLES / "xor_values.txt", neuron_mode="layers")
    module = ncc.run_passes(ncc.import_adjacency(EXAMPLES / "xor_values.txt"), "layerize")
    weights = {op.sym: np.array(op.data) for op in module.ops if op.name == "nn.weight"}
    assert set(model.params) == {"w0002", "w0102", "w0003", "w0103", "b03", "w0204", "w0304"}
    model.params["w0304"][...] = 5.0  # in place, through the view
    weights["net_l2_w"][1, 0] = 5.0  # where layerize put w0304
    ref = ncc.reference.run(module, [XOR_X], params=weights)[0]
    np.testing.assert_allclose(model(XOR_X), ref, rtol=1e-6)


# ---------------------------------------------------------------------------
# Wrong inputs: each is an NccError naming the problem

GOOD = {"a": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32), "idx": np.array([0, 1])}
WRONG = [
    ("a list", {"a": [[0.0] * 3] * 4}, "must be a numpy array.*got list"),
    ("None", {"b": None}, "input 'b' must be a numpy array.*NoneType"),
    ("a scalar", {"b": 1.0}, "got float"),
    ("a numpy scalar", {"b": np.float32(1.0)}, r"input 'b' must be a numpy array of shape \[3\] float32, got float32"),
    ("a 0-d array", {"b": np.array(1.0, np.float32)}, r"input 'b' has shape \[\], expected \[3\]"),
    ("a wrong rank", {"a": np.zeros((4, 3, 1), np.float32)}, r"shape \[4, 3, 1\], expected \[batch, 3\]"),
    ("a wrong static dim", {"a": np.zeros((4, 5), np.float32)}, r"input 'a' has shape \[4, 5\]"),
    ("a complex dtype", {"b": np.zeros(3, np.complex64)}, "dtype complex64, expected float32"),
    ("an object dtype", {"b": np.array([1, "x", None], object)}, "dtype object"),
    ("a string dtype", {"b": np.array(["a", "b", "c"])}, "dtype <U1"),
    ("float indices", {"idx": np.array([0.0, 1.0])}, "floats are not truncated"),
    ("an overflowing float64", {"b": np.array([1e300, 0, 0])}, "overflow float32"),
    ("an out-of-range index type", {"idx": np.array([2**63, 0], np.uint64)}, "out of range"),
]


@pytest.mark.parametrize("case, change, message", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_input_is_a_clear_error(multi, case, change, message):
    feeds = {**GOOD, **change}
    with pytest.raises(NccError, match=message):
        multi.run(feeds)
    with pytest.raises(NccError, match=message):
        multi(*[feeds[n] for n in multi.input_names])


CLIP = """\
func.func @main(%x: tensor<?x3xf32> {ncc.name = "x"}, %lo: tensor<f32> {ncc.name = "lo"},
                %hi: tensor<f64> {ncc.name = "hi"}) -> (tensor<?x3xf32>, tensor<f64>) {
  %0 = nn.max %x, %lo : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  %1 = nn.neg %hi : tensor<f64>
  func.return %0, %1 : tensor<?x3xf32>, tensor<f64>
}
"""


def test_rank0_inputs_take_numpy_scalars_and_0d_arrays():
    """A rank-0 input (ONNX's Clip min/max, Dropout's ratio) takes a 0-d array or
    a numpy scalar (numpy's casting rules as for arrays); a Python float is still
    not an array, and a rank-0 output is a 0-d array."""
    model = ncc.compile(CLIP, cache=False)
    module = ncc.parse_module(CLIP)
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    for lo, hi in ((np.float32(-0.25), np.float64(2.0)), (np.array(-0.25, np.float32), np.array(2.0)),
                   (np.float64(-0.25), np.float32(2.0)), (np.int64(0), np.int32(-3))):
        got = model(x, lo, hi)
        want = ncc.reference.run(module, [x, np.asarray(lo, np.float32), np.asarray(hi, np.float64)])
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
        assert got[1].shape == () and isinstance(got[1], np.ndarray)
    np.testing.assert_array_equal(model.run({"x": x, "lo": np.float32(0.5), "hi": np.float64(1)})[0],
                                  np.maximum(x, np.float32(0.5)))
    with pytest.raises(NccError, match=r"input 'lo' must be a numpy array of shape \[\] float32, got float"):
        model(x, 0.5, np.float64(1))
    with pytest.raises(NccError, match=r"input 'lo' has shape \[1\], expected \[\] float32"):
        model(x, np.zeros(1, np.float32), np.float64(1))
    with pytest.raises(NccError, match="input 'lo': float64 values overflow float32"):
        model(x, np.float64(1e300), np.float64(1))
    with pytest.raises(NccError, match="input 'lo' has dtype complex64"):
        model(x, np.complex64(1), np.float64(1))


def test_wrong_count_names_and_batches(multi):
    a, b, i = GOOD["a"], GOOD["b"], GOOD["idx"]
    with pytest.raises(NccError, match=r"takes 3 input\(s\) \(a, b, idx\), got 2"):
        multi(a, b)
    with pytest.raises(NccError, match="missing: idx; unknown: index"):
        multi.run({"a": a, "b": b, "index": i})
    with pytest.raises(NccError, match="run takes a mapping"):
        multi.run([a, b, i])
    with pytest.raises(NccError, match="no output named '2'"):
        multi.run(GOOD, output_names=["2"])
    with pytest.raises(NccError, match="no output named 2"):
        multi.run(GOOD, output_names=[2])
    for odd in (123, "y", None.__class__):  # not a list of names
        with pytest.raises(NccError, match="run's output_names must be a list of output names"):
            multi.run(GOOD, odd)


def test_a_huge_zero_stride_view_is_refused_before_it_is_copied(multi):
    huge = np.broadcast_to(np.float32(1), (2 ** 40, 3))
    with pytest.raises(NccError, match=r"input 'a' of shape \[1099511627776, 3\] as a contiguous float32 array "
                                       r"needs 12.0 TiB, more than this machine's memory"):
        multi(huge, huge, GOOD["idx"])
    with pytest.raises(NccError, match="needs 12.0 TiB"):
        multi.run({"a": huge, "b": huge, "idx": GOOD["idx"]})
    xor = ncc.compile(EXAMPLES / "xor_values.txt")
    with pytest.raises(NccError, match="takes 1 input"):
        xor()


def test_documented_casts_and_copies(multi):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 6))
    b = rng.standard_normal(3)
    i = np.array([1, 0], np.int32)
    want = multi_reference(a[:, ::2].astype(np.float32), b.astype(np.float32), i)
    # float64 -> float32, int32 -> int64, a strided view -> copied, big-endian -> cast
    for args in ((a[:, ::2], b, i), (np.asfortranarray(a[:, ::2]), b.astype(">f4"), i.astype(">i8"))):
        for got, w in zip(multi(*args), want):
            np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-6)
    ro = a[:, ::2].astype(np.float32)
    ro.flags.writeable = False  # read-only inputs are fine: kernels never write inputs
    np.testing.assert_allclose(multi(ro, b, i)[0], want[0], rtol=1e-6, atol=1e-6)
    ints = np.arange(15).reshape(5, 3)  # integer data for a float input: converted
    np.testing.assert_allclose(multi(ints, b, i)[0], multi_reference(ints.astype(np.float32),
                                                                      b.astype(np.float32), i)[0])


def test_bool_inputs_and_outputs():
    """i1 tensors are numpy bool arrays in and out; 0/1 integers are cast, other
    integers and floats are errors."""
    text = """func.func @main(%c: tensor<?x3xi1> {ncc.name = "c"}, %x: tensor<?x3xf32> {ncc.name = "x"})
    -> (tensor<?x3xf32> {ncc.name = "y"}, tensor<?x3xi1> {ncc.name = "neg"}) {
  %z = nn.constant dense<0.0> : tensor<f32>
  %y = nn.select %c, %x, %z : tensor<?x3xi1>, tensor<?x3xf32>, tensor<f32> -> tensor<?x3xf32>
  %n = nn.less %x, %z : tensor<?x3xf32>, tensor<f32> -> tensor<?x3xi1>
  func.return %y, %n : tensor<?x3xf32>, tensor<?x3xi1>
}"""
    model = ncc.compile(text, cache=False)
    assert model.input_dtypes == [np.dtype(bool), np.dtype(np.float32)]
    c = np.array([[True, False, True], [False, False, True]])
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    y, neg = model(c, x)
    assert neg.dtype == np.bool_ and neg.tolist() == (x < 0).tolist()
    assert y.tolist() == np.where(c, x, 0).tolist()
    assert model(c.astype(np.int64), x)[0].tolist() == y.tolist()  # 0/1 integers: cast
    with pytest.raises(NccError, match="input 'c': int64 values out of range of bool"):
        model(c * 2, x)
    with pytest.raises(NccError, match="input 'c' has dtype float64, expected bool: floats are not cast to bool"):
        model(c.astype(np.float64), x)


def test_batch_disagreement_names_both_inputs():
    text = MULTI.replace("tensor<3xf32> {ncc.name = \"b\"}", "tensor<?x3xf32> {ncc.name = \"b\"}") \
        .replace("tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>",
                 "tensor<?x3xf32>, tensor<?x3xf32> -> tensor<?x3xf32>")
    model = ncc.compile(text)
    ok = model(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32), np.array([0, 1]))
    assert ok[0].shape == (4, 3)
    with pytest.raises(NccError, match="inputs 'a' and 'b' disagree on the batch size: 4 vs 5"):
        model(np.ones((4, 3), np.float32), np.ones((5, 3), np.float32), np.array([0, 1]))


FUZZ = r"""
import sys
import numpy as np
import ncc
from ncc import NccError

models = {"multi": ncc.compile(sys.argv[1]), "net": ncc.compile(sys.argv[2])}
net = ncc.import_adjacency(sys.argv[2])
rng = np.random.default_rng(int(sys.argv[3]))
DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint64, bool,
          np.complex64, object, "U3", "V4", ">f4", "<f8"]

def value(hint):
    k = rng.integers(0, 10)
    if k == 0:
        odd = [None, 1.5, "x", [1.0, 2.0], [[1.0] * 3] * 2, (), {}, b"\x00" * 16, np.float32(1)]
        return odd[rng.integers(0, len(odd))]
    ndim = int(rng.integers(0, 5))
    shape = tuple(int(s) for s in rng.integers(0, 6, ndim))
    if k >= 5:  # the expected shape, any batch: mostly dtype and layout vary
        shape = tuple(int(rng.integers(0, 40)) if d == "batch" else d for d in hint)
    dt = DTYPES[rng.integers(0, len(DTYPES))]
    with np.errstate(all="ignore"):
        a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 300)).astype(dt) \
            if np.dtype(dt).kind not in "OUV" else np.zeros(shape, dt)
    if k == 1 and a.ndim:
        a = a[..., ::2]  # strided
    if k == 2 and a.ndim > 1:
        a = a.T
    return a

ok = errors = 0
for trial in range(int(sys.argv[4])):
    name = ["multi", "net"][trial % 2]
    model = models[name]
    names = list(model.input_names)
    n = len(names) + int(rng.integers(-1, 2))
    hints = model.input_shapes + [[3]]
    args = [value(hints[k]) for k in range(max(n, 0))]
    try:
        if rng.integers(0, 2):
            out = model(*args)
        else:
            keys = names[:len(args)] if rng.integers(0, 3) else [f"n{k}" for k in range(len(args))]
            out = model.run(dict(zip(keys, args)))[0]
        ok += 1
        if name == "net":  # what ran must be right, too
            want = ncc.reference.run(net, [args[0].astype(np.float32)])[0]
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    except NccError:
        errors += 1
print(f"fuzz: {ok} ran, {errors} rejected")
"""


def test_fuzz_random_wrong_inputs_never_crash(tmp_path):
    multi_path = tmp_path / "multi.mlir"
    multi_path.write_text(MULTI)
    proc = subprocess.run([sys.executable, "-c", FUZZ, str(multi_path), str(EXAMPLES / "seed_list.txt"),
                           "12345", "3000"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode} (a negative code is a signal): {proc.stderr[-2000:]}"
    ran, rejected = int(proc.stdout.split()[1]), int(proc.stdout.split()[3])
    assert rejected > 1000 and ran > 50, proc.stdout  # both kinds were exercised


# ---------------------------------------------------------------------------
# Sources


def test_sources_path_text_module(tmp_path):
    text = (EXAMPLES / "xor_values.txt").read_text()
    module = ncc.import_adjacency(EXAMPLES / "xor_values.txt")
    before = ncc.print_module(module)
    for src in (EXAMPLES / "xor_values.txt", str(EXAMPLES / "xor_values.txt"), text, module):
        assert np.array_equal(ncc.compile(src)(XOR_X)[:, 0], [0, 1, 1, 0])
    assert ncc.print_module(module) == before  # the caller's module is not modified
    mlir = tmp_path / "xor.mlir"
    mlir.write_text(before)
    assert np.array_equal(ncc.compile(mlir)(XOR_X)[:, 0], [0, 1, 1, 0])
    assert np.array_equal(ncc.compile(before)(XOR_X)[:, 0], [0, 1, 1, 0])


@pytest.mark.parametrize("source, kw, message", [
    ("model.onnx", {}, r"model.onnx: error: not a valid ONNX model \(no graph\)"),
    ("no/such/file.txt", {}, "no/such/file.txt: error: no such file"),
    (42, {}, "cannot compile a int"),
    (EXAMPLES / "xor_values.txt", {"neuron_mode": "fast"}, "neuron_mode must be one of"),
    ("N 02\n00\n01 tanh 00,05\n", {}, "<text>:3:"),
    ("func.func @f(%x: tensor<2xf32>) -> tensor<3xf32> {\n  func.return %x : tensor<2xf32>\n}\n", {},
     "<text>:"),
    (MULTI, {"function": "other"}, "no function 'other'"),
])
def test_compile_errors_are_ncc_errors(tmp_path, source, kw, message):
    if source == "model.onnx":
        source = tmp_path / "model.onnx"
        source.write_bytes(b"")
    with pytest.raises(NccError, match=message):
        ncc.compile(source, **kw)


# ---------------------------------------------------------------------------
# The compile cache


def test_second_compile_hits_the_cache(tmp_path):
    first = ncc.compile(EXAMPLES / "seed_list.txt", cache=tmp_path)
    second = ncc.compile(EXAMPLES / "seed_list.txt", cache=tmp_path)
    assert first.compile_info["cache"] == "miss" and second.compile_info["cache"] == "hit"
    # two entries, both read: what lowering made (ABI, recipes) and the object code
    assert second.compile_info["cache_stats"] == {"hits": 2, "misses": 0, "stores": 0, "corrupt": 0}
    assert {"lower-to-loops", "lower-to-llvm"}.isdisjoint(second.compile_info["seconds"])  # no passes at all
    x = np.random.default_rng(7).standard_normal((9, 4)).astype(np.float32)
    assert np.array_equal(first(x), second(x))
    assert len(list(tmp_path.glob("*.ncc"))) == 2
    # other options or other IR: other entries
    assert ncc.compile(EXAMPLES / "seed_list.txt", cache=tmp_path,
                       neuron_mode="layers").compile_info["cache"] == "miss"
    assert ncc.compile(EXAMPLES / "xor_values.txt", cache=tmp_path).compile_info["cache"] == "miss"
    assert ncc.compile(EXAMPLES / "seed_list.txt", cache=False).compile_info["cache"] == "off"


def test_weights_are_not_part_of_the_key(tmp_path):
    """Kernels take weights as buffers: a retrained net reuses the code."""
    text = (EXAMPLES / "xor_values.txt").read_text()
    ncc.compile(text, cache=tmp_path)
    changed = ncc.compile(text.replace("w=1,-2", "w=1,-3"), cache=tmp_path)
    assert changed.compile_info["cache"] == "hit"
    assert np.array_equal(changed(XOR_X)[:, 0], [0, 1, 1, -1])


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage):
    ncc.compile(EXAMPLES / "xor_values.txt", cache=tmp_path)
    for entry in tmp_path.glob("*.ncc"):  # the lowering's entry and the code's
        blob = entry.read_bytes()
        entry.write_bytes({"garbage": b"\x00not an entry", "truncate": blob[:len(blob) // 2],
                           "flip": blob[:-1] + bytes([blob[-1] ^ 1])}[damage])
    model = ncc.compile(EXAMPLES / "xor_values.txt", cache=tmp_path)
    assert model.compile_info["cache"] == "miss"
    assert model.compile_info["cache_stats"]["corrupt"] == 1  # the code's (the lowering's is counted apart)
    assert np.array_equal(model(XOR_X)[:, 0], [0, 1, 1, 0])
    assert ncc.compile(EXAMPLES / "xor_values.txt", cache=tmp_path).compile_info["cache"] == "hit"


def test_concurrent_compiles_from_processes_leave_a_valid_entry(tmp_path):
    script = textwrap.dedent("""
        import sys, numpy as np, ncc
        m = ncc.compile(sys.argv[1], cache=sys.argv[2])
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        print(m.compile_info["cache"], m(x)[:, 0].tolist())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(EXAMPLES / "xor_values.txt"),
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for out, err, code in results:
        assert code == 0, err
        assert out.split(" ", 1)[1].strip() == "[0.0, 1.0, 1.0, 0.0]"
    entries = list(tmp_path.glob("*.ncc"))
    assert len(entries) == 2 and not list(tmp_path.glob("*.tmp"))  # the lowering's and the code's
    cache = CompileCache(tmp_path)
    assert all(cache.load(e.stem) is not None for e in entries)
    assert ncc.compile(EXAMPLES / "xor_values.txt", cache=tmp_path).compile_info["cache"] == "hit"


def test_a_cached_compile_skips_the_passes_and_reads_the_new_weights(tmp_path):
    """The lowering's entry is keyed by the imported IR without its weights: the
    same graph with other weights skips the passes too, and its derived
    weights (a Gemm's transposed weight, packed) and its outputs follow the
    file's new weights; another graph is a miss."""
    rng = np.random.default_rng(3)

    def gemm_model(w: np.ndarray, activation: str = "Relu") -> bytes:
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node(activation, ["h"], ["y"])],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 96])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 80])],
            [numpy_helper.from_array(w, "w")])
        path = tmp_path / f"{activation}{len(list(tmp_path.glob('*.onnx')))}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    w1, w2 = (rng.standard_normal((80, 96)).astype(np.float32) for _ in range(2))
    x = rng.standard_normal((8, 96)).astype(np.float32)
    cold = ncc.compile(gemm_model(w1), cache=tmp_path)
    warm = ncc.compile(gemm_model(w1), cache=tmp_path)
    assert (cold.compile_info["cache"], warm.compile_info["cache"]) == ("miss", "hit")
    assert "lower-to-loops" in cold.compile_info["seconds"] and "lower-to-loops" not in warm.compile_info["seconds"]
    assert np.array_equal(cold(x), warm(x)) and sorted(cold.params) == sorted(warm.params) == ["w"]
    other = ncc.compile(gemm_model(w2), cache=tmp_path)
    assert other.compile_info["cache"] == "hit" and "lower-to-loops" not in other.compile_info["seconds"]
    np.testing.assert_allclose(other(x), np.maximum(x @ w2.T, 0), rtol=1e-4, atol=1e-4)
    other.params["w"] = w1  # the packed panels follow a parameter set after a cached compile too
    np.testing.assert_allclose(other(x), cold(x), rtol=1e-5, atol=1e-5)
    assert ncc.compile(gemm_model(w1, "Tanh"), cache=tmp_path).compile_info["cache"] == "miss"


MATMUL_MODEL = """
nn.weight @w : tensor<96x80xf32> = dense<0.5>
func.func @main(%x: tensor<?x96xf32>) -> tensor<?x80xf32> {
  %w = nn.weight_ref @w : tensor<96x80xf32>
  %y = nn.matmul %x, %w : tensor<?x96xf32>, tensor<96x80xf32> -> tensor<?x80xf32>
  func.return %y : tensor<?x80xf32>
}
"""


def test_kernels_link_against_one_gemm_which_the_cache_keeps(tmp_path):
    """A kernel declares ncc_sgemm and links against the process's one GEMM
    library; the cache holds the GEMM's object code as an entry of its own,
    so a fresh process with a warm cache compiles no GEMM at all."""
    source = tmp_path / "matmul.mlir"
    source.write_text(MATMUL_MODEL)
    cache = tmp_path / "cache"
    script = textwrap.dedent(r"""
        import re, sys, numpy as np, ncc
        from ncc.runtime import engine
        if sys.argv[3] == "warm":  # the GEMM must come from the cache
            def compiled():
                raise AssertionError("the GEMM was compiled")
            engine.gemm_object = compiled
        m = ncc.compile(sys.argv[1], cache=sys.argv[2])
        x = np.random.default_rng(0).standard_normal((8, 96)).astype(np.float32)
        np.testing.assert_allclose(m(x), x @ np.full((96, 80), 0.5, np.float32), rtol=1e-5, atol=1e-4)
        ir = m.llvm_ir or ""  # the kernel's IR (none when loaded from the cache)
        print(m.compile_info["cache"], engine.gemm_loaded(), *(re.search(rf"{what}[^\n]*@ncc_sgemm\(", ir) is not None
                                                              for what in ("declare", "define")))
    """)
    runs = [subprocess.run([sys.executable, "-c", script, str(source), str(cache), state], capture_output=True,
                           text=True, timeout=600) for state in ("cold", "warm")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert [r.stdout.split() for r in runs] == [["miss", "True", "True", "False"], ["hit", "True", "False", "False"]]
    assert len(list(cache.glob("*.ncc"))) == 3  # the lowering's, the kernel's and the GEMM's


def test_the_library_fingerprint_is_cheap_and_follows_the_variants(monkeypatch):
    """The cache keys' digest of the kernel library names the variants, the
    target and the sources that generate it, without building the library."""
    from ncc.runtime import engine

    def built(*_):
        raise AssertionError("the fingerprint built the kernel library")
    monkeypatch.setattr(engine, "kernel_library_module", built)
    engine.library_fingerprint.cache_clear()
    try:
        prints = {cpu: engine.library_fingerprint(cpu) for cpu in ("znver3", "skylake-avx512", "x86-64")}
        assert len(set(prints.values())) == 3  # other tiles, other kernels
        engine.library_fingerprint.cache_clear()
        assert engine.library_fingerprint("znver3") == prints["znver3"]
    finally:
        engine.library_fingerprint.cache_clear()


def test_unwritable_cache_only_costs_time(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    model = ncc.compile(EXAMPLES / "xor_values.txt", cache=blocker / "sub")  # cannot mkdir
    assert model.compile_info["cache"] == "miss"
    assert np.array_equal(model(XOR_X)[:, 0], [0, 1, 1, 0])


def test_default_cache_directory_is_the_environment_variable(cache_dir):
    ncc.compile(EXAMPLES / "seed_edges.txt")
    assert list(cache_dir.glob("*.ncc"))


# Layers mode on a random sparse DAG makes a kernel of ~1,000 small loops that
# LLVM takes a minute to optimise at 300 neurons: 60 keeps the test short.
@pytest.mark.parametrize("mode, neurons", [pytest.param("auto", 300, marks=pytest.mark.slow), ("neuron", 300),
                                           pytest.param("layers", 60, marks=pytest.mark.slow)])
def test_random_net_of_hundreds_of_neurons(mode, neurons):
    """A random DAG (skip connections, biases, shared weights) end to end through
    ncc.compile, against the reference, at several batch sizes."""
    from test_passes import random_graph
    from xdsl.dialects.builtin import ModuleOp

    rng = np.random.default_rng(8)
    g = random_graph(rng, neurons, 12, 6, values=False, biases=True, share=True)
    module = ModuleOp([g.to_net("big")])
    model = ncc.compile(module, neuron_mode=mode)
    assert model.compile_info["neuron_mode"] in ("neuron", "layers")
    for batch in (1, 7, 1000):
        x = rng.standard_normal((batch, 12)).astype(np.float32)
        np.testing.assert_allclose(model(x), ncc.reference.run(module, [x])[0], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("mode", ["neuron", pytest.param("layers", marks=pytest.mark.slow)])
def test_neuron_params_have_equation_names_in_either_lowering(mode):
    """params are named as in the equations (w0004, b04) whichever lowering runs;
    setting them (shared symbols included: every copy) changes the next call as
    the reference says."""
    from test_passes import random_graph
    from xdsl.dialects.builtin import ModuleOp

    rng = np.random.default_rng(21)
    g = random_graph(rng, 40, 4, 5, values=False, biases=True, share=True)
    module = ModuleOp([g.to_net("net")])
    model = ncc.compile(module, neuron_mode=mode, cache=False)
    symbols = {w for ws in g.weights for w in ws} | {b for b in g.bias if b}
    assert set(model.params) == symbols
    new = {name: float(rng.normal()) for name in symbols}
    for name, value in new.items():
        model.params[name] = value
    x = rng.standard_normal((9, 4)).astype(np.float32)
    want = ncc.reference.run(module, [x], params=new)[0]
    np.testing.assert_allclose(model(x), want, rtol=2e-4, atol=2e-5)
    shared = next(name for name in symbols if name.startswith("s"))
    if mode == "layers":  # a shared symbol has several copies: set through the mapping
        with pytest.raises(ValueError):
            model.params[shared][...] = 1.0


def test_compiles_from_several_threads():
    """ncc.compile may be called from several threads at once (its IR stages take turns)."""
    from concurrent.futures import ThreadPoolExecutor

    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    sources = [EXAMPLES / "xor_values.txt", EXAMPLES / "seed_list.txt"] * 3

    def build(path):
        return ncc.compile(path, cache=False)

    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(build, sources))
    np.testing.assert_array_equal(models[0](x).ravel(), [0, 1, 1, 0])
    y = ncc.reference.run(ncc.import_adjacency(EXAMPLES / "seed_list.txt"), [np.ones((2, 4), np.float32)])[0]
    np.testing.assert_allclose(models[5](np.ones((2, 4), np.float32)), y, rtol=1e-5, atol=1e-6)
