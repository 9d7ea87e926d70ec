"""Shared fixtures for the softprompt.tasks tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from softprompt.settings import CACHE_ENV, DATA_ENV


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real benchmark data: $SOFTPROMPT_DATA, else ../shared/data next to the repo."""
    root = Path(os.environ.get(DATA_ENV) or Path(__file__).parents[3] / "shared" / "data")
    assert (root / "glue" / "SST-2" / "train.tsv").is_file(), f"benchmark data not found under {root}"
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole session, so the real IMDB tarball is parsed once."""
    return tmp_path_factory.mktemp("softprompt-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write to the user's cache; tests wanting a cold cache set CACHE_ENV themselves."""
    monkeypatch.setenv(CACHE_ENV, str(session_cache))
