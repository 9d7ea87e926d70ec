"""Mixed-task forward: rows using different adapters share ONE pass through the frozen base.

Each row belongs to one adapter (a SoftPromptModel on the shared backbone); every adapter
becomes a row group of the one layer loop (`softprompt.runners.loop`), which puts each
group's prompts in its own rows wherever its site says. Each adapter's head then reads its
rows. Every row's result equals running that row alone through its adapter's `model(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softprompt.model import SoftPromptModel
from softprompt.runners import Runner
from softprompt.runners.loop import PromptGroup, run_layers, start_sequence


@dataclass
class Group:
    """One adapter and the batch rows (1-D long tensor) that use it."""

    model: SoftPromptModel
    rows: torch.Tensor

    @property
    def prompt_group(self) -> PromptGroup:
        return PromptGroup(self.model.producer, self.model.site, self.rows)


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
    prompt_groups = [g.prompt_group for g in groups]
    seq, tok = start_sequence(runner, prompt_groups, input_ids, attention_mask, token_type_ids)
    seq = run_layers(runner, prompt_groups, seq, tok, -1, runner.num_layers)
    hidden = runner.finish(seq.hidden)
    by_rows = {id(rows): prefixes for rows, prefixes in (seq.decoder_prefixes or [])}
    out = []
    for g in groups:
        types = None if token_type_ids is None else token_type_ids[g.rows]
        out.append(g.model.head_logits(hidden[g.rows], seq.text_mask[g.rows], input_ids[g.rows],
                                       attention_mask[g.rows], types, seq.mask[g.rows], by_rows.get(id(g.rows))))
    return out
