"""The adapters a server knows: found in the prompts folder (or loaded by the admin API), read on
first use, and kept in an LRU cache under a memory budget on the shared frozen base.

    AdapterStore(backbone, max_length, memory_budget_bytes=None)
    store.load_dir(root)        register every adapter folder under root (root itself may be one):
                                an adapter folder holds adapter.json + adapter.safetensors; a training
                                run folder holds one in adapter/ and is served under the run's name
    store.acquire(name)         the entry, loaded if need be, marked in use (or None if unknown)
    store.release(entry)        no longer in use: it may be evicted when the budget is exceeded
    store.build / add / remove  the admin API (load or replace from a path, unload)

Every folder that is not served is reported: a WARNING log line and an item in `store.skipped`
({name, path, reason}). A folder added to the prompts folder after start-up is found on the next
miss (or listing) without a restart. Adapters are read with `softprompt.adapter.load_adapter`
(safetensors only; names, shapes and finite values checked) after the base fingerprint is
compared here, so an adapter made for another base is refused before any of its tensors is read.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softprompt.adapter import META, WEIGHTS, load_adapter, read_meta
from softprompt.errors import AdapterError
from softprompt.model import SoftPromptModel

log = logging.getLogger("softprompt.serve")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RUN_ADAPTER = "adapter"  # a training run folder keeps its selected adapter here
RESCAN_INTERVAL_S = 1.0  # at most one prompts-folder scan per second on misses
ENTRY_IDS = itertools.count(1)  # AdapterEntry.uid: never reused (unlike id(), which a new object may take over)


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
    nbytes: int = 0  # memory its tensors take (counted against the budget)
    users: int = 0  # requests using it now (never evicted while > 0)
    last_used: float = field(default_factory=time.monotonic)
    uid: int = field(default_factory=lambda: next(ENTRY_IDS))  # this load of the adapter: stable, never reused

    @property
    def prompt_positions(self) -> int:
        """Positions the soft prompt takes in the base's context (`SoftPromptModel.positions_taken`)."""
        return self.model.positions_taken

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
            "generative": bool(self.meta.get("generative")),
            "max_tokens": self.max_tokens,
            "path": self.path,
            "memory_bytes": self.nbytes,
            "in_use": self.users,
        }


@dataclass
class Source:
    """A servable adapter folder that is not necessarily in memory."""

    name: str
    path: Path
    meta: dict[str, Any]
    origin: str  # "prompts" (found in the prompts folder) or "admin" (POST /v1/adapters/{name})


def in_fresh_thread(fn, *args):
    """`fn(*args)` in a new thread that ends with it. Torch's OpenMP keeps a team of worker
    threads per thread that ran parallel work; teams left in long-lived threads (the event
    loop, executor threads) make the decode thread's workers sleep between kernels instead of
    spinning (measured: 255 vs 370 tokens/s on 2 cores). A thread that exits takes its team along."""
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # re-raised in the caller
            out["error"] = err

    worker = threading.Thread(target=target, name="softprompt-load")
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise AdapterError(f"adapter name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")


def adapter_folder(folder: Path) -> Path | None:
    """The adapter folder inside `folder`: itself, or a training run's adapter/; None if neither."""
    if (folder / META).is_file():
        return folder
    if (folder / RUN_ADAPTER / META).is_file():
        return folder / RUN_ADAPTER
    return None


def tensor_bytes(model: SoftPromptModel) -> int:
    """Bytes of the adapter's own tensors (prompts, prefix vectors, head), each storage once."""
    seen, total = set(), 0
    for tensor in list(model.adapter_state().values()) + list(model.adapter_params().values()):
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


class AdapterStore:
    """Thread-safe name -> adapter, loaded on first use, LRU-evicted under a memory budget."""

    def __init__(self, backbone, max_length: int = 256, memory_budget_bytes: int | None = None):
        self.backbone = backbone
        self.max_length = max_length
        self.budget = memory_budget_bytes  # None: no limit
        self._lock = threading.RLock()
        self._resident: OrderedDict[str, AdapterEntry] = OrderedDict()  # least recently used first
        self._sources: dict[str, Source] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._unloaded: set[str] = set()  # unloaded by the admin API: a scan does not bring them back
        self._skipped: dict[str, dict[str, str]] = {}  # path -> {name, path, reason}
        self._scanned: dict[str, float] = {}  # folder path -> adapter.json mtime when read
        self.roots: list[Path] = []
        self._last_scan = 0.0
        self.loads = 0
        self.evictions = 0
        self.on_evict = None  # callback(name) (metrics)

    # -- reading --------------------------------------------------------------------------------
    def get(self, name: str) -> AdapterEntry | None:
        """The entry (loaded now if need be) without marking it in use; None if unknown or unloadable."""
        try:
            entry = self.acquire(name)
        except AdapterError:
            return None
        if entry is not None:
            self.release(entry)
        return entry

    def resident(self, name: str) -> AdapterEntry | None:
        with self._lock:
            return self._resident.get(name)

    def names(self) -> list[str]:
        """Every servable adapter (in memory or not), sorted."""
        with self._lock:
            return sorted(set(self._sources) | set(self._resident))

    def entries(self) -> list[AdapterEntry]:
        """The adapters in memory now, sorted by name."""
        with self._lock:
            return [self._resident[n] for n in sorted(self._resident)]

    def sources(self) -> list[Source]:
        with self._lock:
            return [self._sources[n] for n in sorted(self._sources)]

    @property
    def skipped(self) -> list[dict[str, str]]:
        with self._lock:
            return sorted(self._skipped.values(), key=lambda r: (r["name"], r["path"]))

    @property
    def rejected(self) -> list[dict[str, str]]:
        """Skipped folders that hold an adapter.json (refused adapters, not stray folders)."""
        return [r for r in self.skipped if r.get("kind") == "refused"]

    @property
    def memory_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._resident.values())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._sources or name in self._resident

    # -- use ------------------------------------------------------------------------------------
    def acquire(self, name: str) -> AdapterEntry | None:
        """The adapter, loaded if need be and marked in use until `release`; None if unknown.

        AdapterError if its folder cannot be read any more (it is then reported as skipped).
        """
        with self._lock:
            entry = self._resident.get(name)
            if entry is not None:
                self._use(entry)
                return entry
            source = self._sources.get(name)
        if source is None:
            self.rescan(force=False, want=name)
            with self._lock:
                source = self._sources.get(name)
            if source is None:
                return None
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per name at a time; others wait for it
            with self._lock:
                entry = self._resident.get(name)
                if entry is not None:
                    self._use(entry)
                    return entry
                if self._sources.get(name) is not source:  # replaced or removed meanwhile
                    source = self._sources.get(name)
                    if source is None:
                        return None
            try:
                entry = self.build(name, source.path)
            except Exception as err:
                reason = str(err) if isinstance(err, AdapterError) else f"{type(err).__name__}: {err}"
                with self._lock:
                    if self._sources.get(name) is source:
                        del self._sources[name]
                    self._skip(name, source.path, reason, "refused")
                raise AdapterError(f"adapter {name!r} could not be loaded from {source.path}: {reason}") from None
            with self._lock:
                if self._sources.get(name) is not source:  # unloaded or replaced while loading
                    current = self._resident.get(name)
                    if current is None:
                        return None
                    entry = current
                else:
                    self._resident[name] = entry
                    self.loads += 1
                self._use(entry)
                self._evict()
            log.info("adapter %s loaded from %s (%d bytes; %d in memory)", name, source.path, entry.nbytes,
                     len(self._resident))
            return entry

    def release(self, entry: AdapterEntry) -> None:
        with self._lock:
            entry.users = max(entry.users - 1, 0)
            entry.last_used = time.monotonic()
            self._evict()

    def _use(self, entry: AdapterEntry) -> None:
        entry.users += 1
        entry.last_used = time.monotonic()
        if self._resident.get(entry.name) is entry:
            self._resident.move_to_end(entry.name)

    def _evict(self) -> None:
        """Drop least recently used adapters that nobody uses while over the budget (lock held)."""
        if self.budget is None:
            return
        total = sum(e.nbytes for e in self._resident.values())
        for name in list(self._resident):
            if total <= self.budget:
                break
            entry = self._resident[name]
            if entry.users > 0:
                continue
            del self._resident[name]
            total -= entry.nbytes
            self.evictions += 1
            log.info("adapter %s evicted (least recently used; %d bytes in memory, budget %d)", name, total, self.budget)
            if self.on_evict is not None:
                self.on_evict(name)

    # -- loading --------------------------------------------------------------------------------
    def check_meta(self, name: str, path: Path) -> dict[str, Any]:
        """Read adapter.json and check it fits this server; AdapterError / WrongBaseError."""
        check_name(name)
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
        return meta

    def build(self, name: str, path: str | Path) -> AdapterEntry:
        """Read and check an adapter folder (or a run folder's adapter/); does not add it."""
        path = Path(path).expanduser()
        path = adapter_folder(path) or path
        meta = self.check_meta(name, path)
        model = in_fresh_thread(self._load, path)
        return AdapterEntry(name, str(path.resolve()), model, meta, self._max_tokens(model), nbytes=tensor_bytes(model))

    def _load(self, path: Path) -> SoftPromptModel:
        model = load_adapter(path, self.backbone).eval()
        model.fold()  # prefix MLP / P-tuning encoder -> fixed vectors (same values); no-op otherwise
        return model

    def _max_tokens(self, model: SoftPromptModel) -> int:
        return model.fit_length(self.max_length)

    def add(self, entry: AdapterEntry) -> AdapterEntry | None:
        """Add or replace (admin load); returns the entry it replaced. Served from `entry.path` after eviction."""
        with self._lock:
            old = self._resident.pop(entry.name, None)
            self._sources[entry.name] = Source(entry.name, Path(entry.path), entry.meta, "admin")
            self._resident[entry.name] = entry
            self._unloaded.discard(entry.name)
            self._skipped = {p: r for p, r in self._skipped.items() if r["name"] != entry.name}
            self.loads += 1
            self._evict()
        return old

    def remove(self, name: str) -> AdapterEntry | Source | None:
        """Unload (admin); requests using it finish with it. A scan does not bring it back.

        Returns what was removed (the entry in memory, else its source), None if unknown.
        """
        with self._lock:
            source = self._sources.pop(name, None)
            entry = self._resident.pop(name, None)
            if source is None and entry is None:
                return None
            self._unloaded.add(name)
            return entry or source

    def _skip(self, name: str, path: Path, reason: str, kind: str) -> None:
        key = str(path)
        if self._skipped.get(key, {}).get("reason") != reason:
            log.warning("adapter folder %s skipped: %s", path, reason)
        self._skipped[key] = {"name": name, "path": key, "reason": reason, "kind": kind}

    def load_dir(self, root: str | Path, preload: bool = True) -> None:
        """Serve every adapter folder under `root` (or `root` itself: an adapter or a run folder).

        Folders are registered now (adapter.json read and checked); with `preload` their tensors
        are read now too, while the memory budget allows; the rest load on first use.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise AdapterError(f"--prompts {root}: not a folder")
        self.roots.append(root)
        self.rescan(force=True)
        if preload:
            for source in self.sources():
                with self._lock:
                    if self.budget is not None and self.memory_bytes >= self.budget:
                        break
                try:
                    entry = self.acquire(source.name)
                except AdapterError:
                    continue  # reported as skipped
                if entry is not None:
                    self.release(entry)

    def rescan(self, force: bool = True, want: str | None = None) -> None:
        """Look at the prompts folders again: register new adapter folders, report skipped ones.

        Without `force`, at most once per RESCAN_INTERVAL_S (a miss for an unknown name must not
        make every bad request list the folder).
        """
        if want is not None and NAME_RE.match(want):  # a miss: look for that one folder at once
            for root in list(self.roots):
                if adapter_folder(root) is None and (root / want).is_dir():
                    self._register_folder(root / want, False)
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_scan < RESCAN_INTERVAL_S:
                return
            self._last_scan = now
        for root in list(self.roots):
            single = adapter_folder(root)
            folders = [root] if single is not None else sorted(p for p in root.iterdir() if p.is_dir())
            for folder in folders:
                self._register_folder(folder, single is not None and folder == root)

    def _register_folder(self, folder: Path, is_root: bool) -> None:
        name = folder.resolve().name if is_root else folder.name
        path = adapter_folder(folder)
        with self._lock:
            if name in self._unloaded:
                return
        if path is None:
            with self._lock:
                self._skip(name, folder, f"no {META} (nor {RUN_ADAPTER}/{META} of a training run) in {folder}", "no-adapter")
            return
        try:
            mtime = (path / META).stat().st_mtime
        except OSError:
            return
        with self._lock:
            known = self._sources.get(name)
            if known is not None and known.path == path and self._scanned.get(str(path)) == mtime:
                return
            if known is None and self._scanned.get(str(path)) == mtime:  # refused before, unchanged
                return
            self._scanned[str(path)] = mtime
        try:
            meta = self.check_meta(name, path)
        except AdapterError as err:
            with self._lock:
                self._skip(name, path, str(err), "refused")
            return
        except Exception as err:  # a broken file must not stop the server
            with self._lock:
                self._skip(name, path, f"{type(err).__name__}: {err}", "refused")
            return
        with self._lock:
            known = self._sources.get(name)
            if known is not None and known.origin == "admin":
                return  # the admin's choice wins over the folder
            if known is not None and known.path != path:
                self._skip(name, path, f"another folder already serves adapter {name!r}: {known.path}", "refused")
                return
            self._sources[name] = Source(name, path, meta, "prompts")
            self._skipped.pop(str(path), None)
            self._skipped.pop(str(folder), None)
            if known is not None:  # the folder changed: reload it on next use
                self._resident.pop(name, None)
            log.info("adapter %s found in %s", name, path)
