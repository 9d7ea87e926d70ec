"""Mixed-task forward: rows using different adapters share ONE pass through the frozen base.

Each row belongs to one adapter (a SoftPromptModel on the shared backbone). The pass:

1. token embeddings for all rows; DePT adapters adjust their rows' embeddings;
2. prompts entering at the embeddings (m = 0) are inserted for their rows with a per-row
   `prompt_mask` (other rows: all False; prompts padded to the longest t);
3. `runner.embed`, then the layers one by one. At a layer m where some adapters insert
   hidden-state prompts (LPT, ID-SPAM), theirs are inserted the same way, so rows share all
   layers below m. Key/value prefixes are stacked per row, right-aligned in a block padded
   to the longest P, with a per-row prefix mask (rows without a prefix at that layer see only
   masked prefix columns);
4. `runner.finish` and each adapter's head on its rows.

Per-row positions: key/value adapters shift their rows' positions by P, as `model(...)` does.
`Sequence.position_offset` is used here as a (B, 1) tensor (its arithmetic broadcasts), and
the per-layer contexts (masks, rotary / relative-position biases) are assembled per row from
the runner's own contexts (no family-specific code here).
Every row's result equals running that row alone through its adapter's `model(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from softprompt.model import SoftPromptModel
from softprompt.producers import Producer, ProducerInput
from softprompt.runners import PrefixCache, Runner, Sequence, insert_prompt
from softprompt.runners.base import LayerContext
from softprompt.sites import HiddenSite, KVSite


@dataclass
class Group:
    """One adapter and the batch rows (1-D long tensor) that use it."""

    model: SoftPromptModel
    rows: torch.Tensor

    @property
    def producer(self) -> Producer | None:
        return self.model.producer

    @property
    def site(self):
        return self.model.site


def adjusts_embeddings(producer: Producer | None) -> bool:
    return producer is not None and type(producer).adjust_embeddings is not Producer.adjust_embeddings


def check_groups(runner: Runner, groups: list[Group]) -> None:
    for g in groups:
        if g.model.method.backbone != "frozen":
            raise ValueError(f"method {g.model.method.name!r} trains the backbone; it cannot share the frozen base")
        if g.model.backbone.model is not runner.model:
            raise ValueError("every adapter in a mixed batch must be built on the runner's backbone")
        if g.model.training:
            raise ValueError("adapters must be in eval mode for serving (call .eval())")


@torch.inference_mode()
def mixed_logits(runner: Runner, groups: list[Group], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Logits for each group's rows (same order as `group.rows`), from one shared forward pass."""
    check_groups(runner, groups)
    bsz = input_ids.shape[0]
    device = input_ids.device
    mask = attention_mask.bool()
    tok = runner.token_embeddings(input_ids)  # E(x), what input-dependent producers read
    adj = tok
    for g in groups:  # DePT: low-rank update of its rows' token embeddings
        if adjusts_embeddings(g.producer):
            adj = adj.index_copy(0, g.rows, g.producer.adjust_embeddings(tok[g.rows], mask[g.rows]))

    offset = torch.zeros(bsz, 1, dtype=torch.long, device=device)
    kv_groups = [g for g in groups if isinstance(g.site, KVSite)]
    for g in kv_groups:
        offset[g.rows] = g.producer.num_tokens
    seq = Sequence(adj, mask, mask.clone(), token_type_ids, offset)

    hidden_at: dict[int, list[Group]] = {}
    for g in groups:
        if isinstance(g.site, HiddenSite):
            hidden_at.setdefault(g.site.boundary, []).append(g)

    # prompts entering at the input embeddings
    if 0 in hidden_at:
        prompts = [(g.rows, g.producer(ProducerInput(tok[g.rows], adj[g.rows], mask[g.rows]))) for g in hidden_at[0]]
        seq = _insert(seq, prompts)
    seq = seq.with_hidden(runner.embed(seq))

    prefixes: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}  # layer -> [(rows, k, v)]
    contexts: dict[tuple, LayerContext] = {}
    hidden = seq.hidden
    for i in range(runner.num_layers):
        if i > 0 and i in hidden_at:  # hidden-state prompts entering layer i
            seq = seq.with_hidden(hidden)
            layout = _text_layout(tok, mask, seq.text_mask)
            prompts = [(g.rows, g.producer(ProducerInput(layout[g.rows], hidden[g.rows], seq.text_mask[g.rows])))
                       for g in hidden_at[i]]
            seq = _insert(seq, prompts)
            hidden = seq.hidden
            contexts.clear()
        for g in kv_groups:  # key/value prefixes, made from the state at the adapter's first prefix layer
            if g.site.boundary == i:
                layout = _text_layout(tok, mask, seq.text_mask)
                prompt = g.producer(ProducerInput(layout[g.rows], hidden[g.rows], seq.text_mask[g.rows]))
                for layer, (k, v) in g.site.prefixes(prompt, runner, len(g.rows)).items():
                    prefixes.setdefault(layer, []).append((g.rows, k, v))
        here = prefixes.get(i, [])
        key = tuple((id(rows), k.shape[2]) for rows, k, _ in here)
        plen = torch.zeros(bsz, dtype=torch.long, device=device)
        for rows, k, _ in here:
            plen[rows] = k.shape[2]
        pmax = max((k.shape[2] for _, k, _ in here), default=0)
        if key not in contexts:
            contexts[key] = layer_context(runner, seq.with_hidden(hidden), plen, pmax)
        cache = PrefixCache({i: _stack_prefix(here, bsz, pmax)}, pmax) if here else None
        hidden = runner.layer(i, hidden, contexts[key], cache)

    hidden = runner.finish(hidden)
    out = []
    for g in groups:
        logits = g.model.head(hidden[g.rows], seq.text_mask[g.rows])
        if g.model.head_kind == "verbalizer" and g.model.head.multi_token:  # extra teacher-forced passes
            types = None if token_type_ids is None else token_type_ids[g.rows]
            logits = logits + g.model._continuation_scores(input_ids[g.rows], attention_mask[g.rows], types)
        if g.model.head_kind == "regression":
            logits = logits.squeeze(-1)
        out.append(logits)
    return out


# -- helpers -----------------------------------------------------------------------------------
def _insert(seq: Sequence, prompts: list[tuple[torch.Tensor, torch.Tensor]]) -> Sequence:
    """Insert each group's prompt (1|n, t, d) for its rows; other rows get all-False prompt masks."""
    bsz, _, d = seq.hidden.shape
    t_max = max(p.shape[1] for _, p in prompts)
    prompt = seq.hidden.new_zeros(bsz, t_max, d)
    used = torch.zeros(bsz, t_max, dtype=torch.bool, device=seq.hidden.device)
    for rows, p in prompts:
        t = p.shape[1]
        prompt[rows, :t] = p.to(prompt.dtype).expand(len(rows), -1, -1)
        used[rows, :t] = True
    return insert_prompt(seq, prompt, used)


def _text_layout(tok: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Token embeddings moved to where their tokens sit now (prompts inserted), zeros elsewhere."""
    if text_mask.shape == mask.shape and torch.equal(text_mask, mask):
        return tok
    out = tok.new_zeros(*text_mask.shape, tok.shape[-1])
    out[text_mask] = tok[mask]
    return out


def _stack_prefix(here, bsz: int, pmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, Pmax, hd) keys/values; each row's prefix sits in the last P columns, zeros before."""
    _, k0, _ = here[0]
    shape = (bsz, k0.shape[1], pmax, k0.shape[3])
    keys, values = k0.new_zeros(shape), k0.new_zeros(shape)
    for rows, k, v in here:
        p = k.shape[2]
        keys[rows, :, pmax - p:] = k
        values[rows, :, pmax - p:] = v
    return keys, values


def layer_context(runner: Runner, seq: Sequence, plen: torch.Tensor, pmax: int) -> LayerContext:
    """The runner's LayerContext for per-row prefix lengths `plen` (B,), prefixes padded to `pmax`.

    Family-agnostic: the runner builds one context per distinct prefix length P over the
    whole batch; each row takes the parts (positions, rotary tables, relative biases) from the
    context of its own P. Parts whose last axis spans the keys (P + L) are left-padded to
    Pmax + L, matching the right-aligned prefixes; a part shared by all rows (T5's bias) comes
    from the Pmax context (a relative bias is the same seen from the right). Masks are rebuilt
    with per-row prefix columns (each row's own context's mask, so sliding windows stay exact).
    """
    values = sorted(set(plen.tolist()))
    if len(values) == 1:  # every row has the same prefix (or none): the runner's own context
        return runner.context(seq, pmax)
    bsz, length = seq.mask.shape
    contexts = {p: runner.context(seq, p) for p in values}
    rows = {p: (plen == p).nonzero().squeeze(1) for p in values}
    ctx = contexts[pmax]
    ctx.extras = _merge({p: c.extras for p, c in contexts.items()}, rows, pmax, bsz)
    ctx.masks = {kind: _merge_masks({p: c.masks[kind] for p, c in contexts.items()}, rows, pmax) for kind in ctx.masks}
    return ctx


def _merge_masks(masks: dict[int, torch.Tensor], rows: dict[int, torch.Tensor], pmax: int) -> torch.Tensor:
    """Per-row additive masks: each row's own (window-aware) prefix columns, right-aligned in Pmax."""
    out = masks[pmax].clone()
    for p, idx in rows.items():
        if p != pmax:
            m = masks[p]
            out[idx] = F.pad(m, (pmax - p, 0), value=torch.finfo(m.dtype).min)[idx]
    return out


def _merge(parts: dict[int, Any], rows: dict[int, torch.Tensor], pmax: int, bsz: int) -> Any:
    """Per-row selection across contexts (by prefix length), recursing into dicts / tuples."""
    top = parts[pmax]
    if isinstance(top, dict):
        return {k: _merge({p: v[k] for p, v in parts.items()}, rows, pmax, bsz) for k in top}
    if isinstance(top, (tuple, list)):
        return type(top)(_merge({p: v[i] for p, v in parts.items()}, rows, pmax, bsz) for i in range(len(top)))
    if not isinstance(top, torch.Tensor) or top.dim() == 0 or top.shape[0] != bsz:
        return top  # shared by all rows
    varies = any(v.shape != top.shape for v in parts.values())

    def padded(p: int) -> torch.Tensor:
        return F.pad(parts[p], (pmax - p, 0)) if varies else parts[p]

    out = top.clone()
    for p, idx in rows.items():
        if p != pmax:
            out[idx] = padded(p)[idx]
    return out
