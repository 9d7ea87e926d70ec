"""Adapter files: `adapter.safetensors` (tensors only, never pickle) + `adapter.json` (metadata).

Loading checks, before any tensor is used: the JSON is well formed, the tensor file is a
safetensors file of sane size, its tensor names and shapes are exactly what the method
needs, every value is finite, and the base model's weights fingerprint matches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from softprompt import __version__
from softprompt.errors import AdapterError
from softprompt.methods.config import method_from_dict

WEIGHTS = "adapter.safetensors"
META = "adapter.json"
FORMAT = "softprompt-adapter"
MAX_HEADER_BYTES = 16 * 1024 * 1024


def adapter_meta(model, task: str | None = None, label_names: list[str] | None = None, **extra) -> dict[str, Any]:
    bb = model.backbone
    return {
        "format": FORMAT,
        "format_version": 1,
        "softprompt_version": __version__,
        "method": model.method.to_dict(),
        "base_model": bb.name,
        "base_family": bb.family,
        "base_fingerprint": bb.fingerprint(),
        "task": task,
        "label_names": list(label_names or []),
        "label_words": model.label_words,
        "num_labels": model.num_labels,
        "is_regression": model.is_regression,
        "generative": model.generative,
        "folded": bool(getattr(model, "folded", False)),
        **extra,
    }


def save_adapter(model, directory: str | os.PathLike, task: str | None = None,
                 label_names: list[str] | None = None, **extra) -> Path:
    """Write the adapter atomically (temporary files, then rename) and return its folder."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.adapter_state().items()}  # clone: tied weights
    meta = adapter_meta(model, task, label_names, **extra)
    tmp_w, tmp_m = out / (WEIGHTS + ".tmp"), out / (META + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
    tmp_m.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp_w, out / WEIGHTS)
    os.replace(tmp_m, out / META)
    return out


def read_json_object(path: Path, error=AdapterError, missing: str = "") -> dict[str, Any]:
    """A JSON object from `path`, or `error` naming the file (and `missing`, a hint, when absent)."""
    if not path.is_file():
        raise error(f"{path}: not found{missing}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / META
    meta = read_json_object(path, missing=f" (an adapter folder holds {META} and {WEIGHTS})")
    if meta.get("format") != FORMAT:
        raise AdapterError(f"{path}: field 'format' must be {FORMAT!r}")
    for key in ("method", "base_model", "base_fingerprint", "num_labels"):
        if key not in meta:
            raise AdapterError(f"{path}: missing field {key!r}")
    return meta


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file after checking its header; refuses pickles and absurd sizes."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: not found")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise AdapterError(f"{path}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES or header_len + 8 > size:
            raise AdapterError(f"{path}: not a safetensors file (declared header of {header_len} bytes, file {size})")
        first = fh.read(1)
        if first != b"{":
            raise AdapterError(f"{path}: not a safetensors file (a pickle or other format?); adapters must be safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise AdapterError(f"{path}: unreadable safetensors file: {err}") from None


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str) -> None:
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise AdapterError(f"{where}: tensor names do not fit the method (missing {missing[:5]}, unexpected {unexpected[:5]})")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise AdapterError(f"{where}: tensor {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AdapterError(f"{where}: tensor {name} holds NaN or infinite values")


def load_adapter(directory: str | os.PathLike, backbone=None, *, check_base: bool = True):
    """Rebuild a SoftPromptModel from an adapter folder, on `backbone` (loaded from the meta if None)."""
    from softprompt.model import SoftPromptModel

    directory = Path(directory)
    meta = read_meta(directory)
    if backbone is None:
        from softprompt.backbones import load_backbone

        backbone = load_backbone(meta["base_model"])
    if check_base and backbone.fingerprint() != meta["base_fingerprint"]:
        raise AdapterError(
            f"{directory / META}: made for base model {meta['base_model']!r} (fingerprint {meta['base_fingerprint'][:12]}), "
            f"but the loaded base {backbone.name!r} has fingerprint {backbone.fingerprint()[:12]}"
        )
    try:
        method = method_from_dict(meta["method"])
    except ValueError as err:
        raise AdapterError(f"{directory / META}: field 'method': {err}") from None
    if method.producer is not None:  # the saved weights replace the init: skip one that reads other files
        method = dataclasses.replace(method, producer=method.producer.for_loading())
    model = SoftPromptModel(backbone, method, int(meta["num_labels"]), bool(meta.get("is_regression")),
                            meta.get("label_words") or None, generative=bool(meta.get("generative")))
    if meta.get("folded"):
        model.fold()
        model.folded = True
    tensors = read_tensors(directory / WEIGHTS)
    check_tensors(tensors, model.adapter_state(), str(directory / WEIGHTS))
    _assign(model, tensors)
    model.adapter_meta = meta
    return model


@torch.no_grad()
def _assign(model, tensors: dict[str, torch.Tensor]) -> None:
    by_prefix: dict[str, dict[str, torch.Tensor]] = {"producer": {}, "head": {}, "backbone": {}}
    for name, value in tensors.items():
        prefix, rest = name.split(".", 1)
        by_prefix[prefix][rest] = value
    if model.producer is not None:
        model.producer.load_state_dict(by_prefix["producer"])
    model.head.load_state_dict(by_prefix["head"])
    if by_prefix["backbone"]:
        model.backbone.model.load_state_dict(by_prefix["backbone"], strict=False)


def export_prompt_vectors(model, path: str | os.PathLike) -> Path:
    """Materialised prompt vectors of an input-independent method, as safetensors."""
    if model.producer is None or model.producer.input_dependent:
        raise AdapterError("only input-independent prompts can be exported as fixed vectors")
    prompt = model.producer.fold()(None)[0].detach().cpu().contiguous()
    save_file({"prompt": prompt}, str(path), metadata={"site": model.site.describe()})
    return Path(path)
