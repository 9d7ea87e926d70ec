"""Serving replicas (issue #27 item 3): 2 replicas on Ray Serve behind one endpoint, checked against one
process (today's server, uvicorn in a thread) on the same adapters: the same greedy outputs and token ids,
an adapter's requests on one replica, adapters read lazily per replica, and a replica killed under load
losing only its in-flight streams (their clients get an error, not a hang) before it is replaced."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import httpx
import pytest

from softprompt.serve.config import ServeSettings
from tests.serve.helpers import free_port, make_adapter, serve_in_thread, wait_ready

serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'softprompt[ray]')")
import ray  # noqa: E402

from softprompt.serve.replicas import REPLICA_HEADER, build_application, load_app  # noqa: E402

pytestmark = pytest.mark.timeout(240)

BASE = "tiny-gpt2"
ADAPTERS = [f"a{i}" for i in range(6)]  # compared with one process
FRESH = [f"b{i}" for i in range(6)]  # first used by the affinity test
METHODS = ["prompt-tuning", "prefix-tuning", "id-spam"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_gpt2) -> ServeSettings:
    root: Path = tmp_path_factory.mktemp("replica-prompts")
    for i, name in enumerate(ADAPTERS + FRESH):
        make_adapter(tiny_gpt2, METHODS[i % len(METHODS)], root / name, seed=i + 3, fold=False)
    return ServeSettings(base=BASE, prompts=str(root), max_tokens_limit=400, threads=1)


@pytest.fixture(scope="module")
def single(settings):
    with serve_in_thread(load_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def replicas(settings):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(dataclasses.replace(settings, replicas=2)), name="softprompt",
                  route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=120)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def complete(url: str, model: str, prompt: str, max_tokens: int = 8) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "return_token_ids": True}
    return httpx.post(url + "/v1/completions", json=body, timeout=60)


def test_two_replicas_answer_as_one_process(single, replicas):
    for i, name in enumerate(ADAPTERS + [BASE]):
        prompt = f"the film number {i} was"
        one, two = complete(single, name, prompt).json(), complete(replicas, name, prompt).json()
        assert two["choices"][0]["text"] == one["choices"][0]["text"]
        assert two["choices"][0]["token_ids"] == one["choices"][0]["token_ids"] and one["choices"][0]["token_ids"]
    body = {"adapter": ADAPTERS[0], "text": "a gripping film"}
    one, two = (httpx.post(u + "/v1/classify", json=body, timeout=60).json() for u in (single, replicas))
    assert two["label"] == one["label"] and two["logits"] == pytest.approx(one["logits"], abs=1e-5)
    streamed = {"model": ADAPTERS[1], "prompt": "hello", "max_tokens": 6, "temperature": 0, "stream": True}
    assert streamed_text(replicas, streamed) == streamed_text(single, streamed) == complete(
        single, ADAPTERS[1], "hello", max_tokens=6).json()["choices"][0]["text"]
    models = httpx.get(replicas + "/v1/models", timeout=30).json()
    assert {m["id"] for m in models["data"]} >= set(ADAPTERS)


def streamed_text(url: str, body: dict) -> str:
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])


def served_by(url: str, name: str, n: int) -> set[str]:
    return {complete(url, name, f"request {k}", max_tokens=2).headers[REPLICA_HEADER] for k in range(n)}


def resident_per_replica(url: str) -> dict[str, set[str]]:
    """{replica id: adapters in its memory}, asking GET /v1/adapters until both replicas have answered."""
    seen: dict[str, set[str]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        answer = httpx.get(url + "/v1/adapters", timeout=30)
        seen[answer.headers[REPLICA_HEADER]] = {a["name"] for a in answer.json()["adapters"] if a["loaded"]}
    return seen


def home_of(url: str, name: str) -> str:
    """The one replica serving `name`'s requests (its first request, then four more once the replica's
    new routing key has reached the router)."""
    first = served_by(url, name, 1)
    time.sleep(0.5)
    homes = first | served_by(url, name, 4)
    assert len(homes) == 1, f"{name} served by several replicas: {homes}"
    return homes.pop()


def test_an_adapters_requests_go_to_one_replica_and_adapters_load_lazily(replicas):
    homes = {name: home_of(replicas, name) for name in FRESH}
    assert len(set(homes.values())) == 2, f"new adapters are spread over both replicas: {homes}"
    resident = resident_per_replica(replicas)
    assert set(resident) == set(homes.values())
    for replica, loaded in resident.items():
        assert loaded & set(FRESH) == {name for name, home in homes.items() if home == replica}


def replica_actor(replica_id: str):
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if "SERVE_REPLICA" in actor["name"] and actor["name"].endswith(replica_id):
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise LookupError(replica_id)


async def stream_outcome(client: httpx.AsyncClient, url: str, name: str, started: asyncio.Event) -> tuple[str, str]:
    """(replica id, 'done' | 'error') of one long streamed completion."""
    body = {"model": name, "prompt": "once upon a time", "max_tokens": 400, "temperature": 0, "stream": True,
            "ignore_eos": True}
    replica, outcome = "", "error"
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as answer:
            replica = answer.headers.get(REPLICA_HEADER, "")
            async for line in answer.aiter_lines():
                started.set()
                if line == "data: [DONE]":
                    outcome = "done"
                elif line.startswith("data: ") and "error" in json.loads(line[6:]):
                    return replica, "error"
    except httpx.HTTPError:
        return replica, "error"
    return replica, outcome


async def kill_under_load(url: str, victim: str) -> tuple[list[tuple[str, str]], httpx.Response]:
    """Streams for every FRESH adapter and one non-streamed request for FRESH[0] (on `victim`) in flight,
    then the victim's actor killed: (each stream's outcome, the non-streamed answer)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        started = [asyncio.Event() for _ in FRESH]
        tasks = [asyncio.create_task(stream_outcome(client, url, name, ev)) for name, ev in zip(FRESH, started)]
        body = {"model": FRESH[0], "prompt": "once upon a time", "max_tokens": 400, "temperature": 0,
                "ignore_eos": True}
        plain = asyncio.create_task(client.post(url + "/v1/completions", json=body))
        await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in started)), 60)
        ray.kill(replica_actor(victim), no_restart=True)
        return await asyncio.wait_for(asyncio.gather(*tasks), 90), await asyncio.wait_for(plain, 90)


def test_a_replica_killed_under_load_loses_only_its_streams_and_is_replaced(replicas):
    homes = {name: home_of(replicas, name) for name in FRESH}
    victim = homes[FRESH[0]]
    outcomes, plain = asyncio.run(kill_under_load(replicas, victim))
    assert plain.status_code == 503 and plain.json()["error"]["code"] == "replica_failed"
    for name, (replica, outcome) in zip(FRESH, outcomes):
        assert replica == homes[name]
        assert outcome == ("error" if replica == victim else "done"), (name, replica, outcome)
    deadline, answer = time.monotonic() + 60, None
    while time.monotonic() < deadline:  # the victim's adapters are served again (by a survivor or its replacement)
        answer = complete(replicas, FRESH[0], "after the failure")
        if answer.status_code == 200:
            break
        time.sleep(0.5)
    assert answer is not None and answer.status_code == 200 and answer.headers[REPLICA_HEADER] != victim
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and running_replicas() != 2:
        time.sleep(1)
    assert running_replicas() == 2 and not any(victim in a["name"] for a in ray.util.list_named_actors(True))


def running_replicas() -> int:
    return serve.status().applications["softprompt"].deployments["Replica"].replica_states.get("RUNNING", 0)
