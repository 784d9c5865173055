"""The matmul op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.onnx import import_onnx

import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
from vjp_check import check_rule, rand, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.lists(st.integers(1, 4), min_size=1, max_size=4),
       st.integers(1, 5))
def test_dialect_matmul_shapes_match_numpy(a, b, k):
    a, b = [*a[:-1], k], [*b[:-2], k, b[-1]] if len(b) > 1 else [k]
    # Make batch dims broadcastable by replacing clashes with 1.
    la, lb = a[:-2], b[:-2]
    for i in range(1, min(len(la), len(lb)) + 1):
        if la[-i] != lb[-i]:
            lb[-i] = 1
    b = [*lb, *b[len(b) - min(len(b), 2):]]
    x, y = dialect_tests.values(T(a), T(b))
    assert dialect_tests.shape(nn.MatmulOp(x, y)) == np.matmul(np.zeros(a), np.zeros(b)).shape


def test_dialect_matmul_dynamic_and_errors():
    x, w = dialect_tests.values(T((None, 784)), T((784, 10)))
    assert dialect_tests.shape(nn.MatmulOp(x, w)) == (None, 10)
    a, b = dialect_tests.values(T((2, 3)), T((4, 5)))
    with pytest.raises(VerifyException, match=r"contraction dimensions differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)"):
        nn.MatmulOp(a, b)
    s, = dialect_tests.values(T(()))
    with pytest.raises(VerifyException, match="matmul operands must have rank >= 1"):
        nn.MatmulOp(s, s)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(["2d", "batched", "broadcast", "vec-left", "vec-right"]))
@settings(max_examples=40, deadline=None)
def test_reference_matmul(b, n, k, m, kind):
    shapes = {"2d": ((n, k), (k, m)), "batched": ((b, n, k), (b, k, m)),
              "broadcast": ((b, 1, n, k), (3, k, m)), "vec-left": ((k,), (b, k, m)),
              "vec-right": ((b, n, k), (k,))}[kind]
    x, w = reference_tests.randn(*shapes[0]), reference_tests.randn(*shapes[1])
    y = reference_tests.run1([x, w], lambda emit, p, q: emit(nn.MatmulOp(p, q)))
    x2 = x[None] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    batch = np.broadcast_shapes(x2.shape[:-2], w2.shape[:-2])
    xb = np.broadcast_to(x2, batch + x2.shape[-2:])
    wb = np.broadcast_to(w2, batch + w2.shape[-2:])
    ref = np.zeros(batch + (x2.shape[-2], w2.shape[-1]))
    for idx in np.ndindex(*batch):
        for i, j in itertools.product(range(x2.shape[-2]), range(w2.shape[-1])):
            ref[idx + (i, j)] = sum(xb[idx + (i, t)] * wb[idx + (t, j)] for t in range(k))
    if x.ndim == 1:
        ref = ref[..., 0, :]
    if w.ndim == 1:
        ref = ref[..., 0]
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_reference_fused_matmul(act, with_bias):
    x, w, b = reference_tests.randn(4, 3), reference_tests.randn(3, 5), reference_tests.randn(5)
    if with_bias:
        y = reference_tests.run1([x, w, b], lambda emit, p, q, r: emit(nn.FusedMatmulOp(p, q, r, act)))
        z = x @ w + b
    else:
        y = reference_tests.run1([x, w], lambda emit, p, q: emit(nn.FusedMatmulOp(p, q, None, act)))
        z = x @ w
    np.testing.assert_allclose(y, reference_tests.INDEPENDENT_UNARY[act](z), rtol=1e-12)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


MATMULS = [((3, 4), (4, 5)), ((DYN, 7), (7, 2)), ((5,), (5, 3)), ((2, 5), (5,)), ((5,), (5,)),
           ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1)), ((3, 2, 3), (3, 2)), ((DYN, 2, 3), (3, 13)),
           ((3, 16), (16, 5)), ((DYN, 17), (17, 4)), ((2, 9), (9,)), ((8,), (8, 3))]  # k unrolled by 8


@pytest.mark.parametrize("shapes", MATMULS, ids=str)
def test_lowered_matmul(shapes):
    m = loop_tests.build([loop_tests.T(*s) for s in shapes], lambda e, a, b: e(nn.MatmulOp(a, b)))
    loop_tests.check(m, [loop_tests.randn(*(3 if d == DYN else d for d in s)) for s in shapes])


@pytest.mark.parametrize("batch", [1, 4, 7, 9, 16])
def test_lowered_matmul_row_blocks_and_the_remaining_rows(batch):
    """Rows go in blocks of 4, then one by one; the batch varies per call."""
    m = loop_tests.build([loop_tests.T(DYN, 11), loop_tests.T(11, 6)], lambda e, a, b: e(nn.MatmulOp(a, b)))
    loop_tests.check(m, [loop_tests.randn(batch, 11), loop_tests.randn(11, 6)])


@pytest.mark.parametrize("batch", [1, 8, 13])
def test_lowered_matmul_transpose_a_sums_over_the_batch(batch):
    """lhs^T @ rhs with the batch as the contracted dimension (a weight gradient)."""
    m = loop_tests.build([loop_tests.T(DYN, 5), loop_tests.T(DYN, 9)], lambda e, a, b: e(nn.MatmulTransposeAOp(a, b)))
    loop_tests.check(m, [loop_tests.randn(batch, 5), loop_tests.randn(batch, 9)])


@pytest.mark.parametrize("lhs", [(DYN, 11), (DYN, 3, 11), (11,)])
def test_lowered_matmul_transpose_b(lhs):
    """lhs @ rhs^T by the loops (rhs [N, K] read along its rows)."""
    m = loop_tests.build([loop_tests.T(*lhs), loop_tests.T(6, 11)], lambda e, a, b: e(nn.MatmulTransposeBOp(a, b)))
    loop_tests.check(m, [loop_tests.randn(*[5 if d == DYN else d for d in lhs]), loop_tests.randn(6, 11)])


@settings(max_examples=15, deadline=None)
@given(m=st.sampled_from([1, 2, 3, 5, 7]), k=st.sampled_from([1, 2, 3, 11]),
       n=st.sampled_from([1, 2, 5, 13]), batch=st.sampled_from([(), (1,), (2,), (3, 1)]),
       seed=st.integers(0, 100))
def test_lowered_matmul_property(m, k, n, batch, seed):
    r = np.random.default_rng(seed)
    a, b = r.normal(size=(*batch, m, k)).astype(np.float32), r.normal(size=(k, n)).astype(np.float32)
    mod = loop_tests.build([loop_tests.T(*a.shape), loop_tests.T(*b.shape)], lambda e, x, y: e(nn.MatmulOp(x, y)))
    loop_tests.check(mod, [a, b])


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_lowered_fused_matmul_with_a_residual(act):
    """The loops' epilogue (a small product), the residual after the bias."""
    w = nn.WeightOp("w", loop_tests.randn(4, 5))
    m = loop_tests.build([loop_tests.T(3, 4), loop_tests.T(3, 5), loop_tests.T(5)],
                         lambda e, x, r, b: e(nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), b, act, residual=r)), [w])
    loop_tests.check(m, [loop_tests.randn(3, 4), loop_tests.randn(3, 5), loop_tests.randn(5)])
    export_tests.check(m, [loop_tests.randn(3, 4), loop_tests.randn(3, 5), loop_tests.randn(5)], tol=1e-5)


def test_fused_ops_check_their_residual():
    x, w, b, r, short = dialect_tests.values(T((3, 4)), T((4, 5)), T((5,)), T((3, 5)), T((3, 4)))
    with pytest.raises(VerifyException, match=r"the residual must have the result's type tensor<3x5xf32>"):
        nn.FusedMatmulOp(x, w, b, residual=short)
    with pytest.raises(ValueError, match="a residual comes with a bias"):
        nn.FusedMatmulOp(x, w, residual=r)
    assert nn.FusedMatmulOp(x, w, b, residual=r).residual is r and nn.FusedMatmulOp(x, w, b).residual is None


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("bias_shape", [None, (5,), (1, 5), (3, 5)])
def test_lowered_fused_matmul(act, bias_shape):
    w = nn.WeightOp("w", loop_tests.randn(4, 5))
    types = [loop_tests.T(3, 4)] + ([loop_tests.T(*bias_shape)] if bias_shape else [])

    def make(e, x, *bias):
        return e(nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), bias[0] if bias else None, act))

    m = loop_tests.build(types, make, [w])
    loop_tests.check(m, [loop_tests.randn(3, 4)] + ([loop_tests.randn(*bias_shape)] if bias_shape else []))



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences and PyTorch (test_autodiff.py)


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                   ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul_vjp(sa, sb):
    check_rule(lambda a, b: nn.MatmulOp(a, b), [rand(*sa), rand(*sb)],
               torch_fn=torch and torch.matmul)


def test_matmul_transpose_a_vjp():
    check_rule(lambda a, b: nn.MatmulTransposeAOp(a, b), [rand(5, 3), rand(5, 4)],
               torch_fn=torch and (lambda a, b: a.T @ b))


@pytest.mark.parametrize("sa", [(3, 4), (2, 3, 4), (4,)])
def test_matmul_transpose_b_vjp(sa):
    check_rule(lambda a, b: nn.MatmulTransposeBOp(a, b), [rand(*sa), rand(5, 4)],
               torch_fn=torch and (lambda a, b: a @ b.T))


@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "sigmoid", "silu", "gaussian"])
def test_fused_matmul_vjp(act):
    check_rule(lambda x, w, b: nn.FusedMatmulOp(x, w, b, activation=act), [rand(3, 4), rand(4, 5), rand(5)])


@pytest.mark.parametrize("act", ["identity", "tanh"])
def test_fused_matmul_with_a_residual_vjp(act):
    check_rule(lambda x, w, b, r: nn.FusedMatmulOp(x, w, b, activation=act, residual=r),
               [rand(2, 3, 4), rand(4, 5), rand(5), rand(2, 3, 5)],
               torch_fn=torch and (lambda x, w, b, r: (torch.tanh if act == "tanh" else (lambda v: v))(x @ w + b + r)))



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("transA,transB,alpha,beta", [(0, 0, 1.0, 1.0), (1, 1, 0.5, 2.0), (0, 1, 1.0, 0.0)])
def test_import_gemm(transA, transB, alpha, beta):
    a_shape = [4, 3] if transA else [3, 4]
    b = import_tests.x_of(5, 4) if transB else import_tests.x_of(4, 5)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=transA, transB=transB,
                            alpha=alpha, beta=beta)
    import_tests.check(import_tests.model([node], {"a": a_shape}, inits={"b": b, "c": import_tests.x_of(5)}), {"a": import_tests.x_of(*a_shape)})


def test_import_matmul_batched():
    import_tests.check(import_tests.model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": [2, 3, 4], "b": [4, 5]}),
          {"a": import_tests.x_of(2, 3, 4), "b": import_tests.x_of(4, 5)})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


EINSUM_CASES = [  # equation, operand shapes
    ("ij->ji", [(3, 4)]), ("ij->i", [(3, 4)]), ("...ii->...i", [(3, 5, 5)]), ("ii", [(4, 4)]),
    ("->", [()]), ("bij->", [(2, 3, 4)]), ("i,i", [(5,), (5,)]), ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]), ("abcd,dce->bea", [(2, 3, 4, 5), (5, 4, 6)]),
    ("iij,jk->ik", [(3, 3, 4), (4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES, ids=[e for e, _ in EINSUM_CASES])
def test_import_einsum(equation, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    decomposition_tests.check(decomposition_tests.model([node], {n: (decomposition_tests.D, list(s)) for n, s in zip(names, shapes)}, {"y": decomposition_tests.D}, opset=12),
          {n: decomposition_tests.randn(*s, dtype=np.float64) for n, s in zip(names, shapes)}, rtol=1e-10, atol=1e-12)


def test_import_einsum_with_a_dynamic_batch():
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation="bij,jk->bik")
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, ["N", 3, 4]), "w": (decomposition_tests.F, [4, 5])}, opset=12),
          {"x": decomposition_tests.randn(6, 3, 4), "w": decomposition_tests.randn(4, 5)})


def test_import_einsum_broadcasting_ellipsis_against_numpy():
    # ...ij,...jk with ellipses of ranks 2 and 1 (onnxruntime refuses them)
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation="...ij,...jk")
    m = decomposition_tests.model([node], {"a": (decomposition_tests.F, [2, 1, 3, 4]), "b": (decomposition_tests.F, [5, 4, 6])}, opset=12)
    feeds = {"a": decomposition_tests.randn(2, 1, 3, 4), "b": decomposition_tests.randn(5, 4, 6)}
    want = [np.einsum("...ij,...jk", feeds["a"], feeds["b"])]
    decomposition_tests.same(ncc.reference.run(import_onnx(m), feeds), want, 1e-5, 1e-5)
    decomposition_tests.same(ncc.compile(m).run(feeds), want, 1e-5, 1e-5)


def test_import_einsum_diagnostics():
    m = decomposition_tests.model([helper.make_node("Einsum", ["x"], ["y"], equation="ijk->i", name="e")], {"x": (decomposition_tests.F, [3, 4])})
    assert decomposition_tests.diag(m) == "g: error: node 'e' (Einsum): einsum term 'ijk' does not fit an operand of rank 2"
    m = decomposition_tests.model([helper.make_node("Einsum", ["x"], ["y"], equation="ij->k", name="e")], {"x": (decomposition_tests.F, [3, 4])})
    assert decomposition_tests.diag(m) == ("g: error: node 'e' (Einsum): the output of einsum 'ij->k' repeats a label "
                       "or has one no operand has")



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


@pytest.mark.parametrize("shapes", [((None, 4), (4, 3)), ((2, 3, 4), (4, 5)), ((4,), (4, 2)),
                                    ((2, 1, 3, 4), (5, 4, 2))])
def test_export_matmul(shapes):
    a, b = shapes
    ins = [export_tests.randn(*(2 if d is None else d for d in a)), export_tests.randn(*b)]
    export_tests.check(loop_tests.build([loop_tests.T(*a), loop_tests.T(*b)], lambda e, x, y: e(nn.MatmulOp(x, y))), ins)


@pytest.mark.parametrize("act", ["identity", "relu", "silu", "gaussian", "step", "leaky_relu", "elu"])
@pytest.mark.parametrize("bias", [True, False])
def test_export_fused_matmul(act, bias):
    w, b = nn.WeightOp("w", export_tests.randn(4, 3)), nn.WeightOp("b", export_tests.randn(3))

    def make(e, x):
        bv = [e(nn.WeightRefOp(b))] if bias else []
        return e(nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), *bv, activation=act))
    model = export_tests.check(loop_tests.build([loop_tests.T(None, 4)], make, [w, b]), [export_tests.randn(5, 4)])
    assert export_tests.op_types(model)[0] == "MatMul"
    assert {i.name for i in model.graph.initializer} >= ({"w", "b"} if bias else {"w"})




# ---------------------------------------------------------------------------
# The packed GEMM (passes/lowering/gemm.py): every variant this host can run,
# against numpy; the lowering's choice of it, natively and interpreted.

from ncc.dialects.nn.matmul import pack_panels  # noqa: E402
from ncc.passes.lowering import gemm, openmp  # noqa: E402
from ncc.runtime import engine  # noqa: E402
from ncc.runtime.calling import aligned_empty  # noqa: E402

GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (14, 32, 256), (15, 33, 257), (13, 17, 1), (29, 70, 513),
               (64, 100, 784), (1, 512, 300), (170, 31, 9), (5, 4100, 3), (0, 5, 3), (4, 0, 3), (4, 5, 0),
               # B packed, not read in place: many rows of A; rows of B 4 KiB apart; A packed: rows 4 KiB apart
               # (the others of at most 64 rows read A in place, their last rows as tiles of 8, 4, 2, 1)
               (300, 70, 300), (20, 1024, 40), (6, 40, 1024)]


def _gemm_caller(variant):
    pass

    missing = gemm.REQUIRES[variant] - engine.host_features()
    if missing:
        pytest.skip(f"this host lacks {', '.join(sorted(missing))}: the {variant} GEMM cannot run here")
    tm = engine.target_machine()
    lib = engine.compile_llvm_ir(str(gemm.gemm_module(gemm.VARIANTS[variant], tm.triple, str(tm.target_data))))
    fn = gemm.callable_gemm(lib.address(gemm.SYMBOL))

    def call(a, b, c, accumulate=0, transposed=False, prepacked=False, epilogue=0, bias=None, b_transposed=False,
             residual=None):
        m, k = (a.shape[1], a.shape[0]) if transposed else a.shape
        rs, cs = (1, m) if transposed else (k, 1)
        n = b.shape[1]
        ws = aligned_empty((gemm.workspace_floats(m, n, k),), np.dtype(np.float32))
        bb = pack_panels(b) if prepacked else np.ascontiguousarray(b.T) if b_transposed else b
        flags = (gemm.ACCUMULATE if accumulate else 0) | (gemm.PACKED_B if prepacked else 0) | epilogue \
            | (gemm.TRANSPOSED_B if b_transposed else 0) | (gemm.RESIDUAL if residual is not None else 0)
        fn(m, n, k, a.ctypes.data, rs, cs, bb.ctypes.data, k if b_transposed else n, c.ctypes.data, n, flags,
           ws.ctypes.data, 1, None if bias is None else bias.ctypes.data,
           None if residual is None else residual.ctypes.data)
    return lib, call


@pytest.mark.parametrize("variant", sorted(gemm.VARIANTS))
def test_gemm_variant_matches_numpy(variant):
    lib, call = _gemm_caller(variant)
    rng = np.random.default_rng(1)
    for m, n, k in GEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        want = a.astype(np.float64) @ b
        tol = 1e-5 * max(1, k) ** 0.5
        c = np.full((m, n), 7.0, np.float32)  # overwritten
        call(a, b, c)
        np.testing.assert_allclose(c, want, rtol=tol, atol=tol, err_msg=f"{variant} {m}x{n}x{k}")
        c = np.ones((m, n), np.float32)  # accumulated into
        call(a, b, c, accumulate=1)
        np.testing.assert_allclose(c, want + 1, rtol=tol, atol=tol, err_msg=f"{variant} +=")
        c = np.full((m, n), 7.0, np.float32)  # A read transposed
        call(np.ascontiguousarray(a.T), b, c, transposed=True)
        np.testing.assert_allclose(c, want, rtol=tol, atol=tol, err_msg=f"{variant} A^T")
        c = np.ones((m, n), np.float32)  # B given transposed (packed like A), A too, accumulated into
        call(np.ascontiguousarray(a.T), b, c, accumulate=1, transposed=True, b_transposed=True)
        np.testing.assert_allclose(c, want + 1, rtol=tol, atol=tol, err_msg=f"{variant} A^T B^T +=")
        c = np.full((m, n), 7.0, np.float32)
        call(a, b, c, b_transposed=True, epilogue=gemm.RELU)
        np.testing.assert_allclose(c, np.maximum(want, 0), rtol=tol, atol=tol, err_msg=f"{variant} B^T relu")
        if n and k:
            c = np.full((m, n), 7.0, np.float32)  # B given as nn.packed_matmul's panels
            call(a, b, c, prepacked=True)
            np.testing.assert_allclose(c, want, rtol=tol, atol=tol, err_msg=f"{variant} packed B")
            for (flag, bias), (act, f) in itertools.product(
                    ((gemm.BIAS_COLS, rng.standard_normal(n).astype(np.float32)),
                     (gemm.BIAS_ROWS, rng.standard_normal(m).astype(np.float32))),
                    ((gemm.RELU, lambda v: np.maximum(v, 0)), (gemm.RELU6, lambda v: np.clip(v, 0, 6)))):
                c = np.full((m, n), 7.0, np.float32)  # the epilogue in the tile: bias, relu or relu6
                call(a, b, c, epilogue=flag | act, bias=bias)
                shaped = bias.reshape(1, n) if flag == gemm.BIAS_COLS else bias.reshape(m, 1)
                np.testing.assert_allclose(c, f(want + shaped), rtol=tol, atol=tol,
                                           err_msg=f"{variant} epilogue {flag} {act}")
                r = rng.standard_normal((m, n)).astype(np.float32)  # and a residual connection
                c = np.full((m, n), 7.0, np.float32)
                call(a, b, c, epilogue=flag | act, bias=bias, residual=r)
                np.testing.assert_allclose(c, f(want + shaped + r), rtol=tol, atol=tol,
                                           err_msg=f"{variant} epilogue {flag} {act} residual")
        if m and n:  # a residual without the rest of the epilogue, over any K (0: the residual alone)
            r = rng.standard_normal((m, n)).astype(np.float32)
            c = np.full((m, n), 7.0, np.float32)
            call(a, b, c, residual=r)
            np.testing.assert_allclose(c, want + r, rtol=tol, atol=tol, err_msg=f"{variant} residual")


def test_gemm_tile_comes_from_the_cpu_features():
    assert (gemm.Tile.for_features({"avx512f", "avx2", "fma"}).tag, gemm.Tile.for_features({"avx2", "fma"}).tag,
            gemm.Tile.for_features(set()).tag) == ("14x32", "6x16", "6x8")
    assert gemm.tile_for_cpu("znver4").lanes == 16 and gemm.tile_for_cpu("haswell").lanes == 8
    assert gemm.tile_for_cpu("no-such-cpu").lanes == 4  # SSE: valid on every x86-64
    for t in gemm.VARIANTS.values():  # accumulators + B vectors + one broadcast fit the registers
        assert t.mr * t.nr_vectors + t.nr_vectors + 1 <= (32 if t.lanes == 16 else 16)


@pytest.mark.parametrize("kind", ["matmul", "fused", "residual", "transpose_a", "transpose_b", "small"])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_lowered_large_products_call_the_gemm(kind, batch):
    rng = np.random.default_rng(batch)
    w = nn.WeightOp("w", rng.standard_normal((96, 80)).astype(np.float32) * 0.1)
    bias = nn.WeightOp("b", rng.standard_normal(80).astype(np.float32))
    if kind == "transpose_a":  # x^T @ dy over the batch: K is the batch
        module = loop_tests.build([loop_tests.T(DYN, 96), loop_tests.T(DYN, 80)],
                                  lambda e, x, dy: e(nn.MatmulTransposeAOp(x, dy)))
        inputs = [rng.standard_normal((batch, 96)).astype(np.float32),
                  rng.standard_normal((batch, 80)).astype(np.float32)]
    elif kind == "residual":  # relu(x @ w + b + r), all in the tile
        module = loop_tests.build([loop_tests.T(DYN, 3, 96), loop_tests.T(DYN, 3, 80)], lambda e, x, r: e(
            nn.FusedMatmulOp(x, e(nn.WeightRefOp(w)), e(nn.WeightRefOp(bias)), "relu", residual=r)), [w, bias])
        inputs = [rng.standard_normal((batch, 3, 96)).astype(np.float32),
                  rng.standard_normal((batch, 3, 80)).astype(np.float32)]
    else:
        ws = [w, bias] if kind == "fused" else [w]
        small = nn.WeightOp("w", rng.standard_normal((96, 8)).astype(np.float32))

        def make(e, x):
            wv = e(nn.WeightRefOp(small if kind == "small" else w))
            if kind == "fused":
                return e(nn.FusedMatmulOp(x, wv, e(nn.WeightRefOp(bias)), activation="relu"))
            if kind == "transpose_b":  # dy @ w^T: w [96, 80] read transposed, 80 the depth
                return e(nn.MatmulTransposeBOp(e(nn.SliceOp(x, [0], [80], [2])), wv))
            return e(nn.MatmulOp(x, wv))
        module = loop_tests.build([loop_tests.T(DYN, 3, 96)], make, [small] if kind == "small" else ws)
        inputs = [rng.standard_normal((batch, 3, 96)).astype(np.float32)]
    lowered = loop_tests.check(module, inputs, rtol=1e-4, atol=1e-4)
    calls = [op for op in lowered.walk() if op.name == "func.call" and op.callee.string_value() == gemm.SYMBOL]
    assert len(calls) == (0 if kind == "small" else 1)


def _gemm_with_threads(serial=False):
    from llvmlite import ir

    tm = engine.target_machine()
    module = gemm.gemm_module(engine.gemm_tile(), tm.triple, str(tm.target_data))
    if serial:  # the fallback for a system without libgomp: the team's shares in turn
        openmp.serial_openmp(module)
        assert not module.globals["GOMP_parallel"].is_declaration
    assert isinstance(module, ir.Module)
    lib = engine.compile_llvm_ir(str(module))
    fn = gemm.callable_gemm(lib.address(gemm.SYMBOL))
    return lib, fn


@pytest.mark.parametrize("serial", [False, True], ids=["openmp", "serial-fallback"])
def test_gemm_threads_give_identical_results(serial):
    if not serial and engine.openmp_runtime() is None:
        pytest.skip("no OpenMP runtime (libgomp) on this system")
    lib, fn = _gemm_with_threads(serial=serial)
    rng = np.random.default_rng(2)
    # all but the last at least TEAM_MIN_WORK multiply-adds: the team runs them
    for m, n, k in [(5, 70, 6000), (64, 512, 300), (3, 4100, 200), (20, 31, 7)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        outs, panels, bt = [], pack_panels(b), np.ascontiguousarray(b.T)
        r = rng.standard_normal((m, n), dtype=np.float32)
        for threads in (1, 2, 3, 8):
            for bb, ldb, flags in ((b, n, 0), (panels, n, gemm.PACKED_B), (bt, k, gemm.TRANSPOSED_B)):
                c = np.full((m, n), 7.0, np.float32)
                ws = aligned_empty((threads * gemm.workspace_floats(m, n, k),), np.dtype(np.float32))
                fn(m, n, k, a.ctypes.data, k, 1, bb.ctypes.data, ldb, c.ctypes.data, n, flags | gemm.RESIDUAL,
                   ws.ctypes.data, threads, None, r.ctypes.data)
                outs.append(c)
        np.testing.assert_allclose(outs[0], a.astype(np.float64) @ b + r, rtol=1e-4, atol=1e-4)
        for c in outs[1:]:
            np.testing.assert_array_equal(c, outs[0])


def test_compile_threads_option():
    rng = np.random.default_rng(3)
    w = nn.WeightOp("w", rng.standard_normal((256, 200)).astype(np.float32))
    module = loop_tests.build([loop_tests.T(DYN, 256)], lambda e, x: e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))), [w])
    x = rng.standard_normal((33, 256)).astype(np.float32)
    ys = [ncc.compile(module, threads=t, cache=False)(x) for t in (1, 2, 5)]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])
    assert ncc.compile(module, threads=2, cache=False).compile_info["threads"] == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ncc.NccError, match="threads must be an integer >= 1"):
            ncc.compile(module, threads=bad)


# ---------------------------------------------------------------------------
# nn.packed_matmul and the pack-weights pass: weights packed once


def _dense(k=96, n=70, fused=True, seed=4):
    rng = np.random.default_rng(seed)
    w = nn.WeightOp("w", rng.standard_normal((k, n)).astype(np.float32) * 0.1)
    bias = nn.WeightOp("b", rng.standard_normal(n).astype(np.float32))

    def make(e, x):
        wv = e(nn.WeightRefOp(w))
        if fused:
            return e(nn.FusedMatmulOp(x, wv, e(nn.WeightRefOp(bias)), activation="relu"))
        return e(nn.MatmulOp(x, wv))
    return loop_tests.build([loop_tests.T(DYN, k)], make, [w, bias] if fused else [w])


def test_packed_matmul_shape_rule_reference_and_errors():
    from ncc.dialects.nn.matmul import PANEL, unpack_panels

    rng = np.random.default_rng(5)
    w = rng.standard_normal((40, 70)).astype(np.float32)
    panels = pack_panels(w)
    assert panels.shape == (3, 40, PANEL) and np.array_equal(unpack_panels(panels, 70), w)
    assert not panels[2, :, 70 - 64:].any()  # zeros past the last column
    x, p = dialect_tests.values(T((DYN, 40)), T((3, 40, PANEL)))
    op = nn.PackedMatmulOp(x, p, 70)
    assert dialect_tests.shape(op) == (None, 70)
    xv = rng.standard_normal((5, 40)).astype(np.float32)
    np.testing.assert_allclose(nn.REFERENCE[nn.PackedMatmulOp](op, xv, panels), xv @ w, rtol=1e-5)
    with pytest.raises(VerifyException, match="do not hold 100 columns"):
        nn.PackedMatmulOp(x, p, 100)
    bad_x, = dialect_tests.values(T((DYN, 41)))
    with pytest.raises(VerifyException, match="does not end in K = 40"):
        nn.PackedMatmulOp(bad_x, p, 70)


def test_pack_weights_rewrites_only_what_the_gemm_computes():
    from ncc.passes.pack_weights import pack_weights

    module = _dense()
    assert pack_weights(module) == 1
    names = [op.name for op in module.walk() if op.name.startswith("nn.") and op.name != "nn.weight"]
    assert names == ["nn.weight_ref", "nn.weight_ref", "nn.pad", "nn.reshape", "nn.transpose", "nn.packed_matmul"]
    small = _dense(k=8, n=8)  # 64 elements: the loops, unpacked
    assert pack_weights(small) == 0
    x_by_x = loop_tests.build([loop_tests.T(DYN, 96), loop_tests.T(96, 80)],
                              lambda e, x, y: e(nn.MatmulOp(x, y)))  # not known at compile time
    assert pack_weights(x_by_x) == 0


@pytest.mark.parametrize("n", [70, 64, 45])
@pytest.mark.parametrize("batch", [1, 3, 7, 64])
def test_compiled_matmuls_read_packed_weights_set_once(n, batch):
    module = _dense(n=n)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 96)).astype(np.float32)
    model = ncc.compile(module, cache=False)
    assert "w.transpose" in [r.name for r in model.abi.roles], "the packed panels are a derived weight"
    (want,) = ncc.reference.run(module, [x])
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    model.params["w"] = model.params["w"] * 2  # the panels follow the parameter
    params = {k: np.asarray(v) for k, v in model.params.items()}
    (want,) = ncc.reference.run(module, [x], params=params)
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    lowered = ncc.parse_module(ncc.print_module(module))
    ncc.run_passes(lowered, "pack-weights,fold-weights")
    loop_tests.check(lowered, [x], rtol=1e-4, atol=1e-4)  # the panels' loops and GEMM, interpreted and native


@pytest.mark.parametrize("batch", [1, 7])
def test_a_transposed_weight_folded_by_fuse_is_packed_once(batch):
    """x @ transpose(w) (ONNX's Gemm with transB and no bias): fuse reads w
    transposed (nn.matmul_transpose_b), pack-weights packs w^T's panels, a
    derived weight that follows the parameter; the export runs in onnxruntime."""
    rng = np.random.default_rng(batch)
    w = nn.WeightOp("w", rng.standard_normal((70, 96)).astype(np.float32) * 0.1)
    module = loop_tests.build([loop_tests.T(DYN, 96)], lambda e, x: e(nn.MatmulOp(x, e(nn.TransposeOp(
        e(nn.WeightRefOp(w)), [1, 0])))), [w])
    fused = module.clone()
    ncc.run_passes(fused, "fuse")
    assert [op.name for op in fused.walk() if op.name.startswith("nn.matmul")] == ["nn.matmul_transpose_b"]
    export_tests.check(fused, [rng.standard_normal((3, 96)).astype(np.float32)], tol=1e-4)
    ncc.run_passes(fused, "pack-weights")
    assert "nn.packed_matmul" in [op.name for op in fused.walk()]
    x = rng.standard_normal((batch, 96)).astype(np.float32)
    model = ncc.compile(module, cache=False)
    np.testing.assert_allclose(model(x), x @ w.data.T, rtol=1e-4, atol=1e-4)
    model.params["w"] = model.params["w"] * 2
    np.testing.assert_allclose(model(x), 2 * x @ w.data.T, rtol=1e-4, atol=1e-4)


def test_packed_matmul_exports_to_onnx():
    module = _dense()
    ncc.run_passes(module, "pack-weights")
    export_tests.check(module, [np.random.default_rng(6).standard_normal((3, 96)).astype(np.float32)], tol=1e-4)


def test_lower_to_loops_refuses_zero_threads():
    with pytest.raises(ncc.NccError, match="threads must be >= 1, got 0"):
        ncc.run_passes(_dense(), "lower-to-loops{threads=0}")
