"""Family runners: run a frozen model's layers with prompts entering anywhere."""

from __future__ import annotations

from torch import nn

from softprompt.errors import BackboneError
from softprompt.runners.base import PrefixCache, Runner
from softprompt.runners.decoder import Gemma3Runner, GPT2Runner, LlamaRunner
from softprompt.runners.encoder import BertRunner, MPNetRunner, RobertaRunner
from softprompt.runners.sequence import Sequence, insert_prompt
from softprompt.runners.t5 import T5Runner

RUNNERS: dict[str, type[Runner]] = {cls.family: cls for cls in (
    BertRunner, RobertaRunner, MPNetRunner, GPT2Runner, LlamaRunner, Gemma3Runner, T5Runner,
)}


def runner_class(family: str) -> type[Runner]:
    if family not in RUNNERS:
        raise BackboneError(f"no runner for model family {family!r}; supported: {', '.join(RUNNERS)}")
    return RUNNERS[family]


def runner_for(family: str, model: nn.Module) -> Runner:
    return runner_class(family)(model)


def family_of_model_type(model_type: str) -> str | None:
    """The family whose runner drives HF `config.model_type` (None: unsupported)."""
    return next((cls.family for cls in RUNNERS.values() if model_type in cls.model_types), None)


__all__ = ["PrefixCache", "Runner", "Sequence", "family_of_model_type", "insert_prompt", "runner_class", "runner_for",
           "RUNNERS"]
