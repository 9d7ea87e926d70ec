"""Adapter store (no HTTP) and the Prometheus text the server renders."""

from __future__ import annotations

import pytest

from softprompt.errors import AdapterError
from softprompt.serve.metrics import Metrics
from softprompt.serve.store import AdapterStore, WrongBaseError
from tests.serve.helpers import make_adapter


def test_store_loads_a_folder_of_adapters_or_one_adapter_folder(tmp_path, tiny_bert, tiny_gpt2):
    make_adapter(tiny_bert, "dept", tmp_path / "many" / "d", seed=1)
    make_adapter(tiny_bert, "prefix-tuning", tmp_path / "many" / "p", seed=2, fold=False)
    make_adapter(tiny_gpt2, "head-only", tmp_path / "many" / "g", seed=3)
    (tmp_path / "many" / "notes").mkdir()  # no adapter.json: ignored
    store = AdapterStore(tiny_bert, max_length=128)
    store.load_dir(tmp_path / "many")
    assert store.names() == ["d", "p"]
    assert [r["name"] for r in store.rejected] == ["g"]
    assert store.get("d").max_tokens == 128
    assert type(store.get("p").model.producer).__name__ == "StaticPrompt"  # prefix MLP folded at load
    one = AdapterStore(tiny_bert)
    one.load_dir(tmp_path / "many" / "d")
    assert one.names() == ["d"]
    with pytest.raises(WrongBaseError):
        one.build("g", tmp_path / "many" / "g")
    with pytest.raises(AdapterError, match="adapter name"):
        one.build("../x", tmp_path / "many" / "d")
    with pytest.raises(AdapterError, match="not a folder"):
        one.load_dir(tmp_path / "missing")


def test_token_limit_leaves_room_for_the_prompt(tmp_path, tiny_bert):
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "a")
    store = AdapterStore(tiny_bert, max_length=10_000)
    assert store.build("a", tmp_path / "a").max_tokens == 512 - 10  # positions of tiny-bert minus 10 prompt tokens


def test_each_load_of_an_adapter_has_its_own_stable_id(tmp_path, tiny_bert):
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "a", seed=1)
    make_adapter(tiny_bert, "prompt-tuning", tmp_path / "b", seed=2)
    store = AdapterStore(tiny_bert, max_length=32)
    store.load_dir(tmp_path, preload=False)
    a, b = store.get("a"), store.get("b")
    assert a.uid != b.uid and store.get("a").uid == a.uid  # kept while in memory
    store.budget = 0  # evict both
    store.release(store.acquire("a"))
    assert store.entries() == []
    again = store.get("a")
    assert again is not a and again.uid not in (a.uid, b.uid)  # a reload is another load: never an old id


def test_metrics_text_format():
    m = Metrics()
    m.queue_depth = lambda: 3
    m.observe_request("POST", "/v1/classify", 200, 0.004)
    m.observe_request("POST", "/v1/classify", 503, 0.0001)
    m.observe_batch(5, 2, 0.01)
    m.observe_batch(1, 1, 0.002)
    text = m.render()
    assert 'softprompt_requests_total{method="POST",endpoint="/v1/classify",status="200"} 1' in text
    assert 'softprompt_batch_size_bucket{le="1.0"} 1' in text
    assert 'softprompt_batch_size_bucket{le="8.0"} 2' in text
    assert 'softprompt_batch_size_bucket{le="+Inf"} 2' in text
    assert "softprompt_batch_size_sum 6.0" in text
    assert 'softprompt_request_latency_seconds_bucket{endpoint="/v1/classify",le="0.005"} 2' in text
    assert "softprompt_queue_depth 3" in text
    assert text.endswith("\n")
    for line in text.splitlines():  # every sample line is "name{labels} value"
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
