"""Prompt transfer (SPoT, Vu et al., ACL 2022): start a target task's prompt from one trained on source task(s).

Task similarity (SPoT Sec. 5, "prompts as task embeddings"), between prompts P1 (L1, d) and P2 (L2, d):
  average_tokens  cos(mean_i P1_i, mean_j P2_j)             ("cosine similarity of average tokens")
  per_token       1/(L1 L2) sum_i sum_j cos(P1_i, P2_j)     ("per-token average cosine similarity")
Retrieval: the source whose prompt is most similar to the target's task embedding (a prompt tuned briefly on
the target task) is the one transferred (top-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open

from softprompt.errors import ConfigError

ADAPTER_WEIGHTS = "adapter.safetensors"  # softprompt.adapter.WEIGHTS (producers sit below softprompt.adapter)
PROMPT_KEY = "producer.prompt"  # a static prompt's tensor in a saved adapter
Similarity = Literal["average_tokens", "per_token"]


def prompt_similarity(a: torch.Tensor, b: torch.Tensor, kind: Similarity = "average_tokens") -> float:
    """SPoT's task similarity between two prompts (L1, d) and (L2, d)."""
    a, b = a.float(), b.float()
    if kind == "average_tokens":
        return F.cosine_similarity(a.mean(0), b.mean(0), dim=0).item()
    return (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T).mean().item()


def most_similar(query: torch.Tensor, sources: list[torch.Tensor], kind: Similarity = "average_tokens") -> int:
    """Index of the source prompt most similar to `query` (the first on a tie)."""
    scores = [prompt_similarity(query, s, kind) for s in sources]
    return max(range(len(scores)), key=scores.__getitem__)


def read_prompt(folder: str, field: str) -> torch.Tensor:
    """The static prompt (t, D) of a saved adapter folder; a ConfigError names `field` when there is none."""
    return read_producer_tensors(folder, field, (PROMPT_KEY,))[PROMPT_KEY]


def read_producer_tensors(folder: str, field: str, needs_one_of: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A saved adapter's `producer.*` tensors; a ConfigError names `field` when none of `needs_one_of` is there."""
    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{field}: {folder!r} is not an adapter folder (no {ADAPTER_WEIGHTS})")
    with safe_open(str(path), framework="pt") as f:
        found = {k: f.get_tensor(k) for k in f.keys() if k.startswith("producer.")}
    if not any(k in found for k in needs_one_of):
        raise ConfigError(f"{field}: {folder!r} holds none of {', '.join(needs_one_of)}")
    return found


def transfer_prompt(sources: list[str], query: str | None, kind: Similarity, shape: tuple[int, int]) -> torch.Tensor:
    """The source prompt to start from: the only one, or the one most similar to the query's (retrieval)."""
    prompts = [read_prompt(folder, "method.producer.init_from") for folder in sources]
    for folder, prompt in zip(sources, prompts):
        if tuple(prompt.shape) != tuple(shape):
            raise ConfigError(f"method.producer.init_from: {folder!r} has a prompt of shape {tuple(prompt.shape)}, "
                              f"this method needs {tuple(shape)}")
    if len(prompts) == 1:
        return prompts[0]
    if query is None:
        raise ConfigError("method.producer.transfer_query: several init_from sources need the target task's "
                          "prompt (an adapter tuned briefly on it) to pick the most similar")
    return prompts[most_similar(read_prompt(query, "method.producer.transfer_query"), prompts, kind)]
