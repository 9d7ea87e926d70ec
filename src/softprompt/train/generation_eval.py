"""Scoring generation tasks outside the trainer: a trained adapter on any generation task, and an
instruction model prompted zero-shot, both by greedy generated output, with per-example outputs.

    res = evaluate_generation(model, "imdb-t2t", "test", data_dir, limit=500, max_length=128,
                              chat=False, out_dir=run / "eval")    # run/eval/outputs.jsonl + scores.json
    res = evaluate_zero_shot_generation(backbone, "e2e", "test", data_dir, out_dir=cell / "outputs")

Text-to-text views are scored by the label parsed from the generated text (accuracy, macro-F1,
`unparseable`); data-to-text (E2E) by BLEU, ROUGE-L, METEOR (when Java runs) and CIDEr.
Zero-shot instructions: for "<task>-t2t" the classification zero-shot prompt of the view's task
(train/zero_shot.py: natural question, chat template, answer prefix, the input text cut to fit), the
answer generated after it; for data-to-text `DATA_TO_TEXT_INSTRUCTION` or a template with
{input} given by the caller. The instruction goes into the tokenizer's chat template when it has
one (else "<instruction>\\nAnswer:").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from softprompt.errors import ConfigError
from softprompt.tasks import Example, get_task, load_split_with_report
from softprompt.tasks.registry import TEXT_TO_TEXT_SUFFIX
from softprompt.train.batches import Encoded
from softprompt.train.evaluate import generate_outputs, max_new_tokens_for
from softprompt.train.text_batches import encode_generation

DATA_TO_TEXT_INSTRUCTION = "Write one sentence describing this restaurant: {input}"


def default_split(task) -> str:
    return "validation" if "validation" in task.splits and "validation" not in task.unlabeled_splits else "test"


def _score(task, examples, predictions: list[str], with_meteor: bool) -> dict[str, Any]:
    from softprompt.tasks import score_predictions

    return score_predictions(task, examples, predictions, with_meteor=with_meteor)


def _write(out_dir, task, examples, predictions, scores) -> str | None:
    if out_dir is None:
        return None
    from softprompt.tasks.generation_outputs import write_outputs

    outputs, _ = write_outputs(out_dir, task, examples, predictions, scores)
    return str(outputs)


def evaluate_generation(model, task_name: str, split: str | None = None, data_dir=None, limit: int | None = None,
                        max_length: int = 128, chat: bool = False, batch_size: int = 32,
                        max_new_tokens: int | None = None, out_dir=None, with_meteor: bool = True) -> dict[str, Any]:
    """A generative SoftPromptModel scored on a generation task by greedy generated output.

    The sources are encoded as in training (`encode_generation`, same `max_length` and `chat`);
    `out_dir` gets outputs.jsonl (one record per example) and scores.json."""
    task = get_task(task_name)
    if not task.is_generation:
        raise ConfigError(f"task {task.name!r} is a {task.kind} task; a generative adapter is scored on generation "
                          f"tasks (e.g. {task.name}{TEXT_TO_TEXT_SUFFIX})")
    split = task.check_split(split) if split else default_split(task)
    examples, report = load_split_with_report(task, split, data_dir, limit, 0)
    tok = model.backbone.tokenizer
    enc = encode_generation(tok, task, examples, max_length, model.backbone.kind, chat=chat)
    new = max_new_tokens or max_new_tokens_for(task, tok)
    predictions = generate_outputs(model, enc, batch_size, tok, new)
    scores = _score(task, enc.examples, predictions, with_meteor)
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "max_new_tokens": new, "decoding": "greedy", "scores": scores,
            "data": report.summary(), "outputs": _write(out_dir, task, enc.examples, predictions, scores)}


def zero_shot_instruction(task, example: Example, template: str | None = None) -> str:
    """The zero-shot instruction for one example of a generation task (see the module docstring)."""
    task = get_task(task)
    if template is not None:
        try:
            return template.format(input=example.text.strip(),
                                   text=example.text.strip(), text_pair=(example.text_pair or "").strip())
        except (KeyError, IndexError) as err:
            raise ConfigError(f"zero_shot.instruction: {template!r} uses {err}; expected {{input}}, {{text}} "
                              f"or {{text_pair}}") from None
    if task.is_text_to_text:
        from softprompt.train.zero_shot import instruction

        return instruction(labelled_task(task), example)
    return DATA_TO_TEXT_INSTRUCTION.format(input=example.text.strip())


def labelled_task(task):
    """The classification task a text-to-text view ("<task>-t2t") is made from."""
    return get_task(task.name.removesuffix(TEXT_TO_TEXT_SUFFIX))


def render_instruction(tokenizer, text: str) -> str:
    from softprompt.train.zero_shot import uses_chat_template

    if uses_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text + "\nAnswer:"


def encode_instructions(tokenizer, task, examples, max_length: int, template: str | None = None) -> Encoded:
    """Prompt ids, no targets. A text-to-text view gets its classification task's zero-shot prompt (natural
    question, chat template, answer prefix; only the input text is cut to fit); other instructions keep
    their end when longer than max_length (the answer cue sits there)."""
    import numpy as np

    from softprompt.train.zero_shot import fit_input, uses_chat_template

    sources, truncated = [], 0
    for ex in examples:
        if task.is_text_to_text and template is None:
            ids, cut = fit_input(labelled_task(task), tokenizer, ex, max_length)
            truncated += cut
            sources.append(ids)
            continue
        ids = tokenizer(render_instruction(tokenizer, zero_shot_instruction(task, ex, template)),
                        add_special_tokens=not uses_chat_template(tokenizer))["input_ids"]
        if len(ids) > max_length:
            truncated += 1
            ids = ids[len(ids) - max_length:]
        sources.append(ids)
    return Encoded(sources, None, np.full(len(examples), np.nan), [e.group for e in examples], truncated,
                   sources=sources, targets=[[] for _ in examples], examples=list(examples), decoder_only=True)


def evaluate_zero_shot_generation(backbone, task_name: str, split: str | None = None, data_dir=None,
                                  limit: int | None = None, max_length: int = 256, batch_size: int = 16,
                                  instruction: str | None = None, max_new_tokens: int | None = None, out_dir=None,
                                  with_meteor: bool = True) -> dict[str, Any]:
    """An instruction model (no training) generating the answer greedily; scored as a trained adapter is."""
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    task = get_task(task_name)
    if not task.is_generation:
        raise ConfigError(f"task {task.name!r} is a {task.kind} task; use evaluate_zero_shot (label-word scores)")
    if backbone.kind != "decoder":
        raise ConfigError(f"zero-shot generation needs a decoder backbone, not {backbone.name} ({backbone.kind})")
    split = task.check_split(split) if split else default_split(task)
    examples, report = load_split_with_report(task, split, data_dir, limit, 0)
    tok = backbone.tokenizer
    enc = encode_instructions(tok, task, examples, max_length, instruction)
    model = SoftPromptModel(backbone, method_config("zero-shot"), 0, generative=True).eval()
    new = max_new_tokens or max_new_tokens_for(task, tok)
    predictions = generate_outputs(model, enc, batch_size, tok, new)
    scores = _score(task, enc.examples, predictions, with_meteor)
    if task.is_text_to_text and instruction is None:  # the whole prompt: its answer prefix matters too
        example = tok.decode(enc.sources[0]) if examples else None
    else:
        example = zero_shot_instruction(task, examples[0], instruction) if examples else None
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "max_new_tokens": new, "decoding": "greedy", "scores": scores,
            "data": report.summary(), "method": "zero-shot generation", "backbone": backbone.name,
            "chat_template": bool(getattr(tok, "chat_template", None)), "instruction_example": example,
            "outputs": _write(out_dir, task, enc.examples, predictions, scores)}


__all__ = ["DATA_TO_TEXT_INSTRUCTION", "evaluate_generation", "evaluate_zero_shot_generation", "zero_shot_instruction",
           "encode_instructions", "render_instruction"]
