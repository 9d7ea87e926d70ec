"""The next token of every row in one batched pass: greedy, temperature and nucleus (top-p) sampling.

Randomness is counter-based: the noise for row r is a hash of (its seed, how many tokens it has
generated, token id), so a request's samples depend on its seed and logits only, never on
which other requests share the batch or when it joined. Offline `generate`, `wrap().generate`
and the server therefore draw the same tokens for the same seed. Sampling is the Gumbel-max
trick (argmax of log p + Gumbel noise), which needs no Python loop over rows.
"""

from __future__ import annotations

import torch

GREEDY_BELOW = 1e-4  # temperatures under this are greedy (dividing logits by ~0 overflows)

_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)
_STEP = _signed(0xD1B54A32D192ED03)


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def uniform(seeds: torch.Tensor, steps: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) float32 in (0, 1): splitmix64 of (seed, step, column), its top 24 bits; int64 arithmetic wraps."""
    col = torch.arange(width, device=seeds.device, dtype=torch.int64)
    z = (seeds * _GOLDEN + steps * _STEP)[:, None] + col * _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    z = z ^ _shr(z, 31)
    return (_shr(z, 40).float() + 0.5) / float(1 << 24)


def sample(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, seeds: torch.Tensor,
           steps: torch.Tensor) -> torch.Tensor:
    """Next tokens (B,) from logits (B, V); per row: temperature (< GREEDY_BELOW: greedy), top_p, seed, step."""
    greedy = logits.argmax(-1)
    sampled = temperature >= GREEDY_BELOW
    if not bool(sampled.any()):
        return greedy
    temp = torch.where(sampled, temperature, torch.ones_like(temperature)).to(logits.device, torch.float32)
    logp = (logits.float() / temp[:, None]).log_softmax(-1)
    if bool((top_p < 1).any()):
        logp = _nucleus(logp, top_p.to(logits.device, torch.float32))
    if not bool(torch.isfinite(logp.amax(-1)).all()):
        raise ValueError("non-finite next-token probabilities (temperature "
                         f"{float(temperature[sampled].min()):g})")
    gumbel = -(-uniform(seeds.to(logits.device), steps.to(logits.device), logits.shape[-1]).log()).log()
    drawn = (logp + gumbel).argmax(-1)
    return torch.where(sampled.to(logits.device), drawn, greedy)


def _nucleus(logp: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (per row); the rest get -inf."""
    sorted_lp, order = logp.sort(-1, descending=True)
    p = sorted_lp.exp()
    outside = p.cumsum(-1) - p >= top_p[:, None]
    return logp.scatter(-1, order, sorted_lp.masked_fill(outside, float("-inf")))
