"""The sparse op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from xdsl.utils.exceptions import VerifyException

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.passes.lowering.abi import KernelABI

import test_autodiff_rules as autodiff_rule_tests
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_export as export_tests
import test_reference as reference_tests
from vjp_check import check_rule, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_sparse_matmul():
    x, v = dialect_tests.values(T((None, 3)), T((4,)))
    op = nn.SparseMatmulOp(x, v, rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], in_features=3, out_features=2)
    assert dialect_tests.shape(op) == (None, 2)
    w = op.dense_weight(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    assert w.tolist() == [[0, 1], [2, 0], [4, 3]]
    cases = [
        (dict(rows=[0, 1, 2], cols=[1, 0, 1, 0]), r"cols \(one per row index\) must have 3 entries, got 4"),
        (dict(rows=[0, 1, 3, 2], cols=[1, 0, 1, 0]), r"entry 2: row 3 is out of range \[0, 3\)"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 2]), r"entry 3: col 2 is out of range \[0, 2\)"),
        (dict(rows=[0, 1, 2, 0], cols=[1, 0, 1, 1]), r"entries 0 and 3 both set \(row 0, col 1\)"),
        (dict(rows=[0, 1], cols=[1, 0]), r"values \(one per nonzero\) must have shape \[2\], got tensor<4xf32>"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], in_features=5), "input's last dimension must be in_features = 5"),
        (dict(rows=[0, 1, 2, 2], cols=[1, 0, 1, 0], out_features=0), "in_features and out_features must be >= 1"),
    ]
    y, = dialect_tests.values(T((7, 3)))
    for kw, msg in cases:
        args = dict(in_features=3, out_features=2) | kw
        with pytest.raises(VerifyException, match=msg):
            nn.SparseMatmulOp(y, v, **args)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 12), st.integers(1, 3))
@settings(max_examples=30, deadline=None)
def test_reference_sparse_matmul_vs_accumulation(k, n, nnz, batch):
    pairs = sorted({(int(r), int(c)) for r, c in zip(reference_tests.rng.integers(0, k, nnz), reference_tests.rng.integers(0, n, nnz))})
    rows, cols = [r for r, _ in pairs], [c for _, c in pairs]
    assume(pairs)
    x, v = reference_tests.randn(batch, k), reference_tests.randn(len(pairs))
    y = reference_tests.run1([x, v], lambda emit, a, b: emit(nn.SparseMatmulOp(a, b, rows, cols, k, n)))
    ref = np.zeros((batch, n))
    for e, (r, c) in enumerate(pairs):
        ref[:, c] += x[:, r] * v[e]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


@pytest.mark.parametrize("limit", [256, 2])
def test_lowered_sparse_matmul_unrolled_and_index_tables(limit):
    rows, cols = [0, 2, 4, 1, 3, 0], [1, 0, 2, 2, 0, 0]
    m = loop_tests.build([loop_tests.T(DYN, 5), loop_tests.T(6)], lambda e, x, v: e(nn.SparseMatmulOp(x, v, rows, cols, 5, 3)))
    lowered = loop_tests.check(m, [loop_tests.randn(4, 5), loop_tests.randn(6)], pipeline=f"lower-to-loops{{sparse-unroll-limit={limit}}}")
    roles = [str(r) for r in KernelABI.of(loop_tests.kernel_of(lowered)).roles]
    assert any(r.endswith("_rows") for r in roles) == (limit < len(rows))



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


@pytest.mark.parametrize("case", autodiff_rule_tests.CASES)
def test_sparse_matmul_vjp(case):
    rng = np.random.default_rng(100 + case)
    kin, nout = (int(v) for v in rng.integers(2, 6, 2))
    lead = autodiff_rule_tests.rand_shape(rng, case % 3, 1, 3)
    cells = rng.permutation(kin * nout)[:int(rng.integers(1, kin * nout + 1))]
    rows, cols = (list(map(int, a)) for a in np.unravel_index(cells, (kin, nout)))

    def tf(x, v):
        w = torch.zeros(kin, nout, dtype=v.dtype).index_put((torch.tensor(rows), torch.tensor(cols)), v)
        return x @ w

    check_rule(lambda x, v: nn.SparseMatmulOp(x, v, rows=rows, cols=cols, in_features=kin, out_features=nout),
               [autodiff_rule_tests.uniform(rng, (*lead, kin)), autodiff_rule_tests.uniform(rng, len(rows))], torch_fn=torch and tf)



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


def test_export_sparse_matmul_constant_and_computed_values():
    vals = nn.WeightOp("v", export_tests.randn(4))
    rows, cols = [0, 1, 2, 2], [1, 0, 0, 2]

    def make(e, x):
        v = e(nn.WeightRefOp(vals))
        const = e(nn.SparseMatmulOp(x, v, rows, cols, 3, 3))
        computed = e(nn.SparseMatmulOp(x, e(nn.ExpOp(v)), rows, cols, 3, 3))
        return const, computed
    model = export_tests.check(loop_tests.build([loop_tests.T(None, 3)], make, [vals]), [export_tests.randn(4, 3)])
    assert export_tests.op_types(model).count("ScatterND") == 1  # constant values: a dense initializer instead




# ---------------------------------------------------------------------------
# nn.packed_sparse_matmul and its kernel (passes/lowering/spmm.py): every
# variant this host runs against numpy; the pass that makes it from a pruned
# weight; natively and interpreted against the reference; export.

import ncc  # noqa: E402
from onnx import helper  # noqa: E402
import onnxruntime as ort  # noqa: E402
from xdsl.dialects.builtin import i8, i32  # noqa: E402

from ncc.passes import pack_weights  # noqa: E402
from ncc.passes.lowering import gemm, spmm  # noqa: E402
from ncc.runtime.calling import aligned_empty  # noqa: E402
from onnx_models import onnx_model  # noqa: E402
from c_kernels import C_VARIANTS, kernel_variant  # noqa: E402

rng = np.random.default_rng(7)


def _spmm_caller(variant, team_min_work=None):
    lib, fn = kernel_variant(spmm, variant, team_min_work)

    def call(x, w, flags=0, bias=None, ldx=None, ldy=None, threads=1):
        rows, k = x.shape
        n = w.shape[1]
        if flags & spmm.FEATURE_MAJOR:  # X^T and Y^T given: K and N rows of `rows` values
            ldx, ldy = ldx or rows, ldy or rows
            xt = np.zeros((k, ldx), np.float32)
            xt[:, :rows] = x.T
            yt = _run(xt, rows, k, n, ldx, ldy, w, flags, bias, (n, ldy), threads)
            assert (yt[:, rows:] == 7.0).all(), "the kernel wrote past its rows"
            return yt[:, :rows].T
        ldx, ldy = ldx or k, ldy or n
        xs = np.zeros((rows, ldx), np.float32)
        xs[:, :k] = x
        y = _run(xs, rows, k, n, ldx, ldy, w, flags, bias, (rows, ldy), threads)
        assert (y[:, n:] == 7.0).all(), "the kernel wrote past its columns"
        return y[:, :n]

    def _run(xs, rows, k, n, ldx, ldy, w, flags, bias, out_shape, threads):
        p = spmm.pack(w)
        flat = np.concatenate([w.ravel(), [0]]).astype(np.float32)
        sv, cv = flat[p.slice_gather], flat[p.column_gather]
        y = np.full(out_shape, 7.0, np.float32)
        ws = aligned_empty((threads * spmm.workspace_floats(k, n),), np.dtype(np.float32))
        b = bias if bias is not None else ws
        fn(rows, k, n, xs.ctypes.data, ldx, y.ctypes.data, ldy, p.steps.ctypes.data, p.blocks.ctypes.data,
           p.lanes.ctypes.data, sv.ctypes.data, p.colptr.ctypes.data, p.rowidx.ctypes.data, cv.ctypes.data, flags,
           b.ctypes.data, ws.ctypes.data, threads)
        return y
    return lib, call


@pytest.mark.parametrize("variant", [*sorted(spmm.VARIANTS), *C_VARIANTS])
def test_spmm_variant_matches_numpy(variant):
    """Rows below and above FEATURE_MIN_ROWS (the slice and the column forms),
    around FEATURE_ROWS; K and N around BLOCK and SLICE; empty columns; the
    epilogues; strided rows."""
    lib, call = _spmm_caller(variant)
    team_lib, team_call = _spmm_caller(variant, team_min_work=0)
    shapes = [(1, 1, 1), (1, 37, 19), (3, 32, 16), (2, 33, 17), (4, 31, 15), (5, 100, 50), (63, 64, 33),
              (64, 70, 16), (65, 45, 1), (130, 300, 40)]
    for (rows, k, n), density in zip(shapes * 2, [0.3, 0.05, 1.0, 0.0, 0.5] * 4):
        w = ((rng.random((k, n)) < density) * rng.standard_normal((k, n))).astype(np.float32)
        w[:, n // 2] = 0  # a column without nonzeros
        x = rng.standard_normal((rows, k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        want = x.astype(np.float64) @ w
        tag = f"{variant} {rows}x{k}x{n} density {density}"
        np.testing.assert_allclose(call(x, w), want, rtol=1e-5, atol=1e-4, err_msg=tag)
        np.testing.assert_allclose(call(x, w, gemm.BIAS_COLS | gemm.RELU, bias), np.maximum(want + bias, 0),
                                   rtol=1e-5, atol=1e-4, err_msg=f"{tag} bias relu")
        np.testing.assert_allclose(call(x, w, gemm.RELU6, ldx=k + 3, ldy=n + 5), np.clip(want, 0, 6),
                                   rtol=1e-5, atol=1e-4, err_msg=f"{tag} relu6, strided")
        given = spmm.FEATURE_MAJOR | gemm.BIAS_COLS | gemm.RELU  # X^T and Y^T given (a 1x1 conv's image)
        np.testing.assert_allclose(call(x, w, given, bias, ldx=rows + 2, ldy=rows + 1), np.maximum(want + bias, 0),
                                   rtol=1e-5, atol=1e-4, err_msg=f"{tag} feature-major")
        for flags in (gemm.BIAS_COLS, spmm.FEATURE_MAJOR | gemm.BIAS_COLS):  # a team: identical, bit for bit
            np.testing.assert_array_equal(team_call(x, w, flags, bias, threads=3), call(x, w, flags, bias),
                                          err_msg=f"{tag} team of 3")


def test_spmm_pack_describes_the_pattern():
    mask = rng.random((70, 40)) < 0.2
    p = spmm.pack(mask)
    assert p.steps.dtype == np.int32 and p.lanes.dtype == np.int8 and len(p.steps) == 3
    assert p.steps.sum() == len(p.blocks) and len(p.lanes) == len(p.slice_gather) == spmm.SLICE * len(p.blocks)
    flat = np.flatnonzero(mask.ravel())
    np.testing.assert_array_equal(np.sort(p.column_gather), flat)
    np.testing.assert_array_equal(np.sort(p.slice_gather[p.slice_gather < mask.size]), flat)
    rows = p.blocks.repeat(spmm.SLICE) * spmm.BLOCK + p.lanes
    live = p.slice_gather < mask.size
    np.testing.assert_array_equal(rows[live], p.slice_gather[live] // 40)


def _pruned_mlp(act="Relu", density=0.2, k=100, n=48):
    w = {"W1": rng.standard_normal((n, k)).astype(np.float32), "B1": rng.standard_normal(n).astype(np.float32),
         "W2": rng.standard_normal((n, 10)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node(act, ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    m = ncc.import_onnx(onnx_model(nodes, {"x": (1, ["N", k])}, inits=w))
    ncc.prune(m, sparsity=1 - density)
    return m


def test_pack_weights_makes_pruned_matmuls_sparse_up_to_the_crossover():
    m = _pruned_mlp()
    ncc.run_passes(m, "fuse,pack-weights")
    ops = [op for op in m.walk() if isinstance(op, nn.PackedSparseMatmulOp)]
    assert len(ops) == 2 and ops[0].params.activation == "relu" and ops[0].bias is not None
    assert not any(isinstance(op, (nn.MatmulOp, nn.FusedMatmulOp)) for op in m.walk())
    dense = _pruned_mlp(density=min(1.0, pack_weights.SPARSE_MAX_DENSITY + 0.2))
    ncc.run_passes(dense, "fuse,pack-weights")
    assert not any(isinstance(op, nn.PackedSparseMatmulOp) for op in dense.walk())


@pytest.mark.parametrize("act", ["Relu", "Tanh"])
def test_lowered_packed_sparse_matmul(act):
    """The pruned model natively (slice and column forms: batch 1, 3 and 70)
    and interpreted (which also checks the slice form against the column
    form) equal the reference; parameters set later flow into the values."""
    m = _pruned_mlp(act)
    packed = _pruned_mlp(act)
    ncc.run_passes(packed, "fuse,pack-weights")
    loop_tests.check(packed, [rng.standard_normal((5, 100)).astype(np.float32)], rtol=1e-4, atol=1e-4)
    model = ncc.compile(m, cache=False)
    assert {"fused_matmul_sparse_steps", "matmul_sparse_steps"} <= set(model.weight_buffers)  # the kernel's tables
    for batch in (1, 3, 70):
        x = rng.standard_normal((batch, 100)).astype(np.float32)
        np.testing.assert_allclose(model(x), ncc.reference.run(m, [x])[0], rtol=1e-4, atol=1e-4)
    model.params["W2"] = model.params["W2"] * -2
    x = rng.standard_normal((2, 100)).astype(np.float32)
    w2 = next(op for op in m.ops if isinstance(op, nn.WeightOp) and op.sym == "W2")
    w2.data = w2.data * -2
    np.testing.assert_allclose(model(x), ncc.reference.run(m, [x])[0], rtol=1e-4, atol=1e-4)


def test_packed_sparse_matmul_verifier_and_bad_tables():
    m = _pruned_mlp(k=300)  # three blocks of the column form
    ncc.run_passes(m, "fuse,pack-weights")
    op = next(op for op in m.walk() if isinstance(op, nn.PackedSparseMatmulOp))
    tables = {what: v.owner.resolve().data for (what, _), v in zip(op.TABLES, op.operands[3:8])}
    op.check_tables(*tables.values())
    for what, bad, message in [("rowidx", lambda t: t + 200, "row index is outside"),
                               ("colptr", lambda t: t[::-1], "colptr must rise"),
                               ("lanes", lambda t: t + 40, "lane's row is outside"),
                               ("blocks", lambda t: t + 9, "block index is outside"),
                               ("steps", lambda t: t + 1, "steps must count"),
                               ("rowidx", lambda t: t % 128, "outside its segment's block of 128 rows")]:
        args = dict(tables, **{what: bad(tables[what])})
        with pytest.raises(VerifyException, match=message):
            op.check_tables(*args.values())
    with pytest.raises(VerifyException, match="colptr \\(one per block of 128 rows and column, \\+ 1\\) must have shape \\[49\\]"):
        nn.PackedSparseMatmulOp.infer([T([DYN, 100]), T([32]), T([4]), T([3], i32), T([2], i32), T([32], i8),
                                       T([40], i32), T([4], i32)],
                                      op.params.__class__(in_features=100, out_features=48, activation="relu"))


def test_export_packed_sparse_matmul():
    m = _pruned_mlp("Tanh")
    ncc.run_passes(m, "fuse,pack-weights")
    x = rng.standard_normal((3, 100)).astype(np.float32)
    got = ort.InferenceSession(ncc.export_onnx(m).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ncc.reference.run(m, [x])[0], rtol=1e-5, atol=1e-5)


def test_compile_cache_tells_masks_apart(tmp_path):
    """Two pruned models alike but for their masks' density: the cache key
    covers the masks (the sparse kernel's pattern), not only the structure."""
    sparse, dense = _pruned_mlp(density=0.1), _pruned_mlp(density=0.9)
    a = ncc.compile(dense, cache=str(tmp_path))
    b = ncc.compile(sparse, cache=str(tmp_path))
    assert not any("sparse" in n for n in a.weight_buffers) and "fused_matmul_sparse_steps" in b.weight_buffers
    x = rng.standard_normal((2, 100)).astype(np.float32)
    np.testing.assert_allclose(b(x), ncc.reference.run(sparse, [x])[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", ["Relu", "Sigmoid"])
def test_pruned_pointwise_conv_runs_sparse(act, tmp_path):
    """A pruned 1x1 convolution becomes nn.packed_sparse_conv (channels first:
    the kernel reads each image where it is); natively, interpreted and
    exported it equals the reference; a 3x3 convolution stays dense."""
    w = {"K": rng.standard_normal((48, 32, 1, 1)).astype(np.float32), "B": rng.standard_normal(48).astype(np.float32),
         "K3": rng.standard_normal((8, 48, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "K", "B"], ["c"]), helper.make_node(act, ["c"], ["a"]),
             helper.make_node("Conv", ["a", "K3"], ["y"], pads=[1, 1, 1, 1])]
    model = onnx_model(nodes, {"x": (1, ["N", 32, 9, 10])}, inits=w)
    m = ncc.import_onnx(model)
    ncc.prune(m, sparsity=0.8)
    packed = m.clone()
    ncc.run_passes(packed, "fuse,pack-weights")
    assert [op.name for op in packed.walk() if op.name.startswith("nn.packed")] == ["nn.packed_sparse_conv"]
    x = rng.standard_normal((3, 32, 9, 10)).astype(np.float32)
    loop_tests.check(packed, [x], rtol=1e-4, atol=1e-4)
    model_native = ncc.compile(m, cache=False)
    np.testing.assert_allclose(model_native(x), ncc.reference.run(m, [x])[0], rtol=1e-4, atol=1e-4)
    got = ort.InferenceSession(ncc.export_onnx(packed).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ncc.reference.run(packed, [x])[0], rtol=1e-5, atol=1e-4)


def test_pruned_models_on_two_threads_give_one_threads_results():
    m = _pruned_mlp(density=0.2, k=300, n=600)  # enough multiply-adds at batch 64 for a team
    x = rng.standard_normal((64, 300)).astype(np.float32)
    one, two = ncc.compile(m, cache=False, threads=1), ncc.compile(m, cache=False, threads=2)
    np.testing.assert_array_equal(two(x), one(x))
    np.testing.assert_allclose(one(x), ncc.reference.run(m, [x])[0], rtol=1e-4, atol=1e-3)
