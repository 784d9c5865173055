"""autodiff: the VJP rules of the norms, gathers and scatters, slices and pads,
scans, triangles, sparse matmul and resize. Each family runs random shapes and
parameters through check_rule (central finite differences in float64,
torch.func.vjp, and the native vjp kernel against the reference interpreter);
the ops whose rules handle a batch also run natively with a dynamic batch;
the forms without a derivative are errors naming them."""

from __future__ import annotations

import numpy as np
import pytest

import ncc
from ncc.dialects import nn
from ncc.passes.autodiff import differentiate
from vjp_check import check_rule, finite_differences, torch

CASES = range(4)  # random cases per family


def uniform(rng, shape, low=-2.0, high=2.0):
    return np.asarray(rng.uniform(low, high, shape))


def indices(rng, high, shape, negative=True):
    """Random indices into a dimension of size `high` (repeats likely; some
    counted from the end)."""
    i = rng.integers(0, high, shape)
    return np.where(rng.random(shape) < 0.3, i - high, i) if negative else i


def distinct_along(rng, dim, shape, axis):
    """Indices into a dimension of size `dim`, distinct along `axis` (shape[axis] <= dim)."""
    full = list(shape)
    full[axis] = dim
    perm = np.argsort(rng.random(full), axis=axis)
    return np.take(perm, range(shape[axis]), axis=axis)


def rand_shape(rng, rank, low=1, high=4):
    return tuple(int(d) for d in rng.integers(low, high + 1, rank))


# ---------------------------------------------------------------------------
# Norms


@pytest.mark.parametrize("case", CASES)
def test_batch_norm_vjp(case):
    rng = np.random.default_rng(case)
    rank = 2 + case % 3
    shape = rand_shape(rng, rank, 2)
    c = shape[1]
    eps = float(rng.choice([1e-5, 1e-2]))
    args = [uniform(rng, shape), uniform(rng, c), uniform(rng, c), uniform(rng, c), uniform(rng, c, 0.3, 2)]

    def tf(x, s, b, m, v):
        ch = (1, -1) + (1,) * (rank - 2)
        return (x - m.reshape(ch)) / torch.sqrt(v.reshape(ch) + eps) * s.reshape(ch) + b.reshape(ch)

    check_rule(lambda *a: nn.BatchNormOp(*a, epsilon=eps), args, torch_fn=torch and tf)


BN = """
nn.weight @s : tensor<3xf64> = dense<[1.0, -0.5, 2.0]>
nn.weight @b : tensor<3xf64> = dense<[0.1, 0.2, 0.3]>
nn.weight @m : tensor<3xf64> = dense<[0.5, 0.0, -1.0]>
nn.weight @v : tensor<3xf64> = dense<[1.0, 0.25, 4.0]>
func.func @f(%x: tensor<?x3x2xf64>) -> tensor<?x3x2xf64> {
  %s = nn.weight_ref @s : tensor<3xf64>
  %b = nn.weight_ref @b : tensor<3xf64>
  %m = nn.weight_ref @m : tensor<3xf64>
  %v = nn.weight_ref @v : tensor<3xf64>
  %y = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x3x2xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}"""


def test_batch_norm_with_frozen_statistics():
    """The running mean and variance frozen (as when fine-tuning a CNN): the
    same gradients for the rest; only the bias: no statistics read at all."""
    full, frozen, bias_only = (ncc.parse_module(BN) for _ in range(3))
    differentiate(full, "f")
    differentiate(frozen, "f", frozen=["m", "v"])
    (vjp,) = differentiate(bias_only, "f", frozen=["s", "m", "v"], inputs=False)
    ops = list(vjp.body.block.ops)
    assert sum(isinstance(op, nn.WeightRefOp) for op in ops) == 4  # the forward's: the backward reads none
    assert [op.name for op in ops[ops.index(next(o for o in ops if isinstance(o, nn.BatchNormOp))) + 1:]] == [
        "nn.reduce_sum", "func.return"]  # dbias: the sum over all axes but 1
    rng = np.random.default_rng(4)
    x, cot = uniform(rng, (5, 3, 2)), uniform(rng, (5, 3, 2))
    gs, gb, _, _, gx = ncc.reference.run(full, [x, cot], function="f_vjp")[1:]
    for a, b in zip(ncc.reference.run(frozen, [x, cot], function="f_vjp")[1:], [gs, gb, gx]):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(ncc.reference.run(bias_only, [x, cot], function="f_vjp")[1], gb)
    np.testing.assert_allclose(gb, cot.sum(axis=(0, 2)))


@pytest.mark.parametrize("case", CASES)
def test_layer_norm_vjp(case):
    rng = np.random.default_rng(10 + case)
    rank = 1 + case % 3
    shape = rand_shape(rng, rank, 2)
    axis = int(rng.integers(-rank, rank))
    norm = shape[axis % rank:]
    eps = float(rng.choice([1e-5, 1e-2]))
    args = [uniform(rng, shape), uniform(rng, norm), uniform(rng, norm)]
    check_rule(lambda *a: nn.LayerNormOp(*a, axis=axis, epsilon=eps), args,
               torch_fn=torch and (lambda x, s, b: torch.nn.functional.layer_norm(x, norm, s, b, eps)))


# ---------------------------------------------------------------------------
# Gathers


@pytest.mark.parametrize("case", range(6))
def test_gather_vjp(case):
    """Any axis, indices of rank 0 to 2 with repeats and negative entries."""
    rng = np.random.default_rng(20 + case)
    rank = 1 + case % 3
    shape = rand_shape(rng, rank, 2)
    axis = int(rng.integers(0, rank))
    d = shape[axis]
    idx = indices(rng, d, rand_shape(rng, case % 3, 1, 3))

    def tf(x, i):
        picked = torch.index_select(x, axis, (i % d).reshape(-1))
        return picked.reshape(x.shape[:axis] + i.shape + x.shape[axis + 1:])

    check_rule(lambda x, i: nn.GatherOp(x, i, axis=axis - rank * (case % 2)), [uniform(rng, shape), idx],
               int_args=(1,), torch_fn=torch and tf)


@pytest.mark.parametrize("case", CASES)
def test_gather_elements_vjp(case):
    rng = np.random.default_rng(30 + case)
    rank = 1 + case % 3
    shape = rand_shape(rng, rank, 2)
    axis = int(rng.integers(0, rank))
    ishape = tuple(int(rng.integers(1, s + 1)) if i != axis else int(rng.integers(1, 5))
                   for i, s in enumerate(shape))
    idx = indices(rng, shape[axis], ishape)
    check_rule(lambda x, i: nn.GatherElementsOp(x, i, axis=axis), [uniform(rng, shape), idx], int_args=(1,),
               torch_fn=torch and (lambda x, i: torch.gather(x, axis, i % shape[axis])))


# ---------------------------------------------------------------------------
# Slices and pads


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
    shape = rand_shape(rng, rank, 2, 6)
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
    check_rule(lambda x: nn.SliceOp(x, starts, ends, axes, steps), [uniform(rng, shape)],
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
    shape = rand_shape(rng, rank, 2, 5)
    pads = [int(rng.integers(0, (shape[i % rank] if mode == "reflect" else 4))) for i in range(2 * rank)]
    value = float(rng.uniform(-1, 1)) if mode == "constant" else 0.0

    def tf(x):  # numpy's pad of the positions tells which element each output reads
        if mode == "constant":
            flat = [p for d in reversed(range(rank)) for p in (pads[d], pads[d + rank])]
            return torch.nn.functional.pad(x, flat, value=value)
        np_mode = {"reflect": "reflect", "edge": "edge"}[mode]
        return _select_positions(x, {d: np.pad(np.arange(shape[d]), (pads[d], pads[d + rank]), np_mode)
                                     for d in range(rank)})

    check_rule(lambda x: nn.PadOp(x, pads, mode=mode, value=value), [uniform(rng, shape)],
               torch_fn=torch and tf)


# ---------------------------------------------------------------------------
# Scatters


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("case", CASES)
def test_scatter_elements_vjp(reduction, case):
    """Repeated positions (the last write wins for none) in even cases,
    distinct ones (compared with torch) in odd cases."""
    rng = np.random.default_rng(60 + case)
    rank = 1 + case % 3
    shape = rand_shape(rng, rank, 2)
    axis = int(rng.integers(-rank, rank))
    a = axis % rank
    ishape = tuple(int(rng.integers(1, s + 1)) for s in shape)
    distinct = case % 2 == 1
    idx = distinct_along(rng, shape[a], ishape, a) if distinct else indices(rng, shape[a], ishape)
    args = [uniform(rng, shape), idx, uniform(rng, ishape)]
    tf = None
    if torch is not None and (distinct or reduction == "add"):
        tf = (lambda x, i, u: x.scatter(a, i % shape[a], u)) if reduction == "none" else \
            (lambda x, i, u: x.scatter_add(a, i % shape[a], u))
    grads = check_rule(lambda x, i, u: nn.ScatterElementsOp(x, i, u, axis=axis, reduction=reduction), args,
                       int_args=(1,), torch_fn=tf)
    if reduction == "none" and not distinct:  # every written position: exactly one update's cotangent
        assert np.count_nonzero(grads[1]) <= np.count_nonzero(grads[0] == 0)


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("case", CASES)
def test_scatter_nd_vjp(reduction, case):
    rng = np.random.default_rng(70 + case)
    rank = 1 + case % 3
    shape = rand_shape(rng, rank, 2)
    k = int(rng.integers(1, rank + 1))
    writers = rand_shape(rng, 1 + case % 2, 1, 3)
    distinct = case % 2 == 1
    if distinct:  # distinct tuples: a sample of the flat positions of shape[:k]
        n = int(np.prod(writers))
        flat = rng.permutation(int(np.prod(shape[:k])))[:n]
        writers = (len(flat),)
        idx = np.stack(np.unravel_index(flat, shape[:k]), axis=-1)
        idx = idx - np.array(shape[:k]) * (rng.random(k) < 0.3)  # some components counted from the end
    else:
        idx = np.stack([indices(rng, shape[t], writers) for t in range(k)], axis=-1)
    args = [uniform(rng, shape), idx, uniform(rng, (*writers, *shape[k:]))]
    def tf(x, i, u):
        where = tuple(i[..., t] % shape[t] for t in range(k))
        return x.index_put(where, u, accumulate=reduction == "add")

    check_rule(lambda x, i, u: nn.ScatterNDOp(x, i, u, reduction=reduction), args, int_args=(1,),
               torch_fn=tf if torch is not None and (distinct or reduction == "add") else None)


def test_scatter_with_constant_distinct_indices_reads_updates_directly():
    """Constant indices without repeats need no last-writer mask: no i64 scatter in the backward."""
    m = ncc.parse_module("""
func.func @f(%x: tensor<3x4xf64>, %u: tensor<2x4xf64>) -> tensor<3x4xf64> {
  %i = nn.constant dense<[[0, -1, 1, 0], [2, 0, 0, 1]]> : tensor<2x4xi64>
  %y = nn.scatter_elements %x, %i, %u : tensor<3x4xf64>, tensor<2x4xi64>, tensor<2x4xf64> -> tensor<3x4xf64>
  func.return %y : tensor<3x4xf64>
}""")
    (vjp,) = differentiate(m, "f")
    scatters = [op for op in vjp.body.block.ops if isinstance(op, nn.ScatterElementsOp)]
    assert len(scatters) == 2  # the forward's and dx's; no scatter of writer ids
    rng = np.random.default_rng(5)
    x, u, cot = uniform(rng, (3, 4)), uniform(rng, (2, 4)), uniform(rng, (3, 4))
    _, gx, gu = ncc.reference.run(m, [x, u, cot], function="f_vjp")
    i = np.array([[0, -1, 1, 0], [2, 0, 0, 1]]) % 3
    mask = np.ones((3, 4))
    np.put_along_axis(mask, i, 0, axis=0)
    np.testing.assert_allclose(gx, cot * mask)
    np.testing.assert_allclose(gu, np.take_along_axis(cot, i, axis=0))


# ---------------------------------------------------------------------------
# Scans, triangles, sparse matmul


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", range(2))
def test_cumsum_vjp(exclusive, reverse, case):
    rng = np.random.default_rng(80 + case)
    rank = 1 + 2 * case
    shape = rand_shape(rng, rank, 2, 5)
    axis = int(rng.integers(-rank, rank))

    def tf(x):
        y = x.flip(axis) if reverse else x
        c = torch.cumsum(y, axis) - (y if exclusive else 0)
        return c.flip(axis) if reverse else c

    check_rule(lambda x: nn.CumSumOp(x, axis=axis, exclusive=exclusive, reverse=reverse),
               [uniform(rng, shape)], torch_fn=torch and tf)


@pytest.mark.parametrize("name", sorted(nn.TRIANGLE_OPS))
@pytest.mark.parametrize("case", range(2))
def test_triangle_vjp(name, case):
    rng = np.random.default_rng(90 + case)
    shape = rand_shape(rng, 2 + case, 2, 5)
    k = int(rng.integers(-2, 3))
    check_rule(lambda x: nn.TRIANGLE_OPS[name](x, k=k), [uniform(rng, shape)],
               torch_fn=torch and (lambda x: getattr(torch, name)(x, k)))


@pytest.mark.parametrize("case", CASES)
def test_sparse_matmul_vjp(case):
    rng = np.random.default_rng(100 + case)
    kin, nout = (int(v) for v in rng.integers(2, 6, 2))
    lead = rand_shape(rng, case % 3, 1, 3)
    cells = rng.permutation(kin * nout)[:int(rng.integers(1, kin * nout + 1))]
    rows, cols = (list(map(int, a)) for a in np.unravel_index(cells, (kin, nout)))

    def tf(x, v):
        w = torch.zeros(kin, nout, dtype=v.dtype).index_put((torch.tensor(rows), torch.tensor(cols)), v)
        return x @ w

    check_rule(lambda x, v: nn.SparseMatmulOp(x, v, rows=rows, cols=cols, in_features=kin, out_features=nout),
               [uniform(rng, (*lead, kin)), uniform(rng, len(rows))], torch_fn=torch and tf)


# ---------------------------------------------------------------------------
# Resize (linear in x: one constant matrix per resized axis)


@pytest.mark.parametrize("case", range(12))
def test_resize_vjp(case):
    """Every coordinate transformation, each with two of the modes (the other parameters random)."""
    rng = np.random.default_rng(110 + case)
    mode = nn.RESIZE_MODES[case % 3]
    coord = nn.RESIZE_COORDINATES[case // 2]
    shape = (1, 2, *rand_shape(rng, 1 + case % 2, 2, 4))
    r = len(shape)
    scales = [1.0, 1.0, *(float(rng.choice([0.6, 0.75, 1.5, 2.0, 2.5])) for _ in shape[2:])]
    sizes = [max(1, int(np.floor(n * s))) for n, s in zip(shape, scales)]
    params = {"coordinate_transformation_mode": coord}
    if mode == "nearest":
        params["nearest_mode"] = str(rng.choice(nn.NEAREST_MODES))
    else:
        params["antialias"] = bool(rng.random() < 0.3)
    if mode == "cubic":
        params["exclude_outside"] = bool(rng.random() < 0.5)
    if coord == "tf_crop_and_resize":
        lo = rng.uniform(-0.2, 0.4, r - 2)
        params["roi"] = [0.0, 0.0, *lo, 1.0, 1.0, *(lo + rng.uniform(0.5, 1.0, r - 2))]
        params["extrapolation_value"] = 3.0
    def tf(x):
        return torch.nn.functional.interpolate(x, size=sizes[2:], mode="linear" if r == 3 else "bilinear",
                                               align_corners=coord == "align_corners")

    like_torch = mode == "linear" and not params["antialias"] and all(s > 1 for s in sizes[2:]) and coord in (
        "align_corners", "pytorch_half_pixel")
    check_rule(lambda x: nn.ResizeOp(x, sizes, scales, mode=mode, **params), [uniform(rng, shape)],
               torch_fn=tf if torch is not None and like_torch else None)


# ---------------------------------------------------------------------------
# A dynamic batch, natively


def _ids(rng, high, shape):
    return indices(rng, high, shape)


# name -> (function text, inputs for batch n: (rng, n) -> arrays in argument order)
DYNAMIC = {
    "batch_norm": ("""
func.func @f(%x: tensor<?x3x4xf64>, %s: tensor<3xf64>, %b: tensor<3xf64>, %m: tensor<3xf64>,
             %v: tensor<3xf64>) -> tensor<?x3x4xf64> {
  %y = nn.batch_norm %x, %s, %b, %m, %v epsilon 0.01 : tensor<?x3x4xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64> -> tensor<?x3x4xf64>
  func.return %y : tensor<?x3x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 4)), *(uniform(rng, 3) for _ in range(3)),
                      uniform(rng, 3, 0.5, 2)]),
    "layer_norm": ("""
func.func @f(%x: tensor<?x2x4xf64>, %s: tensor<4xf64>, %b: tensor<4xf64>) -> tensor<?x2x4xf64> {
  %y = nn.layer_norm %x, %s, %b : tensor<?x2x4xf64>, tensor<4xf64>, tensor<4xf64> -> tensor<?x2x4xf64>
  func.return %y : tensor<?x2x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 2, 4)), uniform(rng, 4), uniform(rng, 4)]),
    "gather_embedding": ("""
func.func @f(%t: tensor<6x3xf64>, %i: tensor<?x2xi64>) -> tensor<?x2x3xf64> {
  %y = nn.gather %t, %i : tensor<6x3xf64>, tensor<?x2xi64> -> tensor<?x2x3xf64>
  func.return %y : tensor<?x2x3xf64>
}""", lambda rng, n: [uniform(rng, (6, 3)), _ids(rng, 6, (n, 2))]),
    "gather_axis1": ("""
func.func @f(%x: tensor<?x5xf64>, %i: tensor<2x2xi64>) -> tensor<?x2x2xf64> {
  %y = nn.gather %x, %i axis 1 : tensor<?x5xf64>, tensor<2x2xi64> -> tensor<?x2x2xf64>
  func.return %y : tensor<?x2x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 5)), _ids(rng, 5, (2, 2))]),
    "gather_elements": ("""
func.func @f(%x: tensor<?x4xf64>, %i: tensor<?x3xi64>) -> tensor<?x3xf64> {
  %y = nn.gather_elements %x, %i axis 1 : tensor<?x4xf64>, tensor<?x3xi64> -> tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 4)), _ids(rng, 4, (n, 3))]),
    "slice": ("""
func.func @f(%x: tensor<?x6x3xf64>) -> tensor<?x3x2xf64> {
  %y = nn.slice %x starts [0, 5, 1] ends [9223372036854775807, -7, 3] axes [0, 1, 2] steps [1, -2, 1] : tensor<?x6x3xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 6, 3))]),
    "pad": ("""
func.func @f(%x: tensor<?x4x3xf64>) -> tensor<?x7x4xf64> {
  %y = nn.pad %x pads [0, 2, 0, 0, 1, 1] mode reflect : tensor<?x4x3xf64> -> tensor<?x7x4xf64>
  func.return %y : tensor<?x7x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 4, 3))]),
    "scatter_elements": ("""
func.func @f(%x: tensor<?x5xf64>, %i: tensor<?x3xi64>, %u: tensor<?x3xf64>) -> tensor<?x5xf64> {
  %y = nn.scatter_elements %x, %i, %u axis 1 : tensor<?x5xf64>, tensor<?x3xi64>, tensor<?x3xf64> -> tensor<?x5xf64>
  func.return %y : tensor<?x5xf64>
}""", lambda rng, n: [uniform(rng, (n, 5)), _ids(rng, 5, (n, 3)), uniform(rng, (n, 3))]),
    "scatter_nd_writers": ("""
func.func @f(%x: tensor<5x4xf64>, %i: tensor<?x1xi64>, %u: tensor<?x4xf64>) -> tensor<5x4xf64> {
  %y = nn.scatter_nd %x, %i, %u : tensor<5x4xf64>, tensor<?x1xi64>, tensor<?x4xf64> -> tensor<5x4xf64>
  func.return %y : tensor<5x4xf64>
}""", lambda rng, n: [uniform(rng, (5, 4)), _ids(rng, 5, (n, 1)), uniform(rng, (n, 4))]),
    "scatter_nd_add": ("""
func.func @f(%x: tensor<?x3x2xf64>, %i: tensor<?x2x2xi64>, %u: tensor<?x2x2xf64>) -> tensor<?x3x2xf64> {
  %y = nn.scatter_nd %x, %i, %u reduction add : tensor<?x3x2xf64>, tensor<?x2x2xi64>, tensor<?x2x2xf64> -> tensor<?x3x2xf64>
  func.return %y : tensor<?x3x2xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 2)), np.stack([_ids(rng, n, (n, 2)), _ids(rng, 3, (n, 2))], -1),
                      uniform(rng, (n, 2, 2))]),
    "cumsum_over_batch": ("""
func.func @f(%x: tensor<?x3xf64>) -> tensor<?x3xf64> {
  %y = nn.cumsum %x axis 0 exclusive reverse : tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 3))]),
    "tril": ("""
func.func @f(%x: tensor<?x3x4xf64>) -> tensor<?x3x4xf64> {
  %y = nn.tril %x k -1 : tensor<?x3x4xf64>
  func.return %y : tensor<?x3x4xf64>
}""", lambda rng, n: [uniform(rng, (n, 3, 4))]),
    "sparse_matmul": ("""
func.func @f(%x: tensor<?x4xf64>, %v: tensor<4xf64>) -> tensor<?x3xf64> {
  %y = nn.sparse_matmul %x, %v rows [0, 1, 3, 3] cols [2, 0, 0, 1] in_features 4 out_features 3 : tensor<?x4xf64>, tensor<4xf64> -> tensor<?x3xf64>
  func.return %y : tensor<?x3xf64>
}""", lambda rng, n: [uniform(rng, (n, 4)), uniform(rng, 4)]),
    "resize": ("""
func.func @f(%x: tensor<?x2x4xf64>) -> tensor<?x2x7xf64> {
  %y = nn.resize %x mode linear scales [1.0, 1.0, 1.75] : tensor<?x2x4xf64> -> tensor<?x2x7xf64>
  func.return %y : tensor<?x2x7xf64>
}""", lambda rng, n: [uniform(rng, (n, 2, 4))]),
}


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_dynamic_batch_natively(name):
    """One compiled vjp kernel, run at several batch sizes: equal to the
    reference interpreter's vjp, which equals finite differences."""
    text, make = DYNAMIC[name]
    m = ncc.parse_module(text)
    fwd = m.clone()
    differentiate(m, "f", mode="combined")
    model = ncc.compile(m, function="f_vjp", cache=False)
    rng = np.random.default_rng(7)
    for n in (1, 3, 4):
        inputs = make(rng, n)
        y = ncc.reference.run(fwd, inputs)[0]
        cot = rng.standard_normal(y.shape)
        ref = ncc.reference.run(m, [*inputs, cot], function="f_vjp")
        got = model.run({**{f"arg{i}": x for i, x in enumerate(inputs)}, "cotangent:0": cot})
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        wrt = [k for k, x in enumerate(inputs) if x.dtype.kind == "f"]
        for k, g, d in zip(wrt, ref[1:], finite_differences(fwd, inputs, cot, wrt)):
            np.testing.assert_allclose(g, d, rtol=1e-5, atol=1e-6, err_msg=f"{name}: operand {k}, batch {n}")


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_split_forward_backward_equals_combined(name):
    """What the rules read through bw.primal is saved by the forward (in split
    mode) and gives the same gradients, also from the native backward kernel."""
    text, make = DYNAMIC[name]
    m = ncc.parse_module(text)
    _, bwd = differentiate(m, "f", mode="split")
    differentiate(m, "f", mode="combined")
    rng = np.random.default_rng(8)
    inputs = make(rng, 3)
    y, *saved = ncc.reference.run(m, inputs, function="f_forward")
    cot = rng.standard_normal(y.shape)
    split = ncc.reference.run(m, [*saved, cot], function="f_backward")
    combined = ncc.reference.run(m, [*inputs, cot], function="f_vjp")
    for a, b in zip(split, combined[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    names = [a.data["ncc.name"].data for a in bwd.arg_attrs.data]
    native = ncc.compile(m, function="f_backward", cache=False).run(dict(zip(names, [*saved, cot])))
    for a, b in zip(native, split, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_embedding_gradient_in_f32_natively():
    """The lit test's function (embedding, strided slice, concat): the table's
    and the input's gradients against torch autograd, natively."""
    import pathlib

    text = (pathlib.Path(__file__).parent / "lit" / "autodiff" / "gather-slice-concat.mlir").read_text()
    m = ncc.parse_module(text)
    differentiate(m, "embed", mode="combined")
    rng = np.random.default_rng(3)
    ids = indices(rng, 5, (4, 3))
    x = rng.standard_normal((4, 4)).astype(np.float32)
    cot = rng.standard_normal((4, 6)).astype(np.float32)
    got = ncc.compile(m, function="embed_vjp", cache=False).run({"ids": ids, "x": x, "cotangent:0": cot})
    ref = ncc.reference.run(m, [ids, x, cot], function="embed_vjp")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if torch is None:
        return
    table = torch.tensor(np.arange(1.0, 11.0, dtype=np.float32).reshape(5, 2), requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    e = table[torch.tensor(ids % 5)].reshape(4, 6)
    h = tx[:, [3, 1]]
    y = torch.cat([e, h], 1)[:, 1:7]
    y.backward(torch.tensor(cot))
    np.testing.assert_allclose(got[1], table.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], tx.grad.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Forms without a derivative


@pytest.mark.parametrize("reduction", ["mul", "max", "min"])
def test_scatter_reductions_without_rule_are_errors(reduction):
    m = ncc.parse_module(f"""func.func @f(%x: tensor<4xf32>, %i: tensor<2xi64>, %u: tensor<2xf32>) -> tensor<4xf32> {{
  %y = nn.scatter_elements %x, %i, %u reduction {reduction} : tensor<4xf32>, tensor<2xi64>, tensor<2xf32> -> tensor<4xf32>
  func.return %y : tensor<4xf32>
}}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=rf"model.mlir:2:3: error: cannot differentiate 'nn.scatter_elements' "
                                           rf"with reduction {reduction}: it has no derivative rule"):
        differentiate(m, "f")
    differentiate(m, "f", inputs=False)  # nothing active flows through it: no error


def test_slicing_part_of_a_dynamic_batch_is_an_error():
    m = ncc.parse_module("""func.func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %y = nn.slice %x starts [1] ends [3] : tensor<?x4xf32> -> tensor<?x4xf32>
  func.return %y : tensor<?x4xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.slice' of a part "
                                           r"of the dynamic batch dimension"):
        differentiate(m, "f")


def test_gather_on_a_later_axis_with_dynamic_indices_is_an_error():
    m = ncc.parse_module("""func.func @f(%x: tensor<3x4xf32>, %i: tensor<?xi64>) -> tensor<3x?xf32> {
  %y = nn.gather %x, %i axis 1 : tensor<3x4xf32>, tensor<?xi64> -> tensor<3x?xf32>
  func.return %y : tensor<3x?xf32>
}""", "model.mlir")
    with pytest.raises(ncc.NccError, match=r"model.mlir:2:3: error: cannot differentiate 'nn.gather' on axis 1 "
                                           r"with indices of a dynamic shape"):
        differentiate(m, "f")
