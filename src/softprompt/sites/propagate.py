"""Propagated prefix site: prefix-propagation (Li, Aitken, Bhambhoria & Zhu, ACL 2023).

The prefix is made of hidden states that travel through the layers like tokens: they attend and
are attended to. Before layer 0 the prefix P_0 (t, d) is prepended to each row's hidden states;
before every layer i > 0 that layer's P_i is *added* to the states at the prefix positions coming
out of layer i - 1 (prefix tuning instead overwrites fresh keys/values at each layer). One prompt
vector holds every layer's prefix: P_0 | P_1 | ... | P_{L-1} (prompt_dim = L x d), so a static
producer is the paper's prefix table; the MLP producer is its optional reparameterisation.

Positions: the prefix enters after the embeddings, so it takes no position embedding and text keeps
its own positions where positions are added at the embeddings; rotary / relative positions count it
like any token before the text. (The reference code prepends zero embeddings that do get position,
token-type embeddings and the embedding LayerNorm, a constant per slot that the trainable P_0 absorbs,
and shifts text positions by t.)

Encoder-decoders (T5): the prefix lives in the encoder; the decoder reads it through cross-attention
only (the decoder has no prefix positions, so nothing is propagated there).
"""

from __future__ import annotations

from softprompt.errors import ConfigError
from softprompt.sites.base import Flow, Site, SiteConfig


class PropagateSite(Site):
    kind = "propagate"
    boundary = 0  # the prefix enters before layer 0

    def __init__(self, num_layers: int):
        self.num_layers = num_layers

    @classmethod
    def check_fields(cls, cfg: SiteConfig) -> None:
        for name in ("layer", "layers"):
            if getattr(cfg, name) is not None:
                raise ConfigError(f"method.site.{name}: not used by site kind 'propagate' (a prefix at every layer)")

    @classmethod
    def from_config(cls, cfg: SiteConfig, num_layers: int, backbone: str) -> "PropagateSite":
        return cls(num_layers)

    def prompt_dim(self, runner) -> int:
        return self.num_layers * runner.hidden_size

    def word_vectors(self, runner, ids, partial: bool = False):
        raise ConfigError("method.producer.init: propagated prefixes are added to hidden states at every layer, "
                          "not words; initialise them randomly")

    def peft_obstacle(self, runner) -> str | None:
        return ("peft has no prefix-propagation (its prefixes are key/value prefixes, not hidden states carried "
                "through the layers)")

    def enter_layer(self, layer: int, flow: Flow) -> None:
        d = flow.runner.hidden_size
        here = flow.prompt()[..., layer * d:(layer + 1) * d]  # P_layer (1|rows, t, d)
        if layer == 0:
            flow.insert(here)
        else:
            flow.add_to_prompt(here)

    def describe(self) -> str:
        return f"propagated prefix hidden states (layers 0..{self.num_layers - 1})"
