"""Continuous batching across adapters: every request's tokens equal the request run alone."""

import time

import pytest
import torch

from softprompt.serve.engine import ContextTooLong, Finish, GenerationEngine, SamplingParams, Token
from tests.core.helpers import SOFT, build

PROMPTS = ["a gripping, beautifully acted film", "dull", "not bad at all, really", "the plot goes nowhere",
           "what a ride", "I wanted to leave after ten minutes"]


def adapters(name):
    models = {}
    for i, method in enumerate(SOFT):
        model = build(name, method, seed=i).eval()
        with torch.no_grad():
            for p in model.producer.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        models[method] = model
    return models


def alone(model, backbone, ids, n):
    if model is None:
        model = build(backbone.name, "head-only").eval()
    out = model.generate(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=n,
                         eos_token_id=-1)
    return out[0].tolist()


def collect(stream):
    tokens, finish = [], None
    for event in stream:
        if isinstance(event, Token):
            tokens.append(event.id)
        else:
            finish = event
    return tokens, finish


@pytest.mark.parametrize("per_adapter", [False, True])
@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"])
def test_requests_joining_a_running_batch_equal_each_request_alone(name, per_adapter):
    models = adapters(name)
    backbone = next(iter(models.values())).backbone
    tok = backbone.tokenizer
    engine = GenerationEngine(backbone, max_batch=16, per_adapter=per_adapter).start()
    plan = [(m, PROMPTS[i % len(PROMPTS)], 4 + (i % 3) * 3) for i, m in enumerate([*models, None, *models])]
    streams = []
    try:
        for i, (method, text, n) in enumerate(plan):
            model = None if method is None else models[method]
            ids = tok(text)["input_ids"]
            streams.append((model, ids, n, engine.submit(model, ids, SamplingParams(max_tokens=n, temperature=0),
                                                         ignore_eos=True)))
            if i % 4 == 3:  # later requests join while earlier ones are decoding
                start = engine.steps
                while engine.steps < start + 2 and engine.running:
                    time.sleep(0.005)
        for model, ids, n, stream in streams:
            tokens, finish = collect(stream)
            assert finish.reason == "length" and finish.completion_tokens == n == len(tokens)
            assert tokens == alone(model, backbone, ids, n), (model and model.method.name)
    finally:
        engine.stop()
    assert engine.running == 0


def test_cancel_frees_the_slot_and_others_continue():
    models = adapters("tiny-llama")
    backbone = models["prompt-tuning"].backbone
    ids = backbone.tokenizer("a long story")["input_ids"]
    engine = GenerationEngine(backbone).start()
    try:
        a = engine.submit(models["prompt-tuning"], ids, SamplingParams(max_tokens=200, temperature=0), ignore_eos=True)
        b = engine.submit(models["id-spam"], ids, SamplingParams(max_tokens=6, temperature=0), ignore_eos=True)
        first = next(iter(a))
        assert isinstance(first, Token)
        a.cancel()
        tokens, finish = collect(a)
        assert finish.reason == "cancelled" and finish.completion_tokens < 200
        tokens, finish = collect(b)
        assert tokens == alone(models["id-spam"], backbone, ids, 6)
        deadline = time.time() + 5
        while engine.running and time.time() < deadline:
            time.sleep(0.01)
        assert engine.running == 0
    finally:
        engine.stop()


def test_sampling_is_per_request_and_seeded_and_limits_are_checked():
    models = adapters("tiny-gpt2")
    backbone = models["prefix-tuning"].backbone
    ids = backbone.tokenizer("hello")["input_ids"]
    engine = GenerationEngine(backbone).start()
    try:
        params = SamplingParams(max_tokens=8, temperature=0.9, top_p=0.9, seed=11)
        a = collect(engine.submit(models["prefix-tuning"], ids, params, ignore_eos=True))[0]
        b = collect(engine.submit(models["prefix-tuning"], ids, params, ignore_eos=True))[0]
        greedy = collect(engine.submit(models["prefix-tuning"], ids, SamplingParams(max_tokens=8, temperature=0),
                                       ignore_eos=True))[0]
        assert a == b and len(a) == 8
        assert greedy == alone(models["prefix-tuning"], backbone, ids, 8)
        with pytest.raises(ContextTooLong, match="exceeds the base's context of 512 positions"):
            engine.submit(models["prefix-tuning"], ids, SamplingParams(max_tokens=600))
    finally:
        engine.stop()


@pytest.mark.parametrize("per_adapter", [False, True])
def test_a_failing_adapter_fails_only_its_own_requests(per_adapter):
    models = adapters("tiny-llama")
    backbone = models["lpt"].backbone
    broken = models["lpt"]
    broken.producer.forward = lambda inp: (_ for _ in ()).throw(RuntimeError("boom"))
    ids = backbone.tokenizer("hello there")["input_ids"]
    engine = GenerationEngine(backbone, per_adapter=per_adapter).start()
    try:
        bad = engine.submit(broken, ids, SamplingParams(max_tokens=4, temperature=0), ignore_eos=True)
        good = engine.submit(models["smop"], ids, SamplingParams(max_tokens=4, temperature=0), ignore_eos=True)
        _, finish = collect(bad)
        assert finish.reason == "error" and "boom" in finish.error
        tokens, finish = collect(good)
        assert finish.reason == "length" and tokens == alone(models["smop"], backbone, ids, 4)
    finally:
        engine.stop()
    assert isinstance(finish, Finish)
