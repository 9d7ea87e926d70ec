"""softprompt explain: generator attention and nearest vocabulary tokens."""

import pytest
import torch

from softprompt.adapter import save_adapter
from softprompt.cli import main
from softprompt.explain import generator_attention, nearest_tokens
from tests.core.helpers import build


def test_generator_attention_is_a_distribution_over_tokens():
    model = build("tiny-bert", "id-spam").eval()
    with torch.no_grad():
        model.producer.wq.weight.mul_(30)  # a peaked attention (the fresh one is near uniform on tiny-bert)
    tokens, received = generator_attention(model, "good film")
    assert len(tokens) == received.shape[0] and tokens[0] == "[CLS]"
    assert torch.isclose(received.sum(), torch.tensor(1.0), atol=1e-5)
    # by hand: softmax(q k^T / sqrt(d_h)) of the generator's own projections, averaged over heads and queries
    p = model.producer
    ids = model.backbone.tokenizer("good film", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        e = model.runner.token_embeddings(ids)[0]
        h, d = p.cfg.heads, e.shape[-1]
        q, k = p.wq(e).view(-1, h, d // h).transpose(0, 1), p.wk(e).view(-1, h, d // h).transpose(0, 1)
        expected = (q @ k.transpose(-1, -2) / (d // h) ** 0.5).softmax(-1).mean((0, 1))
    assert torch.allclose(received, expected, atol=1e-6)
    assert not torch.allclose(received, torch.full_like(received, 1 / len(tokens)), atol=1e-4)  # not uniform


def test_nearest_tokens_find_the_vocabulary_a_prompt_was_initialised_from():
    model = build("tiny-bert", "prompt-tuning", producer={"init": "text", "init_text": "abc", "num_tokens": 3})
    rows = nearest_tokens(model, k=1)
    assert [r[0][0] for r in rows] == ["a", "b", "c"] and all(abs(r[0][1] - 1) < 1e-5 for r in rows)


def test_kv_prefixes_have_no_vocabulary_neighbours():
    with pytest.raises(ValueError, match="key/value prefixes"):
        nearest_tokens(build("tiny-bert", "p-tuning-v2"))


def test_explain_command_prints_table_and_png(tmp_path, capsys):
    model = build("tiny-bert", "id-spam")
    save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])
    assert main(["explain", str(tmp_path / "a"), "a fine film", "--png", str(tmp_path / "att.png")]) == 0
    out = capsys.readouterr().out
    assert "attention received per input token" in out and "p0" in out
    assert (tmp_path / "att.png").stat().st_size > 1000
