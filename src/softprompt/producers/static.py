"""Static prompt vectors (Prompt Tuning, Lester et al. 2021; P-Tuning v2's deep prompts).

Initialisation (`init`, prompts in embedding space only, Lester et al. Sec. 3.2):
  random  N(0, init_std^2)
  vocab   embeddings of tokens sampled without replacement from the 5,000 most frequent
          word tokens. Tokenizers carry no counts, so frequency is approximated by id order
          (BPE / SentencePiece ids follow merge order or score; BERT's words follow its
          [unusedN] slots and character block); special, added, unused, single-character and
          non-word tokens (bytes, punctuation, digits) are skipped. Seeded by `init_seed`, or by
          the run seed (`torch.initial_seed()`: the trainer seeds torch before building).
  labels  one prompt token per class: the embedding of each label word (a multi-token word
          is averaged); the rest are sampled vocab as in the paper (`label_fill: cycle`
          repeats the label words instead). `label_words` is filled by the caller from the
          task's verbalizer (in label order).
  text    the tokens of `init_text`, repeated to fill t.
  transfer  SPoT (Vu et al. 2022): the prompt of a source-task adapter (`init_from`); with several, the one
          most similar to `transfer_query`'s prompt by SPoT's task similarity (producers/transfer.py).
At key/value sites (P-Tuning v2) vocab, labels and text take the keys/values the frozen model computes
for those words at every prefixed layer (`Site.word_vectors`; Li & Liang 2021, Sec. 7.2 "activations of
real words"), so a prefix from a text starts out as that text written before the input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.transfer import Similarity, transfer_prompt

VOCAB_SAMPLE = 5000  # Lester et al.: the 5,000 most common tokens
WORD_MARKERS = ("Ġ", "▁", "##", "Ċ")  # word-boundary / continuation marks of BPE, SentencePiece, WordPiece


@dataclass
class WordInitConfig(ProducerConfig):
    """How a producer's first prompt is chosen (shared by the static and MLP producers)."""

    init: Literal["random", "vocab", "labels", "text"] = "random"
    init_text: str | None = None
    init_seed: int | None = None  # vocab sampling; None: the run seed (torch.initial_seed())
    label_words: list[str] | None = None  # init "labels": the task's label words, in label order
    label_fill: Literal["vocab", "cycle"] = "vocab"  # prompt tokens beyond the labels

    def validate(self) -> None:
        super().validate()
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text")
        if self.label_words is not None and not all(isinstance(w, str) and w.strip() for w in self.label_words):
            raise ValueError("label_words must be non-empty strings")


@dataclass
class StaticConfig(WordInitConfig):
    init: Literal["random", "vocab", "labels", "text", "transfer"] = "random"
    init_std: float = 0.02
    init_from: list[str] | None = None  # init "transfer" (SPoT): adapter folders of prompts trained on source tasks
    transfer_query: str | None = None  # the target task's prompt (a short tuning run) that retrieval compares with
    similarity: Similarity = "average_tokens"  # SPoT's task similarity (producers.transfer)

    def validate(self) -> None:
        super().validate()
        if self.init == "transfer" and not self.init_from:
            raise ValueError("init_from: init 'transfer' needs the adapter folders of the source prompts")

    def for_loading(self) -> "StaticConfig":
        return dataclasses.replace(self, init="random") if self.init == "transfer" else self


class StaticPrompt(Producer):
    kind = "static"
    config_class = StaticConfig
    peft_exportable = True

    def __init__(self, cfg: StaticConfig, out_dim: int, hidden_size: int, values: torch.Tensor | None = None):
        super().__init__(cfg, out_dim, hidden_size)
        self.prompt = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * cfg.init_std if values is None else values)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt.unsqueeze(0)

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        if self.cfg.init == "transfer":
            cfg = self.cfg
            values = transfer_prompt(cfg.init_from, cfg.transfer_query, cfg.similarity, tuple(self.prompt.shape))
        else:
            values = word_values(self.cfg, words, tokenizer)
        if values is not None:
            self.prompt.copy_(values.to(self.prompt.dtype))


def word_values(cfg: WordInitConfig, words, tokenizer) -> torch.Tensor | None:
    """The (t, out_dim) vectors `cfg.init` asks for, as `words(ids)` sees them at the site; None for random."""
    if cfg.init == "random":
        return None
    if cfg.init == "vocab":
        return words(sample_vocab(tokenizer, cfg.num_tokens, vocab_seed(cfg)))
    if cfg.init == "labels":
        return label_values(cfg, words, tokenizer)
    # the text as one sequence: at key/value sites each token's activations see the ones before it
    ids = torch.tensor(tokenizer(cfg.init_text, add_special_tokens=False)["input_ids"])
    if len(ids) == 0:
        raise ValueError(f"init_text {cfg.init_text!r} has no tokens")
    return words(cycle(ids, cfg.num_tokens))


def vocab_seed(cfg: WordInitConfig) -> int:
    return cfg.init_seed if cfg.init_seed is not None else torch.initial_seed()


def label_values(cfg: WordInitConfig, words, tokenizer) -> torch.Tensor:
    if not cfg.label_words:
        raise ConfigError("method.producer.label_words: init 'labels' needs the task's label words "
                          "(the caller fills them from the task's verbalizer)")
    rows = []
    for word in cfg.label_words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"label word {word!r} has no tokens")
        rows.append(words(torch.tensor(ids)).mean(0))  # multi-token label: mean
    labels = torch.stack(rows)[: cfg.num_tokens]
    rest = cfg.num_tokens - len(labels)
    if rest == 0:
        return labels
    if cfg.label_fill == "cycle":
        return labels[cycle(torch.arange(len(labels)), cfg.num_tokens)]
    return torch.cat([labels, words(sample_vocab(tokenizer, rest, vocab_seed(cfg)))])


def cycle(ids: torch.Tensor, n: int) -> torch.Tensor:
    return ids.repeat((n + len(ids) - 1) // len(ids))[:n]


def frequent_word_ids(tokenizer, limit: int = VOCAB_SAMPLE, min_chars: int = 2) -> list[int]:
    """The first `limit` word tokens in id order (the frequency proxy), skipping special ones.

    Single characters (BERT's character block, byte and character pieces) count only in a
    vocabulary that has no longer words (byte-level test tokenizers).
    """
    skip = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    found: list[int] = []
    size, chunk = len(tokenizer), 4096
    for start in range(0, size, chunk):
        ids = range(start, min(start + chunk, size))
        for i, tok in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
            if i not in skip and len(word_of(tok)) >= min_chars:
                found.append(i)
                if len(found) == limit:
                    return found
    return found if found or min_chars == 1 else frequent_word_ids(tokenizer, limit, 1)


def word_of(token: str | None) -> str:
    """The letters of a word token without its boundary mark; "" for any other token."""
    if not token or (token[0] in "[<" and token[-1] in "]>"):  # [unused12], <extra_id_0>, <0x0A>, <mask>
        return ""
    for marker in WORD_MARKERS:
        if token.startswith(marker):
            token = token[len(marker):]
            break
    return token if token.isalpha() else ""


def sample_vocab(tokenizer, n: int, seed: int) -> torch.Tensor:
    """n distinct ids from the frequent word tokens (repeated only if there are fewer than n)."""
    pool = frequent_word_ids(tokenizer)
    if not pool:
        raise ValueError("init: vocab found no word tokens in the tokenizer's vocabulary")
    gen = torch.Generator().manual_seed(seed % 2**63)
    order = torch.randperm(len(pool), generator=gen)
    return cycle(torch.tensor(pool)[order], n)
