"""Adaption prompt (LLaMA-Adapter, Zhang et al. 2023): zero-init gated attention over per-layer prompts.

References: the paper's eq. 6-8 written out per head below, and peft's own AdaptionPrompt on the same tiny
Llama with the same prompts and gates (same logits)."""

from __future__ import annotations

import math

import pytest
import torch

from softprompt.errors import ConfigError
from softprompt.interop.peft import export_peft
from softprompt.runners.attention_terms import AttentionTerm
from tests.core.helpers import TEXTS, batch, build


def _set(model, seed=3, gate=0.7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.producer.prompt.copy_(torch.randn(model.producer.prompt.shape, generator=g))
        model.producer.gate.copy_(gate * (1 + torch.arange(model.producer.gate.numel())))


def test_term_is_the_papers_equation_per_head_with_grouped_keys_and_padding():
    g = torch.Generator().manual_seed(0)
    B, H, Hkv, T, P, hd = 2, 4, 2, 3, 5, 8
    q = torch.randn(B, H, T, hd, generator=g)
    k, v = torch.randn(B, Hkv, P, hd, generator=g), torch.randn(B, Hkv, P, hd, generator=g)
    real = torch.ones(B, P, dtype=torch.bool)
    real[1, :2] = False  # row 1's prompt is 3 long, right-aligned
    gate = torch.tensor([0.3, -1.2])
    got = AttentionTerm(None, k, v, real, gate).output(q, 1 / math.sqrt(hd))
    for b in range(B):
        cols = real[b].nonzero().squeeze(1)
        for h in range(H):
            kh, vh = k[b, h // 2, cols], v[b, h // 2, cols]
            want = gate[b] * torch.softmax(q[b, h] @ kh.T / math.sqrt(hd), -1) @ vh  # (T, hd)
            assert torch.allclose(got[b, :, h], want, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert", "tiny-t5"])
def test_zero_gate_leaves_the_model_unchanged_at_step_0(name):
    model = build(name, "adaption-prompt").eval()
    assert torch.count_nonzero(model.producer.gate) == 0 and model.producer.prompt.std() > 0.5  # N(0, 1) prompts
    base = build(name, "head-only").eval()
    base.head.load_state_dict(model.head.state_dict())
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    with torch.no_grad():
        assert torch.equal(model(ids, mask, types).logits, base(ids, mask, types).logits)
        model.producer.gate.fill_(0.5)
        assert not torch.allclose(model(ids, mask, types).logits, base(ids, mask, types).logits)


def test_same_logits_as_peft_adaption_prompt_on_llama(tmp_path):
    from peft import PeftModel

    from softprompt.backbones import load_backbone

    model = build("tiny-llama", "adaption-prompt", site={"layers": [1]}, producer={"num_tokens": 4}).eval()
    _set(model)
    export_peft(model, tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(load_backbone("tiny-llama").model, str(tmp_path / "peft")).eval()
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "right")
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=mask).logits
        state = model.from_state(model.frozen_state(ids, mask), ids)[1]
        ours = model.runner.lm_head()(model.runner.finish(state.hidden))
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max() < 1e-5
    gate = peft_model.base_model.model.model.layers[1].self_attn.adaption_gate
    assert torch.equal(gate, model.producer.gate[:1])


def test_gates_and_prompts_get_gradients_and_the_loss_falls():
    model = build("tiny-llama", "adaption-prompt")
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    opt = torch.optim.AdamW(model.adapter_params().values(), lr=1e-2)
    losses = []
    for step in range(4):
        out = model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0]))
        out.loss.backward()
        assert model.producer.gate.grad.abs().sum() > 0
        prompt_moves = model.producer.prompt.grad.abs().sum() > 0
        assert prompt_moves == (step > 0)  # at step 0 the zero gate blocks the prompts' gradient (zero-init attention)
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]


def test_unsupported_architecture_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^method.site.kind: 'adaption' cannot run on mpnet: MPNetModel does not"):
        from softprompt.backbones import load_backbone
        from softprompt.methods import method_config
        from softprompt.model import SoftPromptModel

        SoftPromptModel(load_backbone("tiny-mpnet"), method_config("adaption-prompt"), 2)
