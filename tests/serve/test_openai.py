"""OpenAI-compatible generation over real HTTP (uvicorn on 127.0.0.1), with the official `openai` client.

Every answer is checked against the generation engine run alone (its own backbone, one request):
streamed text == non-streamed text == the engine alone, for adapters of three methods and the base.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from softprompt.adapter import load_adapter
from softprompt.backbones import load_backbone
from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.engine import Finish, GenerationEngine, SamplingParams
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import make_adapter, serve_in_thread

pytestmark = pytest.mark.timeout(180)

BASE = "tiny-gpt2"
ADAPTERS = {"pt": "prompt-tuning", "prefix": "prefix-tuning", "spam": "id-spam"}
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen-prompts")
    backbone = load_backbone(BASE)
    for i, (name, method) in enumerate(ADAPTERS.items()):
        make_adapter(backbone, method, root / name, seed=i + 11, fold=False)
    return root


def build(prompts: Path, chat_template: str | None = TEMPLATE, **kw):
    backbone = load_backbone(BASE)
    if chat_template is not None:
        backbone.tokenizer.chat_template = chat_template
    settings = ServeSettings(base=BASE, prompts=str(prompts), **kw)
    store = AdapterStore(backbone, settings.max_length, settings.adapter_memory_bytes)
    store.load_dir(prompts)
    return create_app(settings, store)


@pytest.fixture(scope="module")
def server(prompts):
    app = build(prompts, max_tokens_limit=200)
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def alone(prompts):
    """Generate with the engine alone: its own backbone, one request at a time."""
    backbone = load_backbone(BASE)
    backbone.tokenizer.chat_template = TEMPLATE
    engine = GenerationEngine(backbone, max_batch=1).start()
    models = {}

    def run(model: str, ids: list[int], **params) -> Finish:
        if model not in models:
            models[model] = None if model == BASE else load_adapter(prompts / model, backbone).eval().fold()
        ignore_eos = params.pop("ignore_eos", False)
        events = list(engine.submit(models[model], ids, SamplingParams(**params), ignore_eos=ignore_eos))
        return events[-1]

    run.tokenizer = backbone.tokenizer
    yield run
    engine.stop()


def client(url: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60, **kw)


def slow_engine(app, seconds: float = 0.01) -> None:
    """Make every forward through the app's base (each prefill and decode step) take at least `seconds`,
    so a request is surely still running; the engine's own code is left as it is."""
    embeddings = app.state.store.backbone.model.get_input_embeddings()
    embeddings.register_forward_pre_hook(lambda module, args: time.sleep(seconds))


def wait_for(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


# -- answers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [*ADAPTERS, BASE])
def test_completion_streamed_and_not_equal_the_engine_alone(server, alone, model):
    app, url = server
    c = client(url)
    prompt = "the film was"
    ids = list(alone.tokenizer(prompt)["input_ids"])
    for params in ({"temperature": 0.0}, {"temperature": 0.9, "top_p": 0.8, "seed": 7}):
        expected = alone(model, ids, max_tokens=12, **params)
        out = c.completions.create(model=model, prompt=prompt, max_tokens=12, **params)
        assert out.object == "text_completion" and out.model == model and out.id.startswith("cmpl-")
        assert out.choices[0].text == expected.text, (model, params)
        assert out.choices[0].finish_reason == ("length" if expected.reason == "length" else "stop")
        assert out.usage.prompt_tokens == len(ids) and out.usage.completion_tokens == expected.completion_tokens
        assert out.usage.total_tokens == len(ids) + expected.completion_tokens
        chunks = list(c.completions.create(model=model, prompt=prompt, max_tokens=12, stream=True,
                                           stream_options={"include_usage": True}, **params))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        assert text == expected.text
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == out.choices[0].finish_reason
        assert all(ch.object == "text_completion" and ch.id == chunks[0].id for ch in chunks)
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.completion_tokens
    # token ids as the prompt: the same answer
    again = c.completions.create(model=model, prompt=ids, max_tokens=12, temperature=0)
    assert again.choices[0].text == alone(model, ids, max_tokens=12, temperature=0.0).text


def test_chat_renders_the_template_and_streams_the_same_text(server, alone):
    app, url = server
    c = client(url)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    rendered = alone.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|assistant|>")
    ids = list(alone.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    expected = alone("prefix", ids, max_tokens=10, temperature=0.0)
    out = c.chat.completions.create(model="prefix", messages=messages, max_tokens=10, temperature=0)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.choices[0].message.role == "assistant" and out.choices[0].message.content == expected.text
    assert out.usage.prompt_tokens == len(ids) and out.usage.completion_tokens == expected.completion_tokens
    chunks = list(c.chat.completions.create(model="prefix", messages=messages, max_tokens=10, temperature=0,
                                            stream=True))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == out.choices[0].finish_reason
    # max_completion_tokens is max_tokens; content parts are joined
    parts = [{"role": "system", "content": "be brief"},
             {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]}]
    out2 = c.chat.completions.create(model="prefix", messages=parts, max_completion_tokens=10, temperature=0)
    assert out2.choices[0].message.content == expected.text


def test_stop_strings_cut_the_text_streamed_or_not(server, alone):
    app, url = server
    c = client(url)
    ids = list(alone.tokenizer("abc")["input_ids"])
    free = alone("spam", ids, max_tokens=20, temperature=0.0, ignore_eos=True).text
    assert len(free) >= 6, free
    stop = free[3:5]  # a stop string that occurs in the free-running text
    expected = alone("spam", ids, max_tokens=20, temperature=0.0, stop=[stop], ignore_eos=True)
    assert expected.reason == "stop" and stop not in expected.text
    for stop_field in (stop, [stop, "never-there"]):
        out = c.completions.create(model="spam", prompt="abc", max_tokens=20, temperature=0, stop=stop_field,
                                   extra_body={"ignore_eos": True})
        assert out.choices[0].text == expected.text and out.choices[0].finish_reason == "stop"
        chunks = list(c.completions.create(model="spam", prompt="abc", max_tokens=20, temperature=0, stop=stop_field,
                                           stream=True, extra_body={"ignore_eos": True}))
        assert "".join(ch.choices[0].text for ch in chunks) == expected.text


def test_concurrent_requests_across_adapters_equal_each_alone(server, alone):
    app, url = server
    prompts = ["one", "two words", "a longer prompt here", "x"]
    jobs = [(m, p) for m in [*ADAPTERS, BASE] for p in prompts]

    async def main():
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=60) as ac:
            async def one(model, prompt):
                stream = await ac.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0,
                                                     stream=True)
                return "".join([ch.choices[0].text async for ch in stream])

            return await asyncio.gather(*(one(m, p) for m, p in jobs))

    texts = asyncio.run(main())
    for (model, prompt), text in zip(jobs, texts):
        ids = list(alone.tokenizer(prompt)["input_ids"])
        assert text == alone(model, ids, max_tokens=8, temperature=0.0).text, (model, prompt)
    metrics = httpx.get(url + "/metrics").text
    for model in [*ADAPTERS, BASE]:
        assert re.search(rf'softprompt_generation_requests_total{{adapter="{model}",reason="(length|stop)"}} \d+', metrics)
        assert f'softprompt_time_to_first_token_seconds_count{{adapter="{model}"}}' in metrics
        assert f'softprompt_inter_token_latency_seconds_bucket{{adapter="{model}",le="+Inf"}}' in metrics
        assert f'softprompt_generation_completion_tokens_total{{adapter="{model}"}}' in metrics


def test_models_list_the_base_and_every_adapter(server):
    app, url = server
    c = client(url)
    models = c.models.list()
    assert [m.id for m in models.data] == [BASE, *sorted(ADAPTERS)]
    assert all(m.object == "model" for m in models.data)
    assert c.models.retrieve("spam").id == "spam"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")
    raw = httpx.get(url + "/v1/models").json()
    assert raw["object"] == "list" and set(raw["data"][0]) == {"id", "object", "created", "owned_by"}


# -- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, param, words", [
    ({"model": "pt", "prompt": "x", "n": 2}, 400, "n", "only n=1"),
    ({"model": "nope", "prompt": "x"}, 404, "model", "The model 'nope' does not exist; available: tiny-gpt2, "),
    ({"model": "pt", "prompt": "x", "max_tokens": 201}, 400, "max_tokens", "limit of 200"),
    ({"model": "pt", "prompt": "x", "temperature": 3}, 400, "temperature", "less than or equal to 2"),
    ({"model": "pt", "prompt": "x", "whatever": 1}, 400, "whatever", "Extra inputs are not permitted"),
    ({"model": "pt"}, 400, "prompt", "Field required"),
    ({"model": "pt", "prompt": "x", "logprobs": 2}, 400, "logprobs", "not supported"),
    ({"model": "pt", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ({"model": "pt", "prompt": [1, 99999]}, 400, "prompt", "token ids must be in [0, "),
    ({"model": "pt", "prompt": ["a", "b"]}, 400, "prompt", "only one prompt per request"),
])
def test_completion_errors_have_openai_shape(server, body, status, param, words):
    app, url = server
    resp = httpx.post(url + "/v1/completions", json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and words in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_openai_client_raises_the_right_errors(server):
    app, url = server
    c = client(url)
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        c.completions.create(model="pt", prompt="x", n=3)
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.code == "model_not_found"
    resp = httpx.post(url + "/v1/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]["message"]


def test_context_too_long_is_400_naming_the_limit(server):
    app, url = server
    resp = httpx.post(url + "/v1/completions", json={"model": "pt", "prompt": "word " * 100, "max_tokens": 200})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded" and "context of 512 positions" in err["message"], err


def test_chat_without_max_tokens_fills_what_the_context_leaves_after_the_site_positions(prompts):
    """No max_tokens: the answer may take every position the prompt and the soft prompt leave. A prompt
    at the input embeddings takes positions (prompt-tuning: 10); a prompt in the layers' hidden states
    takes none (id-spam), so it leaves the whole rest of the context to the answer."""
    app = build(prompts)
    engine, store = app.state.engine, app.state.store
    body = {"messages": [{"role": "user", "content": "hello there"}], "ignore_eos": True, "temperature": 0}
    with serve_in_thread(app) as url:
        prompt = httpx.post(url + "/v1/chat/completions", json={**body, "model": "pt", "max_tokens": 1}).json()
        prompt_tokens = prompt["usage"]["prompt_tokens"]
        for name, taken in (("pt", 10), ("spam", 0), (BASE, 0)):
            if name != BASE:
                model = store.get(name).model
                assert model.site.positions_taken(model.producer.num_tokens) == taken
            engine.max_context = prompt_tokens + taken + 12
            resp = httpx.post(url + "/v1/chat/completions", json={**body, "model": name})
            assert resp.status_code == 200, (name, resp.text)
            assert resp.json()["usage"]["completion_tokens"] == 12, name
            assert resp.json()["choices"][0]["finish_reason"] == "length"


def test_chat_without_a_template_is_400(prompts):
    app = build(prompts, chat_template=None)
    with serve_in_thread(app) as url:
        with pytest.raises(openai.BadRequestError) as err:
            client(url).chat.completions.create(model="pt", messages=[{"role": "user", "content": "hi"}])
        assert "has no chat template" in str(err.value) and err.value.code == "no_chat_template"


def test_encoder_base_refuses_generation(tiny_bert, tmp_path):
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "a")
    settings = ServeSettings(base="tiny-bert", prompts=str(tmp_path))
    store = AdapterStore(tiny_bert)
    store.load_dir(tmp_path)
    with serve_in_thread(create_app(settings, store)) as url:
        resp = httpx.post(url + "/v1/completions", json={"model": "a", "prompt": "x"})
        assert resp.status_code == 400 and "needs a decoder base" in resp.json()["error"]["message"]
        assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["tiny-bert", "a"]


# -- robustness --------------------------------------------------------------------------------------------
def test_client_disconnect_cancels_the_request_and_frees_its_slot(prompts):
    app = build(prompts)
    slow_engine(app, 0.01)
    engine, service = app.state.engine, app.state.service
    with serve_in_thread(app) as url:
        body = {"model": "pt", "prompt": "go", "max_tokens": 400, "temperature": 1.0, "seed": 3, "stream": True,
                "ignore_eos": True}  # sampled: every token adds text (greedy here repeats end-of-text)
        with httpx.Client(timeout=30) as h:
            with h.stream("POST", url + "/v1/completions", json=body) as resp:
                assert resp.status_code == 200
                lines = resp.iter_lines()
                got = [line for line, _ in zip(lines, range(6)) if line.startswith("data:")]
                assert got and engine.running == 1
        # the connection is closed mid-stream: the engine drops the request at its next step
        assert wait_for(lambda: engine.running == 0 and engine.waiting == 0 and service.active == 0), \
            (engine.running, service.active)
        metrics = httpx.get(url + "/metrics").text
        done = re.search(r'softprompt_generation_completion_tokens_total\{adapter="pt"\} (\d+)', metrics)
        assert 'softprompt_generation_requests_total{adapter="pt",reason="cancelled"} 1' in metrics, metrics
        assert done and int(done.group(1)) < 400
        # and the server goes on serving
        out = client(url).completions.create(model="pt", prompt="go", max_tokens=3, temperature=0)
        assert out.usage.completion_tokens >= 1


def test_full_queue_is_503_with_retry_after_then_recovers(prompts):
    app = build(prompts, max_batch=1, max_gen_queue=1)
    slow_engine(app, 0.02)
    body = {"model": "pt", "prompt": "go", "max_tokens": 10, "temperature": 0, "ignore_eos": True}

    async def main(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as h:
            return await asyncio.gather(*(h.post("/v1/completions", json=body) for _ in range(8)))

    with serve_in_thread(app) as url:
        responses = asyncio.run(main(url))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503} and codes.count(503) >= 3 and codes.count(200) >= 1, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded" and "retry later" in r.json()["error"]["message"]
            else:
                assert r.json()["usage"]["completion_tokens"] == 10
        assert 'softprompt_generation_refused_total{reason="overloaded"}' in httpx.get(url + "/metrics").text
        assert httpx.post(url + "/v1/completions", json=body).status_code == 200


def test_a_failing_adapter_fails_only_its_own_requests(prompts, alone):
    app = build(prompts)
    bad = app.state.store.get("pt")

    def broken(*args, **kwargs):
        raise RuntimeError("producer exploded")

    bad.model.producer.forward = broken
    jobs = [("pt", False), ("spam", False), ("pt", True), ("prefix", True), (BASE, False)]

    async def main(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as h:
            return await asyncio.gather(*(h.post("/v1/completions", json={
                "model": m, "prompt": "hello", "max_tokens": 6, "temperature": 0, "stream": s}) for m, s in jobs))

    with serve_in_thread(app) as url:
        responses = asyncio.run(main(url))
    ids = list(alone.tokenizer("hello")["input_ids"])
    for (model, stream), resp in zip(jobs, responses):
        if model == "pt":
            assert resp.status_code == 500, resp.text
            err = resp.json()["error"]
            assert err["type"] == "server_error" and "producer exploded" in err["message"]
        else:
            assert resp.status_code == 200, resp.text
            expected = alone(model, ids, max_tokens=6, temperature=0.0).text
            if stream:
                datas = [line[5:].strip() for line in resp.text.splitlines() if line.startswith("data:")]
                assert datas[-1] == "[DONE]"
                text = "".join(json.loads(d)["choices"][0]["text"] for d in datas[:-1])
            else:
                text = resp.json()["choices"][0]["text"]
            assert text == expected, model


def test_drain_finishes_streams_in_flight_and_refuses_new_requests(prompts, alone):
    app = build(prompts)
    slow_engine(app, 0.01)
    service = app.state.service
    body = {"model": "spam", "prompt": "go", "max_tokens": 60, "temperature": 1.0, "seed": 5, "stream": True,
            "ignore_eos": True}
    with serve_in_thread(app) as url:
        with httpx.Client(timeout=30) as h, h.stream("POST", url + "/v1/completions", json=body) as resp:
            lines = resp.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            service.begin_drain()
            refused = httpx.post(url + "/v1/completions", json={**body, "stream": False})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "shutting_down"
            assert httpx.post(url + "/v1/generate", json={"adapter": "spam", "text": "x"}).status_code == 503
            assert httpx.get(url + "/healthz").json()["status"] == "draining"
            datas = [first[5:].strip()] + [line[5:].strip() for line in lines if line.startswith("data:")]
        assert datas[-1] == "[DONE]"
        chunks = [json.loads(d) for d in datas[:-1]]
        text = "".join(ch["choices"][0]["text"] for ch in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert len(chunks) > 20  # it was streaming when the drain began, and went on to the end
        ids = list(alone.tokenizer("go")["input_ids"])
        assert text == alone("spam", ids, max_tokens=60, temperature=1.0, seed=5, ignore_eos=True).text
        assert service.wait_idle(5)


def test_small_client_completes_and_lists_models(server, alone):
    from softprompt.serve.client import Client, ServeError

    app, url = server
    with Client(url) as c:
        assert c.models() == [BASE, *sorted(ADAPTERS)]
        out = c.complete("pt", "the film was", max_tokens=5, temperature=0)
        ids = list(alone.tokenizer("the film was")["input_ids"])
        assert out["choices"][0]["text"] == alone("pt", ids, max_tokens=5, temperature=0.0).text
        with pytest.raises(ServeError) as err:
            c.complete("nope", "x")
        assert err.value.status == 404 and "does not exist" in err.value.detail
