"""Finding a model's parts by what it exposes: its body, layer stack, norms and how its layers are called.

Runners use these to drive any Hugging Face model built from the common pieces, instead of
a list of model names; what a runner cannot find is the reason it gives for refusing a model.
"""

from __future__ import annotations

import inspect

from torch import nn

CACHE_ARGS = ("past_key_values", "past_key_value", "layer_past")  # how layers name their key/value cache
FINAL_NORMS = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f", "final_norm")
EMBED_DROPOUTS = ("drop", "emb_dropout", "embed_dropout", "dropout")
EMBED_NORMS = ("word_embeddings_layernorm", "layernorm_embedding", "embed_layer_norm")


def attr(obj, names, kind: type = nn.Module):
    """The first attribute of `obj` among `names` that is a `kind` (None: none is)."""
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, kind):
            return value
    return None


def text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def layer_count(config) -> int | None:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def layer_stack(body: nn.Module, count: int | None) -> nn.ModuleList | None:
    """The body's ModuleList of `count` blocks (its only ModuleList when the count is unknown)."""
    lists = [m for m in body.children() if isinstance(m, nn.ModuleList) and len(m)]
    if count is not None:
        lists = [m for m in lists if len(m) == count]
    return lists[0] if len(lists) == 1 else None


def decoder_body(model: nn.Module) -> nn.Module:
    """The module that holds a causal LM's embeddings and layer stack (OPT nests it one level deeper)."""
    body = getattr(model, "base_model", model)
    inner = getattr(body, "decoder", None)
    return inner if isinstance(inner, nn.Module) and not isinstance(inner, nn.ModuleList) else body


def parameters_of(module: nn.Module) -> list[str]:
    return list(inspect.signature(module.forward).parameters)


class LayerCall:
    """How a block is called, read from its forward signature: the names of its cache and position arguments."""

    def __init__(self, block: nn.Module):
        params = parameters_of(block)
        self.params = set(params)
        self.cache_arg = next((p for p in CACHE_ARGS if p in self.params), None)
        self.takes_rotary = "position_embeddings" in self.params
        self.takes_positions = "position_ids" in self.params
        self.takes_alibi = "alibi" in self.params
        self.takes_mask = "attention_mask" in self.params

    def missing(self) -> str | None:
        if not self.takes_mask:
            return "its layers take no attention_mask"
        if self.cache_arg is None:
            return f"its layers take no key/value cache (none of {', '.join(CACHE_ARGS)})"
        return None

    def kwargs(self, mask, cache, positions=None, rotary=None, alibi=None) -> dict:
        out = {"attention_mask": mask, self.cache_arg: cache}
        if self.takes_positions:
            out["position_ids"] = positions
        if self.takes_rotary:
            out["position_embeddings"] = rotary
        if self.takes_alibi:
            out["alibi"] = alibi
        return out


def first_output(out):
    return out[0] if isinstance(out, tuple) else out


# attention projections LoRA adapts, as models name them: query/value pairs first, fused projections after
LORA_NAMES = (("q_proj", "v_proj"), ("query", "value"), ("query_proj", "value_proj"), ("q", "v"),
              ("query_key_value",), ("qkv_proj",), ("c_attn",), ("Wqkv",))


def lora_targets(layers: nn.Module) -> list[str]:
    """Module names LoRA targets in these layers: the first of LORA_NAMES whose modules all exist."""
    names = {name.rsplit(".", 1)[-1] for name, _ in layers.named_modules()}
    for group in LORA_NAMES:
        if all(n in names for n in group):
            return list(group)
    return []
