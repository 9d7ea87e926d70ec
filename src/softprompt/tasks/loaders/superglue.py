"""SuperGLUE JSON-lines files as distributed: <data>/superglue/<Task>/{train,val,test}.jsonl.

One JSON object per line with SuperGLUE's field names; test files carry no labels.
How each task becomes (text, text_pair) -- the same wording is used for the hub route:
  boolq          (passage, question)
  cb, rte        (premise, hypothesis); labels entailment/contradiction/neutral resp.
                 entailment/not_entailment
  copa           (premise + " What was the cause?" | " What was the effect?",
                  choice1 (final period dropped) + " or " + choice2 (a leading "The", "It",
                  "She", ... lowercased)); label 0 = choice1, 1 = choice2
  multirc        one row per answer option: (paragraph, question + " " + answer);
                 group = "<paragraph idx>-<question idx>" for F1a / exact match
  wic            (sentence1, sentence2 + ' Is "<word>" used in the same sense in both sentences?')
  wsc            (text, 'Does "<span2>" refer to "<span1>"?')
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from softprompt.errors import DataError
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import read_lines, relative_uid
from softprompt.tasks.registry import Task

FOLDERS = {
    "boolq": "BoolQ",
    "cb": "CB",
    "copa": "COPA",
    "multirc": "MultiRC",
    "wic": "WiC",
    "superglue-rte": "RTE",
    "wsc": "WSC",
}
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
STRING_LABELS = {
    "cb": {"entailment": 0, "contradiction": 1, "neutral": 2},
    "superglue-rte": {"entailment": 0, "not_entailment": 1},
}


# --- text formatting shared with the hub route ---------------------------------------------

def copa_text(premise: str, question: str) -> str:
    return f"{premise} What was the {question}?"


# Sentence-initial words that are lowercased when a choice continues "... or <choice2>".
_LOWERCASE_STARTS = frozenset(
    "The A An It He She They We You His Her My Their Its Our Your This That These Those There Someone".split()
)


def copa_pair(choice1: str, choice2: str) -> str:
    """'The sun was rising or the grass was cut.': one question-like line offering both choices."""
    first_word = choice2.split(" ", 1)[0]
    if first_word in _LOWERCASE_STARTS:
        choice2 = choice2[0].lower() + choice2[1:]
    return f"{choice1.rstrip().rstrip('.')} or {choice2}"


def multirc_pair(question: str, answer: str) -> str:
    return f"{question} {answer}"


def wic_pair(sentence2: str, word: str) -> str:
    return f'{sentence2} Is "{word}" used in the same sense in both sentences?'


def wsc_pair(span1: str, span2: str) -> str:
    return f'Does "{span2}" refer to "{span1}"?'


# --- reading --------------------------------------------------------------------------------

class _Row:
    """One JSON object with field accessors that fail with file, line and field path."""

    def __init__(self, path: Path, line: int, data: Any, prefix: str = ""):
        self.path, self.line, self.data, self.prefix = path, line, data, prefix

    def get(self, name: str, kind: type | tuple[type, ...] = str) -> Any:
        where = f"{self.prefix}{name}"
        if name not in self.data:
            raise DataError(f"{self.path} line {self.line}: missing field {where!r}; expected it in every record")
        value = self.data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise DataError(
                f"{self.path} line {self.line}: field {where!r} should be {names}, got {type(value).__name__} {value!r:.60}"
            )
        return value

    def child(self, value: Any, prefix: str) -> _Row:
        if not isinstance(value, dict):
            raise DataError(f"{self.path} line {self.line}: field {prefix.rstrip('.')!r} should be an object")
        return _Row(self.path, self.line, value, prefix)

    def bool_label(self) -> int:
        if "label" not in self.data:
            self.get("label")  # raises the missing-field error
        value = self.data["label"]
        if not isinstance(value, bool):
            raise DataError(
                f"{self.path} line {self.line}: unknown {self.prefix}label {value!r}; expected true or false"
            )
        return int(value)

    def mapped_label(self, mapping: dict[Any, int]) -> int:
        value = self.get("label", (str, int))
        if isinstance(value, bool) or value not in mapping:
            accepted = ", ".join(repr(key) for key in mapping)
            raise DataError(
                f"{self.path} line {self.line}: unknown {self.prefix}label {value!r}; expected one of {accepted}"
            )
        return mapping[value]


def iter_jsonl(path: Path, what: str) -> Iterator[_Row]:
    for index, text in enumerate(read_lines(path, what=what)):
        line = index + 1
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path} line {line}: invalid JSON ({err.msg} at column {err.colno}); expected one JSON object per line"
            ) from None
        if not isinstance(data, dict):
            raise DataError(f"{path} line {line}: expected a JSON object, got {type(data).__name__}")
        yield _Row(path, line, data)


def split_path(task: Task, split: str, root: Path) -> Path:
    return root / "superglue" / FOLDERS[task.name] / SPLIT_FILES[split]


def load(task: Task, split: str, root: Path) -> list[Example]:
    """Read one SuperGLUE split; the test split comes back with label=None."""
    path = split_path(task, split, root)
    labeled = split != "test"
    what = f"SuperGLUE {FOLDERS[task.name]} {split}"
    examples: list[Example] = []
    for row in iter_jsonl(path, what):
        uid = relative_uid(path, root, row.line)
        if task.name == "multirc":
            examples.extend(_multirc_rows(row, uid, labeled))
        else:
            examples.append(_example(task.name, row, uid, labeled))
    return examples


def _example(name: str, row: _Row, uid: str, labeled: bool) -> Example:
    label: int | None = None
    if name == "boolq":
        text, pair = row.get("passage"), row.get("question")
        label = row.bool_label() if labeled else None
    elif name in STRING_LABELS:  # cb, superglue-rte
        text, pair = row.get("premise"), row.get("hypothesis")
        label = row.mapped_label(STRING_LABELS[name]) if labeled else None
    elif name == "copa":
        question = row.get("question")
        if question not in ("cause", "effect"):
            raise DataError(f"{row.path} line {row.line}: unknown question {question!r}; expected 'cause' or 'effect'")
        text = copa_text(row.get("premise"), question)
        pair = copa_pair(row.get("choice1"), row.get("choice2"))
        label = row.mapped_label({0: 0, 1: 1}) if labeled else None
    elif name == "wic":
        text = row.get("sentence1")
        pair = wic_pair(row.get("sentence2"), row.get("word"))
        label = row.bool_label() if labeled else None
    elif name == "wsc":
        target = row.child(row.get("target", dict), "target.")
        text = row.get("text")
        pair = wsc_pair(target.get("span1_text"), target.get("span2_text"))
        label = row.bool_label() if labeled else None
    else:  # pragma: no cover - registry and FOLDERS are kept in step
        raise DataError(f"no SuperGLUE reader for task {name!r}")
    return Example(text, pair, label, None, uid)


def _multirc_rows(row: _Row, uid: str, labeled: bool) -> Iterator[Example]:
    paragraph_idx = row.get("idx", int)
    passage = row.child(row.get("passage", dict), "passage.")
    paragraph = passage.get("text")
    questions = passage.get("questions", list)
    for q_pos, question_data in enumerate(questions):
        question = passage.child(question_data, f"passage.questions[{q_pos}].")
        question_text = question.get("question")
        group = f"{paragraph_idx}-{question.get('idx', int)}"
        for a_pos, answer_data in enumerate(question.get("answers", list)):
            answer = question.child(answer_data, f"passage.questions[{q_pos}].answers[{a_pos}].")
            label = answer.mapped_label({0: 0, 1: 1}) if labeled else None
            yield Example(
                paragraph, multirc_pair(question_text, answer.get("text")), label, group, f"{uid}:q{q_pos}a{a_pos}"
            )
