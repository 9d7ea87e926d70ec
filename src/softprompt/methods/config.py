"""A method = producer x site (+ head, + how the backbone trains), as a typed config.

Read from YAML/CLI dicts by `method_from_dict`; every value that needs no backbone is checked
then, before any model or data is loaded. `resolve` binds it to a backbone's layer count and a
max_length (site built, producer fitted) once; a layer out of range is a ConfigError there.
Code that changes a method does so with `with_site` / `with_producer` / `with_head`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from softprompt.config import from_dict, option
from softprompt.errors import ConfigError
from softprompt.heads import HeadConfig
from softprompt.methods.presets import PRESETS
from softprompt.producers import PRODUCERS, Producer, ProducerConfig
from softprompt.producers.static import StaticConfig
from softprompt.sites import Site, SiteConfig, build_site, check_site


@dataclass
class LoraSettings:
    r: int = option(8, help="LoRA rank of the update B·A")
    alpha: int = option(16, help="LoRA scaling numerator: the update is scaled by alpha / r")
    dropout: float = option(0.1, help="dropout on the LoRA branch's input")
    target_modules: list[str] | None = option(None, help="names of the linear modules LoRA adapts",
                                              unset="the runner's `lora_targets` for this architecture")


@dataclass
class MethodConfig:
    name: str = option("custom", help="the preset this method starts from (its name in run folders and tables)",
                       values=f"{', '.join(PRESETS)}, custom")
    producer: ProducerConfig | None = option(
        default_factory=StaticConfig, shown_default="{kind: static}",
        help="what makes the prompt vectors: a mapping with a kind and that kind's fields; none: no prompt",
        values=f"kinds {', '.join(PRODUCERS)}, or none")
    site: SiteConfig = option(default_factory=SiteConfig, shown_default="{kind: embeddings}",
                              help="where the prompt acts: a mapping with a kind and that kind's fields")
    head: HeadConfig = option(default_factory=HeadConfig, shown_default="{kind: auto}",
                              help="the output head: a mapping with kind, pooling and dropout")
    backbone: Literal["frozen", "lora", "full"] = option("frozen", help=(
        "how the backbone trains: frozen (soft prompts only), lora (low-rank updates) or full fine-tuning"))
    lora: LoraSettings = option(default_factory=LoraSettings, shown_default="{r: 8, alpha: 16, dropout: 0.1}",
                                help="LoRA settings (backbone: lora): a mapping with r, alpha, dropout, target_modules")
    zero_shot: bool = option(False, help="no training: score label words after an instruction template")

    def __post_init__(self):
        if isinstance(self.producer, dict):
            self.producer = producer_from_dict(self.producer)
        if self.zero_shot and self.head.kind not in ("auto", "verbalizer"):
            raise ConfigError("method.head.kind: zero-shot scores label words, so it needs 'verbalizer'")
        if self.producer is not None:
            check_site(self.site)  # kind and fields; the layer range is checked by `resolve`

    @classmethod
    def from_value(cls, value: Any, path: str = "method") -> "MethodConfig":
        """A preset name, a method mapping (optionally naming a preset), or a MethodConfig."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, (str, dict)):
            raise ConfigError(f"{path}: expected a method name or mapping, got {value!r}")
        return method_config(value)

    @property
    def producer_class(self) -> type[Producer] | None:
        if self.producer is None:
            return None
        return next(cls for cls in PRODUCERS.values() if type(self.producer) is cls.config_class)

    @property
    def producer_kind(self) -> str | None:
        cls = self.producer_class
        return None if cls is None else cls.kind

    @property
    def trains_backbone(self) -> bool:
        return self.backbone != "frozen"

    def resolve(self, num_layers: int, max_length: int, backbone: str = "this backbone") -> ResolvedMethod:
        """This method on a backbone of `num_layers` reading up to `max_length` tokens: the site built and
        the producer fitted, once. A ConfigError names the field that does not fit."""
        if self.producer is None:
            return ResolvedMethod(self, None, num_layers, max_length, backbone)
        site = build_site(self.site, num_layers, backbone)
        fitted = dataclasses.replace(self, producer=self.producer.fit(max_length))
        return ResolvedMethod(fitted, site, num_layers, max_length, backbone)

    def with_site(self, **changes: Any) -> "MethodConfig":
        kind = changes.get("kind", self.site.kind)
        base = self.site if kind == self.site.kind else SiteConfig(kind=kind)
        site = from_dict(SiteConfig, {**dataclasses.asdict(base), **changes}, "method.site")
        return dataclasses.replace(self, site=site)

    def with_producer(self, **changes: Any) -> "MethodConfig":
        if self.producer is None:
            raise ConfigError(f"method {self.name!r} has no producer to change")
        data = {**producer_to_dict(self.producer), **changes}
        return dataclasses.replace(self, producer=producer_from_dict(data))

    def with_head(self, **changes: Any) -> "MethodConfig":
        head = from_dict(HeadConfig, {**dataclasses.asdict(self.head), **changes}, "method.head")
        return dataclasses.replace(self, head=head)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["producer"] = None if self.producer is None else producer_to_dict(self.producer)
        return out


def producer_from_dict(data: dict[str, Any]) -> ProducerConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"method.producer: expected a mapping with a 'kind', got {data!r}")
    kind = data.get("kind", "static")
    if kind not in PRODUCERS:
        raise ConfigError(f"method.producer.kind: unknown {kind!r}; expected one of {', '.join(PRODUCERS)}")
    args = {k: v for k, v in data.items() if k != "kind"}
    cfg = from_dict(PRODUCERS[kind].config_class, args, "method.producer")
    try:
        cfg.validate()
    except ValueError as err:
        raise ConfigError(f"method.producer: {err}") from None
    return cfg


def producer_to_dict(cfg: ProducerConfig) -> dict[str, Any]:
    kind = next(cls.kind for cls in PRODUCERS.values() if type(cfg) is cls.config_class)
    return {"kind": kind, **dataclasses.asdict(cfg)}


def method_from_dict(data: dict[str, Any]) -> MethodConfig:
    data = dict(data)
    if data.get("producer") is not None:
        data["producer"] = producer_from_dict(data["producer"])
    return from_dict(MethodConfig, data, "method")


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_config(name_or_dict: str | dict[str, Any] | MethodConfig, **overrides: Any) -> MethodConfig:
    """A preset by name (optionally overridden), or a full method dict with an optional `name` preset."""
    if isinstance(name_or_dict, MethodConfig):
        name_or_dict = name_or_dict.to_dict()
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


@dataclass(frozen=True)
class ResolvedMethod:
    """A method bound to one backbone and run, made once by `MethodConfig.resolve` and passed down: its site
    built for the layer count, its producer fitted to max_length (nothing downstream does either again)."""

    config: MethodConfig  # producer fitted to max_length
    site: Site | None  # None: the method has no prompt
    num_layers: int
    max_length: int
    backbone_name: str

    def resolve(self, num_layers: int, max_length: int | None = None, backbone: str | None = None) -> "ResolvedMethod":
        """Itself, for a backbone of the same layer count (its producer is already fitted: `max_length` is unused)."""
        if num_layers != self.num_layers:
            raise ConfigError(f"method: resolved for {self.backbone_name} ({self.num_layers} layers), "
                              f"used on {backbone or 'a backbone'} with {num_layers}")
        return self

    def with_producer(self, **changes: Any) -> "ResolvedMethod":
        """Producer settings that leave the site and the fitted length as they are (e.g. label words)."""
        return dataclasses.replace(self, config=self.config.with_producer(**changes))
