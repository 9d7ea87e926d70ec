"""A key/value cache kept across calls of the layer loop: a prefill, then decode steps.

It is a duck-typed Hugging Face cache (`update`, `get_seq_length`): `update` appends a layer's
new keys/values to what the layer holds and returns everything. Each layer keeps a buffer with
room to grow (amortized), so a decode step writes one column instead of copying the whole cache.
Key/value prefixes are the first entries of their layers, so they are computed once per request. Layers that see the same
key columns share a `Segment`: which columns are real (padding, unused prompt slots and
missing prefixes are not) and their positions; a decode step builds one mask per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softprompt.runners.attention_terms import AttentionTerm
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
        self.keys: dict[int, torch.Tensor] = {}  # layer -> (B, H, capacity, D) buffer; the first `length` columns hold data
        self.values: dict[int, torch.Tensor] = {}
        self.length: dict[int, int] = {}
        self.segment_of: dict[int, Segment] = {}  # layer -> its segment (shared objects)
        self.embed_next: torch.Tensor | None = None  # (B,) next position at the embeddings
        self.terms: dict[int, AttentionTerm] = {}  # layer -> gated prompt attention, fixed after the prefill

    def seed(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put a layer's key/value prefix in front (before the prefill's own keys)."""
        self.keys[layer], self.values[layer], self.length[layer] = keys, values, keys.shape[2]

    def held(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's keys and values so far (views of its buffers)."""
        n = self.length[layer]
        return self.keys[layer][:, :, :n], self.values[layer][:, :, :n]

    def update(self, key, value, layer_idx, *args, **kwargs):
        if layer_idx not in self.keys:
            self.seed(layer_idx, key, value)
            return key, value
        n, add = self.length[layer_idx], key.shape[2]
        buf_k, buf_v = self.keys[layer_idx], self.values[layer_idx]
        if n + add > buf_k.shape[2] or buf_k.dtype != key.dtype:
            capacity = n + add + max(32, (n + add) // 2)
            grown_k = key.new_empty(*key.shape[:2], capacity, key.shape[3])
            grown_v = value.new_empty(*value.shape[:2], capacity, value.shape[3])
            grown_k[:, :, :n] = buf_k[:, :, :n]
            grown_v[:, :, :n] = buf_v[:, :, :n]
            buf_k, buf_v = self.keys[layer_idx], self.values[layer_idx] = grown_k, grown_v
        buf_k[:, :, n:n + add] = key
        buf_v[:, :, n:n + add] = value
        self.length[layer_idx] = n + add
        return self.held(layer_idx)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length.get(layer_idx, 0)

    def segments(self) -> list[Segment]:
        return list({id(s): s for s in self.segment_of.values()}.values())

    def advance(self, n: int) -> None:
        for seg in self.segments():
            seg.advance(n)
        self.embed_next = self.embed_next + n

    @classmethod
    def concat(cls, caches: list["KVCache"]) -> "KVCache":
        """One cache holding the rows of several (requests that joined a running batch).

        Each layer's key columns are left-padded to the longest with masked zeros, so a decode
        step appends every row's new column at the same place.
        """
        out = cls()
        first = caches[0]
        merged: dict[tuple, Segment] = {}
        for layer in first.keys:
            width = max(c.length[layer] for c in caches)
            held = [c.held(layer) for c in caches]
            out.keys[layer] = torch.cat([_pad_left(k, width, 2) for k, _ in held])
            out.values[layer] = torch.cat([_pad_left(v, width, 2) for _, v in held])
            out.length[layer] = width
            key = tuple(id(c.segment_of[layer]) for c in caches)
            if key not in merged:
                segs = [c.segment_of[layer] for c in caches]
                past = Past(torch.cat([_pad_left(s.past.mask, width, 1) for s in segs]),
                            torch.cat([_pad_left(s.past.positions, width, 1) for s in segs]))
                merged[key] = Segment(past, torch.cat([s.next_position for s in segs]))
            out.segment_of[layer] = merged[key]
        out.embed_next = torch.cat([c.embed_next for c in caches])
        rows = [c.embed_next.shape[0] for c in caches]
        for layer in {layer for c in caches for layer in c.terms}:
            out.terms[layer] = AttentionTerm.concat([c.terms.get(layer) for c in caches], rows)
        return out

    def trim(self) -> None:
        """Drop leading key columns that no row uses any more (left after long requests leave)."""
        for seg in self.segments():
            used = seg.past.mask.any(0)
            if bool(used.all()) or not bool(used.any()):
                continue
            start = int(used.nonzero()[0])
            if start == 0:
                continue
            layers = [layer for layer, s in self.segment_of.items() if s is seg]
            for layer in layers:  # views: the buffers keep their room to grow
                self.keys[layer] = self.keys[layer][:, :, start:]
                self.values[layer] = self.values[layer][:, :, start:]
                self.length[layer] -= start
            seg.past = Past(seg.past.mask[:, start:], seg.past.positions[:, start:])

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` (in that order): beam search reorders, finished requests leave."""
        for layer in self.keys:
            self.keys[layer] = self.keys[layer][index]
            self.values[layer] = self.values[layer][index]
        moved = {id(s): s.select(index) for s in self.segments()}
        self.segment_of = {layer: moved[id(s)] for layer, s in self.segment_of.items()}
        self.embed_next = self.embed_next[index]
        self.terms = {layer: term.select(index) for layer, term in self.terms.items()}


def _pad_left(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)
