"""The layer loop: the one place where a batch passes the frozen model with prompts in it.

A batch is made of row groups, each with its own producer and site: one group is training
or single-adapter inference, many groups are mixed-adapter serving. Training, serving and
generation all call `run_layers`; sites act through the small `Flow` API (insert vectors
into their rows, or add key/value prefixes), so nothing here knows a site's kind.

Rows of different groups stay independent: prompts of different lengths are inserted with
per-row masks (unused slots become padding), key/value prefixes are right-aligned in a block
padded to the longest one, and each row keeps its own positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from softprompt.producers.base import Producer, ProducerInput
from softprompt.runners import attention_terms
from softprompt.runners.attention_terms import AttentionTerm
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.kv_cache import KVCache, Segment
from softprompt.runners.sequence import Past, Sequence, insert_prompt


@dataclass
class PromptGroup:
    """One producer at one site, for `rows` of the batch (None: every row)."""

    producer: Producer | None
    site: Any  # softprompt.sites.Site
    rows: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return self.producer is not None and self.site is not None


def start_sequence(runner: Runner, groups: list[PromptGroup], input_ids, attention_mask, token_type_ids=None):
    """Token-space state of a batch: (Sequence, E(x)). Key/value sites shift their rows' positions."""
    mask = attention_mask.bool()
    tok = runner.token_embeddings(input_ids)
    offset: int | torch.Tensor = 0
    for g in groups:
        if not g.active:
            continue
        shift = g.site.position_shift(g.producer.num_tokens)
        if g.rows is None:
            offset = shift
        elif shift:
            if isinstance(offset, int):
                offset = torch.full((mask.shape[0], 1), offset, dtype=torch.long, device=mask.device)
            offset[g.rows] = shift
    return Sequence(tok, mask, mask.clone(), token_type_ids, offset), tok


@dataclass
class _Pass:
    runner: Runner
    tok: torch.Tensor  # E(x) in the input layout
    input_mask: torch.Tensor
    seq: Sequence
    source: torch.Tensor | None = None  # (input layout) tokens producers may read; None: all text
    pending: list = field(default_factory=list)  # (rows, prompt) to insert at this point
    prefixes: dict = field(default_factory=dict)  # layer -> [(rows, k, v)]
    decoder_prefixes: list = field(default_factory=list)  # encoder-decoders: [(rows, {layer: (k, v)})]
    terms: dict = field(default_factory=dict)  # layer -> [(rows, k, v, gate)]: gated attention over prompts

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (input layout) moved to where its tokens sit now (prompts inserted), zeros elsewhere."""
        text = self.seq.text_mask
        if text.shape == self.input_mask.shape and torch.equal(text, self.input_mask):
            return x
        out = x.new_zeros(*text.shape, *x.shape[2:])
        out[text] = x[self.input_mask]
        return out

    def readable(self) -> torch.Tensor:
        """Mask of the positions a producer reads now: text, minus any target."""
        text = self.seq.text_mask
        return text if self.source is None else text & self.layout(self.source)

    def apply_pending(self) -> None:
        if not self.pending:
            return
        if len(self.pending) == 1 and self.pending[0][0] is None:
            self.seq = insert_prompt(self.seq, self.pending[0][1])
        else:
            self.seq = _insert_per_rows(self.seq, self.pending)
        self.pending = []


class _Flow:
    """A site's handle on its own rows at the current point of the pass."""

    def __init__(self, p: _Pass, group: PromptGroup, token_space: bool = False):
        self._p, self._g, self._token_space = p, group, token_space
        self.runner = p.runner
        self.rows = p.seq.hidden.shape[0] if group.rows is None else len(group.rows)

    def _take(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._g.rows is None else x[self._g.rows]

    def prompt(self) -> torch.Tensor:
        p = self._p
        e = p.tok if self._token_space else p.layout(p.tok)
        return self._g.producer(ProducerInput(self._take(e), self._take(p.seq.hidden), self._take(p.readable())))

    def insert(self, prompt: torch.Tensor) -> None:
        self._p.pending.append((self._g.rows, prompt))

    def add_to_prompt(self, vectors: torch.Tensor) -> None:
        """Add (1|rows, t, d) to the hidden states entering this layer where the group's prompt sits (its rows'
        real non-text slots, in order; prefix-propagation); no other row or slot changes (x + 0 is x). Out of
        place: the loop runs the layer on the new state. Gathered without a host sync; slots per row = t."""
        seq = self._p.seq
        slots = self._take(seq.mask & ~seq.text_mask)  # (rows, L)
        vectors = vectors.to(seq.hidden.dtype).expand(slots.shape[0], -1, -1)
        rank = (slots.long().cumsum(1) - 1).clamp(0, vectors.shape[1] - 1)  # which prompt vector each slot holds
        delta = vectors.gather(1, rank[..., None].expand(-1, -1, vectors.shape[-1]))
        delta = delta * slots[..., None].to(delta.dtype)
        hidden = seq.hidden + delta if self._g.rows is None else seq.hidden.index_add(0, self._g.rows, delta)
        self._p.seq = seq.with_hidden(hidden)

    def add_prefixes(self, prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for layer, (k, v) in prefixes.items():
            self._p.prefixes.setdefault(layer, []).append((self._g.rows, k, v))

    def add_decoder_prefixes(self, prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Encoder-decoders: kept on the returned state, (rows, {layer: (k, v)}) per group, for the decoder."""
        self._p.decoder_prefixes.append((self._g.rows, prefixes))

    def add_attention_terms(self, terms: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """{layer: (k, v, gate)}: a gated attention over prompt keys/values (1|rows, H_kv, P, hd), gate (1|rows,),
        added to that layer's attention output (runners/attention_terms.py)."""
        attention_terms.install(self.runner.model)
        for layer, (k, v, gate) in terms.items():
            self._p.terms.setdefault(layer, []).append((self._g.rows, k, v, gate))


def run_layers(runner: Runner, groups: list[PromptGroup], seq: Sequence, tok: torch.Tensor, start: int, end: int,
               gradient_checkpointing: bool = False,
               kv_cache: KVCache | None = None, source_mask: torch.Tensor | None = None) -> Sequence:
    """Run the model from `start` to the state entering layer `end` (end = num_layers: the last layer's output).

    `start = -1` means `seq` is in token space (embeddings not finished yet); otherwise `seq`
    holds the hidden states entering layer `start`; `tok` is E(x) in the input layout, whose mask
    is `seq.mask` (no prompt is inserted before the pass starts).
    `kv_cache`: a prefill that keeps every layer's keys/values for `decode_step` (run from -1).
    `source_mask` (input layout): the tokens producers may read (default: all text); a target
    to be learnt is left out, so an input-dependent prompt never sees the answer.
    """
    p = _Pass(runner, tok, seq.mask, seq, source=source_mask)
    active = [g for g in groups if g.active]
    if kv_cache is not None and start >= 0:
        raise ValueError("a prefill that fills a key/value cache runs from the embeddings (start = -1)")
    if start < 0:
        _enter_embeddings(p, active)
        p.seq = p.seq.with_hidden(runner.embed(p.seq))
        start = 0
        if kv_cache is not None:
            kv_cache.embed_next = _next_position(p.seq)
    contexts: dict[tuple, LayerContext] = {}
    segments: dict[tuple, Segment] = {}
    hidden = p.seq.hidden
    for i in range(start, end):
        p.seq = p.seq.with_hidden(hidden)
        for g in active:
            g.site.enter_layer(i, _Flow(p, g))
        if p.pending:  # inserted vectors: new masks and positions
            p.apply_pending()
            contexts.clear()
            segments.clear()
        hidden = p.seq.hidden  # as the sites left it
        here = p.prefixes.get(i, [])
        ctx_key = tuple((id(rows), k.shape[2]) for rows, k, _ in here)
        if ctx_key not in contexts:
            contexts[ctx_key] = _context(runner, p.seq, here)
        cache = _prefix_cache(i, here, hidden.shape[0]) if here else None
        if kv_cache is not None:
            if cache is not None:
                kv_cache.seed(i, *cache.prefixes[i])
            if ctx_key not in segments:
                segments[ctx_key] = _segment(p.seq, here)
            kv_cache.segment_of[i] = segments[ctx_key]
            cache = kv_cache
        term = _term(runner, i, p.terms.get(i), hidden.shape[0])
        if kv_cache is not None and term is not None:
            kv_cache.terms[i] = term
        hidden = _call_layer(runner, i, hidden, contexts[ctx_key], cache, term,  # the last layer's activations are
                             gradient_checkpointing and torch.is_grad_enabled()  # used as soon as backward starts:
                             and i < runner.num_layers - 1)  # recomputing them would save no memory
    return replace(p.seq, hidden=hidden, decoder_prefixes=p.decoder_prefixes or p.seq.decoder_prefixes)


def _call_layer(runner: Runner, i: int, hidden, ctx, cache, term: AttentionTerm | None, checkpointed: bool = False):
    def run(i, hidden, ctx, cache):
        with attention_terms.applying(term):  # set inside, so a checkpoint's recomputation sees it too
            return runner.layer(i, hidden, ctx, cache)

    fn = runner.layer if term is None else run
    return checkpoint(fn, i, hidden, ctx, cache, use_reentrant=False) if checkpointed else fn(i, hidden, ctx, cache)


def _term(runner: Runner, i: int, here: list | None, bsz: int) -> AttentionTerm | None:
    """Layer i's gated prompt attention over the whole batch: each group's keys/values on its rows."""
    if not here:
        return None
    keys, values, real = right_aligned([(rows, k, v) for rows, k, v, _ in here], bsz)
    gate = keys.new_zeros(bsz)
    for rows, _, _, g in here:
        gate[slice(None) if rows is None else rows] = g.to(gate.dtype)
    module = attention_terms.attention_module(runner.layers[i])
    return AttentionTerm(module, keys, values, real.bool(), gate)


def _enter_embeddings(p: _Pass, groups: list[PromptGroup]) -> None:
    adjusted = p.seq.hidden
    source = p.input_mask if p.source is None else p.source  # a target keeps its own embeddings
    for g in groups:  # producers that edit the input embeddings (DePT), on their rows
        if g.producer.edits_embeddings:
            if g.rows is None:
                adjusted = g.producer.adjust_embeddings(adjusted, source)
            else:
                adjusted = adjusted.index_copy(0, g.rows, g.producer.adjust_embeddings(adjusted[g.rows], source[g.rows]))
    p.seq = p.seq.with_hidden(adjusted)
    for g in groups:
        g.site.enter_embeddings(_Flow(p, g, token_space=True))
    p.apply_pending()


def embedding_input(runner: Runner, groups: list[PromptGroup], input_ids, attention_mask) -> Sequence:
    """The batch as it stands where layer 0's input is made, before `runner.embed`.

    Token embeddings with the prompts of embedding-site groups inserted and DePT's edits made:
    what HF's `model(inputs_embeds=...)` takes (Gemma's sqrt(d) scale already in; Granite's
    multiplier, learned positions and embedding norms still to come), e.g. vLLM's `prompt_embeds`.
    Sites that act later (layer m > 0, key/value prefixes) have not acted yet.
    """
    seq, tok = start_sequence(runner, groups, input_ids, attention_mask)
    p = _Pass(runner, tok, seq.mask, seq)
    _enter_embeddings(p, [g for g in groups if g.active])
    return p.seq


def decode_step(runner: Runner, cache: KVCache, input_ids: torch.Tensor) -> torch.Tensor:
    """Hidden states (after the final norm) of new tokens (B, n) appended to every row, from the cache.

    Prompts and prefixes were put in at the prefill and live in the cache; no producer runs here.
    """
    bsz, n = input_ids.shape
    mask = torch.ones(bsz, n, dtype=torch.bool, device=input_ids.device)
    seq = Sequence(runner.token_embeddings(input_ids), mask, mask, None, cache.embed_next[:, None])
    hidden = runner.embed(seq)
    contexts: dict[int, LayerContext] = {}
    for i in range(runner.num_layers):
        seg = cache.segment_of[i]
        if id(seg) not in contexts:
            step = Sequence(hidden, mask, mask, None, seg.next_position[:, None])
            contexts[id(seg)] = runner.context(step, seg.past.mask.shape[1], past=seg.past)
        hidden = _call_layer(runner, i, hidden, contexts[id(seg)], cache, cache.terms.get(i))
    cache.advance(n)
    return runner.finish(hidden)


def _next_position(seq: Sequence) -> torch.Tensor:
    """(B,) position the next token of each row gets (after its real tokens, plus any prefix shift)."""
    count = seq.mask.long().sum(1)
    offset = seq.position_offset
    return count + (offset.view(-1) if isinstance(offset, torch.Tensor) else offset)


def _segment(seq: Sequence, here: list) -> Segment:
    """Key columns of a layer after the prefill: [prefix block | sequence], which are real, their positions."""
    bsz = seq.mask.shape[0]
    device = seq.mask.device
    pmax = max((k.shape[2] for _, k, _ in here), default=0)
    plen = torch.zeros(bsz, dtype=torch.long, device=device)
    for rows, k, _ in here:
        plen[slice(None) if rows is None else rows] = k.shape[2]
    col = torch.arange(pmax, device=device).expand(bsz, -1)
    start = (pmax - plen)[:, None]  # prefixes are right-aligned in the block
    pre_mask, pre_pos = col >= start, (col - start).clamp(min=0)
    past = Past(torch.cat([pre_mask, seq.mask], 1), torch.cat([pre_pos, seq.positions], 1))
    return Segment(past, _next_position(seq))


# -- several groups in one batch -------------------------------------------------------------------
def _insert_per_rows(seq: Sequence, prompts: list) -> Sequence:
    """Insert each group's prompt (1|n, t, d) for its rows; other rows get all-False prompt masks."""
    bsz, _, d = seq.hidden.shape
    t_max = max(pr.shape[1] for _, pr in prompts)
    prompt = seq.hidden.new_zeros(bsz, t_max, d)
    used = torch.zeros(bsz, t_max, dtype=torch.bool, device=seq.hidden.device)
    for rows, pr in prompts:
        t = pr.shape[1]
        rows = slice(None) if rows is None else rows
        prompt[rows, :t] = pr.to(prompt.dtype)
        used[rows, :t] = True
    return insert_prompt(seq, prompt, used)


def _prefix_cache(i: int, here: list, bsz: int) -> PrefixCache:
    if len(here) == 1 and here[0][0] is None:
        _, k, v = here[0]
        return PrefixCache({i: (k, v)}, k.shape[2])
    keys, values, _ = right_aligned(here, bsz)
    return PrefixCache({i: (keys, values)}, keys.shape[2])


def right_aligned(here: list, bsz: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One (B, H, Pmax, D) block of key/value prefixes [(rows or None, k, v)]: each row's prefix in its
    last P columns, zeros before; and the (B, Pmax) mask of real columns."""
    pmax = max(k.shape[2] for _, k, _ in here)
    _, k0, _ = here[0]
    shape = (bsz, k0.shape[1], pmax, k0.shape[3])
    keys, values = k0.new_zeros(shape), k0.new_zeros(shape)
    real = torch.zeros(bsz, pmax, dtype=torch.long, device=k0.device)
    for rows, k, v in here:
        rows = slice(None) if rows is None else rows
        n = k.shape[2]
        keys[rows, :, pmax - n:] = k
        values[rows, :, pmax - n:] = v
        real[rows, pmax - n:] = 1
    return keys, values, real


def _context(runner: Runner, seq: Sequence, here: list) -> LayerContext:
    if not here:
        return runner.context(seq, 0)
    if len(here) == 1 and here[0][0] is None:
        return runner.context(seq, here[0][1].shape[2])
    bsz = seq.mask.shape[0]
    plen = torch.zeros(bsz, dtype=torch.long, device=seq.mask.device)
    for rows, k, _ in here:
        plen[rows] = k.shape[2]
    return per_row_context(runner, seq, plen, int(plen.max()))


def per_row_context(runner: Runner, seq: Sequence, plen: torch.Tensor, pmax: int) -> LayerContext:
    """The runner's LayerContext for per-row prefix lengths `plen` (B,), prefixes padded to `pmax`.

    Family-agnostic: the runner builds one context per distinct prefix length P over the
    whole batch; each row takes the parts (positions, rotary tables, relative biases) from the
    context of its own P. Parts whose last axis spans the keys (P + L) are left-padded to
    Pmax + L, matching the right-aligned prefixes; a part shared by all rows (T5's bias) comes
    from the Pmax context. Masks are rebuilt with per-row prefix columns (window-aware).
    """
    values = sorted(set(plen.tolist()))
    if len(values) == 1:
        return runner.context(seq, pmax)
    bsz = seq.mask.shape[0]
    contexts = {n: runner.context(seq, n) for n in values}
    rows = {n: (plen == n).nonzero().squeeze(1) for n in values}
    ctx = contexts[pmax]
    ctx.extras = _merge({n: c.extras for n, c in contexts.items()}, rows, pmax, bsz)
    ctx.masks = {kind: _merge_masks({n: c.masks[kind] for n, c in contexts.items()}, rows, pmax) for kind in ctx.masks}
    return ctx


def _merge_masks(masks: dict[int, torch.Tensor], rows: dict[int, torch.Tensor], pmax: int) -> torch.Tensor:
    out = masks[pmax].clone()
    for n, idx in rows.items():
        if n != pmax:
            m = masks[n]
            out[idx] = F.pad(m, (pmax - n, 0), value=torch.finfo(m.dtype).min)[idx]
    return out


def _merge(parts: dict[int, Any], rows: dict[int, torch.Tensor], pmax: int, bsz: int) -> Any:
    """Per-row selection across contexts (by prefix length), recursing into dicts / tuples."""
    top = parts[pmax]
    if isinstance(top, dict):
        return {k: _merge({n: v[k] for n, v in parts.items()}, rows, pmax, bsz) for k in top}
    if isinstance(top, (tuple, list)):
        return type(top)(_merge({n: v[i] for n, v in parts.items()}, rows, pmax, bsz) for i in range(len(top)))
    if not isinstance(top, torch.Tensor) or top.dim() == 0 or top.shape[0] != bsz:
        return top  # shared by all rows
    varies = any(v.shape != top.shape for v in parts.values())
    out = top.clone()
    for n, idx in rows.items():
        if n != pmax:
            part = F.pad(parts[n], (pmax - n, 0)) if varies else parts[n]
            out[idx] = part.expand(bsz, *part.shape[1:])[idx]  # a part one context shares by all rows broadcasts
    return out
