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


