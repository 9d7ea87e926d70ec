"""Per-example outputs of a generation task as JSON lines, written next to its scores.

One record per example:
  data-to-text (E2E)   {"id", "input", "prediction", "references"}
  text-to-text view    {"id", "input", "prediction", "label", "parsed"}   (label / parsed: class
                       indices; parsed is null when no label word occurs in the prediction)
"prediction" is the generated text. Given the decoder's finish reasons, each record also has
"finish_reason": "stop" (the model ended its text or met a stop string), "length" (max_new_tokens
reached), "cancelled" or "error".
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from softprompt.errors import DataError
from softprompt.tasks.example import Example
from softprompt.tasks.registry import Task, get_task
from softprompt.tasks.text2text import parse_label, render_input

OUTPUTS_FILE = "outputs.jsonl"
SCORES_FILE = "scores.json"


def output_records(task: Task | str, examples: Sequence[Example], predictions: Sequence[str],
                   finish_reasons: Sequence[str] | None = None) -> list[dict[str, Any]]:
    task = get_task(task)
    if len(examples) != len(predictions):
        raise DataError(f"got {len(predictions)} predictions for {len(examples)} examples; expected one per example")
    if finish_reasons is not None and len(finish_reasons) != len(predictions):
        raise DataError(f"got {len(finish_reasons)} finish reasons for {len(predictions)} predictions; expected one each")
    records = []
    for i, (example, prediction) in enumerate(zip(examples, predictions)):
        record: dict[str, Any] = {"id": example.uid, "input": render_input(task, example), "prediction": prediction}
        if task.is_text_to_text:
            record["label"] = example.label
            record["parsed"] = parse_label(task, prediction)
        else:
            record["references"] = list(example.references)
        if finish_reasons is not None:
            record["finish_reason"] = finish_reasons[i]
        records.append(record)
    return records


def write_outputs(
    folder: str | os.PathLike,
    task: Task | str,
    examples: Sequence[Example],
    predictions: Sequence[str],
    scores: dict[str, Any],
    finish_reasons: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write <folder>/outputs.jsonl (one record per example) and <folder>/scores.json; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs, scores_path = folder / OUTPUTS_FILE, folder / SCORES_FILE
    lines = [json.dumps(record, ensure_ascii=False) for record in output_records(task, examples, predictions, finish_reasons)]
    outputs.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    scores_path.write_text(json.dumps({"task": get_task(task).name, **scores}, indent=2) + "\n", encoding="utf-8")
    return outputs, scores_path
