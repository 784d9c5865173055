"""Transformers written here in PyTorch: ncc vs onnxruntime, batch 1, in one run.

    python benchmarks/bench_transformers.py                       # the tiny configs
    python benchmarks/bench_transformers.py --models all          # + BERT-base width, ViT-tiny
    python benchmarks/bench_transformers.py --models gpt2,bert --stats

The models are defined below in plain PyTorch, as Hugging Face writes them
(random weights, eval mode; nothing is downloaded), and exported with
torch.onnx.export's legacy exporter at opset 17, as users do:

  gpt2       a GPT-2 block stack: pre-LayerNorm, fused qkv projection, causal
             mask, tanh Gelu ("gelu_new"), final LayerNorm; token ids in
  bert       a BERT encoder: word + position embeddings, post-LayerNorm,
             erf Gelu, the attention mask (1 = token, 0 = padding) turned
             into an additive bias; token ids and mask in
  vit        ViT-tiny: a 16x16 patch convolution, a class token, pre-LayerNorm
             blocks (192 wide, 3 heads, 12 layers), erf Gelu; an image in

Configurations: `tiny` (hidden 128, 4 heads, 2 layers, sequence 32) for
gpt2 and bert; `base` (hidden 768, 12 heads, 2 layers, sequence 128).
ncc runs with one thread, onnxruntime with one intra-op thread (and all its
graph optimisations: its Attention, LayerNorm, Gelu, SkipLayerNorm fusions).
Outputs are compared before anything is timed; a time is each runtime's
fastest of three rounds of blocks of calls (benchmarks/timing.py). With --stats, what fusion
changed in each model: patterns applied, loop nests and arena bytes before
and after (ncc-opt --fuse-stats prints the same for a .mlir).

Goals (issue 15; checked here, never in tests): tiny configs >= 1.5x
onnxruntime; BERT-base width (2 layers) >= 1.0x.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort

import ncc
from timing import best_of_rounds  # benchmarks/timing.py
from ncc.runtime.engine import host_summary

try:
    import torch
    from torch import nn
except ImportError:  # the benchmark says so and exits 0
    torch = None
    nn = None

GOALS = {"tiny": 1.5, "base": 1.0}
CONFIGS = {"tiny": dict(hidden=128, heads=4, layers=2, seq=32), "base": dict(hidden=768, heads=12, layers=2, seq=128)}
VOCAB = 1000


if torch is not None:
    class SelfAttention(nn.Module):
        """Multi-head self-attention as Hugging Face writes it: heads split by view/permute,
        scores scaled by 1/sqrt(head size), an additive mask, softmax, heads merged."""

        def __init__(self, hidden: int, heads: int, causal: bool, fused_qkv: bool):
            super().__init__()
            self.heads, self.size, self.causal = heads, hidden // heads, causal
            self.qkv = nn.Linear(hidden, 3 * hidden) if fused_qkv else None
            if not fused_qkv:
                self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
            self.out = nn.Linear(hidden, hidden)

        def split(self, x):
            b, s, _ = x.shape
            return x.view(b, s, self.heads, self.size).permute(0, 2, 1, 3)

        def forward(self, x, bias=None):
            if self.qkv is not None:
                q, k, v = self.qkv(x).split(x.shape[-1], dim=2)
            else:
                q, k, v = self.q(x), self.k(x), self.v(x)
            q, k, v = self.split(q), self.split(k), self.split(v)
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.size)
            if self.causal:
                s = x.shape[1]
                keep = torch.tril(torch.ones(s, s, dtype=torch.bool))
                scores = torch.where(keep, scores, torch.tensor(torch.finfo(scores.dtype).min))
            if bias is not None:
                scores = scores + bias
            ctx = torch.matmul(scores.softmax(-1), v).permute(0, 2, 1, 3).contiguous()
            return self.out(ctx.view(x.shape))

    class GPT2Block(nn.Module):
        def __init__(self, hidden: int, heads: int):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.attn = SelfAttention(hidden, heads, causal=True, fused_qkv=True)
            self.fc, self.proj = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.proj(nn.functional.gelu(self.fc(self.ln_2(x)), approximate="tanh"))

    class GPT2(nn.Module):
        def __init__(self, hidden: int, heads: int, layers: int, seq: int):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, hidden), nn.Embedding(seq, hidden)
            self.blocks = nn.ModuleList(GPT2Block(hidden, heads) for _ in range(layers))
            self.ln_f = nn.LayerNorm(hidden)

        def forward(self, ids):
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x)

    class BertLayer(nn.Module):
        def __init__(self, hidden: int, heads: int):
            super().__init__()
            self.attn = SelfAttention(hidden, heads, causal=False, fused_qkv=False)
            self.ln_attn, self.ln_out = nn.LayerNorm(hidden, eps=1e-12), nn.LayerNorm(hidden, eps=1e-12)
            self.intermediate, self.output = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

        def forward(self, x, bias):
            x = self.ln_attn(x + self.attn(x, bias))
            return self.ln_out(x + self.output(nn.functional.gelu(self.intermediate(x))))

    class Bert(nn.Module):
        def __init__(self, hidden: int, heads: int, layers: int, seq: int):
            super().__init__()
            self.words, self.positions = nn.Embedding(VOCAB, hidden), nn.Embedding(seq, hidden)
            self.ln = nn.LayerNorm(hidden, eps=1e-12)
            self.layers = nn.ModuleList(BertLayer(hidden, heads) for _ in range(layers))

        def forward(self, ids, mask):
            x = self.ln(self.words(ids) + self.positions(torch.arange(ids.shape[1])))
            bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            for layer in self.layers:
                x = layer(x, bias)
            return x

    class ViTBlock(nn.Module):
        def __init__(self, hidden: int, heads: int):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(hidden, eps=1e-6), nn.LayerNorm(hidden, eps=1e-6)
            self.attn = SelfAttention(hidden, heads, causal=False, fused_qkv=True)
            self.fc, self.proj = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.proj(nn.functional.gelu(self.fc(self.ln_2(x))))

    class ViT(nn.Module):
        """ViT-tiny/16 at 224 x 224: 196 patches and a class token, 192 wide, 3 heads, 12 layers."""

        def __init__(self, hidden: int = 192, heads: int = 3, layers: int = 12, classes: int = 1000):
            super().__init__()
            self.patch = nn.Conv2d(3, hidden, 16, stride=16)
            self.cls = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, 197, hidden) * 0.02)
            self.blocks = nn.ModuleList(ViTBlock(hidden, heads) for _ in range(layers))
            self.ln, self.head = nn.LayerNorm(hidden, eps=1e-6), nn.Linear(hidden, classes)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln(x)[:, 0])


def cases(names: list[str]) -> list[tuple[str, str]]:
    """(model, config) pairs: `gpt2-base` is gpt2 at the base config, vit has its own."""
    out = []
    for name in names:
        if name == "vit":
            out.append(("vit", "tiny"))
        elif name.endswith("-base"):
            out.append((name[:-5], "base"))
        else:
            out.append((name, "tiny"))
    return out


def build(name: str, config: str):
    """The PyTorch module, its example inputs (a dict of numpy arrays) and the exported ONNX bytes."""
    torch.manual_seed(0)
    c = CONFIGS[config]
    if name == "vit":
        module, inputs = ViT(), {"pixels": torch.randn(1, 3, 224, 224)}
    else:
        ids = torch.randint(0, VOCAB, (1, c["seq"]))
        if name == "gpt2":
            module, inputs = GPT2(c["hidden"], c["heads"], c["layers"], c["seq"]), {"input_ids": ids}
        else:
            mask = torch.ones(1, c["seq"], dtype=torch.int64)
            mask[0, -c["seq"] // 4:] = 0  # padding at the end: the mask matters
            module = Bert(c["hidden"], c["heads"], c["layers"], c["seq"])
            inputs = {"input_ids": ids, "attention_mask": mask}
    module.eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), f, dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=["y"])
    with torch.no_grad():
        want = module(*inputs.values()).numpy()
    return {k: v.numpy() for k, v in inputs.items()}, f.getvalue(), want


def bench(name: str, config: str, stats: bool) -> dict:
    feeds, data, want = build(name, config)
    proto = onnx.load_model_from_string(data)
    model = ncc.compile(proto, cache=False, threads=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    got, theirs = model.run(feeds)[0], sess.run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(theirs, want, rtol=1e-3, atol=1e-3)
    r = {"name": name if name == "vit" else f"{name}-{config}", "config": config,
         **dict(zip(("ncc", "ort"), best_of_rounds([lambda: model.run(feeds), lambda: sess.run(None, feeds)]))),
         "ops": len(proto.graph.node)}
    if stats:
        r["stats"] = ncc.fuse_stats(ncc.import_onnx(proto))
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="gpt2,bert",
                    help="comma-separated: gpt2, bert (tiny), gpt2-base, bert-base (BERT-base width), vit; or all")
    ap.add_argument("--stats", action="store_true", help="also print what fusion changed in each model")
    args = ap.parse_args()
    if torch is None:
        print("PyTorch is not installed: nothing to compare (pip install torch)")
        return 0
    known = ["gpt2", "bert", "gpt2-base", "bert-base", "vit"]
    names = known if args.models == "all" else args.models.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(known)}, all)")
    print(f"host: {host_summary()}")
    print(f"ncc 1 thread vs onnxruntime {ort.__version__} 1 thread, batch 1\n")
    print(f"{'model':<10} {'onnx ops':>8} {'ncc':>10} {'ort':>10} {'ncc vs ort':>10}")
    rows = [bench(name, config, args.stats) for name, config in cases(names)]
    for r in rows:
        print(f"{r['name']:<10} {r['ops']:>8} {r['ncc'] * 1e3:8.3f}ms {r['ort'] * 1e3:8.3f}ms {r['ort'] / r['ncc']:9.2f}x")
    if args.stats:
        for r in rows:
            print(f"\n{r['name']}: {r['stats']}")
    print()
    for r in rows:
        goal = GOALS.get(r["config"]) if r["name"] != "vit" else None
        if goal is not None:
            ratio = r["ort"] / r["ncc"]
            print(f"goal: {r['name']} >= {goal}x onnxruntime: {ratio:.2f}x ({'met' if ratio >= goal else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
