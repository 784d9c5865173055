"""ncc-stats: exact parameter counts, MACs and FLOPs against PyTorch's own
count and closed-form formulas, the laws, the memory plan, the profile, the
tool's text, JSON and plot."""

import io
import json
import math
import os
import re
import warnings

import numpy as np
import onnx
import pytest

import ncc
from ncc.dialects import nn as nn_dialect
from ncc.laws import ScalingLaw, amdahl, processor_counts
from ncc.passes.stats import count, counted_classes
from ncc.tools import ncc_stats

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def stats_tool(*argv, capsys):
    code = ncc_stats.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------
# Counting rules


def test_every_nn_op_has_a_count():
    missing = sorted(c.name for c in nn_dialect.NN.operations
                     if c not in counted_classes() and c.name not in ("nn.weight", "nn.yield"))
    assert not missing, f"ops without a rule in passes/stats.py: {missing}"


MLP = """
nn.weight @w1 : tensor<4x3xf32> = dense<0.5>
nn.weight @b1 : tensor<3xf32> = dense<0.1>
nn.weight @w2 : tensor<3x2xf32> = dense<0.25>
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %w1 = nn.weight_ref @w1 : tensor<4x3xf32>
  %b1 = nn.weight_ref @b1 : tensor<3xf32>
  %h = nn.matmul %x, %w1 : tensor<?x4xf32>, tensor<4x3xf32> -> tensor<?x3xf32>
  %hb = nn.add %h, %b1 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %a = nn.relu %hb : tensor<?x3xf32>
  %w2 = nn.weight_ref @w2 : tensor<3x2xf32>
  %w2b = nn.weight_ref @w2 : tensor<3x2xf32>
  %o = nn.matmul %a, %w2 : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %p = nn.softmax %o : tensor<?x2xf32>
  func.return %p : tensor<?x2xf32>
}
"""


@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_counts_by_hand(batch):
    c = count(ncc.parse_module(MLP), batch=batch)
    assert (c.params, c.trainable, c.weight_bytes) == (12 + 3 + 6, 21, 84)
    assert c.macs == batch * (4 * 3 + 3 * 2)
    # 2 per MAC; the bias add and relu 1 per element of 3; softmax 5 per element of 2
    assert c.flops == 2 * c.macs + batch * (3 + 3 + 5 * 2)
    assert [r.op for r in c.rows] == ["nn.matmul", "nn.add", "nn.relu", "nn.matmul", "nn.softmax"]
    assert [r.params for r in c.rows] == [12, 3, 0, 6, 0]  # @w2 read twice, counted once
    assert c.rows[0].bytes == 4 * batch * (4 + 3) + 4 * 12


def test_batch_norm_statistics_and_int_weights_are_not_trainable():
    text = """
nn.weight @s : tensor<2xf32> = dense<1.0>
nn.weight @b : tensor<2xf32> = dense<0.0>
nn.weight @m : tensor<2xf32> = dense<0.0>
nn.weight @v : tensor<2xf32> = dense<1.0>
nn.weight @idx : tensor<3xi64> = dense<0>
func.func @main(%x: tensor<?x2x4x4xf32>) -> tensor<?x2x4x4xf32> {
  %s = nn.weight_ref @s : tensor<2xf32>
  %b = nn.weight_ref @b : tensor<2xf32>
  %m = nn.weight_ref @m : tensor<2xf32>
  %v = nn.weight_ref @v : tensor<2xf32>
  %y = nn.batch_norm %x, %s, %b, %m, %v : tensor<?x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32> -> tensor<?x2x4x4xf32>
  func.return %y : tensor<?x2x4x4xf32>
}
"""
    c = count(ncc.parse_module(text), batch=3)
    assert c.trainable == 4 and c.non_trainable == {"batch-norm statistics": 4, "i64 (not a float)": 3}
    assert c.flops == 2 * 3 * 2 * 16


def test_packed_convolutions_count_what_they_compute():
    """A conv that pack-weights turns into nn.packed_conv and an int8 one channels-last turns into
    nn.packed_qconv_nhwc: the same MACs as before, each output element times C x kernel."""
    m = ncc.parse_module("""nn.weight @w : tensor<256x128x3x3xf32>
nn.weight @q : tensor<16x8x3x3xi8>
func.func @main(%x: tensor<?x128x7x7xf32>, %a: tensor<?x8x6x6xi8>)
    -> (tensor<?x256x7x7xf32>, tensor<?x16x6x6xi32>) {
  %w = nn.weight_ref @w : tensor<256x128x3x3xf32>
  %y = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x128x7x7xf32>, tensor<256x128x3x3xf32> -> tensor<?x256x7x7xf32>
  %q = nn.weight_ref @q : tensor<16x8x3x3xi8>
  %z = nn.constant dense<0> : tensor<i8>
  %c = nn.qconv %a, %q, %z, %z pads [1, 1, 1, 1] : tensor<?x8x6x6xi8>, tensor<16x8x3x3xi8>, tensor<i8>, tensor<i8>
    -> tensor<?x16x6x6xi32>
  func.return %y, %c : tensor<?x256x7x7xf32>, tensor<?x16x6x6xi32>
}""")
    want = 2 * (256 * 49 * 128 * 9 + 16 * 36 * 8 * 9)
    assert count(m, batch=2).macs == want
    ncc.run_passes(m, "pack-weights,channels-last")
    assert {op.name for op in m.walk()} >= {"nn.packed_conv", "nn.packed_qconv_nhwc"}
    assert count(m, batch=2).macs == want


def test_neuron_net_counts_synapses():
    m = ncc.import_adjacency("examples/seed_list.txt")
    c = count(m, batch=10)
    g = ncc.dialects.neuron.NeuronGraph.from_net(next(op for op in m.ops if op.name == "neuron.net"))
    synapses = sum(len(i) for i in g.inputs)
    neurons = sum(a is not None for a in g.activation)
    assert c.synapses == synapses == c.macs // 10
    symbols = {w for ws in g.weights for w in ws} | {b for b in g.bias if b}
    assert c.params == len(symbols)
    assert c.flops == 10 * (2 * synapses + sum(b is not None for b in g.bias)
                            + sum(a not in (None, "identity") for a in g.activation))
    assert neurons > 0


def test_bad_batch_and_unknown_function_are_errors():
    m = ncc.parse_module(MLP)
    with pytest.raises(ncc.NccError, match="batch must be at least 1"):
        count(m, batch=0)
    with pytest.raises(ncc.NccError, match="nope"):
        count(m, function="nope")


# ---------------------------------------------------------------------------
# The laws


def test_amdahl_is_the_seeds_example():
    assert round(amdahl(0.9755, 8), 2) == 6.83
    assert amdahl(0.0, 64) == 1.0 and amdahl(1.0, 64) == 64.0
    assert processor_counts(64) == [1, 2, 4, 8, 16, 32, 64] and processor_counts(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ncc.NccError, match=r"in \[0, 1\]"):
        amdahl(1.5, 2)


def test_scaling_law_optimum_minimizes_the_loss_on_the_budget():
    law = ScalingLaw()
    c = 5.76e23  # Gopher's budget
    n, d = law.optimal(c)
    assert math.isclose(law.compute(n, d), c, rel_tol=1e-9)
    grid = np.geomspace(n / 10, n * 10, 2001)  # independent: the loss along C = 6 N D, numerically
    best = grid[np.argmin([law.loss(k, c / (6 * k)) for k in grid])]
    assert abs(math.log(best / n)) < 0.01
    assert math.isclose(law.loss(70e9, 1.4e12), 1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28)
    with pytest.raises(ncc.NccError, match="positive"):
        ScalingLaw(alpha=0)


# ---------------------------------------------------------------------------
# Memory and profile


def test_planned_memory_is_the_compiled_models():
    from ncc.runtime.profile import planned_memory

    m = ncc.parse_module(MLP)
    plan, why = planned_memory(m)
    compiled = ncc.compile(MLP, threads=1).memory()
    assert why is None
    for k in ("weights", "trainable", "gradients", "forward_arena", "vjp_arena", "saved"):
        assert getattr(plan, k) == getattr(compiled, k), k


def test_profile_times_each_op_of_the_kernel():
    from ncc.runtime.profile import profile

    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    p = profile(ncc.parse_module(MLP), [x], min_seconds=0.001)
    # fuse: matmul + bias + relu is one fused_matmul; the weight-only ops are not in the kernel
    assert [o.op for o in p.ops] == ["nn.fused_matmul", "nn.matmul", "nn.softmax"]
    assert all(o.seconds > 0 for o in p.ops) and p.batch == 5 and 0.0 <= p.parallel_fraction <= 1.0
    assert "parallel fraction f =" in str(p)


# ---------------------------------------------------------------------------
# The tool


def test_tool_text_json_and_errors(tmp_path, capsys):
    path = tmp_path / "mlp.mlir"
    path.write_text(MLP)
    code, out, _ = stats_tool(path, "--batch", 2, "--parallel-fraction", 0.9755, "--processors", 8, capsys=capsys)
    assert code == 0
    assert re.search(r"^parameters +21  trainable 21$", out, re.M)
    assert re.search(r"^ +8 +6\.83$", out, re.M)
    code, out, _ = stats_tool(path, "--json", "--batch", 2, capsys=capsys)
    report = json.loads(out)
    assert report["parameters"] == {"total": 21, "trainable": 21, "non_trainable": {}}
    assert report["macs"] == 36 and report["memory"]["forward_arena"] > 0
    for argv, message in [(["--parallel-fraction", "2"], r"in \[0, 1\]"), (["--processors", "0"], "at least 1"),
                          (["--dim", "s=4"], "not .onnx"), (["--law", "Q=1"], "unknown constant Q"),
                          (["--plot", "x.pdf"], ".svg or .png"), (["--batch", "0"], "at least 1"),
                          (["--params", "-5"], "--params must be positive")]:
        code, _, err = stats_tool(path, *argv, capsys=capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and re.search(message, err)


def test_tool_scaling_law_over_a_family(tmp_path, capsys):
    path = tmp_path / "mlp.mlir"
    path.write_text(MLP)
    code, out, _ = stats_tool(path, "--no-memory", "--json", "--params", "1e8,1e9", "--tokens", "2e10,2e11,2e12",
                              capsys=capsys)
    grid = json.loads(out)["scaling_law"]["grid"]
    law = ScalingLaw()
    assert code == 0 and [(g["parameters"], g["tokens"]) for g in grid] == [
        (n, d) for n in (1e8, 1e9) for d in (2e10, 2e11, 2e12)]
    assert all(g["loss"] == law.loss(g["parameters"], g["tokens"]) and g["compute_flops"] == 6 * g["parameters"]
               * g["tokens"] for g in grid)
    code, out, _ = stats_tool(path, "--no-memory", "--params", "1e8,1e9", "--tokens", "2e10", capsys=capsys)
    assert re.search(r"^ +100M params +20G tokens +1\.2e\+19 +3\.0005$", out, re.M)
    code, _, err = stats_tool(path, "--params", "1e8,-1", capsys=capsys)
    assert code == 1 and "--params must be positive, got 1e8,-1" in err


def test_tool_plot_writes_an_svg(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "mlp.mlir"
    path.write_text(MLP)
    code, out, _ = stats_tool(path, "--parallel-fraction", 0.9, "--tokens", 1e6, "--plot", tmp_path / "p.svg",
                              capsys=capsys)
    assert code == 0 and (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
    assert "L = " in out


def test_symbolic_dimensions_by_name(tmp_path, capsys):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    code, out, _ = stats_tool(path, "--dim", "seq=6", "--batch", 3, "--json", "--no-memory", capsys=capsys)
    assert code == 0 and json.loads(out)["flops"] == 3 * 6 * 4
    code, _, err = stats_tool(path, "--dim", "len=6", capsys=capsys)
    assert code == 1 and "no graph input has a dimension named 'len' (symbolic dimensions: batch, seq)" in err


def test_stats_profile_gives_f_and_a_training_step(capsys):
    r = ncc.stats(MLP, batch=4, profile=True, processors=4, budget=1e15)
    assert r.profile is not None and 0.0 <= r.parallel_fraction <= 1.0 and r.step_seconds > 0
    assert [n for n, _, _ in r.speedups()] == [1, 2, 4]
    assert all(rate > 0 for _, _, rate in r.speedups())
    text = str(r)
    assert "measured: the share of the profile's time" in text and "compute-optimal for C = 1e+15" in text
    n, d = ScalingLaw().optimal(1e15)
    assert r.to_dict()["scaling_law"]["optimal_parameters"] == n


def test_stats_fraction_from_the_speedup_on_threads():
    r = ncc.stats(MLP, batch=64, profile=True, threads=2, memory=False)
    assert "(Karp-Flatt)" in r.fraction_source and 0.0 <= r.parallel_fraction <= 1.0
    assert any(n.startswith("on 2 threads:") for n in r.notes)


def test_ncc_run_profile(tmp_path, capsys):
    from ncc.tools import ncc_run

    path = tmp_path / "mlp.mlir"
    path.write_text(MLP)
    assert ncc_run.main([str(path), "--batch", "3", "--profile", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^#  op +shape +weights +time \(us\)", out, re.M)
    assert re.search(r"^ *\d+  nn.fused_matmul +3x3 +@w1", out, re.M)
    assert "parallel fraction f =" in out


def test_emit_dot_renders_with_graphviz_or_says_why(tmp_path, capsys, monkeypatch):
    from ncc.tools import ncc_translate

    path = tmp_path / "mlp.mlir"
    path.write_text(MLP)
    assert ncc_translate.main([str(path), "--emit-dot", "-o", str(tmp_path / "g.dot")]) == 0
    text = (tmp_path / "g.dot").read_text()
    assert text.startswith('digraph "main" {') and '@w2 3x2 (6 params)' in text
    import shutil
    if shutil.which("dot"):
        assert ncc_translate.main([str(path), "--emit-dot", "-o", str(tmp_path / "g.svg")]) == 0
        assert "<svg" in (tmp_path / "g.svg").read_text()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert ncc_translate.main([str(path), "--emit-dot", "-o", str(tmp_path / "h.svg")]) == 1
    assert "needs Graphviz's `dot`" in capsys.readouterr().err and not (tmp_path / "h.svg").exists()


def test_bad_models_are_located_errors(tmp_path, capsys):
    (tmp_path / "empty.mlir").write_text("builtin.module {}\n")
    (tmp_path / "bad.mlir").write_text("func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
                                       "  %y = nn.relu %q : tensor<2xf32>\n  func.return %y : tensor<2xf32>\n}\n")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    for name, message in [("empty.mlir", "empty.mlir: error: no function in the module"),
                          ("bad.mlir", "bad.mlir:5:1: error: values used but not defined: [%q]"),
                          ("bad.onnx", "bad.onnx: error: not a valid ONNX model"),
                          ("missing.onnx", "missing.onnx: error: cannot read the ONNX file")]:
        code, _, err = stats_tool(tmp_path / name, capsys=capsys)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_light_resnet50_macs():
    c = count(ncc.import_onnx(os.path.join(LIGHT, "light_resnet50.onnx")))
    assert c.macs == 4_089_184_256  # torchvision's ResNet-50 at 224 x 224: conv + fc
    assert c.constants > 25_000_000  # its weights are ConstantOfShape outputs, not initializers


# ---------------------------------------------------------------------------
# Standard models written in PyTorch: parameters exactly as .numel() counts
# them, MACs and FLOPs against closed-form per-layer formulas

torch = pytest.importorskip("torch")
tnn = torch.nn


class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = tnn.Conv2d(cin, width, 1, bias=False), tnn.BatchNorm2d(width)
        self.conv2, self.bn2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False), tnn.BatchNorm2d(width)
        self.conv3, self.bn3 = tnn.Conv2d(width, cout, 1, bias=False), tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.down = None if stride == 1 and cin == cout else tnn.Sequential(
            tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResNet(tnn.Module):
    """torchvision's ResNet-50 layout (bottlenecks [3, 4, 6, 3]) for any depths and width."""

    def __init__(self, layers=(3, 4, 6, 3), width=64, classes=1000):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, width, 7, 2, 3, bias=False), tnn.BatchNorm2d(width), tnn.ReLU(),
                                   tnn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, n in enumerate(layers):
            for j in range(n):
                blocks.append(Bottleneck(cin, width * 2 ** i, 2 if j == 0 and i > 0 else 1))
                cin = width * 2 ** i * Bottleneck.expansion
        self.blocks = tnn.Sequential(*blocks)
        self.pool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def resnet_closed_form(net, image):
    """(MACs, FLOPs) from the module graph, per layer: conv out x C/g x kh x kw,
    linear out x in (+ its bias), batch norm 2 and relu 1 per element, the
    residual add 1, max pool 9 per output, the global average pool H x W + 1
    (the sum, then the division)."""
    macs, extra = [0], [0]

    def hook(m, inputs, out):
        n = out.numel()
        if isinstance(m, tnn.Conv2d):
            macs[0] += n * m.in_channels // m.groups * math.prod(m.kernel_size)
        elif isinstance(m, tnn.Linear):
            macs[0] += n * m.in_features
            extra[0] += n
        elif isinstance(m, tnn.BatchNorm2d):
            extra[0] += 2 * n
        elif isinstance(m, tnn.ReLU):
            extra[0] += n
        elif isinstance(m, Bottleneck):
            extra[0] += n  # the residual add
        elif isinstance(m, tnn.MaxPool2d):
            extra[0] += n * 9
        elif isinstance(m, tnn.AdaptiveAvgPool2d):
            extra[0] += n * (inputs[0].shape[-1] * inputs[0].shape[-2] + 1)

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, 3, image, image))
    for h in handles:
        h.remove()
    return macs[0], 2 * macs[0] + extra[0]


class Attention(tnn.Module):
    def __init__(self, d, heads, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv, self.out = tnn.Linear(d, 3 * d), tnn.Linear(d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        if self.causal:
            scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d))


class Block(tnn.Module):
    """A transformer layer: pre-LayerNorm (GPT-2, ViT) or post-LayerNorm (BERT)."""

    def __init__(self, d, heads, pre, causal=False, gelu="none", eps=1e-5):
        super().__init__()
        self.pre = pre
        self.ln1, self.ln2 = tnn.LayerNorm(d, eps=eps), tnn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, heads, causal)
        self.mlp = tnn.Sequential(tnn.Linear(d, 4 * d), tnn.GELU(approximate=gelu), tnn.Linear(4 * d, d))

    def forward(self, x):
        if self.pre:
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class GPT2(tnn.Module):
    """GPT-2: token and position embeddings, pre-LN blocks with a causal mask and
    tanh Gelu, a final LayerNorm, the LM head tied to the token embedding."""

    def __init__(self, vocab=50257, context=1024, d=768, heads=12, layers=12):
        super().__init__()
        self.wte, self.wpe = tnn.Embedding(vocab, d), tnn.Embedding(context, d)
        self.blocks = tnn.Sequential(*[Block(d, heads, True, True, "tanh") for _ in range(layers)])
        self.ln_f, self.head = tnn.LayerNorm(d), tnn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        return self.head(self.ln_f(self.blocks(x)))


class Bert(tnn.Module):
    """BERT: word, position and token-type embeddings, a LayerNorm, post-LN blocks
    with erf Gelu, and the pooler (tanh of a Linear on the first token)."""

    def __init__(self, vocab=30522, context=512, d=768, heads=12, layers=12):
        super().__init__()
        self.word, self.pos, self.segment = tnn.Embedding(vocab, d), tnn.Embedding(context, d), tnn.Embedding(2, d)
        self.ln = tnn.LayerNorm(d, eps=1e-12)
        self.blocks = tnn.Sequential(*[Block(d, heads, False, eps=1e-12) for _ in range(layers)])
        self.pooler = tnn.Linear(d, d)

    def forward(self, ids):
        x = self.word(ids) + self.pos(torch.arange(ids.shape[1])) + self.segment(torch.zeros_like(ids))
        return torch.tanh(self.pooler(self.blocks(self.ln(x))[:, 0]))


class ViT(tnn.Module):
    """ViT-B/16 as torchvision writes it: a patch convolution, a class token,
    position embeddings, pre-LN blocks (eps 1e-6, erf Gelu), a LayerNorm, a head."""

    def __init__(self, image=224, patch=16, d=768, heads=12, layers=12, classes=1000):
        super().__init__()
        self.patches = tnn.Conv2d(3, d, patch, patch)
        self.cls = tnn.Parameter(torch.zeros(1, 1, d))
        self.pos = tnn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.02)
        self.blocks = tnn.Sequential(*[Block(d, heads, True, eps=1e-6) for _ in range(layers)])
        self.ln, self.head = tnn.LayerNorm(d, eps=1e-6), tnn.Linear(d, classes)

    def forward(self, x):
        x = self.patches(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.blocks(x))[:, 0])


LN, SOFTMAX = 7, 5  # FLOPs per element (the README's table)
GELU = {"none": 5, "tanh": 9}  # the exporter's formulas: x * 0.5 * (1 + erf(x / sqrt 2)); with tanh: 9 ops


def block_closed_form(s, d, heads, causal, gelu):
    """(MACs, FLOPs) of one transformer layer on s tokens."""
    macs = s * d * 3 * d + 2 * s * s * d + s * d * d + 2 * s * d * 4 * d
    scores = heads * s * s
    extra = (2 * LN * s * d + s * 3 * d + scores * (1 + causal + SOFTMAX) + s * d + s * d
             + s * 4 * d + GELU[gelu] * s * 4 * d + s * d + s * d)  # biases, scale, mask, softmax, residuals, gelu
    return macs, 2 * macs + extra


def gpt2_closed_form(s, vocab, d, heads, layers, **_):
    m, f = block_closed_form(s, d, heads, True, "tanh")
    macs = layers * m + s * d * vocab
    return macs, layers * f + 2 * s * d * vocab + s * d + LN * s * d  # + the position add, ln_f


def bert_closed_form(s, d, heads, layers, **_):
    m, f = block_closed_form(s, d, heads, False, "none")
    return layers * m + d * d, layers * f + 2 * d * d + 2 * s * d + LN * s * d + d + d  # embeddings, pooler


def vit_closed_form(image, patch, d, heads, layers, classes):
    s = (image // patch) ** 2 + 1
    m, f = block_closed_form(s, d, heads, False, "none")
    conv = d * (s - 1) * 3 * patch * patch
    macs = conv + layers * m + d * classes
    return macs, 2 * macs + (s - 1) * d + s * d + layers * (f - 2 * m) + LN * s * d + classes


def export(net, *args):
    """The legacy exporter (opset 17, parameters kept as initializers). It merges
    initializers of equal values (a fresh model's BatchNorm ones and zeros):
    random values first, as a trained model's are."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)  # positive: variances too
    net.eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, f, dynamo=False, do_constant_folding=False, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE)
    return ncc.import_onnx(f.getvalue())


def numel(net):
    return sum(p.numel() for p in net.parameters())


def check(net, args, expected_params, closed_form):
    c = count(export(net, *args))
    assert c.trainable == numel(net) == expected_params
    assert (c.macs, c.flops) == closed_form  # exact (the acceptance asks for 0.1 %)
    return c


SMALL = dict(resnet=dict(layers=(1, 1, 1, 1), width=8, classes=10), image=64,
             gpt2=dict(vocab=97, context=32, d=32, heads=4, layers=2), bert=dict(vocab=97, context=32, d=32,
                                                                                 heads=4, layers=2),
             vit=dict(image=32, patch=8, d=32, heads=4, layers=2, classes=10))


def resnet_case(config, image, params=None):
    torch.manual_seed(0)
    net = ResNet(**config)
    c = check(net, (torch.zeros(1, 3, image, image),), params or numel(net), resnet_closed_form(net, image))
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in net.modules()
                if isinstance(m, tnn.BatchNorm2d))
    assert c.non_trainable == {"batch-norm statistics": stats}


def gpt2_case(config, s, params=None):
    torch.manual_seed(0)
    net = GPT2(**config)
    check(net, (torch.zeros(1, s, dtype=torch.int64),), params or numel(net), gpt2_closed_form(s, **config))
    tied = numel(net)  # .parameters() yields the tied weight once
    assert tied == sum(p.numel() for n, p in net.named_parameters() if n != "head.weight")


def bert_case(config, s, params=None):
    torch.manual_seed(0)
    net = Bert(**config)
    check(net, (torch.zeros(1, s, dtype=torch.int64),), params or numel(net), bert_closed_form(s, **config))


def vit_case(config, params=None):
    torch.manual_seed(0)
    net = ViT(**config)
    check(net, (torch.zeros(1, 3, config["image"], config["image"]),), params or numel(net),
          vit_closed_form(**config))


def test_small_resnet():
    resnet_case(SMALL["resnet"], SMALL["image"])


def test_small_gpt2_with_tied_embeddings():
    gpt2_case(SMALL["gpt2"], 8)


def test_small_bert():
    bert_case(SMALL["bert"], 8)


def test_small_vit():
    vit_case(SMALL["vit"])


def test_resnet50_exact():
    resnet_case({}, 224, params=25_557_032)


@pytest.mark.slow
def test_vit_b16_exact():
    vit_case(dict(image=224, patch=16, d=768, heads=12, layers=12, classes=1000), params=86_567_656)


@pytest.mark.slow
def test_gpt2_small_exact():
    gpt2_case(dict(vocab=50257, context=1024, d=768, heads=12, layers=12), 16, params=124_439_808)


@pytest.mark.slow
def test_bert_base_exact():
    bert_case(dict(vocab=30522, context=512, d=768, heads=12, layers=12), 16, params=109_482_240)
