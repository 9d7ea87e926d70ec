"""Text-to-text helpers: the model input of a generation task, parsing answers back to labels,
and scoring a list of generated texts (label tasks by parsed label, E2E by generation metrics).

    text = render_input(task, example)              # e.g. "Sentence: a fine film\\nSentiment:"
    label = parse_label("sst2-t2t", " Positive!")   # 1; None when no label word occurs
    scores = score_predictions(task, examples, generated_texts)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from softprompt.errors import ConfigError, DataError
from softprompt.tasks.example import Example
from softprompt.tasks.registry import Task, get_task

UNPARSEABLE = -1  # stands for a None parse in label arrays: wrong for every gold label


def render_input(task: Task | str, example: Example) -> str:
    """The model input: task.input_template filled with the example's stripped text / text_pair."""
    task = get_task(task)
    try:
        return task.input_template.format(text=example.text.strip(), text_pair=(example.text_pair or "").strip())
    except (KeyError, IndexError) as err:
        raise ConfigError(
            f"task {task.name!r}: input_template {task.input_template!r} uses {err}; expected only {{text}} and {{text_pair}}"
        ) from None


@lru_cache(maxsize=None)
def _label_word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a label word that extends another wins at the same position.
    alternatives = sorted({w.casefold() for w in words}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in alternatives) + r")(?!\w)")


def parse_label(task: Task | str, generated: str) -> int | None:
    """Index of the first label word (task.verbalizer) occurring as a whole word in the stripped,
    casefolded text ("Positive." -> positive, "not so positive" -> positive); None if none occurs."""
    task = get_task(task)
    if not task.verbalizer:
        raise ConfigError(f"task {task.name!r} has no label words to parse generated text into")
    match = _label_word_pattern(task.verbalizer).search(generated.strip().casefold())
    if match is None:
        return None
    return [w.casefold() for w in task.verbalizer].index(match.group(1))


def label_scores_from_text(task: Task | str, predictions: Sequence[str], gold_labels: Sequence[int]) -> dict[str, Any]:
    """accuracy and macro_f1 in percent over parsed answers, unparseable = how many parsed to None.

    An unparseable answer is wrong: it counts against accuracy and as a missed example of its gold
    class in macro-F1 (averaged over the classes in gold or parsed answers, as metrics.macro_f1).
    """
    task = get_task(task)
    if len(predictions) != len(gold_labels):
        raise DataError(f"got {len(predictions)} predictions for {len(gold_labels)} labels; expected one per example")
    if any(label is None for label in gold_labels):
        raise DataError("labels contain None (an unlabeled split?); expected a gold label for every example")
    parsed = [parse_label(task, text) for text in predictions]
    p = np.array([UNPARSEABLE if label is None else label for label in parsed], dtype=np.int64)
    y = np.asarray(gold_labels, dtype=np.int64)
    f1s = []
    for c in sorted((set(y.tolist()) | set(p.tolist())) - {UNPARSEABLE}):
        tp = np.sum((p == c) & (y == c))
        denominator = np.sum(p == c) + np.sum(y == c)  # 2tp + fp + fn
        f1s.append(2 * tp / denominator if denominator else 0.0)
    out: dict[str, Any] = {
        "accuracy": 100 * float(np.mean(p == y)) if len(y) else 0.0,
        "macro_f1": 100 * float(np.mean(f1s)) if f1s else 0.0,
        "unparseable": int(np.sum(p == UNPARSEABLE)),
        "n": len(y),
    }
    out["main"] = out[task.metric] if task.metric in out else out["accuracy"]
    return out


def score_predictions(
    task: Task | str, examples: Sequence[Example], predictions: Sequence[str], with_meteor: bool = True
) -> dict[str, Any]:
    """Scores of generated texts: label_scores_from_text for a text-to-text view, else
    generation_scores against each example's references."""
    task = get_task(task)
    if not task.is_generation:
        raise ConfigError(f"task {task.name!r} is a {task.kind} task; generated text is scored for generation tasks only")
    if task.is_text_to_text:
        return label_scores_from_text(task, predictions, [e.label for e in examples])  # type: ignore[misc]
    from softprompt.tasks.generation_metrics import generation_scores

    return generation_scores(predictions, [list(e.references) for e in examples], with_meteor=with_meteor)
