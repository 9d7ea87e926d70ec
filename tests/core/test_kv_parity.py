"""Key/value prefixes match Hugging Face's own cache path (what peft's prefix tuning uses)."""

import pytest
import torch
from transformers import DynamicCache

from tests.core.helpers import build


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_kv_prefix_equals_hf_past_key_values(name):
    model = build(name, "p-tuning-v2").eval()
    bb, runner = model.backbone, model.runner
    with torch.no_grad():
        model.producer.prompt.normal_(0, 0.5)
        ids = torch.tensor([bb.tokenizer("a gripping, beautifully acted film")["input_ids"]])
        mask = torch.ones_like(ids)
        prompt = model.producer(None)
        prefixes = model.site.prefixes(prompt, runner, 1)
        p = prompt.shape[1]
        cache = DynamicCache(config=bb.model.config)
        for layer, (k, v) in prefixes.items():
            cache.update(k, v, layer)
        ref = bb.model(input_ids=ids, attention_mask=torch.cat([torch.ones(1, p, dtype=torch.long), mask], 1),
                       past_key_values=cache, output_hidden_states=True).hidden_states[-1]
        ours = model.from_state(model.frozen_state(ids, mask), ids)[0]
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
