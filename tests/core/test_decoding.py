"""Decoding strategies: greedy, sampling, beam search and stop strings, cached and recomputed alike."""

import pytest
import torch

from softprompt.decoding import GenerationConfig, _choose, generate
from softprompt.errors import ConfigError
from softprompt.model import append_columns
from softprompt.runners.sequence import last_real_index
from tests.core.helpers import TEXTS, batch, build


class RecomputeSession:
    """Reference session: every step reruns the whole sequence (input-dependent prompts read the input only)."""

    def __init__(self, model):
        self.model = model

    def _logits(self):
        hidden, seq = self.model.from_state(self.model.frozen_state(self.ids, self.mask), self.ids, source_mask=self.source)
        last = hidden[torch.arange(self.ids.shape[0]), last_real_index(seq.text_mask)]
        return self.model.runner.lm_head()(last)

    def prefill(self, ids, mask):
        self.ids, self.mask, self.source = ids, mask, mask.bool()
        return self._logits()

    def step(self, tokens):
        self.ids, self.mask = append_columns(self.ids, self.mask, tokens)
        self.source = torch.cat([self.source, torch.zeros_like(self.source[:, :1])], 1)
        return self._logits()

    def select(self, index):
        self.ids, self.mask, self.source = self.ids[index], self.mask[index], self.source[index]


def perturbed(name, method):
    model = build(name, method).eval()
    with torch.no_grad():
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("name,method", [("tiny-llama", "id-spam"), ("tiny-gpt2", "prefix-tuning"),
                                         ("tiny-gemma3", "lpt"), ("tiny-llama", "dept")])
@pytest.mark.parametrize("options", [{"num_beams": 3}, {"do_sample": True, "seed": 7, "top_p": 0.9, "temperature": 0.8},
                                     {}])
def test_cached_generation_equals_recomputed_generation(name, method, options):
    model = perturbed(name, method)
    tok = model.backbone.tokenizer
    ids, mask, _ = batch(tok, TEXTS[:3], "left")
    cfg = GenerationConfig(max_new_tokens=6, eos_token_id=-1, **options)
    with torch.no_grad():
        cached = model.generate_text(ids, mask, max_new_tokens=6, eos_token_id=-1, **options)
        recomputed = generate(RecomputeSession(model), ids, mask, cfg, tok)
    assert cached.tokens == recomputed.tokens
    assert all(len(t) == 6 for t in cached.tokens)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_beam_search_matches_hf_without_a_prompt(name):
    model = build(name, "head-only").eval()
    tok = model.backbone.tokenizer
    ids, mask, _ = batch(tok, TEXTS[:2], "left")
    ours = model.generate(ids, mask, max_new_tokens=5, eos_token_id=-1, num_beams=3, length_penalty=0.0)
    ref = model.backbone.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                                        num_beams=3, length_penalty=0.0, pad_token_id=tok.pad_token_id,
                                        eos_token_id=None)[:, ids.shape[1]:]
    assert torch.equal(ours, ref)


def test_t5_decoder_steps_with_its_cache_equal_full_decoder_passes():
    model = perturbed("tiny-t5", "prefix-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "right")
    out = model.generate_text(ids, mask, max_new_tokens=5, eos_token_id=-1)
    with torch.no_grad():
        start = model.backbone.model.config.decoder_start_token_id
        dec = torch.full((2, 1), start)
        for _ in range(5):  # a full decoder pass per step, behind a fresh copy of the decoder prefixes
            encoded, enc_mask, prefixes = model.encode(ids, mask)
            nxt = model.decoder_logits(encoded, enc_mask, dec, past_key_values=prefixes)[:, -1].argmax(-1)
            dec = torch.cat([dec, nxt[:, None]], 1)
    assert [row[1:] for row in dec.tolist()] == out.tokens


def test_top_p_keeps_the_smallest_nucleus_and_sampling_is_seeded():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    gen = torch.Generator().manual_seed(0)
    cfg = GenerationConfig(do_sample=True, top_p=0.6)
    picks = [int(_choose(logits, cfg, gen)) for _ in range(400)]
    assert set(picks) == {0, 1}  # 0.5 < 0.6, so the nucleus is {0, 1}; token 2 is never drawn
    assert 0.5 < picks.count(0) / 400 < 0.75  # renormalised: 0.5 / 0.8 = 0.625
    model = perturbed("tiny-llama", "prompt-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "left")
    a = model.generate_text(ids, mask, max_new_tokens=8, do_sample=True, seed=3, eos_token_id=-1)
    b = model.generate_text(ids, mask, max_new_tokens=8, do_sample=True, seed=3, eos_token_id=-1)
    c = model.generate_text(ids, mask, max_new_tokens=8, do_sample=True, seed=4, eos_token_id=-1)
    assert a.tokens == b.tokens and a.tokens != c.tokens


def test_stop_strings_end_a_row_and_are_cut_from_its_text():
    model = perturbed("tiny-gpt2", "prompt-tuning")
    tok = model.backbone.tokenizer
    ids, mask, _ = batch(tok, TEXTS[:2], "left")
    free = model.generate_text(ids, mask, max_new_tokens=8, eos_token_id=-1)
    stop = free.texts[0][2:4]  # a string the first row produces after a few tokens
    out = model.generate_text(ids, mask, max_new_tokens=8, eos_token_id=-1, stop=[stop])
    assert out.finish_reasons[0] == "stop" and stop not in out.texts[0]
    assert free.texts[0].startswith(out.texts[0])
    assert len(out.tokens[0]) < len(free.tokens[0])


def test_bad_generation_settings_name_the_field():
    with pytest.raises(ConfigError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ConfigError, match="num_beams > 1 is beam search"):
        GenerationConfig(num_beams=2, do_sample=True)


def test_t5_key_value_sites_prefix_the_decoder_too():
    model = perturbed("tiny-t5", "p-tuning-v2")
    runner = model.runner
    heads, head_dim = runner.prefix_shape()
    assert model.producer.out_dim == (runner.num_layers + runner.decoder_layers) * 2 * heads * head_dim
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "right")
    with torch.no_grad():
        with_decoder = model.generate_text(ids, mask, max_new_tokens=6, eos_token_id=-1).tokens
        encoded, enc_mask, prefixes = model.encode(ids, mask)
        start = torch.full((2, 1), model.backbone.model.config.decoder_start_token_id)
        plain = model.decoder_logits(encoded, enc_mask, start)[:, -1]
        prefixed = model.decoder_logits(encoded, enc_mask, start, past_key_values=prefixes)[:, -1]
    assert not torch.allclose(plain, prefixed)  # the decoder's own prefixes change what it predicts
    assert with_decoder[0][0] == int(prefixed[0].argmax())
