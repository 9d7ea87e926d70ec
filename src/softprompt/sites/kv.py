"""Key/value site: prefixes in front of the keys and values of chosen layers (Prefix Tuning, P-Tuning v2).

GQA-aware: one prefix has num_kv_heads x head_dim per key and per value.
"""

from __future__ import annotations

import torch

from softprompt.errors import ConfigError
from softprompt.runners.kv_cache import KVCache
from softprompt.runners.loop import run_layers, start_sequence
from softprompt.sites.base import Flow, LayersSite


class KVSite(LayersSite):
    kind = "kv"
    peft_type = "PREFIX_TUNING"

    def prompt_dim(self, runner) -> int:
        heads, head_dim = runner.prefix_shape()
        return (len(self.layers) + runner.decoder_layers) * 2 * heads * head_dim

    def position_shift(self, num_tokens: int) -> int:
        return num_tokens

    @torch.no_grad()
    def word_vectors(self, runner, ids: torch.Tensor, partial: bool = False) -> torch.Tensor:
        """The keys/values the frozen model computes for the words at each prefixed layer (Li & Liang 2021,
        Sec. 7.2): a prefix made of them acts exactly like the words written before the text. `partial`: an
        encoder-decoder gives only its encoder layers' columns (the leading ones; the decoder reads no words)."""
        if runner.decoder_layers and not partial:
            raise ConfigError("method.producer.init: key/value prefixes of an encoder-decoder also go to the "
                              "decoder, which reads no words; initialise them randomly")
        ids = ids.to(runner.word_embeddings.weight.device)[None]
        cache = KVCache()
        seq, tok = start_sequence(runner, [], ids, torch.ones_like(ids))
        run_layers(runner, [], seq, tok, -1, self.layers[-1] + 1, kv_cache=cache)
        kv = torch.stack([torch.stack(cache.held(layer))[:, 0] for layer in self.layers])  # (L, 2, H, n, hd)
        return kv.permute(3, 0, 1, 2, 4).reshape(ids.shape[1], -1)  # per position (L, 2, H, hd), as _split reads

    def peft_obstacle(self, runner) -> str | None:
        if self.layers != list(range(runner.num_layers)):
            return f"its key/value prefixes cover only some layers ({self.layers}); peft prefix tuning covers every layer"
        return runner.peft_prefix_obstacle

    def enter_layer(self, layer: int, flow: Flow) -> None:
        if layer == self.boundary:  # made once, from the state entering the first prefixed layer
            prompt = flow.prompt()
            flow.add_prefixes(self.prefixes(prompt, flow.runner, flow.rows))
            if flow.runner.decoder_layers:
                flow.add_decoder_prefixes(self.decoder_prefixes(prompt, flow.runner, flow.rows))

    def prefixes(self, prompt: torch.Tensor, runner, batch: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """(B|1, P, layers*2*kv) -> {layer: (k, v)} each (B, H_kv, P, head_dim)."""
        return _split(prompt[..., : self._width(runner, len(self.layers))], runner, batch, self.layers)

    def decoder_prefixes(self, prompt: torch.Tensor, runner, batch: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Encoder-decoders: the prefixes of every decoder self-attention layer (the rest of the vector)."""
        rest = prompt[..., self._width(runner, len(self.layers)):]
        return _split(rest, runner, batch, list(range(runner.decoder_layers)))

    @staticmethod
    def _width(runner, layers: int) -> int:
        heads, head_dim = runner.prefix_shape()
        return layers * 2 * heads * head_dim

    def describe(self) -> str:
        return f"key/value prefixes at layers {self.where()}"


def _split(prompt: torch.Tensor, runner, batch: int, layers: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    heads, head_dim = runner.prefix_shape()
    p = prompt.shape[1]
    x = prompt.expand(batch, -1, -1).reshape(batch, p, len(layers), 2, heads, head_dim)
    x = x.permute(2, 3, 0, 4, 1, 5)  # (layers, 2, B, H, P, hd)
    return {layer: (x[i, 0], x[i, 1]) for i, layer in enumerate(layers)}
