"""Scoring generation tasks outside the trainer: a trained adapter on any generation task, and an
instruction model prompted zero-shot, both by greedy generated output, with per-example outputs.

    res = evaluate_generation(model, "imdb-t2t", "test", data_dir, limit=500, max_length=128,
                              chat=False, out_dir=run / "eval")    # run/eval/outputs.jsonl + scores.json
    res = evaluate_zero_shot_generation(backbone, "e2e", "test", data_dir, out_dir=cell / "outputs")
    res = evaluate_run("runs/e2e-prefix-tuning-smollm2-135m-s0", "e2e", "test", data_dir)   # `softprompt eval`
    rows = generate_for_texts(model, ["name[The Eagle], food[French]"])                      # `softprompt predict`

Text-to-text views are scored by the label parsed from the generated text (accuracy, macro-F1,
`unparseable`); data-to-text (E2E) by BLEU, ROUGE-L, METEOR (when Java runs) and CIDEr.
`evaluate_run` is `evaluate_generation` on a run folder with the run's own settings (config.yaml:
max_length, chat_template, eval_batch_size), as the bench scores a run; outputs.jsonl records carry
each example's finish reason ("stop" / "length").
Zero-shot instructions: for "<task>-t2t" the classification zero-shot prompt of the view's task
(train/zero_shot.py: natural question, chat template, answer prefix, the input text cut to fit), the
answer generated after it; for data-to-text `DATA_TO_TEXT_INSTRUCTION` or a template with
{input} given by the caller. The instruction goes into the tokenizer's chat template when it has
one (else "<instruction>\\nAnswer:").
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from softprompt.errors import ConfigError
from softprompt.tasks import Example, get_task, load_split_with_report
from softprompt.tasks.chat import has_chat_template, render_user
from softprompt.tasks.registry import TASKS, TEXT_TO_TEXT_SUFFIX
from softprompt.train.batches import Encoded
from softprompt.train.evaluate import generate_with_reasons, max_new_tokens_for
from softprompt.train.text_batches import encode_generation

DATA_TO_TEXT_INSTRUCTION = "Write one sentence describing this restaurant: {input}"


def default_split(task) -> str:
    return "validation" if "validation" in task.splits and "validation" not in task.unlabeled_splits else "test"


def _score(task, examples, predictions: list[str], with_meteor: bool) -> dict[str, Any]:
    from softprompt.tasks import score_predictions

    return score_predictions(task, examples, predictions, with_meteor=with_meteor)


def _write(out_dir, task, examples, predictions, scores, finish_reasons=None) -> str | None:
    if out_dir is None:
        return None
    from softprompt.tasks.generation_outputs import write_outputs

    outputs, _ = write_outputs(out_dir, task, examples, predictions, scores, finish_reasons)
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
    predictions, reasons = generate_with_reasons(model, enc, batch_size, tok, new)
    scores = _score(task, enc.examples, predictions, with_meteor)
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "max_new_tokens": new, "decoding": "greedy", "scores": scores,
            "finish_reasons": dict(Counter(reasons)), "data": report.summary(),
            "outputs": _write(out_dir, task, enc.examples, predictions, scores, reasons)}


RUN_CONFIG = "config.yaml"
EVAL_FOLDER = "eval"  # <run>/eval/<task>-<split>/outputs.jsonl + scores.json: `softprompt eval`'s default


def run_settings(path) -> dict[str, Any]:
    """The training config of the run that made an adapter (its config.yaml: max_length, chat_template,
    eval_batch_size, ...): in the run folder given, or around a run's adapter/ folder; {} for a bare adapter."""
    import yaml

    path = Path(path)
    for folder in (path, path.parent):
        if (folder / RUN_CONFIG).is_file() and (folder == path or path.name == "adapter"):
            data = yaml.safe_load((folder / RUN_CONFIG).read_text())
            return data if isinstance(data, dict) else {}
    return {}


def check_adapter_task(meta: dict, task) -> None:
    """ConfigError unless the adapter can be scored on the task: generative adapters on generation tasks,
    classifiers (and regressors) on classification tasks."""
    task = get_task(task)
    trained = meta.get("task") or "its task"
    if meta.get("generative") and not task.is_generation:
        view = task.name + TEXT_TO_TEXT_SUFFIX
        views = f" (e.g. {view})" if view in TASKS else ""
        raise ConfigError(f"the adapter generates text (trained on {trained}), but {task.name!r} is a {task.kind} "
                          f"task; score it on a generation task{views}")
    if not meta.get("generative") and task.is_generation:
        raise ConfigError(f"the adapter is a classifier (trained on {trained}), but {task.name!r} is a generation "
                          f"task; score it on a classification task with the same labels")


def eval_folder(path, task_name: str, split: str) -> Path:
    """Where `softprompt eval` writes a generation task's outputs by default: <run>/eval/<task>-<split>."""
    return Path(path) / EVAL_FOLDER / f"{task_name}-{split}"


def evaluate_run(path, task_name: str, split: str | None = None, data_dir=None, limit: int | None = None,
                 max_length: int | None = None, batch_size: int | None = None, max_new_tokens: int | None = None,
                 out_dir=None, with_meteor: bool = True, model=None) -> dict[str, Any]:
    """A generative run folder (or adapter folder) scored on a generation task as the bench scores a run
    (experiments/runner.py: `evaluate_generation`, greedy, with the run's max_length, chat_template and
    eval_batch_size unless given): the same run, task, split and limit give the bench's figures.
    Writes outputs.jsonl (one record per example, with its finish reason) and scores.json to out_dir
    (default <path>/eval/<task>-<split>)."""
    from softprompt.adapter import read_meta
    from softprompt.train.inference import adapter_dir, load_run_adapter

    task = get_task(task_name)
    meta = model.adapter_meta if model is not None else read_meta(adapter_dir(path))
    check_adapter_task(meta, task)
    split = task.check_split(split) if split else default_split(task)
    if model is None:
        model, meta = load_run_adapter(path)
    settings = run_settings(path)
    max_length = max_length or settings.get("max_length") or meta.get("max_length") or 128
    chat = bool(settings.get("chat_template", False))
    batch_size = batch_size or settings.get("eval_batch_size") or 64
    out_dir = eval_folder(path, task.name, split) if out_dir is None else out_dir
    res = evaluate_generation(model, task.name, split, data_dir, limit, int(max_length), chat, int(batch_size),
                              max_new_tokens, out_dir, with_meteor)
    return {**res, "chat_template": chat, "batch_size": int(batch_size), "adapter_task": meta.get("task")}


def _generation_task(name: str | None):
    """The generation task of that name; None for no name, an unknown one or a classification task."""
    if name is None or str(name).strip().lower() not in TASKS:
        return None
    task = get_task(name)
    return task if task.is_generation else None


def encode_inputs(tokenizer, task_name: str | None, texts: list[str], text_pair: str | None, max_length: int,
                  kind: str, chat: bool = False) -> Encoded:
    """Raw inputs for a generative adapter, made into sources as in training: the trained task's input
    template (and the chat template when the run used one); plain text when the task is not a known
    generation task (e.g. an adapter made with `wrap`)."""
    import numpy as np

    task = _generation_task(task_name)
    examples = [Example(t, text_pair, None, None, f"input:{i}") for i, t in enumerate(texts)]
    if task is not None:
        return encode_generation(tokenizer, task, examples, max_length, kind, chat=chat)
    sources, truncated = [], 0
    for ex in examples:
        text = ex.text if ex.text_pair is None else f"{ex.text} {ex.text_pair}"
        if chat:
            text = render_user(tokenizer, text)
        ids = tokenizer(text)["input_ids"]
        if len(ids) > max_length:  # keep the end, as encode_generation does
            truncated += 1
            ids = ids[len(ids) - max_length:]
        sources.append(ids)
    return Encoded(sources, None, np.full(len(examples), np.nan), [None] * len(examples), truncated,
                   sources=sources, targets=[[] for _ in examples], examples=examples,
                   decoder_only=kind != "encoder-decoder")


def generate_for_texts(model, texts: list[str], text_pair: str | None = None, max_length: int | None = None,
                       chat: bool = False, max_new_tokens: int | None = None, batch_size: int = 16,
                       **options) -> list[dict[str, Any]]:
    """`softprompt predict` for a generative adapter: {"generated", "finish_reason"} per input text, greedy
    unless `options` (those of `model.generate_text`: do_sample, temperature, top_p, seed, stop, ...) say."""
    meta = model.adapter_meta
    tok = model.backbone.tokenizer
    max_length = max_length or meta.get("max_length") or 128
    enc = encode_inputs(tok, meta.get("task"), texts, text_pair, int(max_length), model.backbone.kind, chat)
    task = _generation_task(meta.get("task"))
    new = max_new_tokens or (max_new_tokens_for(task, tok) if task is not None else 64)
    generated, reasons = generate_with_reasons(model, enc, batch_size, tok, new, **options)
    return [{"generated": g, "finish_reason": r} for g, r in zip(generated, reasons)]


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
    if has_chat_template(tokenizer):
        return render_user(tokenizer, text)
    return text + "\nAnswer:"


def encode_instructions(tokenizer, task, examples, max_length: int, template: str | None = None) -> Encoded:
    """Prompt ids, no targets. A text-to-text view gets its classification task's zero-shot prompt (natural
    question, chat template, answer prefix; only the input text is cut to fit); other instructions keep
    their end when longer than max_length (the answer cue sits there)."""
    import numpy as np

    from softprompt.train.zero_shot import fit_input

    sources, truncated = [], 0
    for ex in examples:
        if task.is_text_to_text and template is None:
            ids, cut = fit_input(labelled_task(task), tokenizer, ex, max_length)
            truncated += cut
            sources.append(ids)
            continue
        ids = tokenizer(render_instruction(tokenizer, zero_shot_instruction(task, ex, template)),
                        add_special_tokens=not has_chat_template(tokenizer))["input_ids"]
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
    predictions, reasons = generate_with_reasons(model, enc, batch_size, tok, new)
    scores = _score(task, enc.examples, predictions, with_meteor)
    if task.is_text_to_text and instruction is None:  # the whole prompt: its answer prefix matters too
        example = tok.decode(enc.sources[0]) if examples else None
    else:
        example = zero_shot_instruction(task, examples[0], instruction) if examples else None
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "max_new_tokens": new, "decoding": "greedy", "scores": scores,
            "data": report.summary(), "method": "zero-shot generation", "backbone": backbone.name,
            "chat_template": bool(getattr(tok, "chat_template", None)), "instruction_example": example,
            "outputs": _write(out_dir, task, enc.examples, predictions, scores, reasons)}


__all__ = ["DATA_TO_TEXT_INSTRUCTION", "evaluate_generation", "evaluate_run", "run_settings", "check_adapter_task",
           "eval_folder", "encode_inputs", "generate_for_texts", "evaluate_zero_shot_generation", "zero_shot_instruction",
           "encode_instructions", "render_instruction"]
