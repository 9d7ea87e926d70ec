"""Backbone = frozen model + tokenizer + family; load_backbone resolves a name to one."""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from softprompt.backbones.fingerprint import weights_fingerprint
from softprompt.backbones.kinds import kind_of_config
from softprompt.backbones.registry import REGISTRY
from softprompt.errors import BackboneError
from softprompt.runners import architecture, runner_class

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class Backbone:
    name: str  # short name, or hub id / path as given
    model: torch.nn.Module  # frozen: eval(), requires_grad False
    tokenizer: PreTrainedTokenizerBase
    family: str  # the architecture, config.model_type: "bert", "qwen3", "gemma3_text", "t5", ...
    kind: str  # "encoder" | "decoder" | "encoder-decoder"
    source: str  # where the weights came from, for reports
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> str:
        """Quick weights fingerprint (see weights_fingerprint), computed once and cached.

        The cache is not invalidated if the weights are changed in place afterwards; call
        weights_fingerprint(self.model) for a fresh value.
        """
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        for key in ("hidden_size", "d_model", "n_embd"):
            value = getattr(cfg, key, None)
            if isinstance(value, int):
                return value
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def embedding_scale(self) -> float:
        """Factor the input-embedding module applies to its table rows (Gemma-3: sqrt(hidden)), else 1.

        model.get_input_embeddings()(ids) already includes it, and inputs_embeds are NOT scaled
        again by the model, so vectors fed as inputs_embeds must live in the scaled space.
        """
        scale = getattr(self.model.get_input_embeddings(), "embed_scale", None)
        if scale is None:
            return 1.0
        return float(scale.item() if isinstance(scale, torch.Tensor) else scale)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# ---------------------------------------------------------------------------------- loading
def load_backbone(
    name_or_path: str,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str = "sdpa",
) -> Backbone:
    """Resolve a short name (see list_backbones), a local folder / .gguf file, or a hub id.

    dtype None means float32.  attn_implementation "sdpa" falls back to "eager" for model
    classes without SDPA support (MPNet); any other value is passed through as asked.
    """
    from softprompt.backbones import packaged, tiny

    name = str(name_or_path)
    dtype = dtype or torch.float32
    spec = REGISTRY.get(name)
    if spec is not None and spec.builtin:
        model, tokenizer = _with_attn_fallback(
            lambda attn: tiny.build_tiny(spec.family, attn_implementation=attn), attn_implementation
        )
        return backbone_from_model(name, model, tokenizer, f"builtin:{name} (seed {tiny.TINY_SEED})", dtype, device)
    if spec is not None:
        folder = packaged.PREPARERS[name]()
        return _load_folder(name, folder, dtype, device, attn_implementation, expect=spec.family)

    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        folder = packaged.prepare_gguf_file(path.resolve())
        return _load_folder(name, folder, dtype, device, attn_implementation)
    if path.is_dir():
        return _load_folder(name, path.resolve(), dtype, device, attn_implementation)
    if path.exists():
        raise BackboneError(f"backbone {name!r}: a file that is not a .gguf; give a model folder, a .gguf file, "
                            f"a hub id or one of: {_short_names()}")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BackboneError(f"backbone {name!r}: no such file or folder")
    return _load_folder(name, name, dtype, device, attn_implementation)


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection to the hub's host (the hub client itself retries for half a minute)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id
        return False


def _short_names() -> str:
    packaged = [n for n, spec in REGISTRY.items() if not spec.builtin]
    return f"{', '.join(packaged)}, or tiny-<architecture> (softprompt models)"


def _unknown(name: str, err: Exception | None) -> BackboneError:
    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if err is None:
        return BackboneError(
            f"unknown backbone {name!r}: not a short name ({_short_names()}) or a local folder, not in the local Hugging Face "
            f"cache, and the hub cannot be reached from here (offline{' mode' if _offline() else ''}): download it where a network exists "
            f"(huggingface-cli download {name}) and copy the cache, or give a local folder.{hint}")
    where = "the local Hugging Face cache (offline mode)" if _offline() else "the Hugging Face hub"
    first = str(err).splitlines()[0] if str(err) else ""
    return BackboneError(f"unknown backbone {name!r}: not a short name ({_short_names()}), not a local folder or "
                         f".gguf file, and not loadable from {where} ({type(err).__name__}: {first}).{hint}")


def _load_folder(name: str, where, dtype, device, attn_implementation, expect: str | None = None) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    local_only = _offline() or isinstance(where, Path)
    if isinstance(where, str) and not _in_hub_cache(where) and (_offline() or not _hub_reachable()):
        raise _unknown(name, None)
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=local_only)
    except Exception as err:  # OSError, ValueError, EnvironmentError... from hub resolution
        if isinstance(where, Path):
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BackboneError(f"backbone {name!r}: cannot read a model config in {where} ({first})") from err
        raise _unknown(name, err) from err
    if expect and config.model_type != expect:
        raise BackboneError(f"backbone {name!r}: {where} holds a {config.model_type} model, expected {expect}")
    kind = kind_of_config(config)
    auto = {"encoder": AutoModel, "decoder": AutoModelForCausalLM, "encoder-decoder": AutoModelForSeq2SeqLM}[kind]
    with torch.device("meta"):  # the structure alone, no weights: refuse an undrivable model before loading it
        runner_class(auto.from_config(config), kind)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        model = _with_attn_fallback(
            lambda attn: auto.from_pretrained(where, config=config, dtype=dtype, local_files_only=local_only,
                                              **({"attn_implementation": attn} if attn else {})),
            attn_implementation,
        )
    except BackboneError:
        raise
    except Exception as err:
        raise BackboneError(f"backbone {name!r}: loading {where} failed: {type(err).__name__}: {err}") from err
    return backbone_from_model(name, model, tokenizer, str(where), dtype, device)


def _with_attn_fallback(make, attn_implementation: str | None):
    try:
        return make(attn_implementation)
    except ValueError as err:
        if attn_implementation == "sdpa" and "scaled_dot_product_attention" in str(err):
            log.info("no SDPA attention for this model class; using eager attention")
            return make("eager")
        raise BackboneError(f"attn_implementation={attn_implementation!r} is not usable here: {err}") from err


def backbone_from_model(name, model, tokenizer, source, dtype, device, kind: str | None = None) -> Backbone:
    """Freeze `model` and pair it with its tokenizer; a model no runner drives is refused here, before any training."""
    kind = runner_class(model, kind or kind_of_config(model.config)).kind  # UnsupportedModelError names what is missing
    if dtype is not None and next(model.parameters()).dtype != dtype:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    if kind == "decoder" and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tokenizer.pad_token_id
    return Backbone(name=name, model=model, tokenizer=tokenizer, family=architecture(model), kind=kind, source=source)
