"""Prepared-model cache folders: built once, atomically, trusted only with a valid marker.

Layout under ``cache_dir("models")``::

    <name>/                       the ready folder (from_pretrained-loadable)
    <name>/.softprompt-ready.json marker: written last, inside the temp folder, before the rename
    .<name>.tmp-<random>/         a build in progress (or one that was interrupted: never trusted)
    .<name>.lock                  flock held while building, so two processes don't build at once

A folder is trusted only when its marker parses, has the current format and names the same
source checksum as the source files we would build from.  To avoid re-hashing hundreds of MB on
every load, the marker also stores each source file's size and mtime; when those still match, the
stored checksum is taken as current, otherwise the sources are hashed again and compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from softprompt.settings import cache_dir

MARKER = ".softprompt-ready.json"
MARKER_FORMAT = 1
_CHUNK = 1 << 22


def models_root() -> Path:
    return cache_dir("models")


def target_dir(name: str) -> Path:
    """Where the ready folder for `name` lives (not created)."""
    return models_root() / name


def sha256_files(paths: Sequence[Path]) -> str:
    """sha256 of the files' bytes joined in order (= the sha256 of the file they make together)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def stat_signature(paths: Sequence[Path]) -> list[dict]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or not data.get("source_sha256"):
        return None
    return data


def is_ready(folder: Path, sources: Sequence[Path], expected_sha256: str | None = None) -> bool:
    """True when `folder` holds a complete build made from exactly these source bytes.

    `expected_sha256`, when known up front (e.g. published by the package), is compared
    directly; otherwise the sources' size+mtime must match the marker, or failing that their
    freshly computed sha256 must.
    """
    marker = read_marker(folder)
    if marker is None:
        return False
    if expected_sha256 is not None and marker["source_sha256"] != expected_sha256:
        return False
    try:
        if marker.get("sources") == stat_signature(sources):
            return True
        return sha256_files(sources) == marker["source_sha256"]
    except OSError:
        return False


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Exclusive lock for building `name` (no-op where fcntl is unavailable)."""
    lock_path = models_root() / f".{name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stale_temp_dirs(name: str) -> list[Path]:
    return sorted(models_root().glob(f".{name}.tmp-*"))


def build_atomically(
    name: str,
    sources: Sequence[Path],
    build: Callable[[Path], dict | None],
    *,
    expected_sha256: str | None = None,
    source_sha256: Callable[[], str] | None = None,
) -> Path:
    """Return the ready folder for `name`, building it with `build(tmp_folder)` if needed.

    `build` fills the temp folder and may return extra marker fields.  The marker is written
    into the temp folder last, then the folder is renamed into place; an interrupted build
    leaves only a `.<name>.tmp-*` folder, which is never trusted and is removed by the next build.
    """
    final = target_dir(name)
    if is_ready(final, sources, expected_sha256):
        return final
    with build_lock(name):
        if is_ready(final, sources, expected_sha256):  # another process built it meanwhile
            return final
        for stale in stale_temp_dirs(name):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=models_root()))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the ready folder gets normal permissions
        try:
            started = time.time()
            extra = build(tmp) or {}
            for root, _dirs, files in os.walk(tmp):  # some writers (safetensors) create files 0600
                for fname in files:
                    os.chmod(os.path.join(root, fname), 0o666 & ~umask)
            digest = extra.pop("source_sha256", None) or (source_sha256() if source_sha256 else sha256_files(sources))
            marker = {
                "format": MARKER_FORMAT,
                "name": name,
                "source_sha256": digest,
                "sources": stat_signature(sources),
                "build_seconds": round(time.time() - started, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **extra,
            }
            with open(tmp / MARKER, "w", encoding="utf-8") as handle:
                json.dump(marker, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            _swap_into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename tmp -> final; an old (untrusted or outdated) final folder is moved aside first."""
    old = None
    if final.exists() or final.is_symlink():
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            final.rmdir()
        else:
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
