"""Multitask Prompt Tuning (Wang et al. 2023, Sec. 3.1): P = P* ∘ (u ⊗ v), rank r as in peft."""

import pytest
import torch

from softprompt.adapter import WEIGHTS, load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from tests.core.helpers import build


@pytest.mark.parametrize("rank", [1, 3])
def test_prompt_is_the_shared_prompt_times_the_low_rank_task_matrix(rank):
    producer = build("tiny-llama", "mpt", producer={"rank": rank}).producer
    shared, u, v = producer.shared.detach(), producer.cols.detach(), producer.rows.detach()
    t, d = shared.shape
    expected = torch.empty(t, d)
    for i in range(t):
        for j in range(d):
            expected[i, j] = shared[i, j] * sum(u[i, k] * v[k, j] for k in range(rank))
    with torch.no_grad():
        assert torch.allclose(producer()[0], expected, atol=1e-7)
        assert torch.equal(producer.fold()()[0], producer()[0])
    assert sum(p.numel() for p in producer.parameters()) == t * d + t * rank + rank * d


def test_target_starts_from_a_source_mpt_adapter_or_a_shared_prompt(tmp_path):
    source = build("tiny-llama", "mpt", seed=1)
    with torch.no_grad():
        source.producer.cols.add_(1.0)
    save_adapter(source, tmp_path / "src", task="sst2", label_names=["negative", "positive"])
    target = build("tiny-llama", "mpt", seed=2, producer={"shared_from": str(tmp_path / "src")})
    for name in ("shared", "cols", "rows"):
        assert torch.equal(getattr(target.producer, name), getattr(source.producer, name))
    plain = build("tiny-llama", "prompt-tuning", seed=3)
    save_adapter(plain, tmp_path / "pt", task="sst2", label_names=["negative", "positive"])
    only_shared = build("tiny-llama", "mpt", seed=4, producer={"shared_from": str(tmp_path / "pt")})
    fresh = build("tiny-llama", "mpt", seed=4)
    assert torch.equal(only_shared.producer.shared, plain.producer.prompt)
    assert torch.equal(only_shared.producer.cols, fresh.producer.cols)  # u, v: their own init
    save_adapter(target, tmp_path / "tgt", task="sst2", label_names=["negative", "positive"])
    (tmp_path / "src" / WEIGHTS).unlink()  # a saved adapter never needs its source again
    loaded = load_adapter(tmp_path / "tgt", load_backbone("tiny-llama"))
    assert torch.equal(loaded.producer.rows, target.producer.rows)


def test_a_source_of_another_shape_names_the_field(tmp_path):
    source = build("tiny-llama", "mpt", producer={"rank": 2})
    save_adapter(source, tmp_path / "src", task="sst2", label_names=["negative", "positive"])
    with pytest.raises(ConfigError, match="method.producer.shared_from: cols"):
        build("tiny-llama", "mpt", producer={"shared_from": str(tmp_path / "src")})
