"""Hugging Face BERT and GPT-2 (tiny configurations, random weights) exported
by torch.onnx.export's legacy exporter at opset 17, as users do: imported,
compiled and compared with onnxruntime. Slow, and skipped where transformers
(not a test extra) is not installed: `pip install transformers; pytest -m slow
test/test_transformers.py`."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ncc

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")  # a test extra; transformers is not: checked per test


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def tiny(kind: str):
    transformers = pytest.importorskip("transformers")
    if kind == "bert":
        cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
        return transformers.BertModel(cfg)
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(cfg)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_tiny_transformer_export_matches_onnxruntime(kind):
    torch.manual_seed(0)
    model = LastHidden(tiny(kind)).eval()
    ids = torch.randint(0, 100, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 12:] = 0  # a padded sequence: the attention mask matters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = io.BytesIO()
        torch.onnx.export(model, (ids, mask), f, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"])
    m = onnx.load_from_string(f.getvalue())
    assert "Expand" in {n.op_type for n in m.graph.node}
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    compiled = ncc.compile(m, cache=False)
    got = compiled.run(feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, model(ids, mask).detach().numpy(), rtol=1e-4, atol=1e-4)
