"""Prefix-propagation (Li, Aitken, Bhambhoria & Zhu, ACL 2023; github.com/MonliH/prefix-propagation) against
its equations, run through HF's own modules here: P_0 prepended to the hidden states entering layer 0,
P_i added at the prefix positions before layer i > 0 (model/roberta.py RobertaLayer.forward:
`hidden_states[:, :P] += additional_prefix`), the prefix attending and attended to like tokens.

The all-methods suites (tests/core/test_methods.py, test_cached_decoding.py, serve/) take the preset
`prefix-propagation` from PRESETS like every other soft prompt.
"""

import pytest
import torch

from softprompt.errors import ConfigError
from softprompt.methods import PRESETS, method_config
from softprompt.model import SoftPromptModel
from softprompt.serve.mixed import Group, mixed_logits
from softprompt.sites import SITES, PropagateSite
from tests.core.helpers import TEXTS, batch, build

T = 3


def propagated(name, seed=0, **overrides):
    model = build(name, "prefix-propagation", producer={"num_tokens": T}, seed=seed, **overrides).eval()
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        model.producer.prompt.copy_(torch.randn(model.producer.prompt.shape, generator=g) * 0.5)
    return model


def layer_prefixes(model) -> list[torch.Tensor]:
    """P_i (T, d) for every layer, read from the one static table P_0 | P_1 | ..."""
    d, table = model.runner.hidden_size, model.producer.prompt.detach()
    return [table[:, i * d:(i + 1) * d] for i in range(model.runner.num_layers)]


def adding_hooks(layers, prefixes, t):
    """Forward pre-hooks: P_i added to the first t positions of the states entering layer i > 0."""
    def hook_for(p):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            h = torch.cat([h[:, :t] + p.to(h.dtype), h[:, t:]], 1)
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
        return hook
    return [layers[i].register_forward_pre_hook(hook_for(prefixes[i]), with_kwargs=True) for i in range(1, len(layers))]


def overwrite_prefix(module, p, t):
    """Forward hook: the module's output with its first t positions replaced by P_0 (no position embedding)."""
    def hook(mod, args, out):
        return torch.cat([p.expand(out.shape[0], -1, -1).to(out.dtype), out[:, t:]], 1)
    return module.register_forward_hook(hook)


def reference(model, ids, mask, types, prefixes):
    """HF's forward on [P_0 | text] (right padding), text at its own positions 0..n-1, P_i added before layer i."""
    hf, t, bsz = model.backbone.model, T, ids.shape[0]
    full = torch.cat([torch.ones(bsz, t, dtype=mask.dtype), mask], 1)
    text_pos = (mask.cumsum(1) - 1).clamp(min=0)
    hooks = []
    try:
        if model.backbone.family == "bert":
            hooks = adding_hooks(hf.encoder.layer, prefixes, t) + [overwrite_prefix(hf.embeddings, prefixes[0], t)]
            pad = torch.zeros(bsz, t, dtype=torch.long)
            out = hf(input_ids=torch.cat([pad, ids], 1), attention_mask=full, position_ids=torch.cat([pad, text_pos], 1),
                     token_type_ids=torch.cat([pad, types], 1)).last_hidden_state
        elif model.backbone.family == "gpt2":
            base = hf.transformer
            hooks = adding_hooks(base.h, prefixes, t) + [overwrite_prefix(base.drop, prefixes[0], t)]
            pad = torch.zeros(bsz, t, dtype=torch.long)
            out = base(input_ids=torch.cat([pad, ids], 1), attention_mask=full,
                       position_ids=torch.cat([pad, text_pos], 1)).last_hidden_state
        elif model.backbone.kind == "encoder-decoder":  # T5: the encoder
            enc = hf.get_encoder()
            hooks = adding_hooks(enc.block, prefixes, t)
            embeds = torch.cat([prefixes[0].expand(bsz, -1, -1), enc.embed_tokens(ids)], 1)
            out = enc(inputs_embeds=embeds, attention_mask=full).last_hidden_state
        else:  # Llama-like: rotary positions count the prefix like tokens before the text
            base = hf.model
            hooks = adding_hooks(base.layers, prefixes, t)
            embeds = torch.cat([prefixes[0].expand(bsz, -1, -1), base.embed_tokens(ids)], 1)
            out = base(inputs_embeds=embeds, attention_mask=full,
                       position_ids=(full.cumsum(1) - 1).clamp(min=0)).last_hidden_state
    finally:
        for h in hooks:
            h.remove()
    return out, full.bool()


def ours(model, ids, mask, types):
    with torch.no_grad():
        hidden, seq = model.from_state(model.frozen_state(ids, mask, types), ids)
    return hidden, seq


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-t5"])
def test_final_states_equal_hf_layers_with_prefix_prepended_then_added(name):
    model = propagated(name)
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS, "right")
    hidden, seq = ours(model, ids, mask, types)
    prefixes = layer_prefixes(model)
    with torch.no_grad():
        ref, real = reference(model, ids, mask, types, prefixes)
        # the added P_i (i > 0) matter: without them the reference differs
        frozen_after_0 = reference(model, ids, mask, types, [prefixes[0]] + [p * 0 for p in prefixes[1:]])[0]
    assert torch.equal(seq.mask, real) and int((seq.mask & ~seq.text_mask).sum()) == T * len(TEXTS)
    assert (hidden[seq.mask] - ref[real]).abs().max() <= 1e-5, (hidden[seq.mask] - ref[real]).abs().max()
    assert (frozen_after_0[real] - ref[real]).abs().max() > 1e-3


def test_preset_site_and_parameter_count():
    assert PRESETS["prefix-propagation"]["site"]["kind"] == "propagate" and SITES["propagate"] is PropagateSite
    model = build("tiny-llama", "prefix-propagation")
    L, d = model.runner.num_layers, model.runner.hidden_size
    assert model.method.producer_kind == "static" and model.producer.prompt.shape == (8, L * d)  # paper: psl 8
    assert model.boundary == 0 and model.positions_taken == 0
    # half of prefix tuning's parameters (one d-vector per prefix position and layer, not a key and a value)
    kv = build("tiny-llama", "p-tuning-v2", producer={"num_tokens": 8})
    if model.runner.prefix_shape() == (model.runner.num_heads, d // model.runner.num_heads):
        assert kv.producer.prompt.numel() == 2 * model.producer.prompt.numel()
    assert "peft has no prefix-propagation" in model.site.peft_obstacle(model.runner)


def test_every_layer_prefix_gets_a_gradient_and_only_the_prompt_trains():
    model = build("tiny-bert", "prefix-propagation", producer={"num_tokens": T})
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    d = model.runner.hidden_size
    grad = model.producer.prompt.grad
    for i in range(model.runner.num_layers):
        assert grad[:, i * d:(i + 1) * d].abs().sum() > 0, i
    assert all(p.grad is None for p in model.backbone.model.parameters())


def test_mixed_batch_rows_equal_alone():
    """Two propagated prefixes of different lengths and a prompt-tuning group in one pass: each row as alone."""
    bb = build("tiny-llama", "head-only").backbone
    models = []
    for seed, (method, over) in enumerate([("prefix-propagation", {"producer": {"num_tokens": 2}}),
                                            ("prefix-propagation", {"producer": {"num_tokens": 5}}),
                                            ("prompt-tuning", {"producer": {"num_tokens": 4}})]):
        torch.manual_seed(seed)
        m = SoftPromptModel(bb, method_config(method, **over), 2).eval()
        with torch.no_grad():
            for p in m.producer.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        models.append(m)
    texts = TEXTS + ["ok"]
    owner = [0, 1, 2, 1, 0]
    ids, mask, _ = batch(bb.tokenizer, texts, "left")
    groups = [Group(m, torch.tensor([r for r, o in enumerate(owner) if o == i])) for i, m in enumerate(models)]
    got = mixed_logits(models[0].runner, groups, ids, mask)
    for g, logits in zip(groups, got):
        for r, row in zip(g.rows.tolist(), logits):
            a_ids, a_mask, _ = batch(bb.tokenizer, [texts[r]], "left")
            with torch.no_grad():
                alone = g.model(a_ids, a_mask).logits[0]
            assert (row - alone).abs().max() <= 1e-5, (r, (row - alone).abs().max())


def test_cached_generation_equals_recomputation():
    from softprompt.checks.recompute import RecomputedLane

    model = propagated("tiny-llama")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:3], "left")
    calls = []
    model.producer.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        cached = model.lane(ids, mask)
        prefill_calls = len(calls)
        recomputed = RecomputedLane(model, ids, mask)
        for _ in range(4):
            assert torch.allclose(cached.logits, recomputed.logits, atol=1e-5)
            nxt = recomputed.logits.argmax(-1)
            cached.step(nxt)
            recomputed.step(nxt)
    assert prefill_calls == model.runner.num_layers  # one P_i per layer at the prefill; decode steps read the cache


def test_site_fields_and_word_init_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match=r"^method.site.layer: not used by site kind 'propagate'"):
        method_config("prefix-propagation", site={"layer": 1})
    with pytest.raises(ConfigError, match=r"^method.site.layers: not used by site kind 'propagate'"):
        method_config("prefix-propagation", site={"layers": [0]})
    with pytest.raises(ConfigError, match="method.producer.init: propagated prefixes"):
        build("tiny-bert", "prefix-propagation", producer={"init": "vocab"})


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_gradient_checkpointing_keeps_loss_and_gradients(name):
    """The in-place additions at prefix slots are safe where each layer is recomputed in the backward pass."""
    model = propagated(name)
    model.train()
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS, "left" if name == "tiny-llama" else "right")
    results = []
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same dropout masks both times
        loss = model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0])).loss
        loss.backward()
        results.append((loss.detach(), model.producer.prompt.grad.clone()))
    (plain, g_plain), (ckpt, g_ckpt) = results
    assert abs(float(plain - ckpt)) < 1e-5 and g_plain.abs().sum() > 0
    torch.testing.assert_close(g_ckpt, g_plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny-deberta-v2", "tiny-modernbert", "tiny-mt5", "tiny-bart"])
def test_other_encoder_families_train_and_keep_rows_independent(name):
    model = propagated(name)
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS, "right")
    with torch.no_grad():
        together = model(ids, mask, types).logits
        for i, text in enumerate(TEXTS):
            a_ids, a_mask, a_types = batch(model.backbone.tokenizer, [text], "right")
            assert (model(a_ids, a_mask, a_types).logits[0] - together[i]).abs().max() <= 1e-5
    model.train()
    model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    assert model.producer.prompt.grad.abs().sum() > 0
