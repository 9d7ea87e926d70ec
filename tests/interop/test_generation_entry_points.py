"""One decode core: `model.generate_text`, `wrap().generate` and the OpenAI server return the same tokens.

For every soft-prompt method on a GPT-2, a Llama and a T5 base: greedy and seeded sampling, each
prompt alone and (offline) the prompts in one batch. The server is real (uvicorn on loopback),
read with the official `openai` client; prompts go in as token ids.
"""

from __future__ import annotations

import openai
import pytest
import torch

import softprompt.wrap as sp_wrap
from softprompt.adapter import load_adapter
from softprompt.backbones import load_backbone
from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import METHODS, make_adapter, serve_in_thread

pytestmark = pytest.mark.timeout(600)

PROMPT_METHODS = [m for m in METHODS if m != "head-only"]
TEXTS = ["the weather today is", "a short story about a cat:"]
SETTINGS = {"greedy": {}, "sampled": {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "seed": 123}}
NEW = 8


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-t5"])
def setup(request, tmp_path_factory):
    base = request.param
    root = tmp_path_factory.mktemp(base)
    backbone = load_backbone(base)
    for i, method in enumerate(PROMPT_METHODS):
        make_adapter(backbone, method, root / method, seed=i + 1, generative=True)
    settings = ServeSettings(base=base, prompts=str(root), max_tokens_limit=64)
    store = AdapterStore(backbone, settings.max_length, settings.adapter_memory_bytes)
    store.load_dir(root)
    ids = [backbone.tokenizer(t)["input_ids"] for t in TEXTS]
    with serve_in_thread(create_app(settings, store)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        client.tokenizer = backbone.tokenizer
        yield base, root, ids, client


def offline_rows(model, ids, options, batched: bool) -> list[list[int]]:
    pad = model.backbone.tokenizer.pad_token_id or 0
    groups = [ids] if batched else [[row] for row in ids]
    rows = []
    for group in groups:
        width = max(len(r) for r in group)
        x = torch.tensor([[pad] * (width - len(r)) + r for r in group])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in group])
        rows += model.generate_text(x, mask, max_new_tokens=NEW, **options).tokens
    return rows


def wrapped_rows(wrapped, ids, options) -> list[list[int]]:
    eos = wrapped.model.backbone.tokenizer.eos_token_id
    rows = []
    for row in ids:
        out = wrapped.generate(torch.tensor([row]), max_new_tokens=NEW, **options)[0].tolist()
        rows.append(out[:out.index(eos)] if eos in out else out)
    return rows


def served_rows(client, model: str, ids, options) -> list[list[int]]:
    temperature = options.get("temperature", 1.0) if options.get("do_sample") else 0.0
    out = []
    for row in ids:
        r = client.completions.create(model=model, prompt=row, max_tokens=NEW, temperature=temperature,
                                      top_p=options.get("top_p", 1.0), seed=options.get("seed"),
                                      extra_body={"return_token_ids": True})
        choice = r.choices[0]
        assert choice.text == client.tokenizer.decode(choice.token_ids, skip_special_tokens=True)
        assert r.usage.completion_tokens == len(choice.token_ids)
        out.append(choice.token_ids)
    return out


@pytest.mark.parametrize("how", list(SETTINGS))
def test_offline_wrapped_and_served_generation_agree_for_every_method(setup, how):
    base, root, ids, client = setup
    options = SETTINGS[how]
    lengths = []
    for method in PROMPT_METHODS:
        model = load_adapter(root / method).eval()
        alone = offline_rows(model, ids, options, batched=False)
        assert offline_rows(model, ids, options, batched=True) == alone, method
        assert wrapped_rows(sp_wrap.from_pretrained(root / method), ids, options) == alone, method
        assert served_rows(client, method, ids, options) == alone, method
        lengths += [len(r) for r in alone]
    assert sum(n == NEW for n in lengths) >= len(lengths) // 2  # mostly full-length rows, not trivial ones
