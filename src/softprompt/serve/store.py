"""The adapters a server holds: loaded, checked and ready on the shared frozen base.

Adapters are read with `softprompt.adapter.load_adapter` (safetensors only; names, shapes and
finite values checked) after the base fingerprint is compared here, so an adapter made for
another base is refused before any of its tensors is read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softprompt.adapter import META, WEIGHTS, load_adapter, read_meta
from softprompt.errors import AdapterError
from softprompt.model import SoftPromptModel
from softprompt.runners import runner_class

log = logging.getLogger("softprompt.serve")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class WrongBaseError(AdapterError):
    """The adapter was made for another base model (HTTP 409)."""


@dataclass
class AdapterEntry:
    name: str
    path: str
    model: SoftPromptModel
    meta: dict[str, Any]
    max_tokens: int  # longest tokenised input this adapter accepts (prompt positions included)
    loaded_at: float = field(default_factory=time.time)

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("label_names") or [])

    @property
    def is_regression(self) -> bool:
        return bool(self.meta.get("is_regression"))

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": self.name,
            "method": m.method.name,
            "site": m.site.describe() if m.site is not None else None,
            "prompt_tokens": m.producer.num_tokens if m.producer is not None else 0,
            "task": self.meta.get("task"),
            "num_labels": m.num_labels,
            "label_names": self.label_names,
            "is_regression": self.is_regression,
            "max_tokens": self.max_tokens,
            "path": self.path,
        }


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise AdapterError(f"adapter name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")


class AdapterStore:
    """Thread-safe name -> AdapterEntry map, plus the adapters refused at start-up."""

    def __init__(self, backbone, max_length: int = 256):
        self.backbone = backbone
        self.max_length = max_length
        self._entries: dict[str, AdapterEntry] = {}
        self._lock = threading.Lock()
        self.rejected: list[dict[str, str]] = []

    # -- reading --------------------------------------------------------------------------------
    def get(self, name: str) -> AdapterEntry | None:
        with self._lock:
            return self._entries.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def entries(self) -> list[AdapterEntry]:
        with self._lock:
            return [self._entries[n] for n in sorted(self._entries)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- loading --------------------------------------------------------------------------------
    def build(self, name: str, path: str | Path) -> AdapterEntry:
        """Read and check an adapter folder; does not add it. AdapterError / WrongBaseError."""
        check_name(name)
        path = Path(path).expanduser()
        if not path.is_dir():
            raise AdapterError(f"{path}: not a folder (an adapter folder holds {META} and {WEIGHTS})")
        meta = read_meta(path)
        backbone_mode = (meta.get("method") or {}).get("backbone", "frozen")
        if backbone_mode != "frozen":
            raise AdapterError(f"adapter {name!r}: method trains the backbone ({backbone_mode}); "
                               "only frozen-base adapters can share the served model")
        base = self.backbone
        if meta["base_fingerprint"] != base.fingerprint():
            raise WrongBaseError(
                f"adapter {name!r} was made for base {meta['base_model']!r} (fingerprint {str(meta['base_fingerprint'])[:12]}), "
                f"but this server runs {base.name!r} (fingerprint {base.fingerprint()[:12]})"
            )
        model = load_adapter(path, base).eval()
        model.fold()  # prefix MLP / P-tuning encoder -> fixed vectors (same values); no-op otherwise
        return AdapterEntry(name, str(path.resolve()), model, meta, self._max_tokens(model))

    def _max_tokens(self, model: SoftPromptModel) -> int:
        limit = self.max_length
        positions = runner_class(self.backbone.family).max_positions(self.backbone.model.config)
        producer = model.producer
        if positions is not None:
            limit = min(limit, positions - (producer.num_tokens if producer is not None else 0))
        dept_max = getattr(getattr(producer, "cfg", None), "max_length", None)
        if dept_max is not None:
            limit = min(limit, dept_max)
        return max(limit, 1)

    def add(self, entry: AdapterEntry) -> AdapterEntry | None:
        """Add or replace; returns the entry it replaced."""
        with self._lock:
            old = self._entries.get(entry.name)
            self._entries[entry.name] = entry
            self.rejected = [r for r in self.rejected if r["name"] != entry.name]
        return old

    def remove(self, name: str) -> AdapterEntry | None:
        with self._lock:
            return self._entries.pop(name, None)

    def load_dir(self, root: str | Path) -> None:
        """Load every adapter folder under `root` (or `root` itself); refusals are logged and kept."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise AdapterError(f"--prompts {root}: not a folder")
        folders = [root] if (root / META).is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        for folder in folders:
            if not (folder / META).is_file():
                log.debug("skipping %s: no %s", folder, META)
                continue
            try:
                entry = self.build(folder.name, folder)
            except AdapterError as err:
                log.warning("adapter %s skipped: %s", folder.name, err)
                self.rejected.append({"name": folder.name, "path": str(folder), "reason": str(err)})
                continue
            except Exception as err:  # a broken file must not stop the server from starting
                log.warning("adapter %s skipped: %s: %s", folder.name, type(err).__name__, err)
                self.rejected.append({"name": folder.name, "path": str(folder), "reason": f"{type(err).__name__}: {err}"})
                continue
            self.add(entry)
            log.info("adapter %s loaded (%s)", entry.name, entry.model.method.name)
