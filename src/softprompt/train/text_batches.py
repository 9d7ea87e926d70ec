"""Generation tasks: tokenise (input template -> target text) for a decoder or for T5.

Decoders train on one sequence, source then target then end-of-sequence; only the target
tokens carry labels, and producers read the source only (`source_mask`). With `chat: true`
the source goes into the tokenizer's chat template as the user turn and the target is the
assistant turn. T5 encodes the source and learns the target through its decoder.
"""

from __future__ import annotations

import numpy as np

from softprompt.tasks import render_input
from softprompt.tasks.chat import has_chat_template, render_user
from softprompt.train.batches import Encoded


def render_source(tokenizer, task, example, chat: bool) -> str:
    text = render_input(task, example)
    if chat:
        if not has_chat_template(tokenizer):
            raise ValueError("chat: true needs a tokenizer with a chat template")
        return render_user(tokenizer, text)
    return text


def target_ids(tokenizer, source: str, target: str, kind: str, chat: bool) -> list[int]:
    """The target's tokens as they follow the source (exact for BPE merges across the boundary), plus EOS."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if kind == "encoder-decoder":
        return tokenizer(target)["input_ids"]  # T5's tokenizer appends </s>
    joined = source + ("" if chat or source.endswith((" ", "\n")) else " ") + target
    src = tokenizer(source)["input_ids"]
    full = tokenizer(joined)["input_ids"]
    if full[: len(src)] != src:  # the boundary merged: tokenise the target alone
        return tokenizer(" " + target, add_special_tokens=False)["input_ids"] + eos
    return full[len(src):] + eos


def encode_generation(tokenizer, task, examples, max_length: int, kind: str, chat: bool = False,
                      max_target_length: int = 128) -> Encoded:
    """Encoded split for a generation task: sources (truncated from the left), targets, training ids."""
    sources, targets, inputs, truncated = [], [], [], 0
    for ex in examples:
        text = render_source(tokenizer, task, ex, chat)
        src = tokenizer(text)["input_ids"]
        tgt = target_ids(tokenizer, text, ex.target, kind, chat)[:max_target_length] if ex.target else []
        budget = max_length - (0 if kind == "encoder-decoder" else len(tgt))
        if len(src) > budget:  # keep the end of the source: the template's cue sits there
            truncated += 1
            src = src[len(src) - max(budget, 1):]
        sources.append(src)
        targets.append(tgt)
        inputs.append(src if kind == "encoder-decoder" else src + tgt)
    labels = np.full(len(examples), np.nan)
    return Encoded(inputs, None, labels, [e.group for e in examples], truncated, sources=sources, targets=targets,
                   examples=list(examples), decoder_only=kind != "encoder-decoder")
