"""A key/value cache kept across calls of the layer loop: a prefill, then decode steps.

It is a duck-typed Hugging Face cache (`update`, `get_seq_length`): `update` appends a layer's
new keys/values to what the layer holds and returns everything. Key/value prefixes are the
first entries of their layers, so they are computed once per request. Layers that see the same
key columns share a `Segment`: which columns are real (padding, unused prompt slots and
missing prefixes are not) and their positions; a decode step builds one mask per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softprompt.runners.sequence import Past


@dataclass
class Segment:
    past: Past  # key columns held so far: real or not, and positions
    next_position: torch.Tensor  # (B,) position of the next token in these layers

    def advance(self, n: int) -> None:
        bsz = self.next_position.shape[0]
        new = self.next_position[:, None] + torch.arange(n, device=self.next_position.device)
        ones = torch.ones(bsz, n, dtype=torch.bool, device=new.device)
        self.past = Past(torch.cat([self.past.mask, ones], 1), torch.cat([self.past.positions, new], 1))
        self.next_position = self.next_position + n

    def select(self, index: torch.Tensor) -> "Segment":
        return Segment(Past(self.past.mask[index], self.past.positions[index]), self.next_position[index])


class KVCache:
    def __init__(self):
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.segment_of: dict[int, Segment] = {}  # layer -> its segment (shared objects)
        self.embed_next: torch.Tensor | None = None  # (B,) next position at the embeddings

    def seed(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put a layer's key/value prefix in front (before the prefill's own keys)."""
        self.keys[layer], self.values[layer] = keys, values

    def update(self, key, value, layer_idx, *args, **kwargs):
        if layer_idx in self.keys:
            key = torch.cat([self.keys[layer_idx].to(key.dtype), key], dim=2)
            value = torch.cat([self.values[layer_idx].to(value.dtype), value], dim=2)
        self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[layer_idx].shape[2] if layer_idx in self.keys else 0

    def segments(self) -> list[Segment]:
        return list({id(s): s for s in self.segment_of.values()}.values())

    def advance(self, n: int) -> None:
        for seg in self.segments():
            seg.advance(n)
        self.embed_next = self.embed_next + n

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` (in that order): beam search reorders, finished requests leave."""
        for layer in self.keys:
            self.keys[layer] = self.keys[layer][index]
            self.values[layer] = self.values[layer][index]
        moved = {id(s): s.select(index) for s in self.segments()}
        self.segment_of = {layer: moved[id(s)] for layer, s in self.segment_of.items()}
        self.embed_next = self.embed_next[index]
