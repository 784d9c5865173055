"""layerize and fuse change the IR, not the numbers: the reference interpreter
gives the same results before and after, on random nets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32

import ncc
from ncc.dialects import activations, nn
from ncc.dialects.neuron import NeuronGraph
from ncc.passes.layerize import plan_layers

EXAMPLES = __import__("pathlib").Path(__file__).parent.parent / "examples"
SMOOTH = ["tanh", "sigmoid", "identity", "relu", "silu", "softplus", "sin", "elu", "leaky_relu"]


def random_graph(rng: np.random.Generator, n: int, n_inputs: int, fan_in: int, *,
                 values: bool, biases: bool, share: bool = False) -> NeuronGraph:
    """A random DAG whose neuron j reads up to fan_in neurons below j (skip connections
    included); the indices are then shuffled so that index order is not evaluation order."""
    acts: list = [None] * n_inputs
    ins: list = [[] for _ in range(n_inputs)]
    for j in range(n_inputs, n):
        k = int(rng.integers(1, min(j, fan_in) + 1))
        ins.append(sorted(rng.choice(j, size=k, replace=False).tolist()))
        acts.append(SMOOTH[int(rng.integers(len(SMOOTH)))])
    perm = rng.permutation(n)  # old index -> new index
    g_acts = [None] * n
    g_ins = [[] for _ in range(n)]
    for old in range(n):
        g_acts[perm[old]] = acts[old]
        g_ins[perm[old]] = sorted(int(perm[i]) for i in ins[old])
    kw = {}
    if values:
        kw["values"] = [None if a is None else rng.normal(size=len(i)).tolist() for a, i in zip(g_acts, g_ins)]
    if share:  # every edge into an odd neuron shares one symbol per source parity
        kw["weights"] = [[f"s{i % 2}" if j % 2 else f"w{i}_{j}" for i in g_ins[j]] for j in range(n)]
    if biases:
        kw["bias"] = [None if a is None or j % 3 == 0 else f"b{j}" for j, a in enumerate(g_acts)]
        kw["bias_value"] = [None if b is None else float(rng.normal()) for b in kw["bias"]]
    return NeuronGraph(g_acts, g_ins, **kw)


def check_layerize(g: NeuronGraph, batch: int = 7, seed: int = 0) -> ModuleOp:
    module = ModuleOp([g.to_net("net")])
    n_in = len(g.input_indices)
    x = np.random.default_rng(seed).normal(size=(batch, n_in)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, "layerize")
    assert not any(op.name.startswith("neuron.") for op in module.walk())
    after = ncc.reference.run(module, [x])[0]
    assert after.shape == before.shape == (batch, len(g.outputs))
    np.testing.assert_allclose(after, before, rtol=2e-4, atol=2e-5)
    return module


@pytest.mark.parametrize("name", ["seed_list.txt", "seed_matrix.txt", "seed_matrix_decorated.txt",
                                  "seed_edges.txt", "xor_values.txt"])
def test_layerize_examples(name):
    check_layerize(ncc.import_adjacency(EXAMPLES / name).body.block.first_op.graph())


@pytest.mark.parametrize("seed", range(6))
def test_layerize_random_dags(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n=int(rng.integers(30, 300)), n_inputs=int(rng.integers(1, 12)),
                     fan_in=int(rng.integers(1, 12)), values=seed % 2 == 0, biases=seed % 3 != 0,
                     share=seed == 5)
    check_layerize(g, seed=seed)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(1, 5), st.integers(1, 6), st.booleans(), st.integers(0, 2**31))
def test_layerize_property(n, n_inputs, fan_in, biases, seed):
    n_inputs = min(n_inputs, n - 1)
    g = random_graph(np.random.default_rng(seed), n, n_inputs, fan_in, values=True, biases=biases)
    check_layerize(g, batch=1 + seed % 5, seed=seed)


def test_layerize_picks_dense_for_fully_connected_layers_and_sparse_otherwise():
    full = NeuronGraph([None, None, "relu", "relu"], [[], [], [0, 1], [0, 1]])
    part = NeuronGraph([None, None, "relu", "relu"], [[], [], [0, 1], [1]])
    assert [layer.dense for layer in plan_layers(full)] == [True]
    assert [layer.dense for layer in plan_layers(part)] == [False]
    names = {op.name for op in check_layerize(part).walk()}
    assert "nn.sparse_matmul" in names and "nn.matmul" not in names


def test_layerize_uses_the_seeded_rule_for_weights_without_values():
    g = NeuronGraph([None, "identity"], [[], [0]])
    module = check_layerize(g)
    w = next(op for op in module.walk() if isinstance(op, nn.WeightOp))
    assert w.data[0, 0] == np.float32(ncc.dialects.neuron.initial_value("w0001"))


# ---------------------------------------------------------------------------
# fuse


def mlp_module(rng, dims, act="relu", batch=None, bias_shape="vector") -> ModuleOp:
    weights, ops = [], []
    fn = func.FuncOp("f", ((TensorType(f32, [batch, dims[0]]),), (TensorType(f32, [batch, dims[-1]]),)))
    h = fn.body.block.args[0]
    for k, (a, b) in enumerate(zip(dims, dims[1:])):
        w = nn.WeightOp(f"w{k}", rng.normal(size=(a, b)).astype(np.float32))
        bshape = (b,) if bias_shape == "vector" else (1, b)
        bias = nn.WeightOp(f"b{k}", rng.normal(size=bshape).astype(np.float32))
        weights += [w, bias]
        wr, br = nn.WeightRefOp(w), nn.WeightRefOp(bias)
        mm = nn.MatmulOp(h, wr)
        add = nn.AddOp(mm, br)
        ops += [wr, br, mm, add]
        h = add.results[0]
        if k < len(dims) - 2:
            a_op = nn.UNARY_OPS[act](h)
            ops.append(a_op)
            h = a_op.results[0]
    ops.append(func.ReturnOp(h))
    fn.body.block.add_ops(ops)
    return ModuleOp([*weights, fn])


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "gaussian"])
@pytest.mark.parametrize("bias_shape", ["vector", "row"])
def test_fuse_mlp_same_numbers(act, bias_shape):
    rng = np.random.default_rng(1)
    module = mlp_module(rng, [5, 7, 3, 2], act, batch=4, bias_shape=bias_shape)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, "fuse")
    names = [op.name for op in module.walk() if op.name.startswith("nn.") and op.name != "nn.weight"]
    assert names.count("nn.fused_matmul") == 3 and "nn.matmul" not in names and "nn.add" not in names
    assert not any(n == f"nn.{act}" for n in names)
    np.testing.assert_allclose(ncc.reference.run(module, [x])[0], before, rtol=1e-5, atol=1e-6)


def test_fuse_conv_same_numbers():
    rng = np.random.default_rng(2)
    x_t = TensorType(f32, [2, 4, 9, 9])
    w = nn.WeightOp("w", rng.normal(size=(6, 2, 3, 3)).astype(np.float32))
    b = nn.WeightOp("b", rng.normal(size=(1, 6, 1, 1)).astype(np.float32))
    fn = func.FuncOp("f", ((x_t,), (TensorType(f32, [2, 6, 5, 5]),)))
    wr, br = nn.WeightRefOp(w), nn.WeightRefOp(b)
    conv = nn.ConvOp(fn.body.block.args[0], wr, strides=[2, 2], pads=[1, 1, 1, 1], group=2)
    add = nn.AddOp(br, conv)
    act = nn.UNARY_OPS["elu"](add)
    fn.body.block.add_ops([wr, br, conv, add, act, func.ReturnOp(act)])
    module = ModuleOp([w, b, fn])
    x = rng.normal(size=(2, 4, 9, 9)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, "fuse")
    fused = [op for op in module.walk() if isinstance(op, nn.FusedConvOp)]
    assert len(fused) == 1 and fused[0].params.activation == "elu" and fused[0].params.group == 2
    np.testing.assert_allclose(ncc.reference.run(module, [x])[0], before, rtol=1e-5, atol=1e-5)


def test_fuse_leaves_a_vector_added_along_the_width():
    """A [C] vector added to an [N, C, H, W] conv result broadcasts along W (C = W
    here, so the add is valid): fusing it as a channel bias would change the numbers."""
    rng = np.random.default_rng(3)
    w = nn.WeightOp("w", rng.normal(size=(4, 2, 1, 1)).astype(np.float32))
    b = nn.WeightOp("b", (np.arange(4) * 10).astype(np.float32))
    fn = func.FuncOp("f", ((TensorType(f32, [1, 2, 4, 4]),), (TensorType(f32, [1, 4, 4, 4]),)))
    wr, br = nn.WeightRefOp(w), nn.WeightRefOp(b)
    conv = nn.ConvOp(fn.body.block.args[0], wr)
    add = nn.AddOp(conv, br)
    fn.body.block.add_ops([wr, br, conv, add, func.ReturnOp(add)])
    module = ModuleOp([w, b, fn])
    x = rng.normal(size=(1, 2, 4, 4)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, "fuse")
    assert not any(isinstance(op, nn.FusedConvOp) for op in module.walk())
    np.testing.assert_array_equal(ncc.reference.run(module, [x])[0], before)


@pytest.mark.parametrize("seed", range(4))
def test_layerize_then_fuse_random_dags(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, n=120, n_inputs=6, fan_in=8, values=True, biases=True)
    module = ModuleOp([g.to_net("net")])
    x = rng.normal(size=(5, 6)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, "layerize,fuse")
    np.testing.assert_allclose(ncc.reference.run(module, [x])[0], before, rtol=2e-4, atol=2e-5)


def test_every_activation_fuses():
    for name in activations.BY_NAME:
        rng = np.random.default_rng(3)
        module = mlp_module(rng, [3, 4, 2], name, batch=2)
        ncc.run_passes(module, "fuse")
        fused = [op.params.activation for op in module.walk() if isinstance(op, nn.FusedMatmulOp)]
        assert fused == [name, "identity"], name


@pytest.mark.parametrize("density", [0.01, 0.3, 1])
def test_layerize_dense_density_option_keeps_the_numbers(density):
    rng = np.random.default_rng(7)
    g = random_graph(rng, n=80, n_inputs=5, fan_in=6, values=True, biases=True)
    module = ModuleOp([g.to_net("net")])
    x = rng.normal(size=(3, 5)).astype(np.float32)
    before = ncc.reference.run(module, [x])[0]
    ncc.run_passes(module, f"layerize{{dense-density={density}}}")
    names = [op.name for op in module.walk()]
    if density == 0.01:
        assert "nn.sparse_matmul" not in names
    np.testing.assert_allclose(ncc.reference.run(module, [x])[0], before, rtol=2e-4, atol=2e-5)
