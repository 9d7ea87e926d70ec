"""SPoT (Vu et al. 2022): a target prompt starts as a source task's prompt; retrieval by task similarity."""

import pytest
import torch
from safetensors.torch import save_file

from softprompt.adapter import WEIGHTS, save_adapter
from softprompt.errors import ConfigError
from softprompt.producers.transfer import ADAPTER_WEIGHTS, PROMPT_KEY, most_similar, prompt_similarity
from tests.core.helpers import build


def reference_similarity(a, b, kind):
    """SPoT's two task similarities, written out token by token."""
    def cos(x, y):
        return float(x @ y / (x.norm() * y.norm()))
    if kind == "average_tokens":
        return cos(sum(a) / len(a), sum(b) / len(b))
    return sum(cos(x, y) for x in a for y in b) / (len(a) * len(b))


def hand_made(d: int) -> dict[str, torch.Tensor]:
    e1, e2 = torch.eye(d)[0], torch.eye(d)[1]
    return {
        "query": torch.stack([e1, e1]),
        "spread": torch.stack([e1 + 10 * e2, e1 - 10 * e2]),  # mean along the query, tokens nearly orthogonal
        "tilted": torch.stack([e1 + e2, e1 + e2]),  # every token at 45 degrees
        "away": torch.stack([-e1, e2]),
    }


def write(folder, prompt):
    folder.mkdir()
    save_file({PROMPT_KEY: prompt.contiguous()}, str(folder / ADAPTER_WEIGHTS))
    return str(folder)


@pytest.mark.parametrize("kind,picked", [("average_tokens", "spread"), ("per_token", "tilted")])
def test_retrieval_transfers_the_source_the_papers_similarity_picks(tmp_path, kind, picked):
    d = build("tiny-llama", "prompt-tuning", producer={"num_tokens": 2}).producer.prompt.shape[1]
    prompts = hand_made(d)
    names = ["away", "tilted", "spread"]
    expected = max(names, key=lambda n: reference_similarity(prompts["query"], prompts[n], kind))
    assert expected == picked
    for n in names:
        assert prompt_similarity(prompts["query"], prompts[n], kind) == pytest.approx(
            reference_similarity(prompts["query"], prompts[n], kind), abs=1e-6)
    assert names[most_similar(prompts["query"], [prompts[n] for n in names], kind)] == picked
    folders = [write(tmp_path / n, prompts[n]) for n in names]
    model = build("tiny-llama", "prompt-tuning", producer={
        "num_tokens": 2, "init": "transfer", "init_from": folders, "similarity": kind,
        "transfer_query": write(tmp_path / "query", prompts["query"])})
    assert torch.equal(model.producer.prompt.detach(), prompts[picked])


def test_one_trained_source_is_copied_from_its_adapter_folder(tmp_path):
    assert ADAPTER_WEIGHTS == WEIGHTS
    source = build("tiny-bert", "prompt-tuning", seed=3)
    save_adapter(source, tmp_path / "mnli", task="sst2", label_names=["negative", "positive"])
    target = build("tiny-bert", "prompt-tuning", seed=4, producer={"init": "transfer",
                                                                   "init_from": [str(tmp_path / "mnli")]})
    assert torch.equal(target.producer.prompt, source.producer.prompt)


def test_transfer_errors_name_the_field(tmp_path):
    d = build("tiny-llama", "prompt-tuning", producer={"num_tokens": 2}).producer.prompt.shape[1]
    prompts = hand_made(d)
    two = [write(tmp_path / n, prompts[n]) for n in ("spread", "tilted")]
    with pytest.raises(ConfigError, match="method.producer.transfer_query"):
        build("tiny-llama", "prompt-tuning", producer={"num_tokens": 2, "init": "transfer", "init_from": two})
    with pytest.raises(ConfigError, match="method.producer.init_from: .* shape"):
        build("tiny-llama", "prompt-tuning", producer={"num_tokens": 3, "init": "transfer", "init_from": two[:1]})
    with pytest.raises(ConfigError, match="method.producer.init_from: .*not an adapter folder"):
        build("tiny-llama", "prompt-tuning", producer={"init": "transfer", "init_from": [str(tmp_path / "none")]})
    with pytest.raises(ConfigError, match="init_from"):
        build("tiny-llama", "prompt-tuning", producer={"init": "transfer"})


def test_a_transferred_adapter_loads_without_its_sources(tmp_path):
    from softprompt.adapter import load_adapter
    from softprompt.backbones import load_backbone

    source = build("tiny-bert", "prompt-tuning", seed=3)
    save_adapter(source, tmp_path / "src", task="sst2", label_names=["negative", "positive"])
    target = build("tiny-bert", "prompt-tuning", producer={"init": "transfer", "init_from": [str(tmp_path / "src")]})
    with torch.no_grad():
        target.producer.prompt.add_(1.0)  # trained away from the source
    save_adapter(target, tmp_path / "tgt", task="sst2", label_names=["negative", "positive"])
    (tmp_path / "src" / WEIGHTS).unlink()
    loaded = load_adapter(tmp_path / "tgt", load_backbone("tiny-bert"))
    assert torch.equal(loaded.producer.prompt, target.producer.prompt)
