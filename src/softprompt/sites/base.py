"""Injection sites: where prompt vectors enter the frozen model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from softprompt.runners import Runner, Sequence


@dataclass
class SiteConfig:
    kind: Literal["embeddings", "layer", "kv"] = "embeddings"
    layer: int | None = None  # site "layer": m (0 = embeddings); None = the middle layer
    layers: list[int] | None = None  # site "kv": layers given prefixes; None = all


class Site:
    """A site knows the prompt width it needs, the first layer it touches and how it applies."""

    kind: str
    boundary: int  # layers below this one never see trainable parameters

    def prompt_dim(self, runner: Runner) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class HiddenSite(Site):
    """Prompt prepended to the hidden states entering layer m (m = 0: the input embeddings)."""

    kind = "layer"

    def __init__(self, layer: int):
        self.boundary = layer

    def prompt_dim(self, runner: Runner) -> int:
        return runner.hidden_size

    def apply(self, seq: Sequence, prompt: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> Sequence:
        from softprompt.runners import insert_prompt

        return insert_prompt(seq, prompt, prompt_mask)

    def describe(self) -> str:
        return "input embeddings" if self.boundary == 0 else f"hidden states entering layer {self.boundary}"


class KVSite(Site):
    """Key/value prefixes at a set of layers (Prefix Tuning, P-Tuning v2). GQA-aware."""

    kind = "kv"

    def __init__(self, layers: list[int]):
        self.layers = sorted(layers)
        self.boundary = self.layers[0]

    def prompt_dim(self, runner: Runner) -> int:
        heads, head_dim = runner.prefix_shape()
        return len(self.layers) * 2 * heads * head_dim

    def prefixes(self, prompt: torch.Tensor, runner: Runner, batch: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """(B|1, P, layers*2*kv) -> {layer: (k, v)} each (B, H_kv, P, head_dim)."""
        heads, head_dim = runner.prefix_shape()
        p = prompt.shape[1]
        x = prompt.expand(batch, -1, -1).view(batch, p, len(self.layers), 2, heads, head_dim)
        x = x.permute(2, 3, 0, 4, 1, 5)  # (layers, 2, B, H, P, hd)
        return {layer: (x[i, 0], x[i, 1]) for i, layer in enumerate(self.layers)}

    def describe(self) -> str:
        return f"key/value prefixes at layers {self.layers[0]}..{self.layers[-1]}" if self.layers == list(
            range(self.layers[0], self.layers[-1] + 1)
        ) else f"key/value prefixes at layers {self.layers}"


def build_site(cfg: SiteConfig, num_layers: int) -> Site:
    if cfg.kind == "embeddings":
        return HiddenSite(0)
    if cfg.kind == "layer":
        m = num_layers // 2 if cfg.layer is None else cfg.layer
        if not 0 <= m < num_layers:
            raise ValueError(f"site.layer must be in 0..{num_layers - 1} for this backbone, got {m}")
        return HiddenSite(m)
    layers = list(range(num_layers)) if cfg.layers is None else list(cfg.layers)
    bad = [i for i in layers if not 0 <= i < num_layers]
    if not layers or bad or len(set(layers)) != len(layers):
        raise ValueError(f"site.layers must be distinct layers in 0..{num_layers - 1}, got {cfg.layers}")
    return KVSite(layers)
