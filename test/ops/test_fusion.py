"""The fusion family (nn.fused_elementwise) at every level: the op and its
reference, the fuse pass's FuseElementwise pattern, native code of fused
chains against the unfused module and numpy, and the chain given back
(`unfused`) for autodiff and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncc
from ncc import reference
from ncc.dialects import nn
from ncc.ir import parse_module
from ncc.passes.autodiff import differentiate
from ncc.pipeline import run_passes
from vjp_check import torch

RNG = np.random.default_rng(7)

GELU_TANH = """
func.func @main(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %half = nn.constant dense<0.5> : tensor<f32>
  %one = nn.constant dense<1.0> : tensor<f32>
  %s = nn.constant dense<0.7978846> : tensor<f32>
  %c = nn.constant dense<0.044715> : tensor<f32>
  %0 = nn.mul %x, %x : tensor<?x8xf32>
  %1 = nn.mul %x, %0 : tensor<?x8xf32>
  %2 = nn.mul %c, %1 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %3 = nn.add %x, %2 : tensor<?x8xf32>
  %4 = nn.mul %s, %3 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %5 = nn.tanh %4 : tensor<?x8xf32>
  %6 = nn.add %one, %5 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %7 = nn.mul %x, %6 : tensor<?x8xf32>
  %8 = nn.mul %half, %7 : tensor<f32>, tensor<?x8xf32> -> tensor<?x8xf32>
  func.return %8 : tensor<?x8xf32>
}
"""

# The same formula with another cube coefficient: not Gelu, a chain of nine ops to fuse.
CHAIN = GELU_TANH.replace("0.044715", "0.05")

# Integers and booleans: a comparison, a select between the operands, a cast, a masked fill.
MIXED = """
func.func @main(%a: tensor<?x5xi64>, %b: tensor<5xi64>, %m: tensor<?x5xi1>) -> tensor<?x5xf32> {
  %low = nn.constant dense<-7.5> : tensor<f32>
  %0 = nn.less %a, %b : tensor<?x5xi64>, tensor<5xi64> -> tensor<?x5xi1>
  %1 = nn.select %0, %a, %b : tensor<?x5xi1>, tensor<?x5xi64>, tensor<5xi64> -> tensor<?x5xi64>
  %2 = nn.cast %1 : tensor<?x5xi64> -> tensor<?x5xf32>
  %3 = nn.not %m : tensor<?x5xi1>
  %4 = nn.select %3, %2, %low : tensor<?x5xi1>, tensor<?x5xf32>, tensor<f32> -> tensor<?x5xf32>
  func.return %4 : tensor<?x5xf32>
}
"""


def fused(text: str):
    m = parse_module(text)
    run_passes(m, "fuse")
    return m


def ops_named(m, name: str) -> list:
    return [op for op in m.walk() if op.name == name]


def top_level(m) -> list[str]:
    fn = next(op for op in m.walk() if op.name == "func.func")
    return [op.name for op in fn.body.block.ops]


# ---------------------------------------------------------------------------
# The fuse pass and the reference semantics


def test_chain_is_one_op_and_computes_the_same():
    m = fused(CHAIN)
    assert top_level(m) == ["nn.fused_elementwise", "func.return"]
    (op,) = ops_named(m, "nn.fused_elementwise")
    assert len(op.inputs) == 1 and len(ops_named(op, "nn.constant")) == 4  # constants moved inside
    x = (RNG.standard_normal((3, 8)) * 3).astype(np.float32)
    want = 0.5 * x * (1 + np.tanh(0.7978846 * (x + 0.05 * x ** 3)))
    got = reference.run(m, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, reference.run(parse_module(CHAIN), [x])[0])


def test_gelu_formula_is_recognized():
    m = fused(GELU_TANH)
    assert top_level(m) == ["nn.gelu_tanh", "func.return"]
    x = (RNG.standard_normal((3, 8)) * 3).astype(np.float32)
    np.testing.assert_allclose(reference.run(m, [x])[0], reference.run(parse_module(GELU_TANH), [x])[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_exported_by_pytorch_runs_as_one_op(approximate):
    """F.gelu exported at opset 17 (before ONNX's Gelu op): recognized, fused into
    the linear layer before it, and equal to PyTorch natively."""
    import io
    import warnings

    import onnx

    layer = torch.nn.Linear(6, 10)
    module = torch.nn.Sequential(layer, torch.nn.GELU(approximate=approximate)).eval()
    x = torch.randn(4, 6)
    f = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    m = ncc.import_onnx(onnx.load_from_string(f.getvalue()))
    assert not ops_named(m, "nn.gelu") and ops_named(m, "nn.erf" if approximate == "none" else "nn.tanh")
    name = "gelu" if approximate == "none" else "gelu_tanh"
    (op,) = ops_named(fused(ncc.print_module(m)), "nn.fused_matmul")
    assert op.params.activation == name
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x.numpy()), want, rtol=1e-5, atol=1e-6)


def test_mixed_element_types_fuse_into_one_op():
    m = fused(MIXED)
    assert top_level(m) == ["nn.fused_elementwise", "func.return"]
    (op,) = ops_named(m, "nn.fused_elementwise")
    assert [len(op.inputs), len(ops_named(op, "nn.select"))] == [3, 2]


def test_unfused_gives_the_chain_back():
    m = fused(CHAIN + MIXED.replace("@main", "@mixed"))
    for op in ops_named(m, "nn.fused_elementwise"):
        new, value = nn.unfused(op)
        block = op.parent_block()
        for inner in new:
            block.insert_op_before(inner, op)
        op.result.replace_all_uses_with(value)
        block.erase_op(op)
    m.verify()
    assert not ops_named(m, "nn.fused_elementwise")
    x = RNG.standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_array_equal(reference.run(m, [x], function="main")[0],
                                  reference.run(parse_module(CHAIN), [x])[0])


def test_broadcast_result_of_a_chain_that_does_not_reach_every_operand():
    text = """
    func.func @main(%x: tensor<3x4xf32>, %b: tensor<4xf32>) -> tensor<3x4xf32> {
      %0 = nn.fused_elementwise %x, %b : tensor<3x4xf32>, tensor<4xf32> -> tensor<3x4xf32> {
      ^bb0(%e: tensor<f32>, %c: tensor<f32>):
        %1 = nn.exp %c : tensor<f32>
        nn.yield %1 : tensor<f32>
      }
      func.return %0 : tensor<3x4xf32>
    }"""
    m = parse_module(text)
    x, b = RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(reference.run(m, [x, b])[0], np.broadcast_to(np.exp(b), (3, 4)), rtol=1e-6)
    (op,) = ops_named(m, "nn.fused_elementwise")
    new, value = nn.unfused(op)
    assert [o.name for o in new] == ["nn.exp", "nn.broadcast"] and value.type == op.result.type
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x, b), np.broadcast_to(np.exp(b), (3, 4)), rtol=1e-6)


# ---------------------------------------------------------------------------
# Native code: fused against unfused, against numpy


@pytest.mark.parametrize("text", [CHAIN, MIXED], ids=["chain", "mixed"])
def test_native_fused_equals_unfused(text):
    m = parse_module(text)
    n = 6
    if "xi64" in text:
        args = [RNG.integers(-5, 5, (n, 5)), RNG.integers(-5, 5, 5), RNG.random((n, 5)) < 0.5]
    else:
        args = [(RNG.standard_normal((n, 8)) * 3).astype(np.float32)]
    want = reference.run(m, args)[0]
    one, many = ncc.compile(m.clone(), cache=False), ncc.compile(m.clone(), cache=False, fuse=False)
    np.testing.assert_allclose(one(*args), want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(one(*args), many(*args), rtol=2e-6, atol=1e-6)
    arena = [k.abi.arena_per_batch * n + k.abi.arena_constant for k in (one, many)]
    assert arena[0] < arena[1]  # no buffer between the ops


UNARY = ["neg", "exp", "tanh", "sigmoid", "abs", "relu", "softplus", "sin"]
BINARY = ["add", "sub", "mul", "max", "min"]


@st.composite
def chains(draw):
    """A random DAG of float elementwise ops over three inputs [?, 4], [4] and
    [?, 1] (broadcasting), each op reading earlier values."""
    values = ["%x", "%b", "%c"]
    shapes = {"%x": "?x4", "%b": "4", "%c": "?x1"}
    lines = []
    for i in range(draw(st.integers(2, 7))):
        name = f"%v{i}"
        if draw(st.booleans()):
            a = draw(st.sampled_from(values))
            op = draw(st.sampled_from(UNARY))
            shapes[name] = shapes[a]
            lines.append(f"{name} = nn.{op} {a} : tensor<{shapes[a]}xf32>")
        else:
            a, b = draw(st.sampled_from(values)), draw(st.sampled_from(values))
            op = draw(st.sampled_from(BINARY))
            sa, sb = shapes[a], shapes[b]
            out = "4" if sa == sb == "4" else "?x1" if sa == sb == "?x1" else "?x4"
            shapes[name] = out
            lines.append(f"{name} = nn.{op} {a}, {b} : tensor<{sa}xf32>, tensor<{sb}xf32> -> tensor<{out}xf32>")
        values.append(name)
    result = values[-1]
    body = "\n  ".join(lines)
    return (f"func.func @main(%x: tensor<?x4xf32>, %b: tensor<4xf32>, %c: tensor<?x1xf32>) -> "
            f"tensor<{shapes[result]}xf32> {{\n  {body}\n  func.return {result} : tensor<{shapes[result]}xf32>\n}}")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_random_chains_fused_natively_equal_the_reference(text):
    m = parse_module(text)
    args = [RNG.standard_normal((5, 4)).astype(np.float32), RNG.standard_normal(4).astype(np.float32),
            RNG.standard_normal((5, 1)).astype(np.float32)]
    want = reference.run(m, args)[0]
    f = fused(text)
    np.testing.assert_allclose(reference.run(f, args)[0], want, rtol=1e-6, atol=1e-6)
    got = ncc.compile(m, cache=False)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_autodiff_and_export_of_a_fused_module():
    """A fused module differentiates op by op (`unfused`, then fused again when
    compiled) and exports as one ONNX node per op."""
    import onnxruntime as ort

    from vjp_check import finite_differences

    x = RNG.standard_normal((4, 8))
    g = RNG.standard_normal((4, 8))
    f64 = parse_module(CHAIN.replace("f32", "f64"))
    want = finite_differences(f64, [x], g, [0])[0]
    m = fused(CHAIN.replace("f32", "f64"))
    differentiate(m, "main", mode="combined")
    assert ops_named(m, "nn.tanh") and len(ops_named(m, "nn.fused_elementwise")) == 1  # @main's own
    got = reference.run(m, [x, g], function="main_vjp")[1]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    native = ncc.compile(fused(CHAIN), cache=False).vjp(x.astype(np.float32), g.astype(np.float32))["x"]
    np.testing.assert_allclose(native, want, rtol=1e-4, atol=1e-5)
    proto = ncc.export_onnx(fused(CHAIN))
    assert "Tanh" in {n.op_type for n in proto.graph.node}
    x32 = x.astype(np.float32)
    out = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x32})[0]
    np.testing.assert_allclose(out, reference.run(parse_module(CHAIN), [x32])[0], rtol=1e-5, atol=1e-6)


def test_fuse_stats_reports_without_changing_the_module():
    m = parse_module(CHAIN)
    text = ncc.print_module(m)
    stats = ncc.fuse_stats(m)
    assert ncc.print_module(m) == text
    assert stats.patterns["FuseElementwise"] == 8 and stats.before.ops == 9 and stats.after.ops == 1
    assert (stats.before.nests, stats.after.nests) == (9, 1)
    assert stats.after.arena_bytes < stats.before.arena_bytes
    assert "loop nests:           9 -> 1 (-8)" in str(stats)
    with pytest.raises(ncc.NccError, match="fuse_stats takes a module"):
        ncc.fuse_stats("model.onnx")


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_layer_norm_exported_before_opset_17_runs_as_one_op():
    """torch.nn.LayerNorm at opset 16 (nine ONNX ops each): one nn.layer_norm
    after fuse, with and without its scale and bias, equal to PyTorch natively."""
    import io
    import warnings

    import onnx

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 4),
                                 torch.nn.LayerNorm(4, elementwise_affine=False)).eval()
    x = torch.randn(3, 8)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, dynamo=False, opset_version=16, input_names=["x"], output_names=["y"])
    m = ncc.import_onnx(onnx.load_from_string(f.getvalue()))
    stats = ncc.fuse_stats(m)
    # after: 2 fused_matmul, 2 layer_norm and the 2 weight transposes of Gemm(transB) (fold-weights takes those)
    assert stats.patterns["RecognizeLayerNorm"] == 2 and stats.after.ops == 6
    assert len(ops_named(fused(ncc.print_module(m)), "nn.layer_norm")) == 2
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x.numpy()), want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_llama_rms_norm_exported_by_pytorch_runs_as_one_op():
    """LLaMA's RMSNorm (float32 casts, pow, mean, rsqrt, weight first), as the
    TorchScript exporter writes it at opset 18: one nn.rms_norm each after fuse,
    equal to PyTorch natively."""
    import io
    import warnings

    import onnx

    class LlamaRMSNorm(torch.nn.Module):
        def __init__(self, d, eps):
            super().__init__()
            self.weight, self.eps = torch.nn.Parameter(torch.randn(d)), eps

        def forward(self, x):
            h = x.to(torch.float32)
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.weight * h.to(x.dtype)

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), LlamaRMSNorm(8, 1e-6), torch.nn.Linear(8, 4),
                                 LlamaRMSNorm(4, 1e-5)).eval()
    x = torch.randn(3, 8)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, dynamo=False, opset_version=18, input_names=["x"], output_names=["y"])
    m = ncc.import_onnx(onnx.load_from_string(f.getvalue()))
    stats = ncc.fuse_stats(m)
    assert stats.patterns["RecognizeRMSNorm"] == 2
    assert len(ops_named(fused(ncc.print_module(m)), "nn.rms_norm")) == 2
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x.numpy()), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lit", ["gelu", "layer-norm", "rms-norm", "softmax", "attention", "elementwise", "identity-cse", "transpose", "residual",
                                 "parallel-matmul"])
def test_every_lit_case_computes_after_fuse_what_it_computed_before(lit):
    """The recognition and fusion lit files, function by function: the module
    before fuse in the reference against native code of the fused module."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "lit" / "passes" / "fuse" / f"{lit}.mlir").read_text()
    module = parse_module(text)
    for fn in [op for op in module.ops if op.name == "func.func"]:
        name = fn.sym_name.data
        args = []
        for t in fn.function_type.inputs.data:
            shape = [3 if d < 0 else d for d in t.get_shape()]
            dtype = nn.numpy_dtype(t.element_type)
            args.append(RNG.random(shape) < 0.5 if dtype == np.bool_ else
                        (RNG.standard_normal(shape) * 2).astype(dtype))
        want = reference.run(module, args, function=name)
        model = ncc.compile(module.clone(), cache=False, function=name)
        got = model.run(dict(zip(model.input_names, args)))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{lit}: @{name}")


def test_parallel_products_train_and_follow_their_parameters():
    """q, k and v computed as one product (CombineParallelMatmul): the
    gradients of every projection's weight and bias and of the input against
    the reference interpreter's vjp of the separate products; setting one
    projection's weight recomputes the concatenated copy the kernel reads."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "lit" / "passes" / "fuse" / "parallel-matmul.mlir").read_text()
    module = parse_module(text)
    model = ncc.compile(module.clone(), cache=False, function="qkv")
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    cot = {n: RNG.standard_normal((2, 5, 8)).astype(np.float32) for n in model.output_names}
    got = model.vjp({"x": x}, cot)
    separate = module.clone()
    differentiate(separate, "qkv", mode="combined")
    want = reference.run(separate, [x, *cot.values()], function="qkv_vjp")[len(cot):]
    names = [n for n in got if n in ("wq", "wk", "wv", "bq", "bk", "bv", "x")]
    assert len(names) == 7 and len(want) == len(got)  # the reference's gradients in the same order
    for name, w in zip(got, want):
        if name in names:
            np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-5, err_msg=name)
    wk = RNG.standard_normal((4, 8)).astype(np.float32)
    model.params["wk"] = wk
    q, k, v = model(x)
    np.testing.assert_allclose(k, x @ wk - 1.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q, x @ np.full((4, 8), 0.5, np.float32) + 0.125, rtol=1e-5, atol=1e-5)


def test_pruned_parallel_products_stay_on_the_sparse_kernel():
    """q, k and v pruned (90 %), then fused: one product whose concatenated
    weight pack-weights still sees as masked (nn.packed_sparse_matmul), with
    the pruned module's results; a pruned product and a dense one of the same
    input are not combined (the dense one would make the pair dense)."""
    from pathlib import Path

    from ncc.passes.prune import prune

    text = (Path(__file__).parents[1] / "lit" / "passes" / "fuse" / "parallel-matmul.mlir").read_text()
    pruned = parse_module(text)
    run_passes(pruned, "prune{sparsity=0.9}")
    module = pruned.clone()
    run_passes(module, "fuse,pack-weights")
    qkv = next(op for op in module.ops if op.name == "func.func" and op.sym_name.data == "qkv")
    assert [op.name for op in qkv.walk() if op.name.startswith("nn.packed")] == ["nn.packed_sparse_matmul"]
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    model = ncc.compile(pruned.clone(), cache=False, function="qkv")
    for got, want in zip(model(x), reference.run(pruned, [x], function="qkv")):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    mixed = parse_module(text)
    prune(mixed, sparsity=0.9, frozen=("wk",))
    run_passes(mixed, "fuse,pack-weights")
    qkv = next(op for op in mixed.ops if op.name == "func.func" and op.sym_name.data == "qkv")
    assert [len(op.operands) for op in qkv.walk() if op.name == "nn.concat"] == [2, 2]  # q and v's weights, biases
    assert [op.name for op in qkv.walk() if op.name.startswith("nn.packed")] == ["nn.packed_sparse_matmul"]
    assert any(op.name == "nn.fused_matmul" for op in qkv.walk())  # k's, dense
