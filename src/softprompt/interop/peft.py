"""Exchange soft prompts with peft: `export_peft` writes a real peft adapter, `import_peft` reads one.

What maps onto what (peft 0.21):

    softprompt method                     peft adapter
    prompt-tuning (static @ embeddings)   PROMPT_TUNING   prompt_embeddings (P, d)
    p-tuning (encoder @ embeddings)       PROMPT_TUNING   the encoder's output, materialised (peft's
                                                          P-tuning encoder is a different MLP, so it
                                                          cannot hold ours; in inference peft uses the
                                                          materialised vectors anyway)
    prefix-tuning (MLP @ kv)              PREFIX_TUNING   prefix_projection=False, the MLP's output
    p-tuning-v2 (static @ kv)             PREFIX_TUNING   materialised: prompt_embeddings (P, L*2*kv_dim)
    cpt (on a decoder)                    CPT             prompt_embeddings = context + projected delta
                                                          (what peft's CPT saves and serves in inference),
                                                          cpt_token_ids / cpt_tokens_type_mask / epsilons
    cpt (encoders, T5)                    PROMPT_TUNING   materialised (peft's CPT is CAUSAL_LM only)
    adaption-prompt (@ adaption site)     ADAPTION_PROMPT per adapted layer: <attention>.adaption_prompt
                                                          (1, P, d) and .adaption_gate (1,) (Llama, Mistral,
                                                          GPT-2; export only)
    cartridge (trained cache @ kv)        CARTRIDGE       prompt_embeddings (P, L*2*kv_dim), the frozen sink
                                                          rows first (peft's frozen_embedding), then the
                                                          trained ones; num_frozen_tokens = frozen_tokens
    mpt (P* o UV @ embeddings; decoders,  MULTITASK_      num_tasks=1, num_ranks=rank: prompt_embeddings = P*
         T5)                              PROMPT_TUNING   (P, d), prefix_task_cols = U (1, P, r),
                                                          prefix_task_rows = V (1, r, d); peft needs
                                                          task_ids=zeros(batch) in forward and generate
    mpt (encoders)                        PROMPT_TUNING   materialised P* o UV (peft's FEATURE_EXTRACTION
                                                          model never passes task_ids to the MPT encoder)

The key/value layout is the same on both sides: the last axis of `prompt_embeddings` is
(layer, key|value, kv_head, head_dim), peft's `num_attention_heads` is the number of key/value
heads and `token_dim` = kv_heads * head_dim (grouped-query attention, as peft sets it up).

Task types: decoders export CAUSAL_LM, encoders FEATURE_EXTRACTION (softprompt loads them as
the bare encoder, AutoModel) and T5 SEQ_2_SEQ_LM with num_transformer_submodules=1 (prompts on
the encoder only, as softprompt does). None of these has a classifier, and softprompt's head
(mean / last-token pooling + linear, or a verbalizer) does not line up with the heads of
*ForSequenceClassification models (BERT's pools [CLS] through a tanh layer; Llama's `score`
has no bias). So the head travels next to the peft files, in `softprompt_head.safetensors` +
`softprompt.json`, which peft ignores and `import_peft` uses to rebuild the exact model. What
peft reproduces is everything up to the final hidden states (and the LM logits of decoders);
applying the sidecar head to peft's hidden states gives softprompt's logits.

Positions: prompts at the embeddings take positions 0..P-1 and the text follows (peft
concatenates inputs_embeds); key/value prefixes shift text positions by P (HF's cache path).
HF decoders number positions by column, so with *left* padding peft's text positions include
the pads while softprompt counts from each row's first real token: they agree on right-padded
and unpadded batches. peft's FEATURE_EXTRACTION model drops token_type_ids, so encoder outputs
agree for single-segment inputs (segment B of a BERT pair gets type 0 under peft).

Not exportable: input-dependent producers (ID-SPAM, LPT, SMoP), DePT (it also edits the token
embeddings), prompts entering at a hidden layer, key/value prefixes on a subset of layers,
LoRA / full fine-tuning, and prefixes on T5 (peft puts them in the decoder) or MPNet (no cache
in HF's MPNet).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from softprompt import __version__
from softprompt.adapter import read_json_object
from softprompt.errors import AdapterError
from softprompt.producers import PRODUCERS

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PICKLE = "adapter_model.bin"
SIDECAR_META = "softprompt.json"
SIDECAR_HEAD = "softprompt_head.safetensors"
SIDECAR_FORMAT = "softprompt-peft-sidecar"

SUPPORTED_EXPORT = {
    "prompt-tuning": "PROMPT_TUNING",
    "p-tuning": "PROMPT_TUNING (materialised)",
    "prefix-tuning": "PREFIX_TUNING (materialised, prefix_projection=False)",
    "p-tuning-v2": "PREFIX_TUNING",
    "cpt": "CPT on decoders, PROMPT_TUNING (materialised) on encoders and T5",
    "adaption-prompt": "ADAPTION_PROMPT",
    "cartridge": "CARTRIDGE",
    "mpt": "MULTITASK_PROMPT_TUNING (num_tasks=1) on decoders and T5, PROMPT_TUNING (materialised) on encoders",
}
SUPPORTED_IMPORT = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT", "CARTRIDGE", "MULTITASK_PROMPT_TUNING")
KV_TYPES = ("PREFIX_TUNING", "CARTRIDGE")  # served as past_key_values, prompt_embeddings (P, L*2*kv_dim)
NATIVE_TYPES = ("CARTRIDGE", "MULTITASK_PROMPT_TUNING")  # peft's own type holds the producer's parameters


class PeftInteropError(AdapterError):
    """A model or adapter that cannot be translated between softprompt and peft."""


def _supported_text() -> str:
    return ", ".join(f"{k} -> {v}" for k, v in SUPPORTED_EXPORT.items())


# ------------------------------------------------------------------------------------ shapes
@dataclasses.dataclass
class PeftLayout:
    """How a softprompt prompt maps onto a peft prompt-learning config."""
    peft_type: str  # PROMPT_TUNING | PREFIX_TUNING | ADAPTION_PROMPT | CARTRIDGE | MULTITASK_PROMPT_TUNING | CPT
    task_type: str
    num_virtual_tokens: int
    num_layers: int
    token_dim: int
    num_attention_heads: int

    @property
    def prompt_shape(self) -> tuple[int, int]:
        if self.peft_type in KV_TYPES:
            return self.num_virtual_tokens, self.num_layers * 2 * self.token_dim
        if self.peft_type == "ADAPTION_PROMPT":  # per layer [prompt | gate]
            return self.num_virtual_tokens, self.num_layers * (self.token_dim + 1)
        return self.num_virtual_tokens, self.token_dim


def task_type_for(backbone) -> str:
    return {"decoder": "CAUSAL_LM", "encoder": "FEATURE_EXTRACTION", "encoder-decoder": "SEQ_2_SEQ_LM"}[backbone.kind]


def native_type(producer_kind: str, site_type: str, backbone) -> str:
    """The peft type that holds a producer as itself, where peft has one; else the site's type (materialised)."""
    if producer_kind == "cartridge" and site_type == "PREFIX_TUNING":
        return "CARTRIDGE"
    if producer_kind == "mpt" and site_type == "PROMPT_TUNING" and backbone.kind != "encoder":
        return "MULTITASK_PROMPT_TUNING"  # peft's FEATURE_EXTRACTION forward passes no task_ids: encoders fold
    if producer_kind == "cpt" and site_type == "PROMPT_TUNING" and backbone.kind == "decoder":
        return "CPT"  # peft's CPT is CAUSAL_LM only
    return site_type


def layout_for(runner, backbone, peft_type: str, num_tokens: int, site=None) -> PeftLayout:
    if peft_type in KV_TYPES:
        heads, head_dim = runner.prefix_shape()
        return PeftLayout(peft_type, task_type_for(backbone), num_tokens, runner.num_layers, heads * head_dim, heads)
    if peft_type == "ADAPTION_PROMPT":
        return PeftLayout(peft_type, task_type_for(backbone), num_tokens, len(site.layers), runner.hidden_size,
                          runner.num_heads)
    return PeftLayout(peft_type, task_type_for(backbone), num_tokens, runner.num_layers, runner.embedding_size,
                      runner.num_heads)


def export_layout(model) -> PeftLayout:
    """The peft layout of a model's prompt, or PeftInteropError naming why there is none."""
    method, producer, site = model.method, model.producer, model.site
    what = f"method {method.name!r}"
    if producer is not None:
        what += f" ({method.producer_kind} producer at {site.describe()})"
    why = None
    if producer is None:
        why = "it has no soft prompt"
    elif method.backbone != "frozen":
        why = f"it trains the backbone ({method.backbone}); a peft prompt adapter holds only the prompt"
    elif producer.input_dependent:
        why = "its prompt depends on the input"
    elif producer.edits_embeddings:
        why = "it also changes the token embeddings"
    elif not producer.peft_exportable:
        exportable = ", ".join(cls.kind for cls in PRODUCERS.values() if cls.peft_exportable)
        why = f"its {method.producer_kind!r} producer has no peft counterpart (those that do: {exportable})"
    else:
        why = site.peft_obstacle(model.runner)
    if why:
        raise PeftInteropError(f"{what} cannot be exported as a peft adapter: {why}. Supported: {_supported_text()}")
    peft_type = native_type(method.producer_kind, site.peft_type, model.backbone)
    return layout_for(model.runner, model.backbone, peft_type, producer.num_tokens, site)


# ------------------------------------------------------------------------------------ export
@torch.no_grad()
def peft_prompt_tensor(model) -> torch.Tensor:
    """The materialised prompt in peft's `prompt_embeddings` layout (the model is not changed)."""
    layout = export_layout(model)
    prompt = model.producer.fold()(None)[0].detach().float().cpu().contiguous()
    if tuple(prompt.shape) != layout.prompt_shape:  # same layout on both sides; guard against drift
        raise PeftInteropError(f"prompt has shape {tuple(prompt.shape)}, peft expects {layout.prompt_shape}")
    return prompt


def peft_weights(model, layout: PeftLayout) -> dict[str, torch.Tensor]:
    """The tensors of peft's adapter_model.safetensors, under peft's names."""
    if layout.peft_type == "MULTITASK_PROMPT_TUNING":  # peft's names and shapes, one task: P*, U, V
        producer = model.producer
        out = {"prompt_embeddings": producer.shared, "prefix_task_cols": producer.cols[None],
               "prefix_task_rows": producer.rows[None]}
        out = {k: v.detach().float().cpu().contiguous() for k, v in out.items()}
        if tuple(out["prompt_embeddings"].shape) != layout.prompt_shape:
            raise PeftInteropError(f"P* has shape {tuple(out['prompt_embeddings'].shape)}, "
                                   f"peft expects {layout.prompt_shape}")
        return out
    prompt = peft_prompt_tensor(model)  # CARTRIDGE: sink rows then trained rows, as peft's encoder.weight
    if layout.peft_type != "ADAPTION_PROMPT":
        return {"prompt_embeddings": prompt}
    blocks = prompt.reshape(layout.num_virtual_tokens, layout.num_layers, layout.token_dim + 1)
    out = {}
    for j, name in enumerate(_attention_names(model)):
        out[f"base_model.model.{name}.adaption_prompt"] = blocks[None, :, j, :-1].contiguous()
        out[f"base_model.model.{name}.adaption_gate"] = blocks[0, j, -1:].contiguous()
    return out


def _attention_names(model) -> list[str]:
    """Qualified names (in the HF model) of the adapted layers' attention modules."""
    from softprompt.runners.attention_terms import attention_module

    names = {id(module): name for name, module in model.backbone.model.named_modules()}
    return [names[id(attention_module(model.runner.layers[i]))] for i in model.site.layers]


def peft_config_for(model, layout: PeftLayout | None = None):
    """The peft config (PromptTuningConfig, PrefixTuningConfig, CartridgeConfig, ...) describing the model's prompt."""
    from peft import (AdaptionPromptConfig, CartridgeConfig, MultitaskPromptTuningConfig, PrefixTuningConfig,
                      PromptTuningConfig)

    layout = layout or export_layout(model)
    if layout.peft_type == "CPT":
        return _cpt_config(model)
    if layout.peft_type == "ADAPTION_PROMPT":
        return AdaptionPromptConfig(task_type=layout.task_type, adapter_len=layout.num_virtual_tokens,
                                    adapter_layers=layout.num_layers, base_model_name_or_path=model.backbone.name,
                                    target_modules=_attention_names(model)[0].rsplit(".", 1)[-1], inference_mode=True)
    common = dict(task_type=layout.task_type, num_virtual_tokens=layout.num_virtual_tokens,
                  token_dim=layout.token_dim, num_layers=layout.num_layers,
                  num_attention_heads=layout.num_attention_heads, num_transformer_submodules=1,
                  base_model_name_or_path=model.backbone.name, inference_mode=True)
    if layout.peft_type == "PREFIX_TUNING":
        return PrefixTuningConfig(**common, prefix_projection=False, encoder_hidden_size=layout.token_dim)
    if layout.peft_type == "CARTRIDGE":
        return CartridgeConfig(**common, num_frozen_tokens=model.producer.cfg.frozen_tokens)
    if layout.peft_type == "MULTITASK_PROMPT_TUNING":
        return MultitaskPromptTuningConfig(**common, prompt_tuning_init="RANDOM", num_tasks=1,
                                           num_ranks=model.producer.cfg.rank)
    return PromptTuningConfig(**common, prompt_tuning_init="RANDOM")


def _cpt_config(model):
    """peft's CPTConfig for a cpt producer on a decoder: its context's ids and types and its epsilons (the
    prompt_embeddings beside it are the context plus the projected delta, which peft serves as they are)."""
    from peft import CPTConfig

    producer = model.producer
    n = producer.num_tokens
    return CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=producer.token_ids.tolist(), cpt_mask=[1] * n,
                     cpt_tokens_type_mask=producer.token_types.tolist(), opt_projection_epsilon=producer.cfg.epsilon,
                     opt_projection_format_epsilon=producer.cfg.format_epsilon,
                     base_model_name_or_path=model.backbone.name, inference_mode=True)


def _load_model(model_or_dir):
    if not isinstance(model_or_dir, (str, os.PathLike)):
        return model_or_dir
    from softprompt.train.inference import load_run_adapter

    return load_run_adapter(model_or_dir)[0]


def export_peft(model_or_run_dir, out_dir: str | os.PathLike, *, task: str | None = None,
                label_names: list[str] | None = None) -> Path:
    """Write a peft adapter (adapter_config.json + adapter_model.safetensors) and the head sidecar.

    `model_or_run_dir`: a SoftPromptModel, a run folder (with adapter/) or an adapter folder.
    Load the result with `PeftModel.from_pretrained(base, out_dir)` on the same base model.
    """
    model = _load_model(model_or_run_dir)
    layout = export_layout(model)
    weights = peft_weights(model, layout)
    config = peft_config_for(model, layout)
    meta_in = getattr(model, "adapter_meta", None) or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    save_file(weights, str(out / PEFT_WEIGHTS), metadata={"format": "pt"})
    head = {k: v.detach().float().cpu().clone().contiguous() for k, v in model.head.state_dict().items()}
    if head:
        save_file(head, str(out / SIDECAR_HEAD), metadata={"format": SIDECAR_FORMAT})
    bb = model.backbone
    sidecar = {
        "format": SIDECAR_FORMAT,
        "format_version": 1,
        "softprompt_version": __version__,
        "peft_type": getattr(config.peft_type, "value", layout.peft_type),
        "materialised": model.method.producer_kind != "static" and layout.peft_type not in NATIVE_TYPES,
        "source_method": model.method.to_dict(),
        "head": dataclasses.asdict(model.method.head),
        "head_kind": model.head_kind,
        "pooling": model.pooling,
        "num_labels": model.num_labels,
        "is_regression": model.is_regression,
        "generative": model.generative,
        "label_words": model.label_words,
        "task": task or meta_in.get("task"),
        "label_names": list(label_names or meta_in.get("label_names") or []),
        "base_model": bb.name,
        "base_family": bb.family,
        "base_fingerprint": bb.fingerprint(),
    }
    (out / SIDECAR_META).write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return out


# ------------------------------------------------------------------------------------ import
def read_peft_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / PEFT_CONFIG
    cfg = read_json_object(path, PeftInteropError, f" (a peft adapter folder holds {PEFT_CONFIG} and {PEFT_WEIGHTS})")
    kind = cfg.get("peft_type")
    if kind not in SUPPORTED_IMPORT:
        raise PeftInteropError(f"{path}: peft_type {kind!r} cannot be imported; supported: {', '.join(SUPPORTED_IMPORT)}")
    for key in ("num_virtual_tokens", "token_dim", "num_layers"):
        if kind == "CPT" and key != "num_virtual_tokens" and cfg.get(key) is None:
            continue  # peft's CPTConfig leaves them to the base model
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise PeftInteropError(f"{path}: field {key!r} must be a positive integer, got {cfg.get(key)!r}")
    if kind == "CARTRIDGE":
        frozen = cfg.get("num_frozen_tokens", 1)
        if not isinstance(frozen, int) or not 0 <= frozen <= cfg["num_virtual_tokens"]:
            raise PeftInteropError(f"{path}: field 'num_frozen_tokens' must be an integer in 0..num_virtual_tokens "
                                   f"({cfg['num_virtual_tokens']}), got {frozen!r}")
    if kind == "MULTITASK_PROMPT_TUNING":
        if cfg.get("num_tasks", 1) != 1:
            raise PeftInteropError(f"{path}: num_tasks={cfg.get('num_tasks')}; softprompt's mpt holds one task's U, V, "
                                   "so only adapters with num_tasks=1 can be imported")
        if not isinstance(cfg.get("num_ranks", 1), int) or cfg.get("num_ranks", 1) < 1:
            raise PeftInteropError(f"{path}: field 'num_ranks' must be a positive integer, "
                                   f"got {cfg.get('num_ranks')!r}")
    return cfg


def read_sidecar(directory: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(directory) / SIDECAR_META
    if not path.is_file():
        return None
    meta = read_json_object(path, PeftInteropError)
    if meta.get("format") != SIDECAR_FORMAT:
        raise PeftInteropError(f"{path}: field 'format' must be {SIDECAR_FORMAT!r}")
    return meta


def _check_layout(cfg: dict, layout: PeftLayout, prompt: torch.Tensor, where: str, runner, family: str) -> None:
    obstacle = runner.peft_prefix_obstacle
    if cfg["peft_type"] in KV_TYPES and obstacle:
        raise PeftInteropError(f"{where}: {cfg['peft_type'].lower()} on {family} cannot be imported: {obstacle}")
    submodules = cfg.get("num_transformer_submodules") or 1
    if submodules != 1:
        raise PeftInteropError(f"{where}: num_transformer_submodules={submodules} (prompts on the decoder too); "
                               "softprompt prompts T5's encoder only, so only adapters with 1 can be imported")
    expect = {"num_layers": layout.num_layers, "token_dim": layout.token_dim}
    if cfg["peft_type"] in KV_TYPES:
        expect["num_attention_heads"] = layout.num_attention_heads
    for key, value in expect.items():
        if cfg.get(key) != value:
            raise PeftInteropError(f"{where}: {key}={cfg.get(key)} does not fit the base model ({key} {value})")
    if tuple(prompt.shape) != layout.prompt_shape:
        raise PeftInteropError(f"{where}: prompt_embeddings has shape {tuple(prompt.shape)}, "
                               f"expected {layout.prompt_shape} for this config")
    if not bool(torch.isfinite(prompt).all()):
        raise PeftInteropError(f"{where}: prompt_embeddings holds NaN or infinite values")


def _check_cpt(cfg: dict, backbone, where: str) -> None:
    """A peft CPT config softprompt can rebuild: one token id per virtual token, each in the vocabulary."""
    ids, types = cfg.get("cpt_token_ids"), cfg.get("cpt_tokens_type_mask")
    vocab = backbone.model.get_input_embeddings().weight.shape[0]
    if not isinstance(ids, list) or len(ids) != cfg["num_virtual_tokens"] or not all(
            isinstance(i, int) and 0 <= i < vocab for i in ids):
        raise PeftInteropError(f"{where}: cpt_token_ids must be {cfg['num_virtual_tokens']} token ids below {vocab}")
    if types is not None and (not isinstance(types, list) or len(types) != len(ids)):
        raise PeftInteropError(f"{where}: cpt_tokens_type_mask must have one entry per token ({len(ids)})")


def _mpt_factors(cfg: dict, tensors: dict[str, torch.Tensor], layout: PeftLayout, where: str):
    """U (P, r) and V (r, d) of a one-task peft MPT adapter, checked against its config."""
    n, d, r = layout.num_virtual_tokens, layout.token_dim, cfg.get("num_ranks", 1)
    out = []
    for key, shape in (("prefix_task_cols", (1, n, r)), ("prefix_task_rows", (1, r, d))):
        value = tensors.get(key)
        if value is None or tuple(value.shape) != shape or not bool(torch.isfinite(value).all()):
            got = None if value is None else tuple(value.shape)
            raise PeftInteropError(f"{where}: {key} must be a finite tensor of shape {shape}, got {got}")
        out.append(value[0])
    return out


SCORE_KEY = "base_model.score.weight"  # what peft saves of a *ForSequenceClassification decoder's head


def _decoder_score(tensors: dict[str, torch.Tensor], backbone, runner) -> torch.Tensor | None:
    """The `score` matrix of a SEQ_CLS decoder adapter, when softprompt's head can hold it exactly."""
    score = tensors.get(SCORE_KEY)
    if score is None or backbone.kind != "decoder":
        return None
    if score.dim() != 2 or score.shape[1] != runner.hidden_size or not bool(torch.isfinite(score).all()):
        raise PeftInteropError(f"{SCORE_KEY}: expected a finite (num_labels, {runner.hidden_size}) matrix, "
                               f"got shape {tuple(score.shape)}")
    return score


def import_peft(directory: str | os.PathLike, backbone=None, *, num_labels: int | None = None,
                is_regression: bool | None = None, label_words: list[str] | None = None,
                head: dict[str, Any] | None = None, check_base: bool = True, seed: int = 0,
                generative: bool | None = None):
    """A SoftPromptModel from a peft prompt-tuning / p-tuning / prefix-tuning / CPT / cartridge / multitask
    prompt-tuning adapter (safetensors only).

    The prompt becomes a static prompt at the embeddings (method prompt-tuning) or static
    key/value prefixes (p-tuning-v2); CPT comes back as cpt, CARTRIDGE as cartridge (its first
    num_frozen_tokens rows the frozen sink) and a one-task MULTITASK_PROMPT_TUNING as mpt (P*, U, V).
    The head comes from the softprompt sidecar when the adapter was written by `export_peft`;
    otherwise a new head is made (seeded by `seed`) for `num_labels` classes (default 2), or a
    verbalizer when `label_words` are given. A decoder SEQ_CLS adapter's `score` matrix
    (modules_to_save) becomes a last-token head with zero bias, which is what
    LlamaForSequenceClassification / GPT2ForSequenceClassification compute; other classifiers
    (BERT's sits on its tanh pooler) are ignored with a warning.
    `backbone` defaults to the sidecar's base model, else the config's base_model_name_or_path.
    `generative` (default: the sidecar's, else False): a model for generation (LM head, no task
    head; decoders and T5), e.g. for a peft CAUSAL_LM / SEQ_2_SEQ_LM adapter made for generation.
    """
    from softprompt.adapter import check_tensors, read_tensors
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel
    from softprompt.runners import runner_for

    directory = Path(directory)
    cfg, tensors, sidecar, weights = _read_adapter(directory)
    backbone = _base_for(directory, cfg, sidecar, backbone, check_base)

    peft_type = "PREFIX_TUNING" if cfg["peft_type"] in KV_TYPES else "PROMPT_TUNING"
    prompt = tensors["prompt_embeddings"]
    if prompt.dim() != 2:
        raise PeftInteropError(f"{weights}: prompt_embeddings must be 2-D, got shape {tuple(prompt.shape)}")
    runner = runner_for(backbone.model, backbone.kind)
    layout = layout_for(runner, backbone, peft_type, cfg["num_virtual_tokens"])
    if cfg["peft_type"] == "CPT":
        cfg = {**cfg, "token_dim": cfg.get("token_dim") or layout.token_dim,
               "num_layers": cfg.get("num_layers") or layout.num_layers}
        _check_cpt(cfg, backbone, str(directory))
    _check_layout(cfg, layout, prompt, str(directory), runner, backbone.family)
    is_mpt = cfg["peft_type"] == "MULTITASK_PROMPT_TUNING"
    factors = _mpt_factors(cfg, tensors, layout, str(weights)) if is_mpt else None

    if generative is None:
        generative = bool((sidecar or {}).get("generative"))
    score = (_decoder_score(tensors, backbone, runner)
             if not generative and not sidecar and head is None and not label_words else None)
    used = {"prompt_embeddings"} | ({SCORE_KEY} if score is not None else set())
    used |= {"prefix_task_cols", "prefix_task_rows"} if factors is not None else set()
    ignored = sorted(set(tensors) - used)
    if ignored:
        warnings.warn(f"{weights}: ignoring tensors softprompt has no place for (e.g. a classifier in "
                      f"modules_to_save): {ignored[:5]}", stacklevel=2)
    head_cfg, num_labels, is_regression, label_words = _head_settings(
        sidecar, score, head, num_labels, is_regression, label_words, weights)
    name, producer = _producer_for(cfg, peft_type, factors)
    method = method_config(name, producer=producer, head=head_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SoftPromptModel(backbone, method, num_labels, is_regression, label_words, generative=generative)
    _fill_prompt(model, cfg, prompt, factors)
    head_file = directory / SIDECAR_HEAD
    if score is not None:
        with torch.no_grad():
            model.head.out.weight.copy_(score.to(model.head.out.weight.dtype))
            model.head.out.bias.zero_()
    head_source = "new" if model.head_kind != "verbalizer" else "verbalizer"
    if generative:
        head_source = "none (generative: the LM head)"
    if score is not None:
        head_source = "peft score"
    if sidecar and head is None:
        head_source = head_source if generative else "sidecar"
        if head_file.is_file():
            head_tensors = read_tensors(head_file)
            check_tensors(head_tensors, model.head.state_dict(), str(head_file))
            model.head.load_state_dict(head_tensors)
        elif model.head.state_dict():
            raise PeftInteropError(f"{head_file}: not found, but {directory / SIDECAR_META} describes a head with weights")
    model.adapter_meta = {
        "task": (sidecar or {}).get("task"),
        "label_names": list((sidecar or {}).get("label_names") or []),
        "imported_from": {"format": "peft", "path": str(directory), "peft_type": cfg["peft_type"],
                          "task_type": cfg.get("task_type"), "head": head_source},
    }
    return model.eval()


def _read_adapter(directory: Path):
    """The adapter's config, tensors (safetensors only), sidecar and weights path."""
    from softprompt.adapter import read_tensors

    cfg = read_peft_config(directory)
    weights = directory / PEFT_WEIGHTS
    if not weights.is_file():
        extra = f" ({PEFT_PICKLE} is a pickle and is never loaded; re-save with safe_serialization=True)" if (
            directory / PEFT_PICKLE).exists() else ""
        raise PeftInteropError(f"{weights}: not found{extra}")
    tensors = read_tensors(weights)
    if "prompt_embeddings" not in tensors:
        raise PeftInteropError(f"{weights}: no 'prompt_embeddings' tensor (found {sorted(tensors)[:5]})")
    sidecar = read_sidecar(directory)
    return cfg, tensors, sidecar, weights


def _base_for(directory: Path, cfg: dict, sidecar: dict | None, backbone, check_base: bool):
    """The base model: the one given, else the sidecar's, else the config's; checked against the sidecar's fingerprint."""
    if backbone is None:
        from softprompt.backbones import load_backbone

        name = (sidecar or {}).get("base_model") or cfg.get("base_model_name_or_path")
        if not name:
            raise PeftInteropError(f"{directory / PEFT_CONFIG}: no base_model_name_or_path; pass a backbone")
        backbone = load_backbone(name)
    if sidecar and check_base and backbone.fingerprint() != sidecar.get("base_fingerprint"):
        raise PeftInteropError(
            f"{directory / SIDECAR_META}: exported from base model {sidecar.get('base_model')!r} "
            f"(fingerprint {str(sidecar.get('base_fingerprint'))[:12]}), but the loaded base {backbone.name!r} "
            f"has fingerprint {backbone.fingerprint()[:12]}"
        )
    return backbone


def _head_settings(sidecar, score, head, num_labels, is_regression, label_words, weights):
    """(head config, num_labels, is_regression, label_words): the sidecar's, a SEQ_CLS score's, or new."""
    if sidecar:
        head_cfg = head or sidecar.get("head") or {}
        num_labels = num_labels or int(sidecar["num_labels"])
        is_regression = bool(sidecar.get("is_regression")) if is_regression is None else is_regression
        label_words = label_words or sidecar.get("label_words") or None
    elif score is not None:  # a SEQ_CLS decoder's `score`: a bias-free linear map of the last token
        if num_labels not in (None, score.shape[0]):
            raise PeftInteropError(f"{weights}: {SCORE_KEY} has {score.shape[0]} outputs, but num_labels={num_labels}")
        head_cfg = {"kind": "regression" if is_regression else "classification", "pooling": "last"}
        num_labels = score.shape[0]
        is_regression = bool(is_regression)
    else:
        head_cfg = head or ({"kind": "verbalizer"} if label_words else {})
        num_labels = num_labels or (len(label_words) if label_words else 2)
        is_regression = bool(is_regression)
    return head_cfg, num_labels, is_regression, label_words


def _producer_for(cfg: dict, peft_type: str, factors) -> tuple[str, dict]:
    """(preset name, producer config) that holds this peft type's prompt."""
    producer = {"kind": "static", "num_tokens": cfg["num_virtual_tokens"], "init": "random"}
    name = "p-tuning-v2" if peft_type == "PREFIX_TUNING" else "prompt-tuning"
    if cfg["peft_type"] == "CPT":  # the context comes back as itself; the delta is what the prompt adds to it
        producer = {"kind": "cpt", "token_ids": list(cfg["cpt_token_ids"]),
                    "type_mask": list(cfg.get("cpt_tokens_type_mask") or [1] * cfg["num_virtual_tokens"]),
                    "epsilon": float(cfg.get("opt_projection_epsilon", 0.1)),
                    "format_epsilon": float(cfg.get("opt_projection_format_epsilon", 0.1))}
        name = "cpt"
    elif cfg["peft_type"] == "CARTRIDGE":  # the trained cache as itself; init random: no prefill when it loads
        producer = {"kind": "cartridge", "num_tokens": cfg["num_virtual_tokens"], "init": "random",
                    "frozen_tokens": cfg.get("num_frozen_tokens", 1)}
        name = "cartridge"
    elif factors is not None:
        producer = {"kind": "mpt", "num_tokens": cfg["num_virtual_tokens"], "init": "random",
                    "rank": cfg.get("num_ranks", 1), "shared_from": None}
        name = "mpt"
    return name, producer


def _fill_prompt(model, cfg: dict, prompt: torch.Tensor, factors) -> None:
    """Copy the peft tensors into the producer's parameters."""
    with torch.no_grad():
        if cfg["peft_type"] == "CPT":
            model.producer.delta.copy_(prompt.to(model.producer.delta.dtype) - model.producer.context)
        elif cfg["peft_type"] == "CARTRIDGE":
            cut = model.producer.sink.shape[0]
            model.producer.sink.copy_(prompt[:cut].to(model.producer.sink.dtype))
            model.producer.prompt.copy_(prompt[cut:].to(model.producer.prompt.dtype))
        elif factors is not None:
            for param, value in zip((model.producer.shared, model.producer.cols, model.producer.rows),
                                    (prompt, *factors)):
                param.copy_(value.to(param.dtype))
        else:
            model.producer.prompt.copy_(prompt.to(model.producer.prompt.dtype))
