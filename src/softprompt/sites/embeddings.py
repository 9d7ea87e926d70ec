"""Embedding site: prompts prepended to the input token embeddings (Prompt Tuning, P-Tuning, SMoP, DePT)."""

from __future__ import annotations

from softprompt.errors import ConfigError
from softprompt.sites.base import SiteConfig
from softprompt.sites.layer import LayerSite


class EmbeddingSite(LayerSite):
    kind = "embeddings"

    def __init__(self):
        super().__init__(0)

    @classmethod
    def check_fields(cls, cfg: SiteConfig) -> None:
        for name in ("layer", "layers"):
            if getattr(cfg, name) is not None:
                raise ConfigError(f"method.site.{name}: not used by site kind 'embeddings' (use kind 'layer' or 'kv')")

    @classmethod
    def from_config(cls, cfg: SiteConfig, num_layers: int, backbone: str) -> "EmbeddingSite":
        return cls()
