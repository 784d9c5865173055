"""The shape op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from xdsl.dialects.builtin import TensorType, f32, f64, i64
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc import reference
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.dialects.nn import tensor_type as T
from ncc.ir import parse_module
from ncc.onnx import import_onnx
from ncc.passes.lowering import transpose
from ncc.runtime import engine

import test_autodiff_rules as autodiff_rule_tests
from c_kernels import C_VARIANTS, kernel_variant
import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_decompositions as decomposition_tests
import test_onnx_export as export_tests
import test_onnx_import as import_tests
import test_reference as reference_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model
from vjp_check import check_rule, rand, torch

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_reshape():
    x, d = dialect_tests.values(T((2, 3, 4)), T((None, 28, 28)))
    assert dialect_tests.shape(nn.ReshapeOp(x, [6, -1])) == (6, 4)
    assert dialect_tests.shape(nn.ReshapeOp(x, [24])) == (24,)
    assert dialect_tests.shape(nn.ReshapeOp(d, [-1, 784])) == (None, 784)
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((5, 5))])
    with pytest.raises(VerifyException, match=r"cannot reshape 24 elements \(tensor<2x3x4xf32>\) into 25"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((None, 5))])
    with pytest.raises(VerifyException, match=r"cannot reshape 24 elements \(tensor<2x3x4xf32>\) into tensor<\?x5xf32>"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[d], result_types=[T((None, None))])
    with pytest.raises(VerifyException, match="at most one '\\?' dimension"):
        op.verify()
    op = nn.ReshapeOp.create(operands=[x], result_types=[T((24,), f64)])
    with pytest.raises(VerifyException, match="element type changes from f32 to f64"):
        op.verify()


def test_dialect_transpose_concat():
    x, y, z = dialect_tests.values(T((2, 3, 4)), T((2, 5, 4)), T((None, 1, 4)))
    assert dialect_tests.shape(nn.TransposeOp(x, [2, 0, 1])) == (4, 2, 3)
    with pytest.raises(VerifyException, match=r"perm \[0, 0, 1\] is not a permutation of 0..2"):
        nn.TransposeOp(x, [0, 0, 1])
    assert dialect_tests.shape(nn.ConcatOp([x, y], axis=1)) == (2, 8, 4)
    assert dialect_tests.shape(nn.ConcatOp([x, y, z], axis=-2)) == (2, 9, 4)
    assert dialect_tests.shape(nn.ConcatOp([z, z], axis=0)) == (None, 1, 4)
    with pytest.raises(VerifyException, match=r"inputs differ in dimension 1 \(3, 5\); only the axis 0 may differ"):
        nn.ConcatOp([x, y], axis=0)
    w, = dialect_tests.values(T((2, 3)))
    with pytest.raises(VerifyException, match="every input must have rank 3, got tensor<2x3xf32>"):
        nn.ConcatOp([x, w], axis=0)
    with pytest.raises(VerifyException, match="needs at least one input"):
        nn.ConcatOp([], axis=0)


@given(st.integers(1, 9), st.integers(-12, 12), st.integers(-12, 12),
       st.sampled_from([1, 2, 3, -1, -2, 2**62]))
def test_dialect_slice_length_matches_python(dim, start, end, step):
    # Within [-dim, dim] ONNX's clamping agrees with Python's slices.
    start, end = max(min(start, dim), -dim), max(min(end, dim), -dim)
    x, = dialect_tests.values(T((dim, 2)))
    op = nn.SliceOp(x, [start], [end], [0], [step])
    assert dialect_tests.shape(op) == (len(range(dim)[start:end:step]), 2)


def test_dialect_slice_onnx_extremes_and_errors():
    x, = dialect_tests.values(T((10, 7, None)))
    big = 2**63 - 1
    assert dialect_tests.shape(nn.SliceOp(x, [1, -3], [big, big], [0, 1])) == (9, 3, None)
    assert dialect_tests.shape(nn.SliceOp(x, [-1], [-big], [0], [-1])) == (10, 7, None)   # full reversal
    assert dialect_tests.shape(nn.SliceOp(x, [-big], [-big], [0], [-1])) == (1, 7, None)   # ONNX: start clamps to 0
    assert dialect_tests.shape(nn.SliceOp(x, [0], [5], [2])) == (10, 7, None)            # dynamic axis stays '?'
    op = nn.SliceOp(x, [0, 0], [2, 3])
    assert op.params.axes == (0, 1) and op.params.steps == (1, 1) and dialect_tests.shape(op) == (2, 3, None)
    with pytest.raises(VerifyException, match="steps must be nonzero"):
        nn.SliceOp(x, [0], [1], [0], [0])
    with pytest.raises(VerifyException, match=r"ends \(one per start\) must have 1 entries, got 2"):
        nn.SliceOp(x, [0], [1, 2])
    with pytest.raises(VerifyException, match=r"axes \[0, 0\] name an axis twice"):
        nn.SliceOp(x, [0, 0], [1, 1], [0, 0])


def test_dialect_pad():
    x, = dialect_tests.values(T((2, 3)))
    assert dialect_tests.shape(nn.PadOp(x, [0, 1, 2, 3])) == (4, 7)
    assert dialect_tests.shape(nn.PadOp(x, [1, 2, 1, 2], mode="reflect")) == (4, 7)
    op = nn.PadOp(x, [0, 1, 0, 1], value=-1.5)
    assert op.params.value == -1.5 and op.params.mode == "constant"
    with pytest.raises(VerifyException, match=r"pads \(begin..., end...\) must have 4 entries, got 2"):
        nn.PadOp(x, [1, 1])
    with pytest.raises(VerifyException, match=r"unknown pad mode 'wrap' \(known: constant, reflect, edge\)"):
        nn.PadOp(x, [0, 0, 0, 0], mode="wrap")
    with pytest.raises(VerifyException, match=r"reflect padding of axis 0 needs pads < its size 2, got 2, 0"):
        nn.PadOp(x, [2, 0, 0, 0], mode="reflect")
    with pytest.raises(VerifyException, match=r"pads must be >= 0, got \[-1, 0, 0, 0\]"):
        nn.PadOp(x, [-1, 0, 0, 0])
    with pytest.raises(VerifyException, match="a pad value only applies to mode constant, not edge"):
        nn.PadOp(x, [1, 0, 0, 0], mode="edge", value=2.0)



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def test_reference_reshape_transpose_concat():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    y = reference_tests.run1([x], lambda emit, a: emit(nn.ReshapeOp(a, [4, -1])))
    assert y.shape == (4, 6) and y.reshape(-1).tolist() == list(range(24))
    perm = (2, 0, 1)
    t = reference_tests.run1([x], lambda emit, a: emit(nn.TransposeOp(a, perm)))
    for idx in np.ndindex(*t.shape):
        assert t[idx] == x[tuple(idx[perm.index(d)] for d in range(3))]
    a, b = reference_tests.randn(2, 1, 4), reference_tests.randn(2, 3, 4)
    c = reference_tests.run1([a, b, a], lambda emit, p, q, r: emit(nn.ConcatOp([p, q, r], axis=1)))
    assert c.shape == (2, 5, 4)
    assert (c[:, 0] == a[:, 0]).all() and (c[:, 1:4] == b).all() and (c[:, 4] == a[:, 0]).all()


def test_reference_reshape_dynamic_batch():
    m = parse_module("""
      func.func @main(%x: tensor<?x2x3xf32>) -> tensor<?x6xf32> {
        %y = nn.reshape %x : tensor<?x2x3xf32> -> tensor<?x6xf32>
        func.return %y : tensor<?x6xf32>
      }""")
    for n in (1, 5):
        x = reference_tests.randn(n, 2, 3, dtype=np.float32)
        (y,) = reference.run(m, [x])
        assert y.shape == (n, 6) and (y.reshape(n, 2, 3) == x).all()


def onnx_slice_indices(dim, start, end, step):
    """ONNX Slice as its spec states it: negative += dim, then clamp by step sign."""
    start += dim if start < 0 else 0
    end += dim if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.data())
@settings(max_examples=80, deadline=None)
def test_reference_slice_vs_onnx_spec(shape, data):
    x = reference_tests.randn(*shape)
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    big = 2**63 - 1
    ends_or_start = st.one_of(st.integers(-8, 8), st.sampled_from([big, -big]))
    starts = [data.draw(ends_or_start) for _ in axes]
    ends = [data.draw(ends_or_start) for _ in axes]
    steps = [data.draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in axes]
    neg_axes = [a - len(shape) if data.draw(st.booleans()) else a for a in axes]
    y = reference_tests.run1([x], lambda emit, a: emit(nn.SliceOp(a, starts, ends, neg_axes, steps)))
    index = [list(range(d)) for d in shape]
    for a, s, e, st_ in zip(axes, starts, ends, steps):
        index[a] = onnx_slice_indices(shape[a], s, e, st_)
    np.testing.assert_array_equal(y, x[np.ix_(*index)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_reference_pad(mode):
    x = reference_tests.randn(3, 4)
    pads = [2, 0, 1, 3]  # begin (2, 0), end (1, 3)
    value = 7.5 if mode == "constant" else 0.0
    y = reference_tests.run1([x], lambda emit, a: emit(nn.PadOp(a, pads, mode, value)))
    assert y.shape == (6, 7)

    def src(i, b, d):
        k = i - b
        if mode == "reflect":
            return -k if k < 0 else 2 * (d - 1) - k if k >= d else k
        if mode == "edge":
            return min(max(k, 0), d - 1)
        return k if 0 <= k < d else None

    for i, j in np.ndindex(*y.shape):
        r, c = src(i, 2, 3), src(j, 0, 4)
        assert y[i, j] == (value if r is None or c is None else x[r, c])



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


@pytest.mark.parametrize("name", sorted(nn.TRIANGLE))
@pytest.mark.parametrize("k", [-2, 0, 1, 9])
def test_triangles_lowered(name, k):
    m = loop_tests.build([loop_tests.T(DYN, 3, 5)], lambda e, x: e(nn.TRIANGLE_OPS[name](x, k)))
    x = structural_tests.randn(2, 3, 5)
    x[0, 0, 0], x[1, 2, 0] = np.inf, np.nan  # kept or zeroed, never multiplied
    loop_tests.check(m, [x])


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_import_trilu(upper, k):
    node = helper.make_node("Trilu", ["x"] + (["k"] if k is not None else []), ["y"], upper=upper)
    m = onnx_model([node], {"x": (structural_tests.F, [2, 4, 5])}, {"y": structural_tests.F},
                   {} if k is None else {"k": np.array(k, np.int64)})
    structural_tests.check_import(m, {"x": structural_tests.randn(2, 4, 5)})


def test_import_tile():
    m = onnx_model([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": (structural_tests.F, [2, 3])}, {"y": structural_tests.F},
                   {"r": np.array([3, 2], np.int64)})
    structural_tests.check_import(m, {"x": structural_tests.randn(2, 3)}, native=True)


@pytest.mark.parametrize("op,mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"),
                                     ("SpaceToDepth", None)])
def test_import_depth_space(op, mode):
    shape = [2, 8, 3, 2] if op == "DepthToSpace" else [2, 2, 4, 6]
    attrs = {"mode": mode} if mode else {}
    m = onnx_model([helper.make_node(op, ["x"], ["y"], blocksize=2, **attrs)],
                   {"x": (structural_tests.F, shape)}, {"y": structural_tests.F}, opset=13)
    structural_tests.check_import(m, {"x": structural_tests.randn(*shape)})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_import_space_to_depth_inverts_depth_to_space(mode):
    """SpaceToDepth has a mode from opset 28 (newer than onnxruntime here): it
    must undo DepthToSpace of the same mode."""
    nodes = [helper.make_node("DepthToSpace", ["x"], ["s"], blocksize=3, mode=mode),
             helper.make_node("SpaceToDepth", ["s"], ["y"], blocksize=3, mode=mode)]
    m = onnx_model(nodes, {"x": (structural_tests.F, [2, 18, 2, 3])}, {"y": structural_tests.F}, opset=28)
    x = structural_tests.randn(2, 18, 2, 3)
    np.testing.assert_array_equal(ncc.reference.run(import_onnx(m), {"x": x})[0], x)



# ---------------------------------------------------------------------------
# Lowering to loops, run natively against the reference (test_lower_to_loops.py)


@pytest.mark.parametrize("src,dst", [((3,), (DYN, 3)), ((1, 3), (4, 2, 3)), ((DYN, 1), (DYN, 5)), ((), (2, 2))],
                         ids=str)
def test_lowered_broadcast(src, dst):
    m = loop_tests.build([loop_tests.T(*src), loop_tests.T(DYN, 1)], lambda e, a, _: e(nn.BroadcastOp(a, TensorType(f32, dst))))
    loop_tests.check(m, [loop_tests.randn(*(3 if d == DYN else d for d in src)), loop_tests.randn(3, 1)])


@pytest.mark.parametrize("src,dst", [((DYN, 2, 6), (DYN, 12)), ((DYN, 12), (DYN, 3, 4)),
                                     ((2, 3, 5), (5, 6)), ((6,), (1, 2, 3)), ((4, 1), (4,))])
def test_lowered_reshape_of_an_input_copies(src, dst):
    m = loop_tests.build([loop_tests.T(*src)], lambda e, x: e(nn.ReshapeOp(x, dst)))
    loop_tests.check(m, [loop_tests.randn(*(3 if d == DYN else d for d in src))])


def test_lowered_reshape_of_an_intermediate_is_a_view():
    def make(e, x):
        r = e(nn.ReshapeOp(e(nn.TanhOp(x)), [DYN, 3, 4]))
        return e(nn.ReluOp(r))

    lowered = loop_tests.check(loop_tests.build([loop_tests.T(DYN, 12)], make), [loop_tests.randn(5, 12)])
    text = ncc.print_module(lowered)
    assert text.count("memref.view") == 2  # the tanh buffer, and the reshape's view of its bytes
    assert text.count("scf.for") == 2 + 3  # tanh and relu loops only: no copy loop


@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 35, 19)])  # smaller than a tile; whole tiles and the rest
@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_lowered_transpose(perm, shape):
    loop_tests.check(loop_tests.build([loop_tests.T(*shape)], lambda e, x: e(nn.TransposeOp(x, perm))), [loop_tests.randn(*shape)])


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_lowered_transpose_of_other_types_in_tiles(dtype):
    """f32 slabs are ncc_transpose32 calls; other types loop over square tiles."""
    shape = (3, 35, 19)
    m = loop_tests.build([loop_tests.T(*shape, elt=nn.element_type_of(dtype))], lambda e, x: e(nn.TransposeOp(x, [2, 0, 1])))
    lowered = loop_tests.check(m, [(loop_tests.randn(*shape) * 100).astype(dtype)])
    assert "ncc_transpose32" not in ncc.print_module(lowered)


@pytest.mark.parametrize("variant", [*sorted(transpose.VARIANTS), *C_VARIANTS])
def test_transpose_kernel_variant_moves_every_bit(variant):
    """ncc_transpose32 as each variant (blocks of 16, 8, 4 lanes; the emitted C): whole blocks, the
    rows and columns past them, strided rows on both sides (the padding untouched), any 32-bit pattern."""
    lib, fn = kernel_variant(transpose, variant)
    rng = np.random.default_rng(11)
    for rows, cols in [(1, 1), (4, 4), (8, 8), (16, 16), (17, 33), (40, 5), (3, 100), (32, 48), (0, 7)]:
        for pad_src, pad_dst in [(0, 0), (3, 5)]:
            lds, ldd = cols + pad_src, rows + pad_dst
            src = rng.integers(0, 2 ** 32, rows * lds, dtype=np.uint32)  # NaNs with payloads among them
            dst = np.full(cols * ldd, 0xDEADBEEF, np.uint32)
            want = dst.copy().reshape(cols, ldd)
            want[:, :rows] = src.reshape(rows, lds)[:, :cols].T
            fn(rows, cols, src.ctypes.data, lds, dst.ctypes.data, ldd)
            np.testing.assert_array_equal(dst.reshape(cols, ldd), want, err_msg=f"{variant} {rows}x{cols} +{pad_src}/{pad_dst}")


def test_lowered_transpose_calls_the_kernel_per_slab():
    lowered = loop_tests.check(loop_tests.build([loop_tests.T(DYN, 5, 3, 7)], lambda e, x: e(nn.TransposeOp(x, [0, 3, 1, 2]))),
                               [loop_tests.randn(2, 5, 3, 7)])
    assert ncc.print_module(lowered).count("func.call @ncc_transpose32") == 1
    model = ncc.compile(loop_tests.build([loop_tests.T(4, 9)], lambda e, x: e(nn.TransposeOp(x, [1, 0]))), cache=False)
    lanes = transpose.lanes_for_features(engine.host_features())  # 16, 8 or 4: the host's vector
    assert model.compile_info["kernels"] == {"ncc_transpose32": f"{lanes}x{lanes}"}  # what ncc-run prints


@pytest.mark.parametrize("shape", [(3, 5), (33, 18)])
def test_lowered_transpose_keeping_the_batch(shape):
    loop_tests.check(loop_tests.build([loop_tests.T(DYN, *shape)], lambda e, x: e(nn.TransposeOp(x, [0, 2, 1]))), [loop_tests.randn(4, *shape)])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_lowered_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, extra in zip(shapes, (1, 2, 3)):
        s[axis] = extra
    m = loop_tests.build([loop_tests.T(*s) for s in shapes], lambda e, *xs: e(nn.ConcatOp(xs, axis)))
    loop_tests.check(m, [loop_tests.randn(*s) for s in shapes])


def test_lowered_concat_dynamic_batch():
    m = loop_tests.build([loop_tests.T(DYN, 2), loop_tests.T(DYN, 3)], lambda e, a, b: e(nn.ConcatOp([a, b], 1)))
    loop_tests.check(m, [loop_tests.randn(5, 2), loop_tests.randn(5, 3)])


SLICES = [([1], [4], [0], [1]), ([-1], [-8], [0], [-1]), ([0, 5], [3, 0], [0, 1], [2, -2]),
          ([-100], [100], [1], [3]), ([5], [-100], [1], [-1]), ([2], [2], [0], [1]),
          ([0, 1, 0], [7, 6, 2], [0, 1, 2], [3, 2, 1])]


@pytest.mark.parametrize("case", SLICES, ids=str)
def test_lowered_slice(case):
    starts, ends, axes, steps = case
    m = loop_tests.build([loop_tests.T(7, 6, 2)], lambda e, x: e(nn.SliceOp(x, starts, ends, axes, steps)))
    loop_tests.check(m, [loop_tests.randn(7, 6, 2)])


def test_lowered_slice_keeping_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 6)], lambda e, x: e(nn.SliceOp(x, [1], [5], [1], [2])))
    loop_tests.check(m, [loop_tests.randn(3, 6)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", [[1, 2, 0, 2], [0, 0, 1, 1], [2, 0, 0, 3]])
def test_lowered_pad(mode, pads):
    value = 1.5 if mode == "constant" else 0.0
    m = loop_tests.build([loop_tests.T(4, 5)], lambda e, x: e(nn.PadOp(x, pads, mode, value)))
    loop_tests.check(m, [loop_tests.randn(4, 5)])


def test_lowered_pad_keeping_the_batch():
    m = loop_tests.build([loop_tests.T(DYN, 3)], lambda e, x: e(nn.PadOp(x, [0, 1, 0, 2], "reflect")))
    loop_tests.check(m, [loop_tests.randn(2, 3)])


def test_lowered_error_concat_on_the_batch():
    msg = loop_tests.error_of(loop_tests.build([loop_tests.T(DYN, 2), loop_tests.T(DYN, 2)], lambda e, a, b: e(nn.ConcatOp([a, b], 0))))
    assert "nn.concat" in msg and "batch" in msg


def test_lowered_error_transpose_moving_the_batch():
    msg = loop_tests.error_of(loop_tests.build([loop_tests.T(DYN, 2)], lambda e, x: e(nn.TransposeOp(x, [1, 0]))))
    assert "only dimension 0" in msg and "nn.transpose" in msg


def test_lowered_error_reshape_mixing_the_batch():
    msg = loop_tests.error_of(loop_tests.build([loop_tests.T(DYN, 4)], lambda e, x: e(nn.ReshapeOp(x, [DYN]))))
    assert "nn.reshape" in msg and "batch" in msg



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences and PyTorch (test_autodiff.py)


def test_shape_op_vjps():
    x = rand(2, 3, 4)
    check_rule(lambda a: nn.ReshapeOp(a, [6, 4]), [x], torch_fn=torch and (lambda a: a.reshape(6, 4)))
    check_rule(lambda a: nn.TransposeOp(a, [2, 0, 1]), [x], torch_fn=torch and (lambda a: a.permute(2, 0, 1)))
    check_rule(lambda a: nn.BroadcastOp(a, TensorType(f64, [5, 2, 3, 4])), [x],
               torch_fn=torch and (lambda a: a.expand(5, 2, 3, 4)))
    check_rule(lambda a, b: nn.ConcatOp([a, b], axis=1), [x, rand(2, 2, 4)],
               torch_fn=torch and (lambda a, b: torch.cat([a, b], dim=1)))



# ---------------------------------------------------------------------------
# Autodiff: VJP rules against finite differences (test_autodiff_rules.py)


def _select_positions(x, positions):
    """torch: x restricted to the given positions per axis (an independent slice)."""
    for a, pos in positions.items():
        x = torch.index_select(x, a, torch.tensor(pos, dtype=torch.long))
    return x


@pytest.mark.parametrize("case", range(6))
def test_slice_vjp(case):
    """Random starts/ends (negative, out of range), steps of either sign and size."""
    rng = np.random.default_rng(40 + case)
    rank = 1 + case % 3
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2, 6)
    axes = [int(a) for a in rng.permutation(rank)[:int(rng.integers(1, rank + 1))]]
    starts, ends, steps, positions = [], [], [], {}
    for a in axes:
        d = shape[a]
        st = int(rng.choice([1, 1, 2, 3, -1, -2]))
        s, e = (int(v) for v in rng.integers(-d - 2, d + 2, 2))
        if not range(d)[nn.onnx_slice(d, s, e, st)]:  # keep the case non-empty: the whole axis
            s, e = (0, d) if st > 0 else (d - 1, -d - 1)
        starts.append(s), ends.append(e), steps.append(st)
        positions[a] = list(range(d)[nn.onnx_slice(d, s, e, st)])
    check_rule(lambda x: nn.SliceOp(x, starts, ends, axes, steps), [autodiff_rule_tests.uniform(rng, shape)],
               torch_fn=torch and (lambda x: _select_positions(x, positions)))


def test_empty_slice_has_zero_gradient():
    x = np.arange(6.0).reshape(2, 3)
    (g,) = check_rule(lambda a: nn.SliceOp(a, [2], [2], [1]), [x])
    np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize("mode", nn.PAD_MODES)
@pytest.mark.parametrize("case", range(3))
def test_pad_vjp(mode, case):
    rng = np.random.default_rng(50 + case)
    rank = 1 + case
    shape = autodiff_rule_tests.rand_shape(rng, rank, 2, 5)
    pads = [int(rng.integers(0, (shape[i % rank] if mode == "reflect" else 4))) for i in range(2 * rank)]
    value = float(rng.uniform(-1, 1)) if mode == "constant" else 0.0

    def tf(x):  # numpy's pad of the positions tells which element each output reads
        if mode == "constant":
            flat = [p for d in reversed(range(rank)) for p in (pads[d], pads[d + rank])]
            return torch.nn.functional.pad(x, flat, value=value)
        np_mode = {"reflect": "reflect", "edge": "edge"}[mode]
        return _select_positions(x, {d: np.pad(np.arange(shape[d]), (pads[d], pads[d + rank]), np_mode)
                                     for d in range(rank)})

    check_rule(lambda x: nn.PadOp(x, pads, mode=mode, value=value), [autodiff_rule_tests.uniform(rng, shape)],
               torch_fn=torch and tf)


@pytest.mark.parametrize("name", sorted(nn.TRIANGLE_OPS))
@pytest.mark.parametrize("case", range(2))
def test_triangle_vjp(name, case):
    rng = np.random.default_rng(90 + case)
    shape = autodiff_rule_tests.rand_shape(rng, 2 + case, 2, 5)
    k = int(rng.integers(-2, 3))
    check_rule(lambda x: nn.TRIANGLE_OPS[name](x, k=k), [autodiff_rule_tests.uniform(rng, shape)],
               torch_fn=torch and (lambda x: getattr(torch, name)(x, k)))



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


@pytest.mark.parametrize("axis", [-3, -1, 0, 3])
def test_import_flatten_axes(axis):
    import_tests.check(import_tests.model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], {"x": [2, 3, 4]}),
          {"x": import_tests.x_of(2, 3, 4)})


def test_import_reshape_flatten_transpose_concat():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Flatten", ["t"], ["f"], axis=1),
             helper.make_node("Concat", ["f", "f"], ["y"], axis=1)]
    import_tests.check(import_tests.model(nodes, {"x": [2, 3, 4]}, inits={"s": np.array([0, 4, -1], np.int64)}),
          {"x": import_tests.x_of(2, 3, 4)})


@pytest.mark.parametrize("opset", [9, 13])
def test_import_slice(opset):
    if opset < 10:
        node = helper.make_node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, 100], axes=[0, 2])
        inits = {}
    else:
        node = helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])
        inits = {"st": np.array([-1, 0], np.int64), "en": np.array([-100, 100], np.int64),
                 "ax": np.array([0, 2], np.int64), "sp": np.array([-1, 2], np.int64)}
    import_tests.check(import_tests.model([node], {"x": [4, 3, 5]}, inits=inits, opset=opset), {"x": import_tests.x_of(4, 3, 5)})


@pytest.mark.parametrize("opset,mode", [(7, "constant"), (7, "reflect"), (13, "edge"), (13, "constant")])
def test_import_pad(opset, mode):
    pads = [0, 1, 2, 0, 2, 1]
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=pads, mode=mode, value=1.5)
        inits = {}
    else:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
        inits = {"p": np.array(pads, np.int64), "v": np.array(1.5 if mode == "constant" else 0, np.float32)}
    if mode != "constant" and opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=pads, mode=mode)
    import_tests.check(import_tests.model([node], {"x": [2, 4, 5]}, inits=inits, opset=opset), {"x": import_tests.x_of(2, 4, 5)})


@pytest.mark.parametrize("opset", [11, 13])
def test_import_squeeze_unsqueeze(opset):
    if opset < 13:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, 3]),
                 helper.make_node("Squeeze", ["u"], ["y"], axes=[0])]
        inits = {}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "a"], ["u"]),
                 helper.make_node("Squeeze", ["u", "b"], ["y"])]
        inits = {"a": np.array([0, 3], np.int64), "b": np.array([0], np.int64)}
    import_tests.check(import_tests.model(nodes, {"x": [2, 3]}, inits=inits, opset=opset), {"x": import_tests.x_of(2, 3)})



# ---------------------------------------------------------------------------
# ONNX ops nn composes, against onnxruntime (test_onnx_decompositions.py)


@pytest.mark.parametrize("shape,axes", [([10, 7, 3], None), ([25, 8], [0, 1]), ([5, 13], [-3, -2])])
def test_import_center_crop_pad(shape, axes):
    attrs = {} if axes is None else {"axes": axes}
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], **attrs)
    decomposition_tests.check(decomposition_tests.model([node], {"x": (decomposition_tests.F, [20, 10, 3])}, inits={"s": np.array(shape, np.int64)}, opset=18),
          {"x": decomposition_tests.randn(20, 10, 3)})


def test_import_size_is_a_constant():
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Cast", ["n"], ["nf"], to=decomposition_tests.F),
             helper.make_node("Mul", ["x", "nf"], ["y"])]
    module = decomposition_tests.check(decomposition_tests.model(nodes, {"x": (decomposition_tests.F, [2, 3])}, opset=21), {"x": decomposition_tests.randn(2, 3)})
    assert [o.name for o in list(module.ops)[-1].body.block.ops] == ["nn.constant", "nn.mul", "func.return"]



# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


def test_export_data_movement():
    def make(e, x):
        r = e(nn.ReshapeOp(x, [-1, 4, 3]))                       # [?, 12] -> [?, 4, 3]
        t = e(nn.TransposeOp(r, [0, 2, 1]))
        c = e(nn.ConcatOp([t, t], axis=1))
        s = e(nn.SliceOp(c, [5, 0], [1, 100], axes=[1, 2], steps=[-2, 1]))
        p = e(nn.PadOp(s, [0, 1, 0, 0, 0, 2], "constant", 1.5))
        q = e(nn.PadOp(s, [0, 1, 1, 0, 1, 1], "reflect"))
        g = e(nn.GatherOp(q, e(nn.ConstantOp(np.array([[0, -1], [2, 1]]), loop_tests.T(2, 2, elt=i64))), axis=2))
        return p, e(nn.PadOp(g, [0, 0, 0, 0, 1, 1, 0, 0], "edge"))
    model = export_tests.check(loop_tests.build([loop_tests.T(None, 12)], make), [export_tests.randn(3, 12)])
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_broadcast_to_the_batch_exports_as_expand_of_the_input_shape():
    m = ncc.parse_module("""func.func @main(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>, tensor<2x3xf32>) {
  %c = nn.constant dense<[1.0, 2.0, 3.0]> : tensor<3xf32>
  %b = nn.broadcast %c : tensor<3xf32> -> tensor<?x3xf32>
  %y = nn.mul %b, %x : tensor<?x3xf32>
  %s = nn.broadcast %c : tensor<3xf32> -> tensor<2x3xf32>
  func.return %y, %s : tensor<?x3xf32>, tensor<2x3xf32>
}""")
    model = ncc.export_onnx(m)
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    sess = ort.InferenceSession(model.SerializeToString())
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    for g, r in zip(got, ncc.reference.run(m, [x])):
        np.testing.assert_array_equal(g, r)


