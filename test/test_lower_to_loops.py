"""lower-to-loops: every nn op family, run by the loop-level interpreter, equals
ncc.reference; the kernel ABI; the static memory plan; clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType, ModuleOp, TensorType, f16, f32, f64, i1, i8
from xdsl.ir import Block, Region

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import memory_plan
from ncc.passes.lowering.loop_interpreter import KernelError, run_kernel
from ncc.passes.lowering.abi import KernelABI

from test_passes import random_graph  # noqa: E402  (pytest puts test/ on sys.path)


def T(*shape, elt=f32) -> TensorType:
    return nn.tensor_type(shape, elt)


def build(arg_types, make, weights=(), name="main") -> ModuleOp:
    """A module with `weights` and one function: make(emit, *args) returns the
    value(s) to return; emit(op) adds an op and returns its result."""
    block = Block(arg_types=arg_types)
    ops = []

    def emit(op):
        ops.append(op)
        return op.results[0]

    outs = make(emit, *block.args)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    ops.append(func.ReturnOp(*outs))
    block.add_ops(ops)
    fn = func.FuncOp(name, (arg_types, [o.type for o in outs]), Region(block))
    return ModuleOp([*weights, fn])


def lower(module: ModuleOp, pipeline: str = "lower-to-loops") -> ModuleOp:
    lowered = module.clone()
    ncc.run_passes(lowered, pipeline)
    return lowered


def kernel_of(module: ModuleOp) -> func.FuncOp:
    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fn


def native(module: ModuleOp, inputs, pipeline: str, params=None) -> list[np.ndarray]:
    """The same module compiled to native code (lower-to-llvm, the JIT) and run."""
    model = ncc.compile(module.clone(), cache=False, fuse="fuse" in pipeline)
    for name, value in (params or {}).items():
        model.params[name] = value
    out = model(*inputs) if not isinstance(inputs, dict) else model.run(inputs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check(module: ModuleOp, inputs, *, rtol=None, atol=None, pipeline="lower-to-loops",
          params=None) -> ModuleOp:
    """Lower, interpret, compile to native code, and compare every output of both
    runs with the reference (the interpreter pins a failure on the lowering,
    native code on everything after it)."""
    ref = ncc.reference.run(module, inputs, params=params)
    lowered = lower(module, pipeline)
    runs = [("interpreted", run_kernel(lowered, inputs, params=params)),
            ("native", native(module, inputs, pipeline, params))]
    for how, got in runs:
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            assert g.shape == r.shape and g.dtype == r.dtype
            tol = 1e-12 if r.dtype == np.float64 else 2e-5
            # native code fuses multiply-adds and uses polynomial exp/tanh: a few ulps more
            tol = max(tol, 1e-6) if how == "native" and r.dtype == np.float64 else tol
            np.testing.assert_allclose(g, r, rtol=rtol or tol, atol=atol if atol is not None else tol,
                                       err_msg=how)
    return lowered


rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32, scale=1.0):
    return np.asarray(rng.normal(size=shape) * scale, dtype=dtype)


# ---------------------------------------------------------------------------
# Elementwise


DOMAIN = {"acos": lambda x: np.tanh(x), "asin": lambda x: np.tanh(x), "atanh": lambda x: np.tanh(x),
          "acosh": lambda x: np.abs(x) + 1}


def test_i8_reductions_and_data_movement():
    def make(e, x):
        t = e(nn.TransposeOp(x, [1, 0]))
        return e(nn.ReduceMaxOp(t, [1])), e(nn.ReduceSumOp(x, [0], keepdims=True)), e(nn.PadOp(t, [1, 0, 0, 1], value=-3.0))

    check(build([T(4, 3, elt=i8)], make), [rng.integers(-128, 128, (4, 3)).astype(np.int8)])


# ---------------------------------------------------------------------------
# Booleans: comparisons, logical ops, select (i1 tensors are one byte per element)


def test_bools_through_the_arena_weights_and_data_movement():
    """i1 intermediates in the arena (one byte each), a bool weight and constant,
    and the data-movement ops on bools, ending in a select and a bool output."""
    w = nn.WeightOp("mask", np.array([True, False, True, True, False, False]))

    def make(e, x, y):
        lt = e(nn.LessOp(x, y))                                   # [?, 6] i1 in the arena
        m = e(nn.AndOp(lt, e(nn.WeightRefOp(w))))
        r = e(nn.ReshapeOp(m, [DYN, 2, 3]))
        t = e(nn.TransposeOp(r, [0, 2, 1]))
        c = e(nn.ConcatOp([t, e(nn.NotOp(t))], 2))                # [?, 3, 4]
        s = e(nn.SliceOp(c, [0, 1], [3, 4], [1, 2]))              # [?, 3, 3]
        p = e(nn.PadOp(s, [0, 0, 1, 0, 0, 0], value=1.0))         # [?, 3, 4], padded with true
        g = e(nn.GatherOp(p, e(nn.ConstantOp(np.array([3, 0]))), 2))  # [?, 3, 2]
        flat = e(nn.ReshapeOp(g, [DYN, 6]))
        return flat, e(nn.SelectOp(flat, x, e(nn.NegOp(y))))

    m = build([T(DYN, 6), T(6)], make, [w])
    lowered = check(m, [randn(5, 6), randn(6)])
    assert MemRefType(i1, [6]) in kernel_of(lowered).function_type.inputs.data


# ---------------------------------------------------------------------------
# Contractions


# ---------------------------------------------------------------------------
# Pools, reductions, softmax, norms


# ---------------------------------------------------------------------------
# Data movement


# ---------------------------------------------------------------------------
# Bufferization and the kernel ABI


def test_abi_roles_and_signature():
    w = nn.WeightOp("fc_w", randn(4, 3))

    def make(e, x):
        y = e(nn.TanhOp(e(nn.MatmulOp(x, e(nn.WeightRefOp(w))))))
        return y, e(nn.MatmulOp(y, e(nn.ConstantOp(randn(3, 2)))))

    lowered = check(build([T(DYN, 4)], make, [w]), [randn(3, 4)])
    fn = kernel_of(lowered)
    abi = KernelABI.of(fn)
    assert [str(r) for r in abi.roles] == ["input:arg0", "output:0", "output:1", "weight:fc_w",
                                           "weight:main_const", "arena"]
    types = fn.function_type.inputs.data
    assert types[0] == MemRefType(f32, [DYN, 4]) and types[-1] == MemRefType(i8, [DYN])
    assert types[3] == MemRefType(f32, [4, 3]) and types[4] == MemRefType(f32, [3, 2])
    assert fn.function_type.outputs.data == ()
    assert abi.arena_per_batch == 64 and abi.arena_constant == 0  # the matmul before tanh


def test_rank0_constants_weights_and_intermediates():
    """Scalars everywhere: a rank-0 nn.constant (what the ONNX importer makes of
    an attribute such as Elu's alpha), a rank-0 weight, a rank-0 intermediate in
    the arena and a rank-0 result."""
    w = nn.WeightOp("s", np.array(0.5, np.float32))

    def make(e, x):
        k = e(nn.ConstantOp(np.array(2.0, np.float32)))
        y = e(nn.MulOp(e(nn.MaxOp(x, k)), e(nn.WeightRefOp(w))))
        total = e(nn.REDUCE_OPS["reduce_sum"](y, None, keepdims=False))  # rank 0, in the arena
        return e(nn.SubOp(y, total)), e(nn.ExpOp(total))

    lowered = check(build([T(DYN, 3)], make, [w]), [randn(4, 3, scale=3.0)])
    types = kernel_of(lowered).function_type.inputs.data
    assert MemRefType(f32, []) in types  # the constant stays a rank-0 buffer


def test_named_inputs_and_outputs():
    m = ncc.parse_module("""
    func.func @f(%x: tensor<2xf32> {ncc.name = "image"}) -> (tensor<2xf32> {ncc.name = "probs"}) {
      %0 = nn.exp %x : tensor<2xf32>
      func.return %0 : tensor<2xf32>
    }""")
    lowered = check(m, {"image": randn(2)})
    assert [str(r) for r in KernelABI.of(kernel_of(lowered)).roles] == ["input:image", "output:probs"]


def test_returned_inputs_weights_and_repeats_are_copied():
    w = nn.WeightOp("w", randn(3))

    def make(e, x):
        y = e(nn.NegOp(x))
        return x, y, y, e(nn.WeightRefOp(w))

    check(build([T(DYN, 3)], make, [w]), [randn(2, 3)])


def test_weights_are_buffers_not_constants():
    """params change the result without recompiling: the data is an argument."""
    w = nn.WeightOp("w", randn(3, 2))
    m = build([T(1, 3)], lambda e, x: e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))), [w])
    lowered = lower(m)
    x, w2 = randn(1, 3), randn(3, 2)
    (got,) = run_kernel(lowered, [x], params={"w": w2})
    np.testing.assert_allclose(got, x @ w2, rtol=1e-6)
    assert "dense<" not in ncc.print_module(kernel_of(lowered))


def test_batch_varies():
    m = build([T(DYN, 3)], lambda e, x: e(nn.SigmoidOp(e(nn.ReluOp(x)))))
    lowered = lower(m)
    for batch in (1, 2, 7):
        x = randn(batch, 3)
        (got,) = run_kernel(lowered, [x])
        np.testing.assert_allclose(got, ncc.reference.run(m, [x])[0], rtol=1e-6)


def test_float64_mlp_and_fused_pipeline():
    r = np.random.default_rng(3)
    ws = [nn.WeightOp(f"w{i}", r.normal(size=s)) for i, s in enumerate([(6, 5), (5, 4)])]
    ws = [nn.WeightOp(w.sym, w.data.astype(np.float64)) for w in ws]
    bs = [nn.WeightOp(f"b{i}", r.normal(size=s[1]).astype(np.float64)) for i, s in enumerate([(6, 5), (5, 4)])]

    def make(e, x):
        for w, b in zip(ws, bs):
            x = e(nn.ReluOp(e(nn.AddOp(e(nn.MatmulOp(x, e(nn.WeightRefOp(w)))), e(nn.WeightRefOp(b))))))
        return e(nn.SoftmaxOp(x))

    m = build([T(DYN, 6, elt=f64)], make, [*ws, *bs])
    lowered = check(m, [r.normal(size=(3, 6))], pipeline="fuse,lower-to-loops")
    assert "nn." not in ncc.print_module(kernel_of(lowered))


# ---------------------------------------------------------------------------
# Layerized neuron nets


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pipeline", ["layerize", "layerize,fuse", "layerize{dense-density=0.3},fuse"])
def test_layerized_random_dags(seed, pipeline):
    r = np.random.default_rng(seed)
    g = random_graph(r, n=40 + 10 * seed, n_inputs=4, fan_in=5, values=seed % 2 == 0, biases=seed < 2,
                     share=seed == 3)
    net = ModuleOp([g.to_net("net")])
    x = r.normal(size=(3, len(g.input_indices))).astype(np.float32)
    ref = ncc.reference.run(net, [x])[0]
    lowered = lower(net, pipeline + ",lower-to-loops{sparse-unroll-limit=16}")
    (got,) = run_kernel(lowered, [x])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["seed_list.txt", "xor_values.txt"])
def test_examples(name):
    module = ncc.import_adjacency(f"{__file__.rsplit('/', 2)[0]}/examples/{name}")
    n_in = len(next(op for op in module.ops).graph().input_indices)
    x = np.random.default_rng(1).normal(size=(5, n_in)).astype(np.float32)
    ref = ncc.reference.run(module, [x])[0]
    (got,) = run_kernel(lower(module, "layerize,fuse,lower-to-loops"), [x])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------------------
# The memory plan


def test_plan_reuses_the_arena_on_a_chain():
    """Ten elementwise ops in a chain need two buffers, not nine."""
    def make(e, x):
        for k in range(10):
            x = e((nn.TanhOp, nn.ReluOp)[k % 2](x))
        return x

    lowered = check(build([T(DYN, 16)], make), [randn(3, 16)])
    abi = KernelABI.of(kernel_of(lowered))
    assert abi.arena_per_batch == 2 * 64  # 9 intermediates of 64 bytes per row share 2 slots
    assert abi.arena_constant == 0


def test_plan_keeps_live_buffers_apart():
    """A value read again much later keeps its bytes: a diamond with a long branch."""
    def make(e, x):
        a = e(nn.ExpOp(x))
        b = a
        for _ in range(4):
            b = e(nn.TanhOp(b))
        return e(nn.AddOp(a, b))

    check(build([T(DYN, 5)], make), [randn(4, 5)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300), st.integers(0, 8), st.integers(0, 8)),
                min_size=1, max_size=25))
def test_plan_property(specs):
    """No two buffers live at the same time share a byte, for any batch; offsets
    are 64-byte aligned; the arena is no larger than the sum of the sizes."""
    bufs = [memory_plan.Buffer(k, size if batched else 0, 0 if batched else size, s, s + n)
            for k, (batched, size, s, n) in enumerate(specs)]
    plan = memory_plan.plan(bufs)
    for batch in (1, 3, 64):
        total = plan.per_batch * batch + plan.constant
        spans = {b.key: (plan.offset(b.key, batch), plan.offset(b.key, batch) + b.per_batch * batch + b.constant)
                 for b in bufs}
        for b in bufs:
            lo, hi = spans[b.key]
            assert lo % 64 == 0 and hi <= total
        for b1, b2 in itertools.combinations(bufs, 2):
            (lo1, hi1), (lo2, hi2) = spans[b1.key], spans[b2.key]
            if b1.overlaps_in_time(b2) and hi1 > lo1 and hi2 > lo2:
                assert hi1 <= lo2 or hi2 <= lo1, (b1, b2, plan)
    assert plan.per_batch <= sum(memory_plan.align(b.per_batch) for b in bufs)
    assert plan.constant <= sum(memory_plan.align(b.constant) for b in bufs)


# ---------------------------------------------------------------------------
# Errors


def error_of(module: ModuleOp, pipeline="lower-to-loops") -> str:
    with pytest.raises(ncc.NccError) as e:
        ncc.run_passes(module, pipeline)
    return str(e.value)


def test_error_unsupported_element_type():
    msg = error_of(build([T(3, elt=f16)], lambda e, x: e(nn.ReluOp(x))))
    assert "f16" in msg


def test_error_is_located_in_text():
    text = """func.func @f(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %0 = nn.pad %x pads [1, 0, 0, 0] : tensor<?x2xf32> -> tensor<?x2xf32>
  func.return %0 : tensor<?x2xf32>
}"""
    msg = error_of(ncc.parse_module(text, "pad.mlir"))
    assert msg.startswith("pad.mlir:2:3: error:") and "padding the dynamic batch" in msg


def test_interpreter_bounds_checks():
    lowered = lower(build([T(3)], lambda e, x: e(nn.ExpOp(x))))
    with pytest.raises(KernelError):
        run_kernel(lowered, [randn(4)])


def test_layerized_dag_native():
    """layerize -> fuse -> lower-to-loops -> native code equals the reference
    on a random DAG with skip connections, for several batch sizes of one
    compiled model. (Small: LLVM's O3 takes seconds on the many loops of a
    layerized net; the interpreted tests above cover bigger ones.)"""
    r = np.random.default_rng(7)
    g = random_graph(r, n=24, n_inputs=4, fan_in=4, values=True, biases=True)
    net = ModuleOp([g.to_net("net")])
    model = ncc.compile(net.clone(), neuron_mode="layers", cache=False)
    for batch in (1, 7, 1000):
        x = r.normal(size=(batch, len(g.input_indices))).astype(np.float32)
        np.testing.assert_allclose(model(x), ncc.reference.run(net, [x])[0], rtol=2e-4, atol=2e-5)
