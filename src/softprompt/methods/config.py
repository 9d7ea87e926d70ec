"""A method = producer x site (+ head, + how the backbone trains), declared as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from softprompt.config import from_dict
from softprompt.errors import ConfigError
from softprompt.heads import HeadConfig
from softprompt.producers import PRODUCERS, ProducerConfig
from softprompt.sites import SiteConfig


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None  # None: peft's defaults for the architecture


@dataclass
class MethodConfig:
    name: str = "custom"
    producer: dict[str, Any] | None = field(default_factory=lambda: {"kind": "static"})  # None: no prompt
    site: SiteConfig = field(default_factory=SiteConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    backbone: Literal["frozen", "lora", "full"] = "frozen"
    lora: LoraSettings = field(default_factory=LoraSettings)
    zero_shot: bool = False  # no training: instruction template + verbalizer

    def __post_init__(self):
        if self.producer is not None:
            self.producer_config()  # validates early, naming the field
        if self.zero_shot and self.head.kind not in ("auto", "verbalizer"):
            raise ConfigError("method.head.kind: zero-shot scores label words, so it needs 'verbalizer'")

    @property
    def producer_kind(self) -> str | None:
        return None if self.producer is None else self.producer.get("kind", "static")

    def producer_config(self) -> ProducerConfig:
        kind = self.producer_kind
        if kind not in PRODUCERS:
            raise ConfigError(f"method.producer.kind: unknown {kind!r}; expected one of {', '.join(PRODUCERS)}")
        cfg_cls = PRODUCERS[kind].config_class
        args = {k: v for k, v in self.producer.items() if k != "kind"}
        cfg = from_dict(cfg_cls, args, "method.producer")
        try:
            cfg.validate()
        except ValueError as err:
            raise ConfigError(f"method.producer: {err}") from None
        return cfg

    @property
    def trains_backbone(self) -> bool:
        return self.backbone != "frozen"


def method_from_dict(data: dict[str, Any]) -> MethodConfig:
    return from_dict(MethodConfig, data, "method")
