"""prompt-lora: a soft prompt and LoRA trained together and saved together."""

import pytest
import torch

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from tests.core.helpers import TEXTS, batch, build


def test_prompt_and_lora_train_together_and_round_trip(tmp_path):
    model = build("tiny-llama", "prompt-lora")
    groups = model.param_groups()
    assert set(groups) == {"prompt", "head", "backbone"}
    assert groups["backbone"] and all("lora_" in n for n, p in model.backbone.model.named_parameters()
                                      if p.requires_grad)
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "left")
    start = {n: p.detach().clone() for n, p in model.adapter_params().items()}
    model.train()
    model(ids, mask, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    assert model.producer.prompt.grad.abs().sum() > 0
    lora = dict((n, p) for n, p in model.backbone.model.named_parameters() if p.requires_grad)
    assert all(p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # B at once (A's is 0 while B = 0) ...
    opt = torch.optim.AdamW(model.adapter_params().values(), lr=1e-2)
    opt.step()
    opt.zero_grad()
    model(ids, mask, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    opt.step()  # ... A once B has moved
    moved = {n for n, p in model.adapter_params().items() if not torch.equal(p, start[n])}
    assert "producer.prompt" in moved and any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)

    model.eval()
    with torch.no_grad():
        expected = model(ids, mask).logits
    save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])
    loaded = load_adapter(tmp_path / "a", load_backbone("tiny-llama")).eval()
    state = loaded.adapter_state()
    assert "producer.prompt" in state and any(k.startswith("backbone.") and "lora_B" in k for k in state)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).logits, expected)


def test_a_shared_frozen_base_refuses_prompt_lora_with_the_reason():
    """Serving (one frozen base for every adapter) and vLLM's prompt_embeds take frozen-base prompts only."""
    from softprompt.interop.vllm import prompt_embeds

    model = build("tiny-llama", "prompt-lora")
    with pytest.raises(ConfigError, match="method.backbone is 'lora'"):
        prompt_embeds(model, "the plot goes nowhere")
