"""neuron-to-loops: the straight-line kernel computes what ncc.reference computes.

The kernels run in xDSL's interpreter (no LLVM needed), on random DAGs of
hundreds of neurons and on the examples; the ABI (roles, parameter names and
buffer) is checked against passes/lowering/abi.py; the automatic choice is checked on
nets on both sides of its thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import arith, func, math, memref
from xdsl.dialects.builtin import ModuleOp

import ncc
from ncc.dialects import activations, nn
from ncc.dialects.neuron import NeuronGraph, initial_value
from ncc.passes.lowering import neuron_to_loops as n2l
from ncc.passes.lowering.loop_interpreter import run_kernel
from ncc.runtime import engine
from ncc.passes.lowering.abi import ARG_ROLES, KernelABI
from test_passes import random_graph

EXAMPLES = Path(__file__).parent.parent / "examples"


# ---------------------------------------------------------------------------
# Running a kernel in the loop-level interpreter


def interpret(module: ModuleOp, x: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
    """Run the module's kernel on x in the loop-level interpreter (f32 arithmetic,
    NaN-filled outputs and arena, bounds-checked), with the module's parameter
    values or `params`."""
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    sym = n2l.params_symbol(fn.sym_name.data)
    return run_kernel(module, [x], params=None if params is None else {sym: params})[0]


def lower(g: NeuronGraph, pipeline: str = "neuron-to-loops") -> ModuleOp:
    module = ModuleOp([g.to_net("net")])
    return ncc.run_passes(module, pipeline)


def check(g: NeuronGraph, batch: int = 3, seed: int = 0) -> ModuleOp:
    x = np.random.default_rng(seed).normal(size=(batch, len(g.input_indices))).astype(np.float32)
    want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0]
    module = lower(g)
    assert not any(op.name.startswith("neuron.") for op in module.walk())
    got = interpret(module, x)
    assert got.shape == want.shape == (batch, len(g.outputs))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    return module


# ---------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize("name", ["seed_list.txt", "seed_matrix.txt", "seed_matrix_decorated.txt",
                                  "seed_edges.txt", "xor_values.txt"])
def test_examples(name):
    check(ncc.import_adjacency(EXAMPLES / name).body.block.first_op.graph())


def test_xor_is_exact():
    g = ncc.import_adjacency(EXAMPLES / "xor_values.txt").body.block.first_op.graph()
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.testing.assert_array_equal(interpret(lower(g), x), [[0], [1], [1], [0]])


@pytest.mark.parametrize("seed", range(6))
def test_random_dags(seed):
    """Hundreds of neurons, skip connections, shuffled indices, biases, shared
    symbols (without values: one parameter each), values or the seeded rule."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n=int(rng.integers(150, 400)), n_inputs=int(rng.integers(1, 12)),
                     fan_in=int(rng.integers(1, 10)), values=seed % 2 == 0, biases=seed % 3 != 0,
                     share=seed in (1, 5))
    check(g, batch=2, seed=seed)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(1, 5), st.integers(1, 6), st.booleans(), st.booleans(),
       st.integers(0, 2**31))
def test_property(n, n_inputs, fan_in, values, biases, seed):
    n_inputs = min(n_inputs, n - 1)
    g = random_graph(np.random.default_rng(seed), n, n_inputs, fan_in, values=values, biases=biases)
    check(g, batch=1 + seed % 4, seed=seed)


@pytest.mark.parametrize("act", list(activations.BY_NAME))
def test_every_activation_over_a_wide_range(act):
    g = NeuronGraph([None, act], [[], [0]], values=[None, [1.0]])
    x = np.concatenate([np.linspace(-30, 30, 41), [0.0, 1e-3, -1e-3, 88.0, -88.0]])
    x = x.astype(np.float32)[:, None]
    got = interpret(lower(g), x)
    want = activations.BY_NAME[act].fn(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_edges", [256, 1])
def test_outputs_in_listed_order_and_an_input_as_output(chunk_edges):
    g = NeuronGraph([None, None, "identity", "identity"], [[], [], [0], [1]],
                    values=[None, None, [2.0], [3.0]], outputs=[3, 0, 2])
    x = np.array([[1, 10], [2, 20]], np.float32)
    module = lower(g, f"neuron-to-loops{{chunk-edges={chunk_edges}}}")
    np.testing.assert_array_equal(interpret(module, x), [[30, 1, 2], [60, 2, 4]])


def test_empty_batch():
    g = ncc.import_adjacency(EXAMPLES / "xor_values.txt").body.block.first_op.graph()
    assert interpret(lower(g), np.zeros((0, 2), np.float32)).shape == (0, 1)


# ---------------------------------------------------------------------------
# Parameters: one flat buffer, named as in the equations


def test_params_order_values_and_abi():
    g = NeuronGraph([None, None, "tanh", "relu"], [[], [], [0, 1], [2, 0]],
                    bias=[None, None, "b02", None], bias_value=[None, None, 0.25, None])
    module = lower(g)
    w = next(op for op in module.ops if isinstance(op, nn.WeightOp))
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    abi = KernelABI.of(fn)
    assert w.sym == "net.params" == n2l.params_symbol("net")
    assert [str(r) for r in abi.roles] == ["input:x", "output:y", "weight:net.params"]
    assert abi.param_names == ("w0002", "w0102", "w0203", "w0003", "b02")
    assert (abi.arena_per_batch, abi.arena_constant) == (0, 0)
    want = [initial_value(s) for s in abi.param_names[:-1]] + [0.25]
    np.testing.assert_array_equal(w.data, np.array(want, np.float32))
    assert [str(t) for t in fn.function_type.inputs.data] == [
        "memref<?x2xf32>", "memref<?x1xf32>", "memref<5xf32>"]


def test_params_are_a_buffer_not_constants():
    """New parameter values change the result without recompiling, as the
    reference computes with the same values passed as params."""
    g = random_graph(np.random.default_rng(3), 30, 3, 4, values=False, biases=True)
    module = lower(g)
    abi = KernelABI.of(next(op for op in module.ops if isinstance(op, func.FuncOp)))
    new = np.random.default_rng(4).normal(size=len(abi.param_names)).astype(np.float32)
    x = np.random.default_rng(5).normal(size=(2, 3)).astype(np.float32)
    want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x],
                             params=dict(zip(abi.param_names, new)))[0]
    np.testing.assert_allclose(interpret(module, x, new), want, rtol=1e-4, atol=1e-5)


def test_shared_symbol_is_one_parameter():
    g = NeuronGraph([None, None, "identity", "identity"], [[], [], [0, 1], [0, 1]],
                    weights=[[], [], ["s", "t"], ["s", "u"]])
    abi = KernelABI.of(next(op for op in lower(g).ops if isinstance(op, func.FuncOp)))
    assert abi.param_names == ("s", "t", "u")


def test_shared_symbol_with_two_values_is_a_located_error():
    text = """neuron.net @net -> (n02, n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 identity(n00 * @s = 1.0, n01 * @t = 2.0)
  neuron.neuron n03 identity(n00 * @s = 3.0)
}"""
    module = ncc.parse_module(text, "shared.mlir")
    with pytest.raises(ncc.NccError, match=r"shared.mlir:5:\d+: .*@s is shared but has two "
                                           r"values: 1.0 at n02 and 3.0 at n03"):
        ncc.run_passes(module, "neuron-to-loops")


def test_only_needed_neurons_are_computed():
    # n03 feeds no output: no tanh for it in the kernel, but its weight is still a parameter.
    g = NeuronGraph([None, "relu", "identity", "tanh"], [[], [0], [1], [0]], outputs=[2])
    module = lower(g)
    assert not any(isinstance(op, math.TanhOp) for op in module.walk())
    assert "w0003" in KernelABI.of(next(op for op in module.ops
                                        if isinstance(op, func.FuncOp))).param_names


def test_kernel_is_straight_line_in_one_batch_loop():
    g = random_graph(np.random.default_rng(9), 60, 4, 5, values=True, biases=True)
    module = lower(g)
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    loops = [op for op in fn.walk() if op.name == "scf.for"]
    assert len(loops) == 1 and len(loops[0].body.blocks) == 1
    edges = sum(len(ins) for ins in g.inputs)
    params = fn.body.block.args[2]
    weight_muls = [op for op in loops[0].walk() if isinstance(op, arith.MulfOp)
                   and isinstance(op.rhs.owner, memref.LoadOp) and op.rhs.owner.memref is params]
    live = n2l.needed_neurons(g)
    assert len(weight_muls) == sum(len(g.inputs[j]) for j in live) <= edges  # one per live edge


# ---------------------------------------------------------------------------
# The automatic choice


def layered(widths: list[int], density: float, rng) -> NeuronGraph:
    """A layered net: each neuron reads a `density` fraction of the layer below."""
    acts, ins, start = [None] * widths[0], [[] for _ in range(widths[0])], 0
    for below, width in zip(widths, widths[1:]):
        k = max(1, round(density * below))
        for _ in range(width):
            ins.append(sorted(start + rng.choice(below, size=k, replace=False)))
            acts.append("relu")
        start += below
    return NeuronGraph(acts, [list(map(int, i)) for i in ins])


def test_choice_small_sparse_and_dense():
    rng = np.random.default_rng(0)
    tiny = random_graph(rng, 19, 5, 5, values=True, biases=False)
    assert n2l.choose_neuron_lowering(tiny) == "neuron"
    dense = layered([300, 200, 100], 1.0, rng)  # 80,000 edges, full layers
    assert n2l.choose_neuron_lowering(dense) == "layers"
    mid_dense = layered([100, 60, 40], 1.0, rng)  # 8,400 edges, full layers
    assert n2l.choose_neuron_lowering(mid_dense) == "layers"
    mid_sparse = layered([400, 300, 200], 0.05, rng)  # 3,000 edges, 5% full
    assert n2l.choose_neuron_lowering(mid_sparse) == "neuron"
    huge_sparse = layered([2000, 2000, 2000], 0.02, rng)  # 80,000 edges
    assert n2l.choose_neuron_lowering(huge_sparse) == "layers"


def test_choice_can_be_forced():
    tiny = random_graph(np.random.default_rng(0), 19, 5, 5, values=True, biases=False)
    assert n2l.choose_neuron_lowering(tiny, "layers") == "layers"
    dense = layered([300, 200, 100], 1.0, np.random.default_rng(0))
    assert n2l.choose_neuron_lowering(dense, "neuron") == "neuron"
    with pytest.raises(ValueError, match="mode must be one of neuron, auto, layers"):
        n2l.choose_neuron_lowering(tiny, "fast")


@pytest.mark.parametrize("mode,kernel", [("neuron", True), ("auto", True), ("layers", False)])
def test_pass_mode_option(mode, kernel):
    g = random_graph(np.random.default_rng(1), 19, 5, 5, values=True, biases=True)
    module = lower(g, f"neuron-to-loops{{mode={mode}}}")
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    assert (ARG_ROLES in fn.attributes) == kernel
    if not kernel:  # the nn function layerize makes; same numbers
        x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
        np.testing.assert_allclose(ncc.reference.run(module, [x])[0],
                                   ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0],
                                   rtol=1e-4, atol=1e-5)


def test_bad_mode_is_an_error():
    g = NeuronGraph([None, "relu"], [[], [0]])
    with pytest.raises(ncc.NccError, match="mode must be one of neuron, auto, layers, got 'x'"):
        lower(g, "neuron-to-loops{mode=x}")


# ---------------------------------------------------------------------------
# Chunks: a large net as several straight-line loops over 64-row tiles


def test_chunks_split_by_edges_in_order():
    g = random_graph(np.random.default_rng(2), 80, 4, 6, values=True, biases=False)
    order = [j for j in n2l.needed_neurons(g) if g.activation[j] is not None]
    chunks = n2l.chunk_neurons(g, order, 20)
    assert [j for c in chunks for j in c] == order
    assert all(sum(len(g.inputs[j]) for j in c) <= 20 for c in chunks)
    assert len(chunks) > 1


@pytest.mark.parametrize("batch", [1, 64, 2 * 64 + 5])
def test_chunked_kernel_over_several_tiles(batch):
    """Tiny chunks force values through the tile; batches cover a partial tile,
    exactly one tile and several."""
    g = random_graph(np.random.default_rng(batch), 40, 3, 5, values=batch % 2 == 0, biases=True)
    x = np.random.default_rng(0).normal(size=(batch, 3)).astype(np.float32)
    want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0]
    module = lower(g, "neuron-to-loops{chunk-edges=8}")
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    abi = KernelABI.of(fn)
    assert abi.roles[-1].kind == "arena"
    view = next(op for op in fn.walk() if isinstance(op, memref.ViewOp))
    slots = view.results[0].type.get_shape()[0]
    assert abi.arena_bytes(batch) == 4 * slots * n2l.TILE_ROWS > 0
    assert sum(op.name == "scf.for" for op in fn.walk()) > 2
    np.testing.assert_allclose(interpret(module, x), want, rtol=1e-4, atol=1e-5)


def test_bad_chunk_edges_is_an_error():
    with pytest.raises(ncc.NccError, match="chunk-edges must be at least 1, got 0"):
        lower(NeuronGraph([None, "relu"], [[], [0]]), "neuron-to-loops{chunk-edges=0}")


# ---------------------------------------------------------------------------
# Native: lower-to-llvm, JIT, call through ctypes with numpy buffers and the batch


def native(module: ModuleOp):
    """JIT the module's kernel; returns run(x, params=None) -> y, calling it through
    ctypes with numpy buffers (as passes/lowering/abi.py says) and the batch size."""
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    abi = KernelABI.of(fn)
    weight = next(op for op in module.ops if isinstance(op, nn.WeightOp)).data
    n_out = fn.function_type.inputs.data[1].get_shape()[1]
    ncc.run_passes(module, "lower-to-llvm")
    kernel = engine.compile_module(module).kernel(abi.name, len(abi.roles))

    def run(x: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        batch = x.shape[0]
        y = np.full((batch, n_out), np.nan, np.float32)  # unwritten outputs show up
        buffers = {"input": np.ascontiguousarray(x, np.float32), "output": y,
                   "weight": np.array(weight if params is None else params, np.float32),
                   "arena": np.full(max(abi.arena_bytes(batch), 1), 0xFF, np.uint8)}
        args = [buffers[r.kind] for r in abi.roles]
        kernel(*[a.ctypes.data for a in args], batch)
        return y
    return run


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2))])
def test_native_random_dags(seed):
    """Hundreds of neurons (several chunks, values through the tile); batch sizes
    below and above the vector width and the 64-row tile."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n=int(rng.integers(120, 240)), n_inputs=int(rng.integers(1, 12)),
                     fan_in=int(rng.integers(2, 10)), values=seed != 1, biases=seed != 2,
                     share=seed == 1)
    run = native(lower(g))
    for batch in (1, 7, 1000):
        x = rng.normal(size=(batch, len(g.input_indices))).astype(np.float32)
        want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0]
        np.testing.assert_allclose(run(x), want, rtol=1e-4, atol=2e-5)


def test_native_tiny_net_every_activation():
    """One chunk (no arena); every activation, over a wide range of pre-activations."""
    acts = list(activations.BY_NAME)
    n_in = 3
    g = NeuronGraph([None] * n_in + acts, [[]] * n_in + [[k % n_in] for k in range(len(acts))],
                    values=[None] * n_in + [[4.0]] * len(acts))
    module = lower(g)
    assert [r.kind for r in KernelABI.of(next(op for op in module.ops
                                              if isinstance(op, func.FuncOp))).roles] == \
        ["input", "output", "weight"]
    run = native(module)
    for batch in (1, 7, 1000):
        x = np.random.default_rng(batch).normal(scale=5, size=(batch, n_in)).astype(np.float32)
        want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0]
        np.testing.assert_allclose(run(x), want, rtol=1e-5, atol=1e-6)


def test_native_params_buffer_is_read_at_each_call():
    g = random_graph(np.random.default_rng(8), 40, 4, 5, values=False, biases=True)
    module = lower(g)
    names = KernelABI.of(next(op for op in module.ops if isinstance(op, func.FuncOp))).param_names
    new = np.random.default_rng(9).normal(size=len(names)).astype(np.float32)
    x = np.random.default_rng(10).normal(size=(33, 4)).astype(np.float32)
    want = ncc.reference.run(ModuleOp([g.to_net("net")]), [x], params=dict(zip(names, new)))[0]
    np.testing.assert_allclose(native(module)(x, new), want, rtol=1e-4, atol=2e-5)


def test_native_kernel_is_vectorized_over_the_batch():
    """The batch loop becomes 16-lane vector code on AVX-512 (8 on AVX2)."""
    g = ncc.import_adjacency(EXAMPLES / "seed_list.txt").body.block.first_op.graph()
    module = lower(g)
    ncc.run_passes(module, "lower-to-llvm")
    ir = engine.optimized_llvm_ir(module)
    assert "<16 x float>" in ir or "<8 x float>" in ir
