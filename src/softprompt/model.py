"""SoftPromptModel = frozen backbone (run by a family runner) + producer at a site + head.

The forward pass is split at the *boundary*, the first layer that depends on trainable
parameters: `frozen_state` computes everything below it (no autograd when the backbone is
frozen; cacheable across epochs), `from_state` runs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.decode import GenerationConfig, Generated, Lane, generate, open_lane
from softprompt.heads import PooledHead, VerbalizerHead, lm_cross_entropy, resolve_head
from softprompt.producers import Producer
from softprompt.runners import Runner, Sequence, runner_for
from softprompt.runners.loop import PromptGroup, run_layers, start_sequence
from softprompt.runners.sequence import last_real_index

if TYPE_CHECKING:
    from softprompt.methods import MethodConfig, ResolvedMethod


@dataclass
class Output:
    logits: torch.Tensor | None  # None for generation: the loss needs logits at target tokens only
    loss: torch.Tensor | None = None


class SoftPromptModel(nn.Module):
    def __init__(self, backbone, method: "MethodConfig | ResolvedMethod", num_labels: int, is_regression: bool = False,
                 label_words: list[str] | None = None, backbone_dropout: bool = True, max_length: int = 128,
                 generative: bool = False):
        """`method`: a MethodConfig (resolved here for this backbone, its producer fitted to `max_length`)
        or a ResolvedMethod made for a backbone of the same layer count (used as it is)."""
        super().__init__()
        self.generative = generative  # trained on target text with the LM head (no task head)
        self.backbone_dropout = backbone_dropout  # dropout on in the layers gradients flow through
        self.gradient_checkpointing = False
        self.backbone = backbone
        self.runner: Runner = runner_for(backbone.model, backbone.kind)
        self.resolved = method.resolve(self.runner.num_layers, max_length, backbone.name)
        method = self.method = self.resolved.config
        self.site = self.resolved.site
        self.num_labels = num_labels
        self.is_regression = is_regression
        self.label_words = list(label_words or [])
        if method.backbone != "frozen" and hasattr(backbone, "fingerprint"):
            backbone.fingerprint()  # cached now: adapters name the base as it was before training changed it
        self.producer: Producer | None = self._build_producer()
        if generative and backbone.kind == "encoder":
            raise ValueError("a generation task needs a decoder or an encoder-decoder backbone")
        self.head_kind, self.pooling = ("lm", "none") if generative else resolve_head(method.head, backbone.kind,
                                                                                      is_regression)
        self.head = nn.Identity() if generative else self._build_head()
        self._setup_backbone_training()

    # -- construction --------------------------------------------------------------------------
    def _build_producer(self) -> Producer | None:
        if self.method.producer is None:
            return None
        cls, cfg, runner = self.method.producer_class, self.method.producer, self.runner
        width = cls.input_dim(cfg, runner.embedding_size, self.site.state_dim(runner))
        producer = cls(cfg, self.site.prompt_dim(runner), width)
        words = lambda ids, partial=False: self.site.word_vectors(self.runner, ids, partial)  # noqa: E731
        producer.init_from_words(words, self.backbone.tokenizer)
        return producer.to(self.runner.word_embeddings.weight.device)

    def _build_head(self) -> nn.Module:
        device = self.runner.word_embeddings.weight.device
        if self.head_kind == "verbalizer":
            if len(self.label_words) != self.num_labels:
                raise ValueError(f"verbalizer needs {self.num_labels} label words, got {self.label_words}")
            tok = self.backbone.tokenizer
            ids = [tok(" " + w if self.backbone.kind == "decoder" else w, add_special_tokens=False)["input_ids"]
                   for w in self.label_words]
            return VerbalizerHead(self.runner.lm_head(), ids).to(device)
        outputs = 1 if self.head_kind == "regression" else self.num_labels
        return PooledHead(self.runner.hidden_size, outputs, self.pooling, self.method.head.dropout).to(device)

    def _setup_backbone_training(self) -> None:
        base = self.backbone.model
        base.requires_grad_(False)
        if self.method.backbone == "full":
            base.requires_grad_(True)
        elif self.method.backbone == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            lora = self.method.lora
            targets = lora.target_modules or list(self.runner.lora_targets)
            cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
            inject_adapter_in_model(cfg, base)
            for name, p in base.named_parameters():
                p.requires_grad_("lora_" in name)

    def train(self, mode: bool = True) -> "SoftPromptModel":
        """A frozen backbone is deterministic below the boundary (those states may be cached);
        the layers gradients flow through keep their dropout (`backbone_dropout`), as peft and the papers do."""
        super().train(mode)
        if self.method.backbone == "frozen":
            self.runner.model.eval()
            if mode and self.backbone_dropout and self.producer is not None:
                self.runner.train_from(self.boundary)
        return self

    @property
    def positions_taken(self) -> int:
        """Positions the prompt takes in the base's context (`Site.positions_taken`: 0 for hidden-state prompts)."""
        return 0 if self.producer is None else self.site.positions_taken(self.producer.num_tokens)

    def max_text_tokens(self) -> int | None:
        """The longest input text this model can read: the base's positions less those the prompt takes
        (`Site.positions_taken`), and the producer's own limit (DePT's A); None: any."""
        positions = type(self.runner).max_positions(self.backbone.model.config)
        limits = []
        if positions is not None:
            limits.append(positions - self.positions_taken)
        if self.producer is not None and self.producer.max_input_tokens is not None:
            limits.append(self.producer.max_input_tokens)
        return max(min(limits), 1) if limits else None

    def fit_length(self, asked: int) -> int:
        """`asked` text tokens, cut to what fits (`max_text_tokens`)."""
        capacity = self.max_text_tokens()
        return max(min(asked, capacity) if capacity is not None else asked, 1)

    # -- parameters ----------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Everything a trained adapter consists of (what is saved and trained)."""
        state = {}
        if self.producer is not None:
            state.update({f"producer.{k}": v for k, v in self.producer.state_dict().items()})
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        if self.method.backbone != "frozen":
            keep = (lambda n: "lora_" in n) if self.method.backbone == "lora" else (lambda n: True)
            state.update({f"backbone.{k}": v for k, v in self.backbone.model.state_dict().items() if keep(k)})
        return state

    def adapter_params(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by role: prompt (and lowrank for DePT), head, backbone."""
        groups: dict[str, list[nn.Parameter]] = {}
        if self.producer is not None:
            groups.update(self.producer.param_groups())
        groups["head"] = [p for p in self.head.parameters() if p.requires_grad]
        groups["backbone"] = [p for p in self.backbone.model.parameters() if p.requires_grad]
        return {k: v for k, v in groups.items() if v}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.adapter_params().values())

    # -- forward -------------------------------------------------------------------------------
    @property
    def boundary(self) -> int:
        """First layer whose computation depends on trainable parameters."""
        if self.method.backbone != "frozen":
            return 0
        if self.producer is None:
            return self.runner.num_layers
        if self.producer.edits_embeddings:
            return 0
        return self.site.boundary

    @property
    def groups(self) -> list[PromptGroup]:
        return [PromptGroup(self.producer, self.site)]

    def start(self, input_ids, attention_mask, token_type_ids=None) -> Sequence:
        """The batch in token space, before any layer (positions shifted where the site says)."""
        return start_sequence(self.runner, self.groups, input_ids, attention_mask, token_type_ids)[0]

    def frozen_state(self, input_ids, attention_mask, token_type_ids=None) -> Sequence:
        """State entering the boundary layer (token space when the boundary is 0)."""
        seq, tok = start_sequence(self.runner, self.groups, input_ids, attention_mask, token_type_ids)
        b = self.boundary
        if b == 0:
            return seq
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.method.backbone != "frozen"):
            return run_layers(self.runner, self.groups, seq, tok, -1, b)

    def from_state(self, state: Sequence, input_ids, source_mask=None) -> tuple[torch.Tensor, Sequence]:
        """Final hidden states (B, L, d) and the sequence bookkeeping, from a frozen state.

        `source_mask` (B, T): the tokens an input-dependent producer may read (default: all text).
        """
        b = self.boundary
        tok = state.hidden if b == 0 else self.runner.token_embeddings(input_ids)
        seq = run_layers(self.runner, self.groups, state, tok, -1 if b == 0 else b, self.runner.num_layers,
                         gradient_checkpointing=self.gradient_checkpointing, source_mask=source_mask)
        return self.runner.finish(seq.hidden), seq

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, state: Sequence | None = None,
                source_mask=None):
        if state is None:
            state = self.frozen_state(input_ids, attention_mask, token_type_ids)
        if self.generative:
            return Output(None, self.lm_loss(state, input_ids, attention_mask, labels, source_mask))
        hidden, seq = self.from_state(state, input_ids)
        logits = self.head_logits(hidden, seq.text_mask, input_ids, attention_mask, token_type_ids, seq.mask,
                                  seq.decoder_prefixes[0][1] if seq.decoder_prefixes else None)
        loss = None if labels is None else self.loss(logits, labels)
        return Output(logits, loss)

    def head_logits(self, hidden, text_mask, input_ids, attention_mask, token_type_ids=None, mask=None,
                    decoder_prefixes=None) -> torch.Tensor:
        """The head on final hidden states (shared by forward and mixed serving); `mask`: every real position."""
        if self.head_kind == "verbalizer" and self.runner.kind == "encoder-decoder":
            return self._decoder_label_scores(hidden, text_mask if mask is None else mask, decoder_prefixes)
        logits = self.head(hidden, text_mask)
        if self.head_kind == "verbalizer" and self.head.multi_token:
            logits = logits + self._continuation_scores(input_ids, attention_mask, token_type_ids)
        if self.head_kind == "regression":
            logits = logits.squeeze(-1)
        return logits

    def lm_loss(self, state, input_ids, attention_mask, labels, source_mask=None) -> torch.Tensor | None:
        """Mean cross-entropy over target tokens only (labels -100 elsewhere); producers read the source only.

        Decoders: `labels` (B, T) align with `input_ids`; logits are computed at target positions
        only. T5: `input_ids` is the source, `labels` (B, T') the decoder's targets.
        """
        hidden, seq = self.from_state(state, input_ids, source_mask=source_mask)
        if labels is None:
            return None
        if self.runner.kind == "encoder-decoder":
            cache = decoder_cache(seq.decoder_prefixes)
            return self.decoder_logits(hidden, seq.mask.long(), None, past_key_values=cache, labels=labels).loss
        text = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
        text[attention_mask.bool()] = hidden[seq.text_mask]  # back to the input layout (prompts dropped)
        nxt = labels[:, 1:]
        at = nxt != -100  # the state at position c predicts the token at c + 1
        return lm_cross_entropy(self.runner.lm_head(), text[:, :-1][at], nxt[at])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "regression":
            return F.mse_loss(logits.float(), labels.float())
        return F.cross_entropy(logits.float(), labels.long())

    def _decoder_label_scores(self, encoded, encoder_mask, decoder_prefixes=None) -> torch.Tensor:
        """T5: log p(label word) from the decoder reading the prompted encoder (every token of the word)."""
        start = self.backbone.model.config.decoder_start_token_id
        scores = []
        for ids in self.head.label_token_ids:
            word = torch.tensor(ids, device=encoded.device)
            dec = torch.cat([torch.tensor([start], device=encoded.device), word[:-1]]).expand(encoded.shape[0], -1)
            cache = decoder_cache([(None, decoder_prefixes)]) if decoder_prefixes else None
            logp = self.decoder_logits(encoded, encoder_mask, dec, past_key_values=cache).log_softmax(-1)
            scores.append(logp.gather(-1, word.expand(encoded.shape[0], -1).unsqueeze(-1)).squeeze(-1).sum(-1))
        return torch.stack(scores, dim=1)

    def _continuation_scores(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """log p(w_2..w_n | x, w_1..) for multi-token label words (teacher forcing, one pass per word)."""
        scores = []
        for ids in self.head.label_token_ids:
            if len(ids) == 1:
                scores.append(torch.zeros(input_ids.shape[0], device=input_ids.device))
                continue
            ext_ids, ext_mask = append_tokens(input_ids, attention_mask, ids[:-1])
            state = self.frozen_state(ext_ids, ext_mask, None)
            hidden, seq = self.from_state(state, ext_ids)
            # log p(ids[j]) is read at the appended ids[j-1], (n-1-j) text tokens before the end
            from_end = seq.text_mask.sum(1, keepdim=True) - seq.text_mask.long().cumsum(1)
            total = torch.zeros(input_ids.shape[0], device=input_ids.device)
            for j in range(1, len(ids)):
                idx = ((from_end == len(ids) - 1 - j) & seq.text_mask).float().argmax(1)
                h = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
                total = total + self.runner.lm_head()(h).log_softmax(-1)[:, ids[j]]
            scores.append(total)
        return torch.stack(scores, dim=1)

    @torch.inference_mode()
    def generate(self, input_ids, attention_mask, max_new_tokens: int = 20, eos_token_id: int | None = None,
                 **options) -> torch.Tensor:
        """New tokens (B, n) with the prompt in place (decoders and encoder-decoders), padded with eos
        after each row's end.

        The prompt and any prefix key/values are computed once per row; options are those of
        `decode.GenerationConfig` (do_sample, temperature, top_p, seed, num_beams, stop, ...).
        """
        out = self.generate_text(input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos_token_id, **options)
        eos = eos_token_id if eos_token_id is not None else self.backbone.tokenizer.eos_token_id
        fill = eos if eos is not None and eos >= 0 else (self.backbone.tokenizer.pad_token_id or 0)
        rows = [t + ([eos] if end else []) for t, end in zip(out.tokens, out.at_eos)]
        width = max(1, max(len(r) for r in rows))
        return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=torch.long, device=input_ids.device)

    @torch.inference_mode()
    def generate_text(self, input_ids, attention_mask, **options) -> Generated:
        """Tokens, texts and finish reasons per row (`decode.generate`: the server's decode core)."""
        cfg = GenerationConfig(**options)
        prompts = [row[keep.bool()].tolist() for row, keep in zip(input_ids, attention_mask)]
        tok = self.backbone.tokenizer
        return generate(lambda reqs: open_lane(self.runner, tok, reqs, self.backbone.model), prompts, self, cfg, tok)

    @torch.no_grad()
    def lane(self, input_ids, attention_mask) -> Lane:
        """A decode lane after the prompt and the text of each row (`decode.lanes`): `.logits` (B, V) of the
        next token, then `step(tokens)`, `keep(index)`; decoders also `feed(tokens (B, n))`."""
        prompts = [row[keep.bool()].tolist() for row, keep in zip(input_ids, attention_mask)]
        return open_lane(self.runner, self.backbone.tokenizer, [_Row(self, p) for p in prompts], self.backbone.model)

    def encode(self, input_ids, attention_mask, source_mask=None):
        """Encoder-decoders: the prompted encoder's final states, their mask, and a decoder cache that
        holds the decoder's key/value prefixes (key/value sites; empty otherwise)."""
        hidden, seq = self.from_state(self.frozen_state(input_ids, attention_mask), input_ids, source_mask)
        return hidden, seq.mask.long(), decoder_cache(seq.decoder_prefixes)

    def decoder_logits(self, encoded, encoder_mask, decoder_ids, past_key_values=None, labels=None):
        """Encoder-decoders: the decoder reading the prompted encoder (logits; the loss too with labels)."""
        from transformers.modeling_outputs import BaseModelOutput

        out = self.backbone.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                                  attention_mask=encoder_mask, decoder_input_ids=decoder_ids, labels=labels,
                                  past_key_values=past_key_values, use_cache=past_key_values is not None)
        return out if labels is not None else out.logits

    @torch.no_grad()
    def fold(self) -> "SoftPromptModel":
        """Materialise reparameterised producers (prefix MLP, P-tuning encoder) in place."""
        if self.producer is not None:
            self.producer = self.producer.fold()
        return self


@dataclass
class _Row:
    """A prompt to prefill into a lane (the lane reads `.model` and `.prompt`)."""

    model: SoftPromptModel
    prompt: list[int]


def append_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokens: list[int]):
    """Append `tokens` right after each row's last real token (works for left and right padding)."""
    n = len(tokens)
    bsz, length = input_ids.shape
    pad_id = 0
    ids = torch.cat([input_ids, torch.full((bsz, n), pad_id, dtype=input_ids.dtype, device=input_ids.device)], 1)
    mask = torch.cat([attention_mask, torch.zeros(bsz, n, dtype=attention_mask.dtype, device=input_ids.device)], 1)
    last = last_real_index(attention_mask.bool())
    tok = torch.tensor(tokens, dtype=input_ids.dtype, device=input_ids.device)
    for k in range(n):
        pos = last + 1 + k
        ids[torch.arange(bsz), pos] = tok[k]
        mask[torch.arange(bsz), pos] = 1
    return ids, mask


def decoder_cache(groups):
    """An encoder-decoder cache whose self-attention part starts with the decoder's key/value prefixes."""
    if not groups:
        return None
    if len(groups) > 1 or groups[0][0] is not None:
        raise ValueError("decoder prefixes of several adapters in one batch are not supported yet")
    prefixes = groups[0][1]
    from transformers import DynamicCache, EncoderDecoderCache

    own = DynamicCache()
    for layer in sorted(prefixes):
        own.update(*prefixes[layer], layer)
    return EncoderDecoderCache(own, DynamicCache())
