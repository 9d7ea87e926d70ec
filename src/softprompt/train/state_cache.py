"""Cache of frozen hidden states entering the boundary layer, reused across epochs.

Layers below the boundary never change during training, so after the first epoch only
layers m..L run. Rows are stored unpadded (real tokens only) and re-padded per batch; a
size bound stops caching new rows (they are then computed as usual).
"""

from __future__ import annotations

import torch

from softprompt.runners import Sequence


class StateCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.rows: dict[int, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, indices: list[int], mask: torch.Tensor) -> torch.Tensor | None:
        """Padded hidden (B, L, d) for a batch if every row is cached, else None."""
        if not all(i in self.rows for i in indices):
            self.misses += 1
            return None
        self.hits += 1
        first = self.rows[indices[0]]
        out = torch.zeros(mask.shape[0], mask.shape[1], first.shape[-1], dtype=first.dtype, device=mask.device)
        for r, i in enumerate(indices):
            out[r, mask[r].bool()] = self.rows[i].to(mask.device)
        return out

    def store(self, indices: list[int], seq: Sequence) -> None:
        for r, i in enumerate(indices):
            if i in self.rows:
                continue
            row = seq.hidden[r, seq.mask[r]].detach().to("cpu" if seq.hidden.device.type != "cpu" else seq.hidden.device)
            size = row.numel() * row.element_size()
            if self.bytes + size > self.max_bytes:
                return
            self.rows[i] = row.clone()
            self.bytes += size
