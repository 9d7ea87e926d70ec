"""Runners: run a frozen model's layers with prompts entering anywhere.

A model gets the first runner (in `RUNNERS` order: the more specific first) whose `unfit`
finds nothing missing in what the model exposes; no list of model names is kept.
"""

from __future__ import annotations

from torch import nn

from softprompt.errors import UnsupportedModelError
from softprompt.runners.anatomy import text_config
from softprompt.runners.base import PrefixCache, Runner
from softprompt.runners.deberta import DebertaV2Runner
from softprompt.runners.decoder import DecoderRunner
from softprompt.runners.encoder import BertRunner, MPNetRunner, RobertaRunner
from softprompt.runners.modernbert import ModernBertRunner
from softprompt.runners.seq2seq import BartRunner
from softprompt.runners.sequence import Sequence, insert_prompt
from softprompt.runners.t5 import T5Runner
from softprompt.runners.tested import TESTED, supported_line

RUNNERS: tuple[type[Runner], ...] = (MPNetRunner, DebertaV2Runner, ModernBertRunner, RobertaRunner, BertRunner,
                                     T5Runner, BartRunner, DecoderRunner)
KINDS = ("encoder", "decoder", "encoder-decoder")


def architecture(model: nn.Module) -> str:
    """The model's architecture name as Hugging Face spells it (config.model_type)."""
    return getattr(text_config(model), "model_type", None) or type(model).__name__


def runner_class(model: nn.Module, kind: str | None = None) -> type[Runner]:
    """The runner class that drives `model` (of `kind`, when given); UnsupportedModelError says what is missing."""
    reasons = []
    for cls in RUNNERS:
        if kind is not None and cls.kind != kind:
            continue
        why = cls.unfit(model)
        if why is None:
            return cls
        reasons.append(why)
    arch = architecture(model)
    raise UnsupportedModelError(
        f"architecture {arch!r} ({type(model).__name__}) cannot be driven: {reasons[-1] if reasons else 'no runner'}; "
        f"{supported_line()}"
    )


def runner_for(model: nn.Module, kind: str | None = None) -> Runner:
    return runner_class(model, kind)(model)


__all__ = ["KINDS", "TESTED", "PrefixCache", "Runner", "Sequence", "architecture", "insert_prompt", "runner_class",
           "runner_for", "RUNNERS"]
