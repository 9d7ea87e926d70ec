"""Fixtures for the backbone tests: offline hub, one load per packaged model per session."""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_NAMES = ["tiny-bert", "tiny-roberta", "tiny-mpnet", "tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"]
LOAD_SECONDS: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _load(name: str):
    from softprompt.backbones import load_backbone

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        started = time.perf_counter()
        backbone = load_backbone(name)
        LOAD_SECONDS[name] = time.perf_counter() - started
    print(f"\n[backbones] first load of {name} in this session: {LOAD_SECONDS[name]:.2f} s")
    return backbone


# Packaged models use the real model cache ($SOFTPROMPT_CACHE or ~/.cache/softprompt) on purpose:
# the GGUF conversion and the mpnet extraction are meant to happen once per machine.
@pytest.fixture(scope="session")
def minilm():
    return _load("minilm-l6")


@pytest.fixture(scope="session")
def mpnet():
    return _load("mpnet-base")


@pytest.fixture(scope="session")
def smollm2():
    return _load("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    return _load("gemma3-270m")
