"""Locations that come from settings: data directory and cache directory."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SOFTPROMPT_DATA"
CACHE_ENV = "SOFTPROMPT_CACHE"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The benchmark data folder: explicit value, else $SOFTPROMPT_DATA, else None (hub route)."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_ENV) or None
    return Path(value).expanduser().resolve() if value else None


def cache_dir(*parts: str) -> Path:
    """softprompt's cache folder (models converted once, parsed datasets), created on demand."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "softprompt"
    )
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
