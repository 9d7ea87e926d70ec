"""Bring your own model: a soft prompt on any Hugging Face causal LM or seq2seq LM, for generation.

    import softprompt
    model = AutoModelForCausalLM.from_pretrained("my/model")
    tok = AutoTokenizer.from_pretrained("my/model")
    sp = softprompt.wrap(model, tok, method="id-spam")          # the base is frozen; only the prompt trains
    out = sp(input_ids, attention_mask, labels=labels)           # HF causal-LM labels (-100 = not a target)
    out.loss.backward()
    new_tokens = sp.generate(input_ids, attention_mask, max_new_tokens=20)
    sp.save_pretrained("adapter/")                               # adapter.safetensors + adapter.json
    sp = softprompt.wrap.from_pretrained("adapter/")             # loads the base the adapter names

`transformers.Trainer` and TRL's `SFTTrainer` train the wrapper unchanged (see `WrappedModel`).

Labels follow Hugging Face: decoders take labels aligned with `input_ids` (the logits at c are
scored against labels[c + 1]; -100 is ignored), T5 takes the decoder's labels. The loss is the
sum of the token cross-entropies over the scored positions divided by their number (or by the
Trainer's `num_items_in_batch`), which is what HF's own models compute.

What an input-dependent prompt (ID-SPAM, LPT, ...) reads: a decoder's producer reads the
*source*, the tokens before each row's first target (labels != -100 after the row's first
token); a row without targets is all source. So with prompt/completion data (the prompt masked
with -100) it reads the prompt, as it will when generating, and never the answer; with plain
language-modelling labels (every token a target) it reads the first token only. Pass
`source_mask` to choose otherwise, or use a static method ("prompt-tuning", "p-tuning-v2").
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from softprompt.interop.hf_trainer import TrainerModel

IGNORE = -100


@dataclass
class WrapOutput:
    """What `WrappedModel.forward` returns; indexable by name as the Trainer expects (`outputs["loss"]`)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # decoders (B, T, V) at the text columns; T5 (B, T', V) of the decoder

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return tuple(v for v in (self.loss, self.logits) if v is not None)[key]

    def __contains__(self, key) -> bool:
        return getattr(self, key, None) is not None

    def keys(self):
        return [k for k in ("loss", "logits") if getattr(self, k) is not None]


@dataclass
class HiddenOutput:
    last_hidden_state: torch.Tensor


def source_from_labels(labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The tokens before each row's first target (labels != -100 after the row's first real token)."""
    real = attention_mask.bool()
    counted = real.long().cumsum(1)
    target = real & (labels != IGNORE) & (counted > 1)  # the first real token is never scored
    return real & (target.long().cumsum(1) == 0)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool, num_items_in_batch=None) -> torch.Tensor:
    """HF's loss: cross-entropy summed over labels != -100 (shifted for decoders), over their count."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    total = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device),
                            ignore_index=IGNORE, reduction="sum")
    count = (labels != IGNORE).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class WrappedModel(TrainerModel):
    """A SoftPromptModel (generative, frozen base) with the surface HF training code expects.

    Pass-throughs for `transformers.Trainer` / TRL's `SFTTrainer`: `config`, `generation_config`,
    `name_or_path`, `get_input_embeddings`, `get_output_embeddings`, `activation_checkpointing_enable`
    (and the older `gradient_checkpointing_enable`), `add_model_tags`, `warnings_issued`, and
    `base_model`, which TRL's fused LM head calls for the final hidden states (text columns, the
    prompt dropped) before scoring them with `get_output_embeddings()` itself. `state_dict()` is the
    adapter only (inherited from `TrainerModel`), so Trainer checkpoints hold kilobytes.
    """

    accepts_loss_kwargs = True  # the loss honours the Trainer's num_items_in_batch

    def __init__(self, model):
        super().__init__(model)
        if not model.generative:
            raise ValueError("WrappedModel needs a generative SoftPromptModel (generative=True)")
        self._call_source: torch.Tensor | None = None
        self.warnings_issued: dict = {}
        self.model_tags: list[str] = []
        self.register_forward_pre_hook(_remember_source, with_kwargs=True)
        self.register_forward_hook(_forget_source, always_call=True)

    # -- the base model's surface ------------------------------------------------------------------
    @property
    def hf_model(self):
        return self.model.backbone.model

    @property
    def tokenizer(self):
        return self.model.backbone.tokenizer

    @property
    def config(self):
        return self.hf_model.config

    @property
    def generation_config(self):
        return getattr(self.hf_model, "generation_config", None)

    @property
    def name_or_path(self) -> str:
        return self.model.backbone.name

    @property
    def loss_type(self) -> str | None:
        """Tells the Trainer that decoder labels are shifted (it counts num_items_in_batch over labels[:, 1:])."""
        return "ForCausalLM" if self.model.backbone.kind == "decoder" else None

    @property
    def base_model(self):
        """For TRL's fused LM head: called like a HF backbone, returns `.last_hidden_state` (B, T, d)."""
        if self.model.backbone.kind != "decoder":
            raise AttributeError("base_model (final hidden states for a fused LM head) exists for decoders only")
        return self._hidden_states

    def get_input_embeddings(self):
        return self.hf_model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.hf_model.get_output_embeddings()

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **_ignored) -> None:
        """Recompute the layers gradients flow through in the backward pass (softprompt's layer loop)."""
        self.model.gradient_checkpointing = True

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **_ignored) -> None:
        self.activation_checkpointing_enable()

    def gradient_checkpointing_disable(self) -> None:
        self.model.gradient_checkpointing = False

    activation_checkpointing_disable = gradient_checkpointing_disable

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.model.gradient_checkpointing

    def add_model_tags(self, tags) -> None:
        for tag in [tags] if isinstance(tags, str) else list(tags or []):
            if tag not in self.model_tags:
                self.model_tags.append(tag)

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """As PreTrainedModel.num_parameters (the Trainer's FLOP estimate): the base's and the prompt's."""
        base = self.hf_model.num_parameters(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
        own = [p for n, p in self.model.named_parameters() if not n.startswith(("backbone.", "runner."))]
        return base + sum(p.numel() for p in own if p.requires_grad or not only_trainable)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask=None, labels=None, source_mask=None, num_items_in_batch=None,
                decoder_input_ids=None, **_ignored) -> WrapOutput:
        """Loss on the target tokens (HF labels; see the module docstring) and the logits.

        Other keyword arguments the HF stack adds (`use_cache`, `position_ids`, ...) are ignored:
        positions are softprompt's (counted from each row's first real token, after the prompt).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.model.backbone.kind == "encoder-decoder":
            return self._seq2seq(input_ids, attention_mask, labels, decoder_input_ids, num_items_in_batch)
        if source_mask is None and labels is not None:
            source_mask = source_from_labels(labels, attention_mask)
        text = self._text_hidden(input_ids, attention_mask, source_mask)
        logits = self.get_output_embeddings()(text)
        loss = None if labels is None else lm_loss(logits, labels, True, num_items_in_batch)
        return WrapOutput(loss=loss, logits=logits)

    def _text_hidden(self, input_ids, attention_mask, source_mask=None) -> torch.Tensor:
        """Final hidden states at the input's columns (B, T, d), the prompt dropped; zeros at pads."""
        sp = self.model
        hidden, seq = sp.from_state(sp.frozen_state(input_ids, attention_mask), input_ids, source_mask=source_mask)
        text = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
        text[attention_mask.bool()] = hidden[seq.text_mask]
        return text

    def _hidden_states(self, input_ids, attention_mask=None, **_ignored) -> HiddenOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        source = self._call_source
        if source is not None and tuple(source.shape) != tuple(input_ids.shape):
            source = None
        return HiddenOutput(self._text_hidden(input_ids, attention_mask, source))

    def _seq2seq(self, input_ids, attention_mask, labels, decoder_input_ids, num_items_in_batch) -> WrapOutput:
        sp = self.model
        if labels is None and decoder_input_ids is None:
            raise ValueError("an encoder-decoder forward needs labels (the decoder's targets) or decoder_input_ids")
        encoded, enc_mask, cache = sp.encode(input_ids, attention_mask)
        if decoder_input_ids is None:
            decoder_input_ids = self.hf_model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = sp.decoder_logits(encoded, enc_mask, decoder_input_ids, past_key_values=cache)
        loss = None if labels is None else lm_loss(logits, labels, False, num_items_in_batch)
        return WrapOutput(loss=loss, logits=logits)

    # -- generation ------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, input_ids, attention_mask=None, **gen) -> torch.Tensor:
        """New tokens (B, n) with the soft prompt in place (SoftPromptModel.generate; eval mode for the call).

        Options: max_new_tokens, do_sample, temperature, top_p, seed, num_beams, length_penalty,
        stop, eos_token_id (-1: never stop early).
        """
        return self._generating("generate", input_ids, attention_mask, gen)

    @torch.inference_mode()
    def generate_text(self, input_ids, attention_mask=None, **gen):
        """Tokens, texts and finish reasons per row (SoftPromptModel.generate_text)."""
        return self._generating("generate_text", input_ids, attention_mask, gen)

    def _generating(self, how: str, input_ids, attention_mask, gen):
        from dataclasses import fields

        from softprompt.decode import GenerationConfig

        known = {f.name for f in fields(GenerationConfig)}
        unknown = sorted(set(gen) - known)
        if unknown:
            raise ValueError(f"generate: unsupported option(s) {unknown}; expected some of {sorted(known)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        was_training = self.training
        self.eval()
        try:
            return getattr(self.model, how)(input_ids, attention_mask, **gen)
        finally:
            self.train(was_training)

    # -- adapter files ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, is_main_process: bool = True, **_ignored) -> Path:
        """Write a softprompt adapter folder (adapter.safetensors + adapter.json; never pickle).

        adapter.json names the base model by the name or path it was loaded from, which
        `from_pretrained` loads again (`load_backbone`).
        """
        from softprompt.adapter import save_adapter

        if not is_main_process:
            return Path(save_directory)
        if not self.name_or_path:
            raise ValueError("the base model has no name or path (config._name_or_path is empty), so an adapter "
                             "could not name it; save the base with save_pretrained(folder) and load it from there, "
                             "or pass base_name= to softprompt.wrap()")
        return save_adapter(self.model, save_directory, wrapped=True)

    @classmethod
    def from_pretrained(cls, adapter_dir: str | os.PathLike, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, backbone=None) -> "WrappedModel":
        """Load the base model the adapter names (`load_backbone`) and the adapter on it."""
        from softprompt.adapter import load_adapter, read_meta
        from softprompt.backbones import load_backbone
        from softprompt.errors import AdapterError

        meta = read_meta(adapter_dir)
        if not meta.get("generative"):
            raise AdapterError(f"{Path(adapter_dir)}: not a generative adapter (adapter.json 'generative' is not "
                               "true); load classification adapters with softprompt.adapter.load_adapter")
        if backbone is None:
            backbone = load_backbone(meta["base_model"], dtype=dtype, device=device)
        return cls(load_adapter(adapter_dir, backbone))


def _remember_source(module: WrappedModel, args, kwargs):
    """Forward pre-hook: the source a call's labels imply, for a fused LM head that calls `base_model`
    without the labels (TRL). Cleared again after the call."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    labels, mask = kwargs.get("labels"), kwargs.get("attention_mask")
    source = kwargs.get("source_mask")
    if source is None and labels is not None and ids is not None and module.model.backbone.kind == "decoder":
        source = source_from_labels(labels, torch.ones_like(ids) if mask is None else mask)
    module._call_source = source
    return None


def _forget_source(module: WrappedModel, args, output):
    module._call_source = None
    return None


def backbone_for(model, tokenizer, name: str | None = None):
    """A softprompt Backbone around a user's Hugging Face LM (frozen in place: eval, no grad)."""
    from softprompt.backbones.core import backbone_from_model
    from softprompt.backbones.kinds import kind_of_config

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(f"wrap: expected a Hugging Face model with a config, got {type(model).__name__}")
    kind = kind_of_config(config)
    if kind == "encoder":
        raise ValueError(f"wrap: {type(model).__name__} ({model_type}) is an encoder; generation needs a causal LM "
                         "(AutoModelForCausalLM) or a seq2seq LM (AutoModelForSeq2SeqLM)")
    if model.get_output_embeddings() is None:
        auto = "AutoModelForCausalLM" if kind == "decoder" else "AutoModelForSeq2SeqLM"
        raise ValueError(f"wrap: {type(model).__name__} has no LM head; load the model with {auto}")
    name = name or getattr(model, "name_or_path", "") or getattr(config, "_name_or_path", "") or ""
    return backbone_from_model(str(name), model, tokenizer, f"user model {type(model).__name__} ({name or 'unnamed'})",
                               None, None, kind)


def wrap(model, tokenizer, method: str = "id-spam", *, base_name: str | None = None,
         max_length: int = 128, **method_overrides) -> WrappedModel:
    """A trainable soft prompt on `model` (a HF causal LM or seq2seq LM; frozen in place) for generation.

    `method` is a softprompt method name (see `softprompt.methods`), `method_overrides` override
    its fields (`producer={"num_tokens": 20}`, ...). `base_name` is what adapters record as the
    base model (default: the model's name_or_path). Only the prompt's parameters require grad.
    """
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    cfg = method_config(method, **method_overrides)
    if cfg.producer is None or cfg.backbone != "frozen":
        raise ValueError(f"wrap: method {method!r} is not a soft prompt on a frozen base (producer "
                         f"{cfg.producer_kind if cfg.producer is not None else None}, backbone {cfg.backbone!r})")
    backbone = backbone_for(model, tokenizer, base_name)
    sp = SoftPromptModel(backbone, cfg, 0, max_length=max_length, generative=True)
    trainable = {n for n, p in sp.named_parameters() if p.requires_grad}
    prompt = {f"producer.{n}" for n, p in sp.producer.named_parameters() if p.requires_grad}
    if trainable != prompt:
        raise RuntimeError(f"wrap: parameters other than the prompt's require grad: {sorted(trainable - prompt)[:5]}")
    return WrappedModel(sp)


def from_pretrained(adapter_dir: str | os.PathLike, **kwargs) -> WrappedModel:
    """`WrappedModel.from_pretrained`: the base model the adapter names, with the adapter on it."""
    return WrappedModel.from_pretrained(adapter_dir, **kwargs)


class _CallableModule(types.ModuleType):
    """`softprompt.wrap` is this module once imported (Python binds submodules on their package), so
    calling it calls `wrap` and `softprompt.wrap.from_pretrained(...)` works too."""

    def __call__(self, model, tokenizer, method: str = "id-spam", **kwargs) -> WrappedModel:
        return wrap(model, tokenizer, method, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
