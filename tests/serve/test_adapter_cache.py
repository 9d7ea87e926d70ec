"""The adapter store: run folders served as they are, skipped folders reported, loads on first use,
LRU eviction under a memory budget (never while in use), folders added while serving."""

from __future__ import annotations

import logging
import re

import httpx
import openai
import pytest

from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.store import AdapterStore
from tests.serve.helpers import make_adapter, serve_in_thread

pytestmark = pytest.mark.timeout(240)


def test_a_training_run_folder_is_served_under_the_run_name(tmp_path, data_dir, tiny_gpt2):
    from softprompt.train.config import TrainConfig
    from softprompt.train.trainer import train

    cfg = TrainConfig(backbone="tiny-gpt2", task="sst2-t2t", method="id-spam", data_dir=data_dir, train_limit=16,
                      eval_limit=8, epochs=1, batch_size=8, max_length=64, output_dir=str(tmp_path / "runs" / "x"),
                      progress=False, checkpoint_every=0)
    train(cfg, log=lambda *a: None)
    assert (tmp_path / "runs" / "x" / "adapter" / "adapter.json").is_file()
    store = AdapterStore(tiny_gpt2)
    store.load_dir(tmp_path / "runs")
    assert store.names() == ["x"] and store.skipped == []
    entry = store.get("x")
    assert entry.path == str((tmp_path / "runs" / "x" / "adapter").resolve()) and entry.model.method.name == "id-spam"
    one = AdapterStore(tiny_gpt2)  # the run folder itself
    one.load_dir(tmp_path / "runs" / "x")
    assert one.names() == ["x"]


def test_every_skipped_folder_is_reported_with_its_reason(tmp_path, tiny_bert, tiny_gpt2, caplog):
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "good")
    make_adapter(tiny_gpt2, "prompt-tuning", tmp_path / "other-base")
    (tmp_path / "notes").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter.json").write_text("{not json")
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "bad name")
    with caplog.at_level(logging.WARNING, logger="softprompt.serve"):
        store = AdapterStore(tiny_bert)
        store.load_dir(tmp_path)
    assert store.names() == ["good"]
    reasons = {r["name"]: r["reason"] for r in store.skipped}
    assert set(reasons) == {"other-base", "notes", "broken", "bad name"}
    assert "made for base 'tiny-gpt2'" in reasons["other-base"]
    assert "no adapter.json" in reasons["notes"] and "not valid JSON" in reasons["broken"]
    assert "adapter name 'bad name'" in reasons["bad name"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in reasons:
        assert f"{tmp_path / name}" in warned and "skipped" in warned


def test_lru_evicts_least_recently_used_but_never_one_in_use(tmp_path, tiny_gpt2):
    for i, name in enumerate("abc"):
        make_adapter(tiny_gpt2, "prompt-tuning", tmp_path / name, seed=i)
    probe = AdapterStore(tiny_gpt2)
    size = probe.build("a", tmp_path / "a").nbytes
    assert size > 0
    store = AdapterStore(tiny_gpt2, memory_budget_bytes=2 * size)  # room for two
    store.load_dir(tmp_path)
    assert [e.name for e in store.entries()] == ["a", "b"] and store.names() == ["a", "b", "c"]  # c on first use
    a = store.acquire("a")  # in use, and now the most recently used
    store.get("c")  # loads c; b is the least recently used idle one
    assert [e.name for e in store.entries()] == ["a", "c"] and store.evictions == 1
    store.get("b")  # a is in use: c goes although a is older
    assert [e.name for e in store.entries()] == ["a", "b"]
    assert store.memory_bytes <= 2 * size
    b = store.acquire("b")
    c = store.acquire("c")  # everything in use: over budget until released
    assert [e.name for e in store.entries()] == ["a", "b", "c"]
    store.release(a)
    assert [e.name for e in store.entries()] == ["b", "c"]
    store.release(b), store.release(c)
    assert store.memory_bytes <= 2 * size and store.loads == 5


def test_server_serves_new_folders_evicts_and_reloads(tmp_path, tiny_gpt2):
    root = tmp_path / "prompts"
    make_adapter(tiny_gpt2, "prompt-tuning", root / "a", seed=1)
    size = AdapterStore(tiny_gpt2).build("a", root / "a").nbytes
    settings = ServeSettings(base="tiny-gpt2", prompts=str(root), adapter_memory_mb=1.5 * size / 2**20)
    store = AdapterStore(tiny_gpt2, memory_budget_bytes=settings.adapter_memory_bytes)
    store.load_dir(root)
    app = create_app(settings, store)
    with serve_in_thread(app) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=60)
        first = c.completions.create(model="a", prompt="hi", max_tokens=5, temperature=0).choices[0].text
        with pytest.raises(openai.NotFoundError):
            c.completions.create(model="late", prompt="hi", max_tokens=5)
        make_adapter(tiny_gpt2, "prompt-tuning", root / "late", seed=2)  # added while serving: no restart
        assert c.completions.create(model="late", prompt="hi", max_tokens=5).usage.completion_tokens >= 1
        assert [m.id for m in c.models.list().data] == ["tiny-gpt2", "a", "late"]
        listing = httpx.get(url + "/v1/adapters").json()
        assert {a["name"]: a["loaded"] for a in listing["adapters"]} == {"a": False, "late": True}  # a evicted
        assert listing["memory"]["evictions"] == 1 and listing["memory"]["budget_bytes"] == settings.adapter_memory_bytes
        again = c.completions.create(model="a", prompt="hi", max_tokens=5, temperature=0).choices[0].text
        assert again == first  # reloaded from its folder, same answer
        metrics = httpx.get(url + "/metrics").text
        assert re.search(r"^softprompt_adapter_evictions_total 2$", metrics, re.M)
        assert re.search(r"^softprompt_adapter_loads_total 3$", metrics, re.M)
        assert 'softprompt_generation_requests_total{adapter="late",reason="length"} 1' in metrics
        # admin unload: gone, and a scan does not bring the folder back
        token_free = httpx.delete(url + "/v1/adapters/a")
        assert token_free.status_code == 403  # management needs a token (none set)
        store.remove("a")
        assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["tiny-gpt2", "late"]
