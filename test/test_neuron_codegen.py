"""neuron-to-loops: the straight-line kernel computes what ncc.reference computes.

The kernels run in xDSL's interpreter (no LLVM needed), on random DAGs of
hundreds of neurons and on the examples; the ABI (roles, parameter names and
buffer) is checked against runtime/abi.py; the automatic choice is checked on
nets on both sides of its thresholds."""

from __future__ import annotations

import math as pymath
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import arith, func, math, memref
from xdsl.dialects.builtin import ModuleOp
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.func import FuncFunctions
from xdsl.interpreters.math import MathFunctions
from xdsl.interpreters.memref import MemRefFunctions
from xdsl.interpreters.scf import ScfFunctions
from xdsl.interpreters.shaped_array import ShapedArray
from xdsl.interpreters.utils.ptr import TypedPtr

import ncc
from ncc.dialects import activations, nn
from ncc.dialects.neuron import NeuronGraph, initial_value
from ncc.passes.lowering import neuron_to_loops as n2l
from ncc.runtime.abi import ARG_ROLES, KernelABI
from test_passes import random_graph

EXAMPLES = Path(__file__).parent.parent / "examples"


# ---------------------------------------------------------------------------
# Running a kernel in xDSL's interpreter


@register_impls
class _Extra(InterpreterFunctions):
    """The few ops the stock interpreter lacks (float64 math on Python floats)."""

    @impl(memref.DimOp)
    def dim(self, interp, op, args):
        return (args[0].shape[args[1]],)

    @impl(arith.DivfOp)
    def divf(self, interp, op, args):
        return (args[0] / args[1] if args[1] != 0 else pymath.copysign(pymath.inf, args[0]),)

    @impl(arith.NegfOp)
    def negf(self, interp, op, args):
        return (-args[0],)

    @impl(math.TanhOp)
    def tanh(self, interp, op, args):
        return (pymath.tanh(args[0]),)

    @impl(math.SinOp)
    def sin(self, interp, op, args):
        return (pymath.sin(args[0]),)

    @impl(math.AbsFOp)
    def absf(self, interp, op, args):
        return (abs(args[0]),)


def _shaped(a: np.ndarray) -> ShapedArray:
    return ShapedArray(TypedPtr.new_float32(a.astype(np.float32).ravel().tolist()), list(a.shape))


def interpret(module: ModuleOp, x: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
    """Call the module's one kernel on x, with the module's parameter values (or
    `params`), through the ABI recorded on it; returns y."""
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    abi = KernelABI.of(fn)
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    n_out = fn.function_type.inputs.data[1].get_shape()[1]
    y = np.zeros((x.shape[0], n_out), np.float32)
    buffers = {"input": _shaped(x), "output": _shaped(y)}
    args = []
    for role in abi.roles:
        if role.kind == "weight":
            args.append(_shaped(weights[role.name].data if params is None else params))
        else:
            args.append(buffers[role.kind])
    interp = Interpreter(module)
    for impls in (FuncFunctions(), ScfFunctions(), ArithFunctions(), MemRefFunctions(),
                  MathFunctions(), _Extra()):
        interp.register_implementations(impls)
    interp.call_op(fn.sym_name.data, tuple(args))
    out = buffers["output"]
    return np.array(out.data, np.float32).reshape(out.shape)


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


def test_outputs_in_listed_order_and_an_input_as_output():
    g = NeuronGraph([None, None, "identity", "identity"], [[], [], [0], [1]],
                    values=[None, None, [2.0], [3.0]], outputs=[3, 0, 2])
    x = np.array([[1, 10], [2, 20]], np.float32)
    np.testing.assert_array_equal(interpret(lower(g), x), [[30, 1, 2], [60, 2, 4]])


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
