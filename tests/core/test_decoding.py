"""Decoding strategies: greedy, sampling, beam search and stop strings, cached and recomputed alike."""

import pytest
import torch

from softprompt.checks.recompute import RecomputedLane
from softprompt.decode import GenerationConfig, generate
from softprompt.decode.sampler import sample, uniform
from softprompt.errors import ConfigError
from tests.core.helpers import TEXTS, batch, build


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
        prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
        recomputed = generate(lambda reqs: RecomputedLane(model, ids, mask, reqs), prompts, model, cfg, tok)
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


def draws(logits, n=400, **row):
    """n draws from one row of logits, each with its own step (the counter of the row's noise)."""
    rows = logits.expand(n, -1)
    full = lambda v: torch.full((n,), v)  # noqa: E731
    return sample(rows, full(row.get("temperature", 1.0)), full(row.get("top_p", 1.0)), full(row.get("seed", 0)),
                  torch.arange(n)).tolist()


def test_top_p_keeps_the_smallest_nucleus_and_sampling_is_seeded():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    picks = draws(logits, top_p=0.6)
    assert set(picks) == {0, 1}  # 0.5 < 0.6, so the nucleus is {0, 1}; token 2 is never drawn
    assert 0.55 < picks.count(0) / 400 < 0.7  # renormalised: 0.5 / 0.8 = 0.625
    free = draws(logits, n=3000)
    assert [abs(free.count(t) / 3000 - p) < 0.03 for t, p in enumerate([0.5, 0.3, 0.2])] == [True] * 3
    assert draws(logits, temperature=0.0) == [0] * 400  # temperature 0 is greedy
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


def test_a_rows_draw_depends_on_its_seed_and_step_only_not_on_its_neighbours():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    temp, top_p = torch.tensor([1.0, 0.0, 0.7, 1.3]), torch.tensor([1.0, 1.0, 0.9, 0.5])
    seeds, steps = torch.tensor([3, 3, 11, 2**40]), torch.tensor([0, 5, 2, 9])
    together = sample(logits, temp, top_p, seeds, steps)
    alone = [int(sample(logits[r:r + 1], temp[r:r + 1], top_p[r:r + 1], seeds[r:r + 1], steps[r:r + 1]))
             for r in range(4)]
    assert together.tolist() == alone
    assert together[1] == logits[1].argmax()  # the greedy row among sampled ones


def test_the_counter_noise_is_uniform_and_differs_by_seed_and_step():
    u = uniform(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0]), 20000)
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert torch.equal(u, uniform(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0]), 20000))
