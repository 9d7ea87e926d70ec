"""Tokenise once, batch by length (dynamic padding), collate to tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Encoded:
    """A tokenised split: one id list per example, plus labels and groups."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    groups: list[str | None]
    truncated: int  # examples cut to max_length

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode(tokenizer, examples, max_length: int, template=None) -> Encoded:
    """Tokenise examples (text, optional pair); `template(example) -> (text, pair)` reformats first."""
    pairs = [template(e) if template else (e.text, e.text_pair) for e in examples]
    texts = [p[0] for p in pairs]
    seconds = [p[1] for p in pairs]
    has_pair = any(s is not None for s in seconds)
    kwargs = {"text_pair": [s or "" for s in seconds]} if has_pair else {}
    full = tokenizer(texts, truncation=False, **kwargs)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    enc = tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
    types = enc.get("token_type_ids") if has_pair else None
    labels = np.array([np.nan if e.label is None else e.label for e in examples], dtype=np.float64)
    return Encoded(enc["input_ids"], types, labels, [e.group for e in examples], truncated)


def batch_order(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, shuffle: bool, bucket: bool) -> list[list[int]]:
    """Deterministic batches for (seed, epoch): shuffled, then length-sorted within windows of 50 batches."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    idx = rng.permutation(n) if shuffle else np.arange(n)
    if bucket:
        window = batch_size * 50
        chunks = [idx[i : i + window] for i in range(0, n, window)]
        idx = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks]) if chunks else idx
    batches = [idx[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    if shuffle and bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(enc: Encoded, indices: list[int], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    rows = [enc.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if enc.token_type_ids is not None else None
    for r, (i, row) in enumerate(zip(indices, rows)):
        sl = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        ids[r, sl] = torch.tensor(row)
        mask[r, sl] = 1
        if types is not None:
            types[r, sl] = torch.tensor(enc.token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask, "indices": torch.tensor(indices)}
    if types is not None:
        batch["token_type_ids"] = types
    labels = enc.labels[indices]
    if not np.isnan(labels).any():
        batch["labels"] = torch.tensor(labels, dtype=torch.float32)
    return batch
