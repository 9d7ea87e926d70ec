"""Hidden-state site: prompts prepended to the hidden states entering layer m (LPT, ID-SPAM)."""

from __future__ import annotations

from softprompt.errors import ConfigError
from softprompt.sites.base import Flow, Site, SiteConfig


class LayerSite(Site):
    kind = "layer"

    def __init__(self, layer: int):
        self.boundary = layer

    @classmethod
    def check_fields(cls, cfg: SiteConfig) -> None:
        if cfg.layers is not None:
            raise ConfigError("method.site.layers: only for site kinds 'kv' and 'adaption'; use method.site.layer")
        if cfg.layer is not None and cfg.layer < 0:
            raise ConfigError(f"method.site.layer: must be >= 0, got {cfg.layer}")

    @classmethod
    def from_config(cls, cfg: SiteConfig, num_layers: int, backbone: str) -> "LayerSite":
        m = num_layers // 2 if cfg.layer is None else cfg.layer
        if not 0 <= m < num_layers:
            raise ConfigError(f"method.site.layer: must be in 0..{num_layers - 1} for {backbone}, got {m}")
        return cls(m)

    def prompt_dim(self, runner) -> int:
        return self.state_dim(runner)

    def state_dim(self, runner) -> int:
        return runner.embedding_size if self.boundary == 0 else runner.hidden_size

    @property
    def peft_type(self) -> str | None:
        return "PROMPT_TUNING" if self.boundary == 0 else None

    def peft_obstacle(self, runner) -> str | None:
        if self.boundary == 0:
            return None
        return "its prompt enters at a hidden layer; peft prompts enter at the input embeddings or as key/value prefixes"

    def in_token_space(self) -> bool:
        return self.boundary == 0

    def positions_taken(self, num_tokens: int) -> int:
        return num_tokens if self.boundary == 0 else 0  # at layer m > 0 positions were already added

    def enter_embeddings(self, flow: Flow) -> None:
        if self.boundary == 0:
            flow.insert(flow.prompt())

    def enter_layer(self, layer: int, flow: Flow) -> None:
        if layer == self.boundary and layer > 0:
            flow.insert(flow.prompt())

    def describe(self) -> str:
        return "input embeddings" if self.boundary == 0 else f"hidden states entering layer {self.boundary}"
