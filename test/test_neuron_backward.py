"""The neuron backward kernel (`neuron-to-loops{vjp=true}`, @<net>_vjp): its
gradients against (a) central finite differences in float64 of
ncc.reference on the net and (b) the backward equations text
(`--emit-equations=backward`) evaluated line by line, natively and in the
loop interpreter; its ABI (the runtime's contract); the derivative table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

import ncc
from ncc.dialects import activations, nn
from ncc.dialects.neuron import NeuronGraph
from ncc.equations import emit_equations
from ncc.passes.lowering import neuron_backward as nb
from ncc.passes.lowering.loop_interpreter import run_kernel
from ncc.runtime import engine
from ncc.passes.lowering.abi import KernelABI
from test_equations import random_dag, run_equations
from test_passes import random_graph

EXAMPLES = Path(__file__).parent.parent / "examples"


def example(name: str) -> NeuronGraph:
    return ncc.import_adjacency(EXAMPLES / name).body.block.first_op.graph()


def lower(g: NeuronGraph, options: str = "") -> ModuleOp:
    return ncc.run_passes(ModuleOp([g.to_net("net")]), f"neuron-to-loops{{vjp=true {options}}}")


def kernels(module: ModuleOp) -> dict[str, func.FuncOp]:
    return {op.sym_name.data: op for op in module.ops if isinstance(op, func.FuncOp)}


def param_values(module: ModuleOp) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, float32 values) of the net's flat parameter buffer."""
    names = KernelABI.of(kernels(module)["net_vjp"]).param_names
    weight = next(op for op in module.ops if isinstance(op, nn.WeightOp))
    return names, np.asarray(weight.data, np.float32)


# ---------------------------------------------------------------------------
# Running the kernel: loop interpreter, native code


def interpret(module: ModuleOp, x, dy, params=None):
    """(y, dparams, dx) from the loop interpreter (NaN-filled outputs and arena,
    bounds-checked accesses)."""
    p = None if params is None else {"net.params": params}
    return tuple(run_kernel(module, {"x": x, "cotangent:y": dy}, function="net_vjp", params=p))


def native(module: ModuleOp):
    """JIT the module's @net_vjp alone (the module is left as it is); returns
    run(x, dy, params=None) -> (y, dparams, dx), calling it through ctypes
    with buffers in ABI order."""
    _, values = param_values(module)
    module = module.clone()
    fns = kernels(module)
    fn = fns["net_vjp"]
    abi = KernelABI.of(fn)
    shapes = [t.get_shape() for t in fn.function_type.inputs.data]
    module.body.block.detach_op(fns["net"])  # the forward kernel is not needed here
    ncc.run_passes(module, "lower-to-llvm")
    kernel = engine.compile_module(module).kernel(abi.name, len(abi.roles))

    def run(x, dy, params=None):
        batch = x.shape[0]
        feeds = {"x": np.ascontiguousarray(x, np.float32),
                 "cotangent:y": np.ascontiguousarray(dy, np.float32)}
        args, outputs = [], []
        for role, shape in zip(abi.roles, shapes):
            if role.kind == "input":
                a = feeds[role.name]
                assert list(a.shape) == [batch, shape[1]]
            elif role.kind == "weight":
                a = np.array(values if params is None else params, np.float32)
            elif role.kind == "arena":
                a = np.full(max(abi.arena_bytes(batch), 1), 0xFF, np.uint8)  # NaN floats
            else:  # outputs start as NaN: anything left unwritten shows
                a = np.full([batch if d == nn.DYN else d for d in shape], np.nan, np.float32)
                outputs.append(a)
            args.append(a)
        kernel(*[a.ctypes.data for a in args], batch)
        return tuple(outputs)
    return run


# ---------------------------------------------------------------------------
# The two references


def finite_differences(g: NeuronGraph, x, dy, names, values, which=None, h=1e-6):
    """Central differences in float64 of L = sum(dy * ncc.reference(net)): the
    gradient of the parameters `which` (indices into names; all by default) and
    of every input."""
    net = ModuleOp([g.to_net("net")])
    x = np.asarray(x, np.float64)
    base = np.asarray(values, np.float64)

    def loss(p, xx):
        y = ncc.reference.run(net, [xx], params=dict(zip(names, p)))[0]
        return float((y * dy).sum())

    which = range(len(names)) if which is None else which
    dp = {}
    for k in which:
        e = np.zeros_like(base)
        e[k] = h
        dp[k] = (loss(base + e, x) - loss(base - e, x)) / (2 * h)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        dx[idx] = (loss(base, x + e) - loss(base, x - e)) / (2 * h)
    return dp, dx


def equations(g: NeuronGraph, x, dy, names, values):
    """(y, dparams, dx) from the forward and backward equations text, evaluated
    line by line in float64 on whole columns (one value per batch row); the
    rows' parameter gradients summed."""
    w = len(f"{g.size - 1:x}") if g.size > 256 else 2
    name = lambda j: f"{j:0{w}x}"
    batch = x.shape[0]
    env = {s: float(v) for s, v in zip(names, values)}
    env |= {f"n{name(j)}": np.asarray(x[:, c], np.float64) for c, j in enumerate(g.input_indices)}
    env = run_equations(emit_equations(g, "forward"), g, env)
    env |= {f"dy{name(j)}": np.asarray(dy[:, c], np.float64) for c, j in enumerate(g.outputs)}
    env = run_equations(emit_equations(g, "backward"), g, env)
    col = lambda v: np.broadcast_to(np.asarray(v, np.float64), (batch,))
    y = np.stack([col(env[f"n{name(j)}"]) for j in g.outputs], axis=1)
    dp = np.array([col(env["d" + s]).sum() for s in names])
    dx = np.stack([col(env[f"dn{name(j)}"]) for j in g.input_indices], axis=1)
    return y, dp, dx


def error(got, want) -> float:
    """The largest difference, relative to the largest magnitude (at least 1)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max(initial=0) / max(1.0, np.abs(want).max(initial=0)))


TOL = 5e-6  # float32 kernel vs float64 references, relative to the largest magnitude


def data(g: NeuronGraph, batch: int, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(batch, len(g.input_indices))).astype(np.float32)
    dy = rng.normal(size=(batch, len(g.outputs))).astype(np.float32)
    return x, dy


def check(g: NeuronGraph, run, module: ModuleOp, batches=(5,), fd: bool | list[int] = True,
          scale: float = 1.0) -> dict[str, float]:
    """Run the kernel on each batch size; compare y with ncc.reference, the
    gradients with the equations and (the parameters `fd`, all if True) with
    finite differences. Returns the worst errors seen."""
    names, values = param_values(module)
    worst = {"eq": 0.0, "fd": 0.0}
    for k, batch in enumerate(batches):
        x, dy = data(g, batch, seed=k, scale=scale)
        y, dp, dx = run(x, dy)
        assert y.shape == (batch, len(g.outputs)) and dx.shape == x.shape
        assert dp.shape == (len(names),)
        want_y = ncc.reference.run(ModuleOp([g.to_net("net")]), [x])[0]
        assert error(y, want_y) < TOL
        ey, edp, edx = equations(g, x, dy, names, values)
        assert error(y, ey) < TOL
        worst["eq"] = max(worst["eq"], error(dp, edp), error(dx, edx))
        if fd is not False and batch <= 16:
            which = None if fd is True else fd
            fdp, fdx = finite_differences(g, x, dy, names, values, which)
            keys = sorted(fdp)
            worst["fd"] = max(worst["fd"], error(dp[keys], [fdp[k] for k in keys]), error(dx, fdx))
    assert worst["eq"] < TOL and worst["fd"] < TOL, worst
    return worst


# ---------------------------------------------------------------------------
# Examples and nets of every kind


@pytest.mark.parametrize("name", ["ncp19.txt", "xor_values.txt", "seed_list.txt"])
def test_examples_native(name):
    g = example(name)
    module = lower(g)
    check(g, native(module), module, batches=(5, 1, 64, 200))


@pytest.mark.parametrize("name", ["ncp19.txt", "xor_values.txt", "seed_matrix.txt"])
def test_examples_interpreted(name):
    g = example(name)
    module = lower(g)
    check(g, lambda x, dy: interpret(module, x, dy), module, batches=(5, 70))


def test_xor_at_its_kinks_follows_the_equations():
    """XOR's relus sit exactly at z = 0 on two of its inputs: relu'(0) = 0, as
    in the equations (finite differences would see the average slope)."""
    g = example("xor_values.txt")
    module = lower(g)
    names, values = param_values(module)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    dy = np.array([[1], [2], [3], [4]], np.float32)
    y, dp, dx = native(module)(x, dy)
    np.testing.assert_array_equal(y, [[0], [1], [1], [0]])
    ey, edp, edx = equations(g, x, dy, names, values)
    np.testing.assert_array_equal(dp, edp.astype(np.float32))
    np.testing.assert_array_equal(dx, edx.astype(np.float32))


def shared_net() -> NeuronGraph:
    """@s feeds three edges of two neurons, @b is the bias of two neurons."""
    return NeuronGraph([None, None, "tanh", "sigmoid", "identity"],
                       [[], [], [0, 1], [0, 1, 2], [2, 3]],
                       weights=[[], [], ["s", "t"], ["s", "u", "s"], ["v", "w"]],
                       bias=[None, None, "b", "b", None])


def output_feeding_net() -> NeuronGraph:
    """n02 is an output and feeds n03 (also an output); n01 is an output too
    (an input listed as one); n04 feeds nothing; n05 reads an input no output
    depends on."""
    return NeuronGraph([None, None, "tanh", "silu", "relu", None, "sin"],
                       [[], [], [0, 1], [2, 0], [2], [], [5]],
                       values=[None, None, [0.7, -1.2], [1.5, 0.4], [2.0], None, [1.0]],
                       bias=[None, None, "b02", "b03", "b04", None, None],
                       bias_value=[None, None, 0.1, -0.2, 0.3, None, None],
                       outputs=[2, 3, 1])


@pytest.mark.parametrize("make", [shared_net, output_feeding_net])
def test_nets_native_and_interpreted(make):
    g = make()
    module = lower(g)
    check(g, lambda x, dy: interpret(module, x, dy), module, batches=(6, 65))
    check(g, native(module), module, batches=(6, 1, 130))


def test_shared_symbol_gets_the_sum_of_its_uses():
    g = shared_net()
    module = lower(g)
    names, _ = param_values(module)
    assert names == ("s", "t", "u", "v", "w", "b")  # one parameter per symbol
    x, dy = data(g, 9)
    _, dp, _ = interpret(module, x, dy)
    # The same net with every use of @s and @b renamed apart: their gradients add up.
    apart = NeuronGraph(g.activation, g.inputs,
                        weights=[[], [], ["s1", "t"], ["s2", "u", "s3"], ["v", "w"]],
                        bias=[None, None, "b1", "b2", None])
    names2, _ = param_values(m2 := lower(apart))
    values = dict(zip(names, param_values(module)[1]))
    p2 = np.array([values[n.rstrip("123")] for n in names2], np.float32)
    _, dp2, _ = interpret(m2, x, dy, p2)
    got = dict(zip(names2, dp2))
    np.testing.assert_allclose(dp, [got["s1"] + got["s2"] + got["s3"], got["t"], got["u"],
                                    got["v"], got["w"], got["b1"] + got["b2"]], rtol=1e-5)


def test_dead_neurons_and_unused_inputs_get_zero_gradients():
    g = output_feeding_net()
    module = lower(g)
    names, _ = param_values(module)
    x, dy = data(g, 7)
    for y, dp, dx in (interpret(module, x, dy), native(module)(x, dy)):
        grads = dict(zip(names, dp))
        assert grads["w0204"] == grads["b04"] == grads["w0506"] == 0  # n04, n06 feed no output
        np.testing.assert_array_equal(dx[:, 2], 0)  # n05 (input 2) feeds only n06
        np.testing.assert_array_equal(y[:, 2], x[:, 1])  # the input listed as an output


@pytest.mark.parametrize("act", list(activations.BY_NAME))
def test_every_activation(act):
    """Each activation in a small net (wide pre-activations, a bias, a neuron
    reading another), natively; finite differences away from the kinks."""
    g = NeuronGraph([None, None, act, act, "identity"], [[], [], [0, 1], [2, 0], [3, 2]],
                    values=[None, None, [1.3, -0.8], [0.9, 0.6], [1.0, -0.5]],
                    bias=[None, None, "b02", "b03", None], bias_value=[None, None, 0.2, -0.1, None])
    module = lower(g)
    worst = check(g, native(module), module, batches=(8, 100), scale=2.0)
    assert worst["eq"] < TOL


def test_derivatives_at_zero():
    """relu'(0) = 0, step' = 0, abs'(0) = 0 = sign(0), leaky_relu'(0) = 0.01,
    elu'(0) = 1, as dialects/activations.py says: z = 0 exactly (x = 0, no bias)."""
    acts = list(activations.BY_NAME)
    g = NeuronGraph([None] + acts, [[]] + [[0]] * len(acts), values=[None] + [[1.0]] * len(acts))
    x = np.zeros((3, 1), np.float32)
    dy = np.ones((3, len(acts)), np.float32)
    module = lower(g)
    _, dp, dx = native(module)(x, dy)
    _, edp, edx = equations(g, x, dy, *param_values(module))
    np.testing.assert_allclose(dp, edp, atol=1e-7)  # dw = dz * x = 0
    want = {a.name: float(a.derivative(np.zeros(1))[0]) for a in activations.ACTIVATIONS}
    assert want["relu"] == want["step"] == want["abs"] == 0 and want["leaky_relu"] == 0.01
    np.testing.assert_allclose(dx[0, 0], sum(want.values()), rtol=1e-6)  # dx = sum of f'(0) * 1
    np.testing.assert_allclose(dx, edx, rtol=1e-6)


def test_derivative_table_matches_activations():
    """Each emitter, run in the loop interpreter, against the table's derivative
    over a wide range (the kernel of one neuron per activation: dx = f'(x))."""
    acts = list(activations.BY_NAME)
    g = NeuronGraph([None] * len(acts) + acts, [[]] * len(acts) + [[k] for k in range(len(acts))],
                    values=[None] * len(acts) + [[1.0]] * len(acts))
    z = np.concatenate([np.linspace(-30, 30, 61), [0.0, 1e-3, -1e-3, 80.0, -80.0]])
    x = np.repeat(z[:, None], len(acts), axis=1).astype(np.float32)
    _, _, dx = interpret(lower(g), x, np.ones_like(x))
    for k, a in enumerate(acts):
        want = activations.BY_NAME[a].derivative(x[:, k].astype(np.float64))
        np.testing.assert_allclose(dx[:, k], want, rtol=2e-6, atol=2e-6, err_msg=a)


# ---------------------------------------------------------------------------
# Large nets: chunks


@pytest.mark.slow  # test_chunked_native_equals_one_chunk covers the chunks in the default run
def test_large_random_dag_chunked_native():
    """Several hundred edges: chunks of the default size (phases outlined),
    skip connections, outputs feeding neurons, shared symbols, biases, an index
    order that is not a topological order; batches across tiles."""
    g = random_dag(np.random.default_rng(7), n=140, n_in=8, fan_in=5)
    edges = sum(len(i) for i in g.inputs)
    assert edges > nb.CHUNK_EDGES
    module = lower(g)
    names, _ = param_values(module)
    sampled = np.random.default_rng(0).choice(len(names), size=40, replace=False).tolist()
    check(g, native(module), module, batches=(3, 64, 150), fd=sampled)


@pytest.mark.parametrize("seed", range(3))
def test_small_chunks_interpreted(seed):
    """Tiny chunks (a few edges each): values and dz cross many chunks."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n=int(rng.integers(25, 45)), n_inputs=int(rng.integers(1, 5)),
                     fan_in=4, values=seed != 1, biases=True, share=seed == 1)
    module = lower(g, "chunk-edges=5")
    assert sum(op.name == "scf.for" and "ncc.outline" in op.attributes
               for op in kernels(module)["net_vjp"].walk()) > 5
    check(g, lambda x, dy: interpret(module, x, dy), module, batches=(4, 67))


def test_chunked_native_equals_one_chunk():
    g = random_dag(np.random.default_rng(3), n=40, n_in=5, fan_in=4)
    x, dy = data(g, 100)
    whole = native(lower(g))(x, dy)
    chunked = native(lower(g, "chunk-edges=24"))(x, dy)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# The ABI and the pass


def test_abi():
    g = shared_net()
    module = lower(g)
    fns = kernels(module)
    assert list(fns) == ["net", "net_vjp"]
    assert sum(isinstance(op, nn.WeightOp) for op in module.ops) == 1  # one buffer for both
    fwd, bwd = KernelABI.of(fns["net"]), KernelABI.of(fns["net_vjp"])
    assert [str(r) for r in bwd.roles] == [
        "input:x", "input:cotangent:y", "output:y", "output:grad:net.params", "output:grad:x",
        "weight:net.params", "arena"]
    assert bwd.param_names == fwd.param_names
    assert nb.vjp_name("net") == "net_vjp"
    assert [str(t) for t in fns["net_vjp"].function_type.inputs.data] == [
        "memref<?x2xf32>", "memref<?x1xf32>", "memref<?x1xf32>", "memref<6xf32>",
        "memref<?x2xf32>", "memref<6xf32>", "memref<?xi8>"]
    assert bwd.arena_per_batch == 0 and bwd.arena_constant % (4 * 64) == 0


def test_params_buffer_is_read_at_each_call():
    g = random_graph(np.random.default_rng(8), 30, 4, 4, values=False, biases=True)
    module = lower(g)
    names, _ = param_values(module)
    new = np.random.default_rng(9).normal(size=len(names)).astype(np.float32)
    x, dy = data(g, 33)
    run = native(module)
    y, dp, dx = run(x, dy, new)
    ey, edp, edx = equations(g, x, dy, names, new)
    assert error(y, ey) < TOL and error(dp, edp) < TOL and error(dx, edx) < TOL


def test_empty_batch():
    g = example("ncp19.txt")
    module = lower(g)
    x, dy = data(g, 0)
    for y, dp, dx in (interpret(module, x, dy), native(module)(x, dy)):
        assert y.shape == (0, 4) and dx.shape == (0, 5)
        np.testing.assert_array_equal(dp, 0)


def test_layers_mode_adds_no_neuron_backward():
    """A net lowered as layers is differentiated at the nn level (autodiff)."""
    g = shared_net()
    module = lower(g, "mode=layers")
    assert "net_vjp" not in kernels(module)


def test_shared_symbol_with_two_values_is_a_located_error():
    text = """neuron.net @net -> (n02, n03) {
  neuron.input n00
  neuron.input n01
  neuron.neuron n02 identity(n00 * @s = 1.0, n01 * @t = 2.0)
  neuron.neuron n03 identity(n00 * @s = 3.0)
}"""
    module = ncc.parse_module(text, "shared.mlir")
    net = next(iter(module.ops))
    with pytest.raises(Exception, match="@s is shared but has two values"):
        nb.neuron_vjp_kernel(net)


def test_native_backward_is_vectorized():
    """The row loops and the gradient sums run as vectors, at the host's width (16
    floats on AVX-512, 8 on AVX2, 4 on SSE), and at 8 for a named AVX2 CPU."""
    module = lower(example("ncp19.txt"))
    module.body.block.detach_op(kernels(module)["net"])
    ncc.run_passes(module, "lower-to-llvm")
    ir = engine.optimized_llvm_ir(module.clone())
    assert re.search(r"<(4|8|16) x float>", ir)
    assert "llvm.vector.reduce.fadd" in ir
    haswell = engine.optimized_llvm_ir(module, cpu="haswell")
    assert "<8 x float>" in haswell
