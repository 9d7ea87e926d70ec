"""ATTEMPT (Asai et al. 2022, Sec. 3.2): instance-wise attention over frozen source prompts and the target."""

import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.producers import ProducerInput
from softprompt.producers.transfer import ADAPTER_WEIGHTS, PROMPT_KEY
from tests.core.helpers import TEXTS, batch, build


def reference(producer, embeds, mask):
    """Sec. 3.2 for one instance at a time, from the module's weights (no batching, no masking tricks)."""
    sources, target = producer.sources, producer.target
    prompts = [*sources, target]
    d = target.shape[1]
    out = []
    for x, m in zip(embeds, mask):
        x_hat = x[m].max(0).values  # max-pool over the real tokens
        h = torch.nn.functional.layer_norm(producer.up.weight @ torch.nn.functional.silu(producer.down.weight @ x_hat),
                                           (d,), producer.norm.weight, producer.norm.bias, producer.norm.eps)
        scores = torch.stack([p.max(0).values @ h / (d * math.e) for p in prompts])
        a = scores.exp() / scores.exp().sum()
        out.append(target + sum(a_j * p_j for a_j, p_j in zip(a, prompts)))
    return torch.stack(out)


def sources_on_disk(tmp_path, count, shape, scale=1.0):
    folders = []
    for i in range(count):
        (tmp_path / f"s{i}").mkdir()
        save_file({PROMPT_KEY: torch.randn(shape) * scale}, str(tmp_path / f"s{i}" / ADAPTER_WEIGHTS))
        folders.append(str(tmp_path / f"s{i}"))
    return folders


def test_attempt_mixes_source_and_target_prompts_as_the_equations(tmp_path):
    torch.manual_seed(0)
    d = build("tiny-llama", "prompt-tuning", producer={"num_tokens": 4}).producer.prompt.shape[1]
    folders = sources_on_disk(tmp_path, 3, (4, d), scale=3.0)
    model = build("tiny-llama", "attempt", producer={"num_tokens": 4, "sources": folders}).eval()
    producer = model.producer
    assert producer.sources.shape == (3, 4, d) and not producer.sources.requires_grad
    with safe_open(f"{folders[1]}/{ADAPTER_WEIGHTS}", "pt") as f:
        assert torch.equal(producer.sources[1], f.get_tensor(PROMPT_KEY))
    with torch.no_grad():
        producer.norm.weight.normal_()  # away from LayerNorm's identity init
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "right")
    embeds = model.runner.word_embeddings(ids)
    inp = ProducerInput(embeds, embeds, mask.bool())
    with torch.no_grad():
        got = producer(inp)
        weights = producer.weights(inp)
    assert got.shape == (4, 4, d)
    assert torch.allclose(got, reference(producer, embeds, mask.bool()), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(4))
    assert (weights.max(0).values - weights.min(0).values).abs().max() > 1e-4  # instance-dependent


def test_only_the_target_and_the_attention_train_and_sources_round_trip(tmp_path):
    d = build("tiny-bert", "prompt-tuning", producer={"num_tokens": 4}).producer.prompt.shape[1]
    folders = sources_on_disk(tmp_path, 2, (4, d))
    model = build("tiny-bert", "attempt", producer={"num_tokens": 4, "sources": folders})
    groups = model.producer.param_groups()
    assert set(groups) == {"prompt", "attention"} and groups["prompt"] == [model.producer.target]
    assert "producer.sources" in model.adapter_state() and all("sources" not in n for n in model.adapter_params())
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    assert model.producer.target.grad.abs().sum() > 0 and model.producer.down.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        expected = model(ids, mask, types).logits
    save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])
    for folder in folders:  # a saved ATTEMPT adapter holds its sources
        (tmp_path / folder / ADAPTER_WEIGHTS).unlink()
    loaded = load_adapter(tmp_path / "a", load_backbone("tiny-bert")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask, types).logits, expected)


def test_source_prompts_of_another_length_name_the_field(tmp_path):
    d = build("tiny-llama", "prompt-tuning", producer={"num_tokens": 4}).producer.prompt.shape[1]
    folders = sources_on_disk(tmp_path, 1, (3, d))
    with pytest.raises(ConfigError, match="method.producer.sources: .*num_tokens"):
        build("tiny-llama", "attempt", producer={"num_tokens": 4, "sources": folders})
