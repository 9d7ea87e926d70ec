"""Sites: where prompt vectors enter the frozen model.

A site is an object the layer loop (`runners/loop.py`) consults as it passes the model:
before the embeddings are finished (`enter_embeddings`) and before each layer
(`enter_layer`). It asks its group's producer for vectors through the `Flow` it is handed
and puts them in (hidden-state insertion or key/value prefixes). The loop never asks what
kind of site it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from softprompt.errors import ConfigError


@dataclass
class SiteConfig:
    kind: str = "embeddings"  # a registered site kind (softprompt.sites.SITES)
    layer: int | None = None  # site "layer": m (0 = embeddings); None = the middle layer
    layers: list[int] | None = None  # site "kv": layers given prefixes; None = all


class Flow(Protocol):
    """What the layer loop offers a site for its own rows (see runners/loop.py)."""

    runner: object
    rows: int  # how many batch rows the group has

    def prompt(self) -> torch.Tensor: ...  # the producer's vectors (1|rows, t, D), from the current state

    def insert(self, prompt: torch.Tensor) -> None: ...  # prepend to the group's rows at the current point

    def add_to_prompt(self, vectors: torch.Tensor) -> None: ...  # add (1|rows, t, d) at the group's prompt slots, now

    def add_prefixes(self, prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None: ...

    def add_decoder_prefixes(self, prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None: ...

    def add_attention_terms(self, terms: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None: ...


class Site:
    """Base class: facts every site declares, and no-op hooks."""

    kind: ClassVar[str] = ""
    peft_type: ClassVar[str | None] = None  # the peft method with the same placement, if any
    boundary: int  # first layer whose input depends on the prompt; layers below it never see it

    def prompt_dim(self, runner) -> int:
        """Width of one prompt vector the producer must make."""
        return runner.hidden_size

    def state_dim(self, runner) -> int:
        """Width of the states a producer reads here (`ProducerInput.hidden`): hidden states entering the
        boundary layer; token space (`runner.embedding_size`) where prompts enter the embeddings."""
        return runner.hidden_size

    def position_shift(self, num_tokens: int) -> int:
        """How far text positions move (key/value prefixes shift them, as HF's cache does)."""
        return 0

    def positions_taken(self, num_tokens: int) -> int:
        """Positions of the base's table the prompt uses up before the text (inputs are cut to fit)."""
        return self.position_shift(num_tokens)

    def word_vectors(self, runner, ids: torch.Tensor, partial: bool = False) -> torch.Tensor:
        """(n, prompt_dim): what the words `ids` (n,) look like where this site puts prompts (Li & Liang's
        "activations of real words"). Here their input embeddings, for prompts that live in that space.
        `partial`: where only some columns come from words, return those leading columns (n, <= prompt_dim)."""
        if self.prompt_dim(runner) != runner.embedding_size:
            raise ConfigError(f"method.producer.init: prompts at {self.describe()} are not in embedding space; "
                              "initialise them randomly")
        embedding = runner.word_embeddings
        return embedding(ids.to(embedding.weight.device))  # the module, not .weight: Gemma scales by sqrt(d)

    def in_token_space(self) -> bool:
        """True when the whole prompt is vectors among the input token embeddings (what vLLM's prompt_embeds carry)."""
        return False

    def peft_obstacle(self, runner) -> str | None:
        """Why this site cannot be exported to peft (None: it can)."""
        return None if self.peft_type else f"peft has no method that puts prompts at {self.describe()}"

    def enter_embeddings(self, flow: Flow) -> None:
        """Called once with token-space vectors, before positions/norms make layer 0's input."""

    def enter_layer(self, layer: int, flow: Flow) -> None:
        """Called before `layer` runs."""

    def describe(self) -> str:
        raise NotImplementedError

    @classmethod
    def check_fields(cls, cfg: SiteConfig) -> None:
        """Raise a ConfigError naming the field for what is wrong whatever the backbone (`from_config`
        adds the checks that need its layer count)."""


def check_layer_list(cfg: SiteConfig) -> None:
    """The backbone-free checks of a site that takes `layers` (a list) and not `layer`."""
    if cfg.layer is not None:
        raise ConfigError("method.site.layer: only for site kind 'layer'; use method.site.layers")
    given = cfg.layers
    if given is not None and (not given or min(given) < 0 or len(set(given)) != len(given)):
        raise ConfigError(f"method.site.layers: must be distinct layers >= 0, got {given}")


def layer_list(cfg: SiteConfig, num_layers: int, backbone: str) -> list[int]:
    """`cfg.layers` on a backbone of `num_layers` (None: every layer); a ConfigError names the field."""
    layers = list(range(num_layers)) if cfg.layers is None else list(cfg.layers)
    bad = [i for i in layers if not 0 <= i < num_layers]
    if not layers or bad or len(set(layers)) != len(layers):
        raise ConfigError(f"method.site.layers: must be distinct layers in 0..{num_layers - 1} for {backbone}, "
                          f"got {cfg.layers}")
    return layers


class LayersSite(Site):
    """A site acting at a list of layers (`method.site.layers`; None: every layer): key/value prefixes, gated
    attention terms."""

    def __init__(self, layers: list[int]):
        self.layers = sorted(layers)
        self.boundary = self.layers[0]

    @classmethod
    def check_fields(cls, cfg: SiteConfig) -> None:
        check_layer_list(cfg)

    @classmethod
    def from_config(cls, cfg: SiteConfig, num_layers: int, backbone: str) -> "LayersSite":
        return cls(layer_list(cfg, num_layers, backbone))

    def where(self) -> str:
        """The layers, as a span where they are consecutive."""
        span = self.layers == list(range(self.layers[0], self.layers[-1] + 1))
        return f"{self.layers[0]}..{self.layers[-1]}" if span else str(self.layers)


SITES: dict[str, type] = {}


def register(cls: type) -> type:
    if not cls.kind or cls.kind in SITES:
        raise ValueError(f"site kind {cls.kind!r} is empty or registered twice")
    SITES[cls.kind] = cls
    return cls


def check_site(cfg: SiteConfig) -> None:
    """The checks that need no backbone: the kind and which fields it uses; a ConfigError names the field."""
    if cfg.kind not in SITES:
        raise ConfigError(f"method.site.kind: unknown {cfg.kind!r}; expected one of {', '.join(SITES)}")
    SITES[cfg.kind].check_fields(cfg)


def build_site(cfg: SiteConfig, num_layers: int, backbone: str = "this backbone") -> Site:
    """The site object for `cfg` on a backbone of `num_layers`; a bad value is a ConfigError naming
    `method.site.<field>`."""
    check_site(cfg)
    return SITES[cfg.kind].from_config(cfg, num_layers, backbone)
