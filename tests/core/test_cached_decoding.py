"""Decoding with a key/value cache equals full recomputation at every step, for every method."""

import pytest
import torch

from softprompt.model import append_columns
from softprompt.runners.sequence import last_real_index
from tests.core.helpers import SOFT, TEXTS, batch, build

DECODERS = ["tiny-gpt2", "tiny-llama", "tiny-gemma3"]


def recomputed_logits(model, ids, mask, source):
    """Last-token logits of a full pass; input-dependent prompts read the original input only."""
    hidden, seq = model.from_state(model.frozen_state(ids, mask), ids, source_mask=source)
    last = hidden[torch.arange(ids.shape[0]), last_real_index(seq.text_mask)]
    return model.runner.lm_head()(last)


def perturbed(name, method):
    model = build(name, method).eval()
    with torch.no_grad():  # make every prompt parameter matter (zero-initialised parts included)
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("method", SOFT)
@pytest.mark.parametrize("name", DECODERS)
def test_cached_decoding_equals_recomputation(name, method, side):
    model = perturbed(name, method)
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:3], side)
    with torch.no_grad():
        logits, cache = model.prefill(ids, mask)
        source = mask.bool()
        for step in range(6):
            ref = recomputed_logits(model, ids, mask, source)
            assert torch.allclose(logits, ref, atol=1e-5), (step, (logits - ref).abs().max())
            nxt = logits.argmax(-1)
            ids, mask = append_columns(ids, mask, nxt)
            source = torch.cat([source, torch.zeros_like(source[:, :1])], 1)  # the new column is not input
            logits = model.decode(cache, nxt[:, None])[:, -1]


def test_decoding_never_runs_the_producer_after_prefill():
    model = perturbed("tiny-llama", "id-spam")
    calls = []
    model.producer.register_forward_hook(lambda *a: calls.append(1))
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "left")
    with torch.no_grad():
        logits, cache = model.prefill(ids, mask)
        for _ in range(4):
            logits = model.decode(cache, logits.argmax(-1)[:, None])[:, -1]
    assert len(calls) == 1


def test_cache_keeps_rows_and_beams_in_step():
    model = perturbed("tiny-gpt2", "prefix-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:3], "right")
    with torch.no_grad():
        logits, cache = model.prefill(ids, mask)
        order = torch.tensor([2, 0, 0])  # reorder and duplicate rows, as beam search does
        cache.select(order)
        nxt = logits.argmax(-1)[order]
        source = mask[order].bool()
        ids, mask = append_columns(ids[order], mask[order], nxt)
        source = torch.cat([source, torch.zeros_like(source[:, :1])], 1)
        out = model.decode(cache, nxt[:, None])[:, -1]
    assert torch.allclose(out, recomputed_logits(model, ids, mask, source), atol=1e-5)
