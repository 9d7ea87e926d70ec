"""Decoding with a key/value cache equals full recomputation at every step, for every method."""

import pytest
import torch

from softprompt.checks.recompute import RecomputedLane
from tests.core.helpers import SOFT, TEXTS, batch, build

DECODERS = ["tiny-gpt2", "tiny-llama", "tiny-gemma3"]


def perturbed(name, method):
    model = build(name, method).eval()
    with torch.no_grad():  # make every prompt parameter matter (zero-initialised parts included)
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


# every decoder x method pair once; the padding side alternates so each decoder and each method sees both
CASES = [(name, method, ("left", "right")[(i + j) % 2]) for i, name in enumerate(DECODERS)
         for j, method in enumerate(SOFT)]


@pytest.mark.parametrize("name,method,side", CASES)
def test_cached_decoding_equals_recomputation(name, method, side):
    model = perturbed(name, method)
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:3], side)
    with torch.no_grad():
        cached, recomputed = model.lane(ids, mask), RecomputedLane(model, ids, mask)
        for step in range(6):
            gap = (cached.logits - recomputed.logits).abs().max()
            assert torch.allclose(cached.logits, recomputed.logits, atol=1e-5), (step, gap)
            nxt = recomputed.logits.argmax(-1)
            cached.step(nxt)
            recomputed.step(nxt)


def test_decoding_never_runs_the_producer_after_prefill():
    model = perturbed("tiny-llama", "id-spam")
    calls = []
    model.producer.register_forward_hook(lambda *a: calls.append(1))
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "left")
    with torch.no_grad():
        lane = model.lane(ids, mask)
        for _ in range(4):
            lane.step(lane.logits.argmax(-1))
    assert len(calls) == 1


def test_cache_keeps_rows_and_beams_in_step():
    model = perturbed("tiny-gpt2", "prefix-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:3], "right")
    order = torch.tensor([2, 0, 0])  # reorder and duplicate rows, as beam search does
    with torch.no_grad():
        cached, recomputed = model.lane(ids, mask), RecomputedLane(model, ids, mask)
        cached.keep(order)
        recomputed.keep(order)
        nxt = recomputed.logits.argmax(-1)
        cached.step(nxt)
        recomputed.step(nxt)
    assert torch.allclose(cached.logits, recomputed.logits, atol=1e-5)


def test_a_multi_token_feed_equals_steps():
    model = perturbed("tiny-llama", "prefix-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "left")
    tokens = torch.tensor([[5, 9, 3], [7, 7, 1]])
    with torch.no_grad():
        fed = model.lane(ids, mask).feed(tokens)
        stepped = model.lane(ids, mask)
        for j in range(3):
            stepped.step(tokens[:, j])
            assert torch.allclose(fed[:, j], stepped.logits, atol=1e-5)
