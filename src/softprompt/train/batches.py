"""Tokenise once, batch by length (dynamic padding), collate to tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from softprompt.runners.sequence import pad_rows


@dataclass
class Encoded:
    """A tokenised split: one id list per example, plus labels and groups."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    groups: list[str | None]
    truncated: int  # examples cut to max_length
    # generation tasks (train/text_batches.py): source and target token ids, the examples, decoder or T5
    sources: list[list[int]] | None = None
    targets: list[list[int]] | None = None
    examples: list = field(default_factory=list)
    decoder_only: bool = True

    @property
    def generative(self) -> bool:
        return self.targets is not None

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
    full = tokenizer(texts, truncation=False, verbose=False, **kwargs)["input_ids"]  # only counts; no length warning
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
    types = [enc.token_type_ids[i] for i in indices] if enc.token_type_ids is not None else None
    ids, mask, types = pad_rows([enc.input_ids[i] for i in indices], pad_id, padding_side, types)
    batch = {"input_ids": ids, "attention_mask": mask, "indices": torch.tensor(indices)}
    if types is not None:
        batch["token_type_ids"] = types
    if enc.generative:
        batch.update(_token_labels(enc, indices, ids.shape[1], padding_side))
        return batch
    labels = enc.labels[indices]
    if not np.isnan(labels).any():
        batch["labels"] = torch.tensor(labels, dtype=torch.float32)
    return batch


def _token_labels(enc: Encoded, indices: list[int], width: int, padding_side: str) -> dict[str, torch.Tensor]:
    """Decoders: labels on the target tokens of the input (-100 elsewhere) and the source mask.
    T5: the decoder's labels (padded with -100)."""
    if not enc.decoder_only:
        t = max(1, max(len(enc.targets[i]) for i in indices))
        labels = torch.full((len(indices), t), -100, dtype=torch.long)
        for r, i in enumerate(indices):
            labels[r, : len(enc.targets[i])] = torch.tensor(enc.targets[i], dtype=torch.long)
        return {"labels": labels}
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    source = torch.zeros((len(indices), width), dtype=torch.bool)
    for r, i in enumerate(indices):
        n, s, t = len(enc.input_ids[i]), len(enc.sources[i]), enc.targets[i]
        start = width - n if padding_side == "left" else 0
        source[r, start : start + s] = True
        if t:
            labels[r, start + s : start + n] = torch.tensor(t, dtype=torch.long)
    return {"labels": labels, "source_mask": source}
