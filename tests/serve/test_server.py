"""The real HTTP server (uvicorn on 127.0.0.1, in a thread): batching, errors, limits, tokens, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import math
import re
import time
from pathlib import Path

import httpx
import pytest
import torch

from softprompt.adapter import load_adapter
from softprompt.backbones import load_backbone
from softprompt.serve.app import create_app
from softprompt.serve.client import Client, ServeError
from softprompt.serve.config import ServeSettings
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import TEXTS, make_adapter, serve_in_thread

TOKEN_ENV = "SOFTPROMPT_TEST_TOKEN"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVED = {"pt": "prompt-tuning", "v2": "p-tuning-v2", "spam": "id-spam"}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_bert, tiny_gpt2) -> Path:
    root = tmp_path_factory.mktemp("prompts")
    for i, (name, method) in enumerate(SERVED.items()):
        make_adapter(tiny_bert, method, root / name, seed=i + 1)
    make_adapter(tiny_gpt2, "prompt-tuning", root / "gpt", seed=9)  # another base: refused
    (root / "broken").mkdir()
    (root / "broken" / "adapter.json").write_text("{not json")
    return root


def build_app(backbone, prompts: Path, token: str | None = TOKEN, **kw):
    """The app as `softprompt serve` builds it; the token env var is set only while the app is made."""
    settings = ServeSettings(base=backbone.name, prompts=str(prompts), token_env=TOKEN_ENV, **kw)
    store = AdapterStore(backbone, settings.max_length)
    store.load_dir(prompts)
    old = os.environ.pop(TOKEN_ENV, None)
    if token:
        os.environ[TOKEN_ENV] = token
    try:
        return create_app(settings, store)
    finally:
        os.environ.pop(TOKEN_ENV, None)
        if old is not None:
            os.environ[TOKEN_ENV] = old


@pytest.fixture(scope="module")
def url(tiny_bert, adapters):
    app = build_app(tiny_bert, adapters, max_wait_ms=300, max_batch=16, max_queue=64, max_body_bytes=4096,
                    max_text_chars=500, max_length=64)
    with serve_in_thread(app) as u:
        yield u


def post_all(url: str, bodies: list[dict], headers=None) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as c:
            return await asyncio.gather(*(c.post("/v1/classify", json=b) for b in bodies))

    return asyncio.run(main())


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in metrics"
    return float(m.group(1))


def reference(adapters: Path, name: str, text: str, pair: str | None = None) -> torch.Tensor:
    backbone = load_backbone("tiny-bert")  # its own tokenizer: the server's is busy in its thread
    model = load_adapter(adapters / name, backbone).eval()
    enc = backbone.tokenizer(text, pair, return_tensors="pt")
    with torch.no_grad():
        return model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")).logits[0]


# -- classification ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["mixed", "per-adapter"])
def test_mixed_batch_of_three_methods_equals_each_request_alone(tiny_bert, adapters, batching):
    app = build_app(tiny_bert, adapters, max_wait_ms=400, max_batch=32, batching=batching)
    bodies = [{"adapter": name, "text": TEXTS[i % len(TEXTS)]} for i in range(3) for name in SERVED]
    bodies[4]["text_pair"] = "a second segment"
    with serve_in_thread(app) as u:
        responses = post_all(u, bodies)
        metrics = httpx.get(u + "/metrics").text
    for body, resp in zip(bodies, responses):
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["adapter"] == body["adapter"] and out["label"] in ("negative", "positive")
        ref = reference(adapters, body["adapter"], body["text"], body.get("text_pair"))
        assert torch.allclose(torch.tensor(out["logits"]), ref, atol=1e-5), (body, out["logits"], ref)
        assert math.isclose(sum(out["scores"].values()), 1.0, rel_tol=1e-5)
    # the nine requests were served in few batches, with several adapters in one forward pass
    batches = metric(metrics, "softprompt_batch_size_count")
    assert batches < len(bodies)
    assert metric(metrics, 'softprompt_batch_adapters_bucket{le="2.0"}') < batches  # some batch mixed all 3


def test_unknown_adapter_is_404_naming_the_available_ones(url):
    resp = httpx.post(url + "/v1/classify", json={"adapter": "nope", "text": "x"})
    assert resp.status_code == 404
    assert "unknown adapter 'nope'" in resp.json()["detail"]
    assert "available: pt, spam, v2" in resp.json()["detail"]


def test_adapter_listing_shows_refused_folders(url):
    out = httpx.get(url + "/v1/adapters").json()
    assert [a["name"] for a in out["adapters"]] == ["pt", "spam", "v2"]
    assert {a["name"]: a["method"] for a in out["adapters"]} == {"pt": "prompt-tuning", "spam": "id-spam", "v2": "p-tuning-v2"}
    reasons = {r["name"]: r["reason"] for r in out["rejected"]}
    assert set(reasons) == {"gpt", "broken"}
    assert "made for base 'tiny-gpt2'" in reasons["gpt"] and "not valid JSON" in reasons["broken"]
    assert out["base"]["name"] == "tiny-bert"


@pytest.mark.parametrize("body, status, words", [
    ({"adapter": "pt"}, 422, "body.text: Field required"),
    ({"text": "hello"}, 422, "body.adapter: Field required"),
    ({"adapter": "pt", "text": "x" * 501}, 422, "text has 501 characters; the limit is 500"),
    ({"adapter": "pt", "text": "ok", "text_pair": "y" * 600}, 422, "text_pair has 600 characters"),
    ({"adapter": "pt", "text": "x", "extra": 1}, 422, "body.extra: Extra inputs are not permitted"),
    ({"adapter": "pt", "text": "x" * 5000}, 413, "over the limit of 4096 bytes"),
])
def test_request_limits_and_missing_fields(url, body, status, words):
    resp = httpx.post(url + "/v1/classify", json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"]


def test_streamed_body_over_the_limit_is_413_and_bad_json_422(url):
    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    resp = httpx.post(url + "/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    resp = httpx.post(url + "/v1/classify", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.json()["detail"]


def test_long_input_is_truncated_to_the_token_limit(url, adapters):
    out = httpx.post(url + "/v1/classify", json={"adapter": "spam", "text": "word " * 90}).json()
    assert out["truncated"] is True
    limit = {a["name"]: a["max_tokens"] for a in httpx.get(url + "/v1/adapters").json()["adapters"]}["spam"]
    backbone = load_backbone("tiny-bert")
    model = load_adapter(adapters / "spam", backbone).eval()
    enc = backbone.tokenizer("word " * 90, truncation=True, max_length=limit, return_tensors="pt")
    assert enc["input_ids"].shape[1] == limit
    with torch.no_grad():  # what the model saw: the input cut to the limit
        ref = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")).logits[0]
    assert torch.allclose(torch.tensor(out["logits"]), ref, atol=1e-5)
    assert httpx.post(url + "/v1/classify", json={"adapter": "spam", "text": "short"}).json()["truncated"] is False


# -- adapter management --------------------------------------------------------------------------------
def test_load_and_unload_need_the_token(url, adapters):
    path = {"path": str(adapters / "pt")}
    resp = httpx.post(url + "/v1/adapters/late", json=path)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    resp = httpx.post(url + "/v1/adapters/late", json=path, headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 403
    assert httpx.delete(url + "/v1/adapters/pt").status_code == 401


def test_hot_load_classify_unload(url, tmp_path, tiny_bert):
    make_adapter(tiny_bert, "lpt", tmp_path / "late", seed=7, labels=("a", "b", "c"))
    resp = httpx.post(url + "/v1/adapters/late", json={"path": str(tmp_path / "late")}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    assert resp.json()["adapter"]["method"] == "lpt" and resp.json()["replaced"] is False
    out = httpx.post(url + "/v1/classify", json={"adapter": "late", "text": "fine"}).json()
    assert out["label"] in ("a", "b", "c") and len(out["scores"]) == 3
    ref = reference(tmp_path, "late", "fine")  # the hot-loaded weights, not stale or default ones
    assert torch.allclose(torch.tensor(out["logits"]), ref, atol=1e-5)
    assert out["label"] == ("a", "b", "c")[int(ref.argmax())]
    assert httpx.delete(url + "/v1/adapters/late", headers=AUTH).json() == {"deleted": "late"}
    assert httpx.post(url + "/v1/classify", json={"adapter": "late", "text": "fine"}).status_code == 404
    assert httpx.delete(url + "/v1/adapters/late", headers=AUTH).status_code == 404


def test_adapter_for_another_base_is_409(url, adapters):
    resp = httpx.post(url + "/v1/adapters/gpt", json={"path": str(adapters / "gpt")}, headers=AUTH)
    assert resp.status_code == 409
    assert "made for base 'tiny-gpt2'" in resp.json()["detail"] and "tiny-bert" in resp.json()["detail"]


def test_unsafe_or_malformed_adapter_files_are_422(url, tmp_path, tiny_bert):
    import pickle

    from safetensors.torch import load_file, save_file

    def post(name, folder):
        return httpx.post(url + f"/v1/adapters/{name}", json={"path": str(folder)}, headers=AUTH)

    pkl = make_adapter(tiny_bert, "prompt-tuning", tmp_path / "pkl", seed=1)
    (pkl / "adapter.safetensors").write_bytes(pickle.dumps({"producer.prompt": [1.0]}))
    resp = post("pkl", pkl)
    assert resp.status_code == 422 and "safetensors" in resp.json()["detail"]

    nan = make_adapter(tiny_bert, "prompt-tuning", tmp_path / "nan", seed=1)
    tensors = load_file(nan / "adapter.safetensors")
    tensors["producer.prompt"][0, 0] = float("nan")
    save_file(tensors, nan / "adapter.safetensors")
    resp = post("nan", nan)
    assert resp.status_code == 422 and "NaN" in resp.json()["detail"]

    shape = make_adapter(tiny_bert, "prompt-tuning", tmp_path / "shape", seed=1)
    tensors = load_file(shape / "adapter.safetensors")
    tensors["producer.prompt"] = tensors["producer.prompt"][:3]
    save_file(tensors, shape / "adapter.safetensors")
    resp = post("shape", shape)
    assert resp.status_code == 422 and "shape" in resp.json()["detail"]

    assert post("missing", tmp_path / "nowhere").status_code == 422
    assert post("bad name!", pkl).status_code in (404, 422)
    lora = make_adapter(load_backbone("tiny-bert"), "lora", tmp_path / "lora", seed=1)
    resp = post("lora", lora)
    assert resp.status_code == 422 and "trains the backbone" in resp.json()["detail"]
    names = [a["name"] for a in httpx.get(url + "/v1/adapters").json()["adapters"]]
    assert names == ["pt", "spam", "v2"]


def test_protected_reads_and_disabled_admin(tiny_bert, adapters):
    app = build_app(tiny_bert, adapters, protect_reads=True)
    with serve_in_thread(app) as u:
        body = {"adapter": "pt", "text": "fine"}
        assert httpx.post(u + "/v1/classify", json=body).status_code == 401
        assert httpx.post(u + "/v1/classify", json=body, headers={"Authorization": "Bearer no"}).status_code == 403
        assert httpx.post(u + "/v1/classify", json=body, headers=AUTH).status_code == 200
        assert httpx.get(u + "/v1/adapters").status_code == 401
        assert httpx.get(u + "/metrics").status_code == 401
        assert httpx.get(u + "/healthz").status_code == 200
        with Client(u, token=TOKEN) as c:
            assert c.classify("pt", "fine")["adapter"] == "pt"
    app = build_app(tiny_bert, adapters, token=None)  # no token set: reads open, management disabled
    with serve_in_thread(app) as u:
        assert httpx.post(u + "/v1/classify", json={"adapter": "pt", "text": "fine"}).status_code == 200
        resp = httpx.delete(u + "/v1/adapters/pt", headers=AUTH)
        assert resp.status_code == 403 and TOKEN_ENV in resp.json()["detail"]


# -- load --------------------------------------------------------------------------------------------
def test_overload_gives_503_with_retry_after_then_recovers(tiny_bert, adapters):
    app = build_app(tiny_bert, adapters, max_queue=2, max_batch=1, max_wait_ms=0)
    batcher = app.state.batcher
    run = batcher._run

    def slow_run(jobs):  # a slow model, so the queue fills deterministically
        time.sleep(0.05)
        run(jobs)

    batcher._run = slow_run
    bodies = [{"adapter": "pt", "text": f"request {i}"} for i in range(24)]
    with serve_in_thread(app) as u:
        responses = post_all(u, bodies)
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}
        assert codes.count(503) >= 5 and codes.count(200) >= 2
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and "overloaded" in r.json()["detail"]
        metrics = httpx.get(u + "/metrics").text
        assert metric(metrics, "softprompt_overload_rejections_total") == codes.count(503)
        assert metric(metrics, "softprompt_queue_depth") == 0
        # still serving afterwards
        assert httpx.post(u + "/v1/classify", json={"adapter": "pt", "text": "after"}).status_code == 200


# -- misc ----------------------------------------------------------------------------------------------
def test_metrics_health_openapi_and_client(url, adapters):
    with Client(url) as c:
        assert c.health()["status"] == "ok"
        out = c.classify("v2", "a gripping film", text_pair="second")
        assert out["label"] in ("negative", "positive")
        assert [a["name"] for a in c.adapters()["adapters"]] == ["pt", "spam", "v2"]
        with pytest.raises(ServeError) as err:
            c.classify("nope", "x")
        assert err.value.status == 404 and "available" in err.value.detail
        text = c.metrics()
    with Client(url, token=TOKEN) as admin:
        assert admin.load("pt2", str(adapters / "pt"))["adapter"]["name"] == "pt2"
        assert admin.classify("pt2", "fine")["logits"] == admin.classify("pt", "fine")["logits"]
        assert admin.unload("pt2") == {"deleted": "pt2"}
    for name in ("softprompt_requests_total", "softprompt_batch_size_bucket", "softprompt_queue_depth",
                 "softprompt_request_latency_seconds_bucket"):
        assert name in text
    assert 'softprompt_requests_total{method="POST",endpoint="/v1/classify",status="404"}' in text
    schema = httpx.get(url + "/openapi.json").json()
    assert "/v1/classify" in schema["paths"] and "/v1/adapters/{name}" in schema["paths"]
    assert "/v1/generate" in schema["paths"]
    assert json.dumps(schema)  # well formed


# -- generation ----------------------------------------------------------------------------------------
def generated_alone(backbone, folder: Path, text: str, budget: int) -> list[int]:
    model = load_adapter(folder, backbone).eval()
    enc = backbone.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        row = model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=budget)[0].tolist()
    eos = backbone.tokenizer.eos_token_id
    return row[: row.index(eos)] if eos in row else row


@pytest.mark.parametrize("base,methods", [("tiny-gpt2", ("prompt-tuning", "id-spam", "p-tuning-v2")),
                                          ("tiny-t5", ("prompt-tuning", "lpt"))])
def test_generate_batches_requests_and_equals_each_alone(tmp_path, base, methods):
    backbone = load_backbone(base)
    for i, method in enumerate(methods):
        make_adapter(backbone, method, tmp_path / f"g{i}", seed=i + 3)
    app = build_app(backbone, tmp_path, max_wait_ms=300, max_batch=16)
    bodies = [{"adapter": f"g{i % len(methods)}", "text": TEXTS[i % len(TEXTS)], "max_new_tokens": 4 + i % 2}
              for i in range(6)]
    with serve_in_thread(app) as u:
        async def main():
            async with httpx.AsyncClient(base_url=u, timeout=60) as c:
                return await asyncio.gather(*(c.post("/v1/generate", json=b) for b in bodies))

        responses = asyncio.run(main())
        with Client(u) as c:
            with pytest.raises(ServeError) as err:
                c.generate("nope", "x")
            assert err.value.status == 404
            bad = httpx.post(u + "/v1/generate", json={"adapter": "g0", "text": "x", "max_new_tokens": 0})
            assert bad.status_code == 422 and "max_new_tokens" in bad.json()["detail"]
    reference_backbone = load_backbone(base)  # a tokenizer the server thread does not use
    for body, resp in zip(bodies, responses):
        assert resp.status_code == 200, resp.text
        out = resp.json()
        expected = generated_alone(reference_backbone, tmp_path / body["adapter"], body["text"], body["max_new_tokens"])
        specials = set(reference_backbone.tokenizer.all_special_ids)
        text = reference_backbone.tokenizer.decode([t for t in expected if t not in specials])
        assert out["tokens"] == len(expected) and out["text"] == text
        assert out["finish_reason"] == ("stop" if len(expected) < body["max_new_tokens"] else "length")
        assert out["adapter"] == body["adapter"]
        assert out["tokens"] <= body["max_new_tokens"]


def test_generate_on_an_encoder_base_is_422(url):
    resp = httpx.post(url + "/v1/generate", json={"adapter": "pt", "text": "hello"})
    assert resp.status_code == 422 and "encoder" in resp.json()["detail"] and "/v1/classify" in resp.json()["detail"]


def test_predict_command_asks_the_server(url, capsys):
    from softprompt.cli import main

    assert main(["predict", "--server", url, "spam", "a gripping film", "dull"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    direct = httpx.post(url + "/v1/classify", json={"adapter": "spam", "text": "dull"}).json()
    assert [row["text"] for row in lines] == ["a gripping film", "dull"]
    assert lines[1]["logits"] == direct["logits"] and lines[1]["label"] == direct["label"]
    with pytest.raises(SystemExit) as err:
        main(["predict", "--server", url, "nope", "x"])
    assert "answered 404" in str(err.value) and "available: pt, spam, v2" in str(err.value)
