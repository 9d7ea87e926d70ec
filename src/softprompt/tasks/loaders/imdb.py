"""IMDB Large Movie Review v1.0, read straight from <data>/imdb/aclImdb_v1.tar.gz.

The 50,000 review files are never extracted: the tarball is streamed once, and the parsed
reviews are cached as gzipped JSON under cache_dir("data"), keyed by the tarball's size and
mtime (a changed tarball gets a fresh parse). Later loads read only the cache (well under a
second). Labels: aclImdb/<split>/neg/ -> 0, pos/ -> 1; other members (README, vocab, urls,
unsup/) are not reviews of a labeled split. Each split is ordered neg then pos, by review id.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import tarfile
import tempfile
import zlib
from pathlib import Path

from softprompt.errors import DataError
from softprompt.settings import cache_dir
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import require_file
from softprompt.tasks.registry import Task

log = logging.getLogger("softprompt.tasks")

TARBALL = Path("imdb") / "aclImdb_v1.tar.gz"
CACHE_VERSION = 1
REVIEW = re.compile(r"aclImdb/(train|test)/(neg|pos)/([^/]+)$")
REVIEW_NAME = re.compile(r"(\d+)_(\d+)\.txt$")
LABELS = {"neg": 0, "pos": 1}

Rows = dict[str, list[list]]  # split -> [[member name, label, text], ...]
_memo: dict[Path, Rows] = {}  # cache file -> rows; one entry, so train then test parse/read once


def tarball_path(root: Path) -> Path:
    return root / TARBALL


def cache_path(tarball: Path) -> Path:
    stat = tarball.stat()
    return cache_dir("data") / f"imdb-v{CACHE_VERSION}-{stat.st_size}-{stat.st_mtime_ns}.json.gz"


def parse_tarball(tarball: Path) -> Rows:
    """Stream the tarball once and return every labeled review, decoded strictly as UTF-8."""
    found: dict[str, list[tuple[int, int, str, str]]] = {"train": [], "test": []}
    try:
        with tarfile.open(tarball, "r|gz") as archive:
            for member in archive:
                match = REVIEW.match(member.name)
                if not match or not member.isfile():
                    continue
                split, polarity, filename = match.groups()
                name_match = REVIEW_NAME.match(filename)
                if not name_match:
                    raise DataError(f"{tarball} member {member.name}: expected a review file named <id>_<rating>.txt")
                raw = archive.extractfile(member).read()  # type: ignore[union-attr]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(
                        f"{tarball} member {member.name}: cannot decode byte {raw[err.start]:#04x} at offset "
                        f"{err.start}; expected UTF-8 text"
                    ) from None
                label = LABELS[polarity]
                found[split].append((label, int(name_match.group(1)), member.name, text))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{tarball}: cannot read the tarball ({err}); expected the aclImdb_v1.tar.gz release") from None
    rows: Rows = {}
    for split, reviews in found.items():
        if not reviews:
            raise DataError(f"{tarball}: found no reviews under aclImdb/{split}/{{neg,pos}}/; expected 25,000")
        reviews.sort()
        rows[split] = [[name, label, text] for label, _, name, text in reviews]
    return rows


def _write_cache(path: Path, rows: Rows) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3) as out:
            out.write(json.dumps(rows, ensure_ascii=False).encode("utf-8"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: readers never see a half-written cache
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_rows(root: Path) -> Rows:
    """Parsed reviews of both splits, from the cache when it matches the tarball."""
    tarball = require_file(tarball_path(root), "IMDB tarball")
    cached = cache_path(tarball)
    if cached in _memo and cached.is_file():
        return _memo[cached]
    rows = _read_cache(cached)
    if rows is None:
        log.info("parsing %s once; caching to %s", tarball, cached)
        rows = parse_tarball(tarball)
        _write_cache(cached, rows)
    _memo.clear()
    _memo[cached] = rows
    return rows


def _read_cache(cached: Path) -> Rows | None:
    if not cached.is_file():
        return None
    try:
        with gzip.open(cached, "rb") as handle:
            return json.loads(handle.read())
    except (OSError, EOFError, ValueError) as err:
        log.warning("IMDB cache %s is unreadable (%s); parsing the tarball again", cached, err)
        return None


def load(task: Task, split: str, root: Path) -> list[Example]:
    prefix = TARBALL.as_posix()
    return [Example(text, None, label, None, f"{prefix}:{name}") for name, label, text in read_rows(root)[split]]
