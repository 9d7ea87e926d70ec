"""Context-aware Prompt Tuning (Blau et al. 2024, arXiv 2410.17222; peft's CPTConfig / tuners/cpt).

The prompt is a context, e.g. in-context examples written in a template, whose token embeddings are frozen;
what trains is a delta added to them, zero at init, kept in an L2 ball around each token by projected
gradient descent (the paper's Sec. 3.3; peft's `get_projection`):

  P_i = E[c_i] + m_i * Proj_i(delta_i)        Proj_i(v) = v * eps_i / max(||v||_2, eps_i)

c: the context's token ids, E the frozen input embedding (the module: Gemma's scale included), m_i = 1 for the
tokens that train. Each token has a type (peft's `cpt_tokens_type_mask`, example k = 0, 1, ... adds 4k):
1 input template, 2 input text, 3 output template, 4 output (label) text, 0 separators. Input-text tokens
get eps = epsilon * sqrt(d / 2048), template tokens format_epsilon * sqrt(d / 2048) (peft normalises by
a 2048-wide model); labels and separators do not train (m_i = 0; peft masks their gradient and keeps eps
at 1e-10), so the labels of the examples stay the user's.

The delta is projected after every optimizer step (`after_step`, called by train.loop.fit), as peft does
before each forward; the forward also projects (value projected, gradient straight through as in peft),
so a delta moved by any other loop still gives peft's prompt. `fold()` gives the fixed prompt.

The context (`context`): a text (all its tokens typed 2, input), or [input, output] pairs formatted
with `input_template` / `output_template` ("{}" marks the text), `intra_separator` between an
example's input and output and `inter_separator` between examples, each piece tokenized on its own
without special tokens (peft's CPT example). `token_ids` + `type_mask` give peft's cpt_token_ids /
cpt_tokens_type_mask directly and then replace `context`. `num_tokens`: unset, the whole context; n, its
first n tokens. The context's ids, types and embeddings are buffers saved with the adapter.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt

REFERENCE_DIM = 2048  # peft scales both epsilons by sqrt(token_dim / 2048)
FROZEN_EPSILON = 1e-10  # peft's eps for tokens that do not train (labels, separators)
SEPARATOR, INPUT_TEMPLATE, INPUT, OUTPUT_TEMPLATE, OUTPUT = 0, 1, 2, 3, 4  # token types of example 0


@dataclass
class CPTConfig(ProducerConfig):
    num_tokens: int | None = None  # None: the whole context; n: its first n tokens
    context: str | list[list[str]] | None = None  # a text, or [input, output] examples
    input_template: str = "input: {}"
    output_template: str = "output: {}"
    intra_separator: str = " "  # between an example's input and its output
    inter_separator: str = "\n"  # between examples
    token_ids: list[int] | None = None  # peft's cpt_token_ids; replaces `context`
    type_mask: list[int] | None = None  # peft's cpt_tokens_type_mask (with token_ids; default all 1, as peft)
    epsilon: float = 0.1  # peft opt_projection_epsilon: input-text tokens
    format_epsilon: float = 0.1  # peft opt_projection_format_epsilon: template tokens

    def validate(self) -> None:
        if self.num_tokens is not None and self.num_tokens < 1:
            raise ValueError("num_tokens must be >= 1 (or unset: the whole context)")
        if self.epsilon <= 0 or self.format_epsilon <= 0:
            raise ValueError("epsilon and format_epsilon must be > 0")
        for name in ("input_template", "output_template"):
            if getattr(self, name).count("{}") != 1:
                raise ValueError(f"{name} must hold one '{{}}' where the text goes, got {getattr(self, name)!r}")
        if self.token_ids is not None:
            if not self.token_ids:
                raise ValueError("token_ids is empty")
            if self.type_mask is not None and len(self.type_mask) != len(self.token_ids):
                raise ValueError(f"type_mask has {len(self.type_mask)} entries, token_ids {len(self.token_ids)}")
            if self.type_mask is not None and min(self.type_mask) < 0:
                raise ValueError("type_mask entries must be >= 0")
        elif self.type_mask is not None:
            raise ValueError("type_mask needs token_ids")
        elif isinstance(self.context, str):
            if not self.context:
                raise ValueError("context is an empty text")
        elif self.context:
            for i, pair in enumerate(self.context):
                if len(pair) != 2:
                    raise ValueError(f"context[{i}] must be an [input, output] pair, got {pair!r}")
        else:
            raise ValueError("cpt needs a context: a text or [input, output] examples (or token_ids)")


def context_tokens(cfg: CPTConfig, tokenizer) -> tuple[list[int], list[int]]:
    """(token ids, token types) of the context, before the `num_tokens` cut."""
    if cfg.token_ids is not None:
        types = cfg.type_mask if cfg.type_mask is not None else [INPUT_TEMPLATE] * len(cfg.token_ids)  # peft's default
        return list(cfg.token_ids), list(types)

    def tokens(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    if isinstance(cfg.context, str):
        ids = tokens(cfg.context)
        return ids, [INPUT] * len(ids)
    ids: list[int] = []
    types: list[int] = []

    def add(text: str, kind: int, offset: int) -> None:
        piece = tokens(text)
        ids.extend(piece)
        types.extend([kind + offset if kind else 0] * len(piece))

    in_head, in_tail = cfg.input_template.split("{}")
    out_head, out_tail = cfg.output_template.split("{}")
    for k, (text, label) in enumerate(cfg.context):
        offset = 4 * k
        if k:
            add(cfg.inter_separator, SEPARATOR, offset)
        add(in_head, INPUT_TEMPLATE, offset)
        add(text, INPUT, offset)
        add(in_tail, INPUT_TEMPLATE, offset)
        add(cfg.intra_separator, SEPARATOR, offset)
        add(out_head, OUTPUT_TEMPLATE, offset)
        add(label, OUTPUT, offset)
        add(out_tail, OUTPUT_TEMPLATE, offset)
    return ids, types


def trainable_tokens(types: torch.Tensor) -> torch.Tensor:
    """(n,) bool: templates and input text train; labels (4k + 4) and separators (0) do not (peft's grad mask)."""
    return torch.remainder(types, 4) != 0


def token_epsilons(types: torch.Tensor, dim: int, epsilon: float, format_epsilon: float) -> torch.Tensor:
    """(n,) float32: each token's ball radius, as peft's `get_epsilon`."""
    scale = math.sqrt(dim / REFERENCE_DIM)
    eps = torch.full(types.shape, FROZEN_EPSILON, dtype=torch.float32, device=types.device)
    kind = torch.remainder(types, 4)
    live = types > 0
    eps[live & ((kind == 1) | (kind == 3))] = format_epsilon * scale
    eps[live & (kind == 2)] = epsilon * scale
    return eps


def project(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Each row scaled into its ball: v * eps / max(||v||, eps) (rows of norm 0 stay 0)."""
    norm = delta.detach().float().norm(dim=1)
    scale = torch.where(norm > 0, eps / torch.maximum(norm, eps), torch.ones_like(norm))
    return delta * scale.to(delta.dtype)[:, None]


class CPTPrompt(Producer):
    kind = "cpt"
    config_class = CPTConfig
    folds_to_static = True
    peft_exportable = True  # decoders: peft CPT (context ids and types kept); encoders, T5: PROMPT_TUNING
    default_lrs = {"prompt": 1e-4}  # peft's CPT example (bloom-1b7, SST-2)

    def __init__(self, cfg: CPTConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.requested_tokens = cfg.num_tokens  # None: the whole context
        # sized by the context once the tokenizer is known (init_from_words); empty until then
        self._allocate(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, out_dim))

    def _allocate(self, ids: torch.Tensor, types: torch.Tensor, context: torch.Tensor) -> None:
        self.register_buffer("token_ids", ids)
        self.register_buffer("token_types", types)
        self.register_buffer("context", context.float())  # E[c], frozen
        self.delta = nn.Parameter(torch.zeros_like(self.context))
        self.cfg = dataclasses.replace(self.cfg, num_tokens=len(ids))  # this producer's own copy

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        ids, types = context_tokens(self.cfg, tokenizer)
        n = self.requested_tokens or len(ids)
        if len(ids) < n:
            raise ConfigError(f"method.producer.num_tokens: the context has {len(ids)} tokens, fewer than {n}")
        if n == 0:
            raise ConfigError("method.producer.context: has no tokens")
        ids_t = torch.tensor(ids[:n], dtype=torch.long)
        device = self.delta.device
        self._allocate(ids_t.to(device), torch.tensor(types[:n], dtype=torch.long, device=device),
                       words(ids_t).to(device))

    def epsilons(self) -> torch.Tensor:
        return token_epsilons(self.token_types, self.out_dim, self.cfg.epsilon, self.cfg.format_epsilon)

    def projected_delta(self) -> torch.Tensor:
        """m * Proj(delta): the value projected, the gradient the identity on trainable rows (peft's)."""
        projected = project(self.delta, self.epsilons().to(self.delta.device))
        straight = self.delta + (projected - self.delta).detach()
        return straight * trainable_tokens(self.token_types).to(self.delta.dtype)[:, None]

    def prompt(self) -> torch.Tensor:
        return self.context.to(self.delta.dtype) + self.projected_delta()

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt().unsqueeze(0)

    @torch.no_grad()
    def after_step(self) -> None:
        self.delta.copy_(project(self.delta, self.epsilons().to(self.delta.device)))

    @torch.no_grad()
    def fold(self) -> Producer:
        values = self.prompt().detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
