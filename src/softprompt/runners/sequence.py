"""Sequence bookkeeping shared by every runner: prompt insertion, positions and masks.

A batch travels through the frozen model as a `Sequence`: hidden states (B, L, d), a boolean
mask of real positions (B, L) and a boolean mask of *text* positions (prompt vectors are
real but not text). Prompts are inserted right before each row's first real token, so they
stay next to the text with left and right padding alike: [pad][prompt][text] or
[prompt][text][pad].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Sequence:
    hidden: torch.Tensor  # (B, L, d)
    mask: torch.Tensor  # (B, L) bool: real position (text or prompt)
    text_mask: torch.Tensor  # (B, L) bool: text token
    token_type_ids: torch.Tensor | None = None  # (B, L) long, encoders with segment embeddings
    position_offset: int | torch.Tensor = 0  # positions start here, per batch or (B, 1) per row (key/value prefixes shift text, as HF does)
    decoder_prefixes: list | None = None  # encoder-decoders: [(rows or None, {decoder layer: (k, v)})]

    @property
    def positions(self) -> torch.Tensor:
        """Position of each real token counted from its row's first real token; pads get 0."""
        pos = self.mask.long().cumsum(dim=1) - 1
        return pos.clamp(min=0) + self.position_offset * self.mask.long()

    def with_hidden(self, hidden: torch.Tensor) -> "Sequence":
        return replace(self, hidden=hidden)


@dataclass
class Past:
    """Key columns already in a layer's cache while decoding: which are real, and their positions."""

    mask: torch.Tensor  # (B, P) bool
    positions: torch.Tensor  # (B, P) long


def insert_prompt(seq: Sequence, prompt: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> Sequence:
    """Insert per-example prompts (B, t, d) before each row's first real token.

    `prompt_mask` (B, t) marks which prompt slots are used, so prompts of different
    lengths can share a batch (unused slots become padding at the row's outer edge).
    """
    bsz, length, _ = seq.hidden.shape
    t = prompt.shape[1]
    if prompt.shape[0] != bsz:
        prompt = prompt.expand(bsz, -1, -1)
    if prompt_mask is None:
        prompt_mask = torch.ones(bsz, t, dtype=torch.bool, device=seq.mask.device)
    device = seq.hidden.device
    start = first_real_index(seq.mask)  # (B,)
    j = torch.arange(length + t, device=device).unsqueeze(0)  # (1, L+t)
    s = start.unsqueeze(1)
    in_prompt = (j >= s) & (j < s + t)
    # index into cat([seq, prompt]) along the length axis
    src = torch.where(j < s, j, torch.where(in_prompt, length + (j - s), j - t))
    src = src.clamp(max=length + t - 1)

    def gather(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        both = torch.cat([a, b], dim=1)
        if both.dim() == 3:
            return both.gather(1, src.unsqueeze(-1).expand(-1, -1, both.shape[-1]))
        return both.gather(1, src)

    hidden = gather(seq.hidden, prompt.to(seq.hidden.dtype))
    mask = gather(seq.mask, prompt_mask)
    text_mask = gather(seq.text_mask, torch.zeros_like(prompt_mask))
    types = None
    if seq.token_type_ids is not None:
        types = gather(seq.token_type_ids, torch.zeros(bsz, t, dtype=torch.long, device=device))
    hidden, mask, text_mask, types = _move_unused_slots_out(hidden, mask, text_mask, types, prompt_mask, seq)
    return Sequence(hidden, mask, text_mask, types, seq.position_offset)


def _move_unused_slots_out(hidden, mask, text_mask, types, prompt_mask, seq):
    """Unused prompt slots (variable-length prompts) move to the padding side of their row."""
    if bool(prompt_mask.all()):
        return hidden, mask, text_mask, types
    # sort key 0 goes first: real tokens first for right padding, pads first for left padding
    key = mask.long() if is_left_padded(seq.mask) else (~mask).long()
    order = torch.sort(key, dim=1, stable=True).indices
    hidden = hidden.gather(1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    mask, text_mask = mask.gather(1, order), text_mask.gather(1, order)
    types = types.gather(1, order) if types is not None else None
    return hidden, mask, text_mask, types


def is_left_padded(mask: torch.Tensor) -> bool:
    """True when rows end with a real token and at least one row starts with padding."""
    return bool(mask[:, -1].all()) and not bool(mask[:, 0].all())


def first_real_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True in each row (0 for an all-False row)."""
    length = mask.shape[1]
    idx = torch.arange(length, device=mask.device).expand_as(mask)
    return torch.where(mask, idx, torch.full_like(idx, length)).min(dim=1).values.clamp(max=length - 1)


def last_real_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True in each row."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, idx, torch.full_like(idx, -1)).max(dim=1).values.clamp(min=0)


def additive_mask(
    mask: torch.Tensor, dtype: torch.dtype, causal: bool, prefix_len: int = 0, window: int | None = None,
    positions: torch.Tensor | None = None, prefix_mask: torch.Tensor | None = None,
    prefix_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, 1, L, P+L) additive attention mask: 0 where allowed, dtype-min elsewhere.

    Key columns in front (P: key/value prefixes, or the cached past while decoding) are
    visible to every query where `prefix_mask` (B, P) allows, unless a sliding `window`
    (local-attention layers) has moved past them; `prefix_positions` (B, P) are their
    positions (default: prefix j sits at position j, as in HF's cache path).
    """
    bsz, length = mask.shape
    allowed = mask[:, None, None, :].expand(bsz, 1, length, length)
    if causal or window is not None:
        q = torch.arange(length, device=mask.device)[:, None]
        k = torch.arange(length, device=mask.device)[None, :]
        if causal:
            allowed = allowed & (k <= q)
        if window is not None:
            allowed = allowed & (q - k < window) & (k - q < window)
    if prefix_len:
        pre = torch.ones(bsz, 1, length, prefix_len, dtype=torch.bool, device=mask.device)
        if prefix_mask is not None:
            pre = pre & prefix_mask[:, None, None, :]
        if window is not None:  # as in HF's cache path: prefix j sits at position j, text after the prefix
            q = positions if positions is not None else torch.arange(length, device=mask.device).expand(bsz, -1) + prefix_len
            k = torch.arange(prefix_len, device=mask.device) if prefix_positions is None else prefix_positions[:, None, None, :]
            pre = pre & (q[:, None, :, None] - k < window)
        allowed = torch.cat([pre, allowed], dim=-1)
    out = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~allowed, torch.finfo(dtype).min)


def pad_rows(rows: list[list[int]], pad_id: int, side: str = "right", types: list[list[int] | None] | None = None):
    """Token id rows as one padded batch: ids (B, W), mask (B, W) and token types (B, W) or None.

    `side` "left" puts the padding in front (decoders continue the text), "right" after it."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    out_types = torch.zeros((len(rows), width), dtype=torch.long) if types and any(t is not None for t in types) else None
    for r, row in enumerate(rows):
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[r, cols] = torch.tensor(row, dtype=torch.long)
        mask[r, cols] = 1
        if out_types is not None and types[r] is not None:
            out_types[r, cols] = torch.tensor(types[r], dtype=torch.long)
    return ids, mask, out_types
