"""Shared fixtures: the benchmark data folder and tiny backbones (built in code, seeded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA_DIR = Path(os.environ.get("SOFTPROMPT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TINY = ["tiny-bert", "tiny-roberta", "tiny-mpnet", "tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert (DATA_DIR / "glue" / "SST-2" / "train.tsv").is_file(), f"benchmark data expected at {DATA_DIR}"
    return DATA_DIR


@pytest.fixture(scope="session")
def sst2_slice(data_dir):
    from softprompt.tasks import load_split

    return load_split("sst2", "train", data_dir, limit=48, seed=0)
