"""Named methods as presets of producer x site. Any field can be overridden in config."""

from __future__ import annotations

import copy
from typing import Any

from softprompt.errors import ConfigError
from softprompt.methods.config import MethodConfig, method_from_dict

PRESETS: dict[str, dict[str, Any]] = {
    # soft prompts
    "prompt-tuning": {"producer": {"kind": "static", "init": "vocab"}, "site": {"kind": "embeddings"}},
    "prefix-tuning": {"producer": {"kind": "mlp", "hidden": 512}, "site": {"kind": "kv"}},
    "p-tuning": {"producer": {"kind": "encoder", "encoder": "mlp"}, "site": {"kind": "embeddings"}},
    "p-tuning-v2": {"producer": {"kind": "static"}, "site": {"kind": "kv"}},
    # published defaults; sources in docs/methods-fidelity.md
    "lpt": {"producer": {"kind": "pooled", "generator": "npg", "num_tokens": 10}, "site": {"kind": "layer"}},
    "smop": {"producer": {"kind": "router", "num_tokens": 5, "num_prompts": 4, "top_k": 1}, "site": {"kind": "embeddings"}},
    "dept": {"producer": {"kind": "decomposed", "num_tokens": 60, "rank": None, "init": "text",
                          "init_text": "Classify this text is postive or not:"}, "site": {"kind": "embeddings"}},
    "id-spam": {"producer": {"kind": "attention", "num_tokens": 10}, "site": {"kind": "layer"}},
    # baselines
    "full-finetune": {"producer": None, "backbone": "full"},
    "lora": {"producer": None, "backbone": "lora"},
    "head-only": {"producer": None},
    "zero-shot": {"producer": None, "zero_shot": True, "head": {"kind": "verbalizer"}},
}

SOFT_PROMPT_METHODS = [name for name, p in PRESETS.items() if p.get("producer")]


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_config(name_or_dict: str | dict[str, Any], **overrides: Any) -> MethodConfig:
    """A preset by name (optionally overridden), or a full method dict with an optional `name` preset."""
    data = {"name": name_or_dict} if isinstance(name_or_dict, str) else dict(name_or_dict)
    name = data.get("name", "custom")
    base = PRESETS.get(name)
    if base is None and name != "custom":
        raise ConfigError(f"method.name: unknown method {name!r}; expected one of {', '.join(PRESETS)} or 'custom'")
    merged = _merge(base or {}, data)
    merged = _merge(merged, overrides)
    if merged.get("producer") is not None and "kind" in (data.get("producer") or {}) and base and base.get("producer"):
        if data["producer"]["kind"] != base["producer"]["kind"]:
            # a different producer kind replaces the preset's producer fields wholesale
            merged["producer"] = copy.deepcopy(data["producer"])
    return method_from_dict(merged)
