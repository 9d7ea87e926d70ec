"""Every method, mixed in one continuous batch over HTTP (openai client), equals each request run alone:
tiny-gpt2, tiny-llama and tiny-t5."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from softprompt.adapter import load_adapter
from softprompt.backbones import load_backbone
from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import METHODS, TEXTS, make_adapter, serve_in_thread

pytestmark = pytest.mark.timeout(300)
SOFT = [m for m in METHODS if m != "head-only"]


@pytest.mark.parametrize("base", ["tiny-gpt2", "tiny-llama", "tiny-t5"])
def test_mixed_continuous_batch_over_http_equals_each_request_alone(tmp_path, base):
    backbone = load_backbone(base)
    for i, method in enumerate(SOFT):
        make_adapter(backbone, method, tmp_path / method, seed=i + 3, fold=False)
    settings = ServeSettings(base=base, prompts=str(tmp_path))
    store = AdapterStore(backbone, settings.max_length, settings.adapter_memory_bytes)
    store.load_dir(tmp_path)
    requests = [(name, TEXTS[i % len(TEXTS)], 3 + i % 4) for i, name in enumerate([*SOFT, base, *SOFT])]
    with serve_in_thread(create_app(settings, store)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)

        def complete(req, stream):
            name, text, n = req
            kw = dict(model=name, prompt=text, max_tokens=n, temperature=0.0, extra_body={"ignore_eos": True})
            if not stream:
                out = client.completions.create(**kw)
                return out.choices[0].text, out.usage.completion_tokens
            chunks = client.completions.create(stream=True, **kw)
            return "".join(c.choices[0].text for c in chunks if c.choices), n

        with ThreadPoolExecutor(8) as pool:  # concurrent: the requests share decode steps
            plain = list(pool.map(lambda r: complete(r, False), requests))
            streamed = list(pool.map(lambda r: complete(r, True), requests))
    alone_backbone = load_backbone(base)
    tok = alone_backbone.tokenizer
    for (name, text, n), (got, used), (got_stream, _) in zip(requests, plain, streamed):
        model = (load_adapter(tmp_path / name, alone_backbone) if name != base else None)
        if model is None:
            from tests.core.helpers import build

            model = build(base, "head-only")
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            out = model.eval().generate(ids["input_ids"], ids["attention_mask"], max_new_tokens=n, eos_token_id=-1)
        expected = tok.decode(out[0].tolist(), skip_special_tokens=True)
        assert used == n
        assert got == expected == got_stream, (name, got, expected, got_stream)
