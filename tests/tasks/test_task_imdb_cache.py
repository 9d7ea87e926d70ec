"""IMDB is parsed from the tarball once, then served from the cache keyed by size + mtime."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from softprompt.tasks import load_split
from softprompt.tasks.loaders import imdb


def make_tarball(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


MEMBERS = {
    "aclImdb/README": b"readme",
    "aclImdb/imdb.vocab": b"the\nfilm\n",
    "aclImdb/train/urls_pos.txt": b"http://example.com\n",
    "aclImdb/train/pos/10_9.txt": b"Loved it.<br /><br />Really.",
    "aclImdb/train/pos/2_8.txt": b"Caf\xc3\xa9 scene was great.",
    "aclImdb/train/neg/5_1.txt": b"Awful.",
    "aclImdb/train/unsup/0_0.txt": b"not part of a labeled split",
    "aclImdb/test/neg/0_3.txt": b"Dull.",
    "aclImdb/test/pos/1_10.txt": b"Superb.",
}


def fail_if_parsed(*_args, **_kwargs):
    raise AssertionError("the tarball was parsed again instead of read from the cache")


def test_cold_cache_parses_once_then_reads_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(cache))
    monkeypatch.setattr(imdb, "_memo", {})
    tarball = make_tarball(tmp_path / "data" / "imdb" / "aclImdb_v1.tar.gz", MEMBERS)

    train = load_split("imdb", "train", tmp_path / "data")
    assert [(e.text, e.label, e.uid) for e in train] == [
        ("Awful.", 0, "imdb/aclImdb_v1.tar.gz:aclImdb/train/neg/5_1.txt"),
        ("Caf\u00e9 scene was great.", 1, "imdb/aclImdb_v1.tar.gz:aclImdb/train/pos/2_8.txt"),  # ids sort numerically
        ("Loved it.<br /><br />Really.", 1, "imdb/aclImdb_v1.tar.gz:aclImdb/train/pos/10_9.txt"),
    ]
    stat = tarball.stat()
    cached = cache / "data" / f"imdb-v1-{stat.st_size}-{stat.st_mtime_ns}.json.gz"
    assert cached.is_file()
    assert [p.name for p in (cache / "data").iterdir()] == [cached.name]  # no temp files left behind

    # a fresh process (empty memo) reads the cache and never touches the tarball's contents
    monkeypatch.setattr(imdb, "_memo", {})
    monkeypatch.setattr(imdb, "parse_tarball", fail_if_parsed)
    test = load_split("imdb", "test", tmp_path / "data")
    assert [(e.text, e.label) for e in test] == [("Dull.", 0), ("Superb.", 1)]

    # a changed tarball (new mtime) gets a new cache key, hence a new parse
    os.utime(tarball, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="parsed again"):
        load_split("imdb", "test", tmp_path / "data")


def test_unreadable_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(imdb, "_memo", {})
    tarball = make_tarball(tmp_path / "data" / "imdb" / "aclImdb_v1.tar.gz", MEMBERS)
    cached = imdb.cache_path(tarball)
    cached.write_bytes(b"garbage")
    assert len(load_split("imdb", "train", tmp_path / "data")) == 3
    assert imdb._read_cache(cached) is not None


def test_real_imdb_is_served_from_the_session_cache(data_root, session_cache, monkeypatch):
    assert len(load_split("imdb", "test", data_root)) == 25_000  # parses at most once per session
    tarball = imdb.tarball_path(data_root)
    assert imdb.cache_path(tarball).parent == session_cache / "data"
    assert imdb.cache_path(tarball).is_file()
    monkeypatch.setattr(imdb, "_memo", {})
    monkeypatch.setattr(imdb, "parse_tarball", fail_if_parsed)
    train = load_split("imdb", "train", data_root, limit=100, seed=1)
    assert len(train) == 100 and {e.label for e in train} == {0, 1}
