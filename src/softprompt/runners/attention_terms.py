"""Attention terms: a second attention over a few prompt keys/values, with its own softmax and a gate.

LLaMA-Adapter (Zhang et al. 2023, eq. 6-8) adds to a layer's attention output
    g · softmax(q K_pᵀ · s) V_p,   K_p = W_k P, V_p = W_v P (the layer's frozen projections, no rotary),
with the model's own query q (after its norms and rotary tables) and scale s. The query exists only inside
the model's attention call, so the base's attention implementation is wrapped once (registered with
transformers' AttentionInterface as "softprompt+<sdpa|eager|...>"; without a term it is the original call)
and the layer loop hands the wrapper the current layer's term through a context variable, which gradient
checkpointing's recomputation sets again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "softprompt+"
# key and value projections as HF attention modules name them: separate (Llama-likes, BART; BERT-likes; T5,
# MPNet), fused in blocks (GPT-2's c_attn and ModernBERT's Wqkv [q | k | v], Phi-3's qkv_proj [q | k_kv | v_kv])
# or fused per head (GPT-NeoX's query_key_value: each head's [q | k | v])
SEPARATE = (("k_proj", "v_proj"), ("key", "value"), ("k", "v"))
FUSED = ("c_attn", "qkv_proj", "Wqkv")
PER_HEAD = ("query_key_value",)


@dataclass
class AttentionTerm:
    """One layer's prompt keys/values for every row of the batch (rows without a prompt: no real column)."""

    module: nn.Module  # the attention module it belongs to (a cross-attention of the same layer is left alone)
    keys: torch.Tensor  # (B, H_kv, P, hd)
    values: torch.Tensor
    real: torch.Tensor  # (B, P) bool
    gate: torch.Tensor  # (B,)

    def output(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """g · softmax(q K_pᵀ · s) V_p for query (B, H, T, hd), as (B, T, H, hd) like attention outputs."""
        groups = query.shape[1] // self.keys.shape[1]  # grouped-query heads share a key/value head
        keys = self.keys.repeat_interleave(groups, 1).to(query.dtype)
        values = self.values.repeat_interleave(groups, 1).to(query.dtype)
        real = self.real[:, None, None, :]
        scores = (query @ keys.transpose(2, 3)) * scaling
        scores = scores.masked_fill(~real, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32) * real * self.gate.float()[:, None, None, None]
        return (weights.to(query.dtype) @ values).transpose(1, 2)

    def select(self, index: torch.Tensor) -> "AttentionTerm":
        return AttentionTerm(self.module, self.keys[index], self.values[index], self.real[index], self.gate[index])

    @classmethod
    def concat(cls, terms: list["AttentionTerm | None"], rows: list[int]) -> "AttentionTerm":
        """One term over the rows of several batches (None: a batch without one), prompts left-padded."""
        some = next(t for t in terms if t is not None)
        width = max(t.keys.shape[2] for t in terms if t is not None)
        parts = [t if t is not None else _empty(some, n) for t, n in zip(terms, rows)]
        pad = [width - t.keys.shape[2] for t in parts]
        return cls(some.module,
                   torch.cat([F.pad(t.keys, (0, 0, p, 0)) for t, p in zip(parts, pad)]),
                   torch.cat([F.pad(t.values, (0, 0, p, 0)) for t, p in zip(parts, pad)]),
                   torch.cat([F.pad(t.real, (p, 0)) for t, p in zip(parts, pad)]),
                   torch.cat([t.gate for t in parts]))


def _empty(like: AttentionTerm, rows: int) -> AttentionTerm:
    shape = (rows, *like.keys.shape[1:])
    return AttentionTerm(like.module, like.keys.new_zeros(shape), like.values.new_zeros(shape),
                         like.real.new_zeros(rows, like.real.shape[1]), like.gate.new_zeros(rows))


_CURRENT: ContextVar[AttentionTerm | None] = ContextVar("softprompt_attention_term", default=None)


@contextmanager
def applying(term: AttentionTerm | None) -> Iterator[None]:
    token = _CURRENT.set(term)
    try:
        yield
    finally:
        _CURRENT.reset(token)


# -- finding the attention and its projections --------------------------------------------------------
def attention_module(layer: nn.Module) -> nn.Module | None:
    """The first submodule of `layer` with key/value projections it exposes (self-attention comes first)."""
    for module in layer.modules():
        if _projections(module) is not None:
            return module
    return None


def _projections(module: nn.Module) -> str | None:
    for k, v in SEPARATE:
        if isinstance(getattr(module, k, None), nn.Module) and isinstance(getattr(module, v, None), nn.Module):
            return k
    for fused in FUSED + PER_HEAD:
        if isinstance(getattr(module, fused, None), nn.Module):
            return fused
    return None


def unfit(model: nn.Module, layers: list[nn.Module]) -> str | None:
    """Why attention terms cannot be added to these layers of `model` (None: they can)."""
    can_route = getattr(type(model), "_can_set_attn_implementation", None)
    if can_route is None or not can_route():
        return f"{type(model).__name__} does not route its attention through transformers' AttentionInterface"
    for layer in layers:
        if attention_module(layer) is None:
            names = ", ".join([k for k, _ in SEPARATE] + list(FUSED + PER_HEAD))
            return f"no attention module with key/value projections it knows ({names}) in {type(layer).__name__}"
    return None


def keys_values(layer: nn.Module, x: torch.Tensor, heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen key/value projections (and key norm) of `layer`'s attention applied to prompt vectors
    x (B, P, D): (B, H_kv, P, hd) each, without positions (LLaMA-Adapter's prompt has none)."""
    module = attention_module(layer)
    name = _projections(module)
    width = heads * head_dim
    b, p, _ = x.shape
    if name in PER_HEAD:
        _, keys, values = getattr(module, name)(x).view(b, p, heads, 3 * head_dim).chunk(3, dim=-1)
        return keys.transpose(1, 2), values.transpose(1, 2)
    if name in FUSED:
        out = getattr(module, name)(x)
        keys, values = out[..., -2 * width:-width], out[..., -width:]  # [q | k | v], q first
    else:
        k_name, v_name = next(pair for pair in SEPARATE if pair[0] == name)
        keys, values = getattr(module, k_name)(x), getattr(module, v_name)(x)
    norm = getattr(module, "k_norm", None)
    if norm is not None and norm.weight.numel() == width:  # OLMo-2 normalises all heads together
        keys = norm(keys)
    keys = keys.view(b, p, heads, head_dim)
    if norm is not None and norm.weight.numel() == head_dim:  # Qwen3 / Gemma-3: per head
        keys = norm(keys)
    return keys.transpose(1, 2), values.reshape(b, p, heads, head_dim).transpose(1, 2)


# -- the wrapped attention implementation -------------------------------------------------------------
def install(model: nn.Module) -> None:
    """Route `model`'s attention through the wrapper (idempotent); without a term, outputs are unchanged."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    inner = model.config._attn_implementation or "eager"
    if inner.startswith(PREFIX):
        return
    name = PREFIX + inner
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _wrapped(inner))
        if inner in ALL_MASK_ATTENTION_FUNCTIONS:
            AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[inner])
    model.set_attn_implementation(name)


def _wrapped(inner: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def attention(module, query, key, value, attention_mask, **kwargs):
        fn = ALL_ATTENTION_FUNCTIONS[inner] if inner != "eager" else sys.modules[type(module).__module__].eager_attention_forward
        out, weights = fn(module, query, key, value, attention_mask, **kwargs)
        term = _CURRENT.get()
        if term is not None and term.module is module:
            scaling = kwargs.get("scaling")
            out = out + term.output(query, query.shape[-1] ** -0.5 if scaling is None else scaling).to(out.dtype)
        return out, weights

    return attention
