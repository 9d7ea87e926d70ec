"""Family runners: run a frozen model's layers with prompts entering anywhere."""

from __future__ import annotations

from torch import nn

from softprompt.errors import BackboneError
from softprompt.runners.base import PrefixCache, Runner
from softprompt.runners.decoder import Gemma3Runner, GPT2Runner, LlamaRunner
from softprompt.runners.encoder import BertRunner, MPNetRunner, RobertaRunner
from softprompt.runners.sequence import Sequence, insert_prompt
from softprompt.runners.t5 import T5Runner

RUNNERS: dict[str, type[Runner]] = {
    "bert": BertRunner,
    "roberta": RobertaRunner,
    "mpnet": MPNetRunner,
    "gpt2": GPT2Runner,
    "llama": LlamaRunner,
    "gemma3": Gemma3Runner,
    "t5": T5Runner,
}


def runner_for(family: str, model: nn.Module) -> Runner:
    if family not in RUNNERS:
        raise BackboneError(f"no runner for model family {family!r}; supported: {', '.join(RUNNERS)}")
    return RUNNERS[family](model)


__all__ = ["PrefixCache", "Runner", "Sequence", "insert_prompt", "runner_for", "RUNNERS"]
