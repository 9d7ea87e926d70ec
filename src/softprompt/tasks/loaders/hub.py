"""The datasets-hub route, used when no data dir is set (the only route for MNLI, QQP,
QNLI train, TweetEval train and the official E2E splits).

`datasets.load_dataset(path, config, split=...)` rows are mapped to the same Examples the file
loaders produce: same label order, same text formatting (see loaders/superglue.py), same FPB
split. Hub test splits mark missing labels with -1; they become label=None. E2E (e2e_nlg,
columns meaning_representation / human_reference, no label) goes through loaders/e2e.py: task
"e2e" cuts the hub validation split (the development set) by MR exactly as offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from softprompt.errors import DataError
from softprompt.settings import DATA_ENV
from softprompt.tasks.example import Example
from softprompt.tasks.loaders import e2e, fpb, superglue
from softprompt.tasks.registry import Task

Row = dict[str, Any]
# row -> (text, text_pair, group)
Formatter = Callable[[Row], tuple[str, str | None, str | None]]


def _single(column: str) -> tuple[tuple[str, ...], Formatter]:
    return (column,), lambda row: (row[column], None, None)


def _pair(first: str, second: str) -> tuple[tuple[str, ...], Formatter]:
    return (first, second), lambda row: (row[first], row[second], None)


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    columns: tuple[str, ...]  # needed besides "label"
    format: Formatter
    splits: dict[str, str] | None = None  # our split -> hub split; None = same names
    label_column: str | None = "label"  # None: a generation dataset (targets come from `columns`)


_MNLI_SPLITS = {
    "train": "train",
    "validation": "validation_matched",
    "test": "test_matched",
    "validation_mismatched": "validation_mismatched",
    "test_mismatched": "test_mismatched",
}

_E2E = _pair("meaning_representation", "human_reference")

SOURCES: dict[str, HubSource] = {
    "sst2": HubSource("glue", "sst2", *_single("sentence")),
    "cola": HubSource("glue", "cola", *_single("sentence")),
    "mrpc": HubSource("glue", "mrpc", *_pair("sentence1", "sentence2")),
    "rte": HubSource("glue", "rte", *_pair("sentence1", "sentence2")),
    "wnli": HubSource("glue", "wnli", *_pair("sentence1", "sentence2")),
    "stsb": HubSource("glue", "stsb", *_pair("sentence1", "sentence2")),
    "qnli": HubSource("glue", "qnli", *_pair("question", "sentence")),
    "mnli": HubSource("glue", "mnli", *_pair("premise", "hypothesis"), splits=_MNLI_SPLITS),
    "qqp": HubSource("glue", "qqp", *_pair("question1", "question2")),
    "boolq": HubSource("super_glue", "boolq", *_pair("passage", "question")),
    "cb": HubSource("super_glue", "cb", *_pair("premise", "hypothesis")),
    "superglue-rte": HubSource("super_glue", "rte", *_pair("premise", "hypothesis")),
    "copa": HubSource(
        "super_glue", "copa", ("premise", "question", "choice1", "choice2"),
        lambda r: (superglue.copa_text(r["premise"], r["question"]), superglue.copa_pair(r["choice1"], r["choice2"]), None),
    ),
    "multirc": HubSource(
        "super_glue", "multirc", ("paragraph", "question", "answer", "idx"),
        lambda r: (
            r["paragraph"],
            superglue.multirc_pair(r["question"], r["answer"]),
            f"{r['idx']['paragraph']}-{r['idx']['question']}",
        ),
    ),
    "wic": HubSource(
        "super_glue", "wic", ("sentence1", "sentence2", "word"),
        lambda r: (r["sentence1"], superglue.wic_pair(r["sentence2"], r["word"]), None),
    ),
    "wsc": HubSource(
        "super_glue", "wsc.fixed", ("text", "span1_text", "span2_text"),
        lambda r: (r["text"], superglue.wsc_pair(r["span1_text"], r["span2_text"]), None),
    ),
    "imdb": HubSource("imdb", None, *_single("text")),
    # FPB has one hub split ("train" = every sentence); fpb.split_indices cuts it as offline.
    "fpb": HubSource("financial_phrasebank", "sentences_allagree", *_single("sentence")),
    "tweeteval": HubSource("tweet_eval", "sentiment", *_single("text")),
    # E2E: "e2e" re-splits the development set (hub "validation") by MR; "e2e-official" is as published.
    "e2e": HubSource("e2e_nlg", None, *_E2E, splits=dict.fromkeys(("train", "validation", "test"), "validation"),
                     label_column=None),
    "e2e-official": HubSource("e2e_nlg", None, *_E2E, label_column=None),
}


def source_for(task: Task) -> HubSource:
    try:
        source = SOURCES[task.name]
    except KeyError:
        raise DataError(f"task {task.name!r} has no datasets-hub source") from None
    if task.name == "fpb":
        source = HubSource(source.path, f"sentences_{task.agreement or 'all'}agree", source.columns, source.format)
    return source


def hub_id(source: HubSource) -> str:
    return source.path if source.config is None else f"{source.path}/{source.config}"


def fetch(source: HubSource, hub_split: str) -> dict[str, list]:
    """Columns of one hub split (label included); DataError if the hub cannot provide it."""
    import datasets  # heavy import, only on this route

    try:
        dataset = datasets.load_dataset(source.path, source.config, split=hub_split)
    except Exception as err:  # network, missing config, ... all mean "not loadable here"
        raise DataError(
            f"cannot load {hub_id(source)} split {hub_split!r} from the datasets hub ({type(err).__name__}: {err}); "
            f"set ${DATA_ENV} or pass --data-dir to read the local benchmark files instead"
        ) from None
    wanted = source.columns + ((source.label_column,) if source.label_column else ())
    missing = [name for name in wanted if name not in dataset.column_names]
    if missing:
        raise DataError(
            f"hub dataset {hub_id(source)} split {hub_split!r} lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(wanted)}, got {', '.join(dataset.column_names)}"
        )
    return dataset.select_columns(list(wanted)).to_dict()


def load(task: Task, split: str) -> list[Example]:
    source = source_for(task)
    hub_split = (source.splits or {}).get(split, split)
    if task.name == "fpb":
        hub_split = "train"
    columns = fetch(source, hub_split)
    if task.benchmark == "e2e":
        return _e2e_examples(task, source, hub_split, split, columns)
    examples = _to_examples(task, source, hub_split, columns)
    if task.name == "fpb":
        examples = fpb.select_split(examples, split)
    return examples


def _to_examples(task: Task, source: HubSource, hub_split: str, columns: dict[str, list]) -> list[Example]:
    where = f"hub dataset {hub_id(source)} split {hub_split!r}"
    names = list(columns)
    examples = []
    for index, values in enumerate(zip(*columns.values())):
        row = dict(zip(names, values))
        text, pair, group = source.format(row)
        label = _label(task, row["label"], f"{where} row {index}")
        examples.append(Example(text, pair, label, group, f"{hub_id(source)}/{hub_split}:{index}"))
    return examples


def _e2e_examples(task: Task, source: HubSource, hub_split: str, split: str, columns: dict[str, list]) -> list[Example]:
    where = f"hub dataset {hub_id(source)} split {hub_split!r}"
    mrs, refs = (columns[name] for name in source.columns)
    rows = [
        e2e.check_row(mr, ref, f"{hub_id(source)}/{hub_split}:{index}", f"{where} row {index}")
        for index, (mr, ref) in enumerate(zip(mrs, refs))
    ]
    if task.name == "e2e":
        return e2e.select_split(rows, split)
    return e2e.to_examples(e2e.group_rows(rows), split)


def _label(task: Task, value: Any, where: str) -> int | float | None:
    if value is None or value == -1:
        return None  # hub convention for hidden test labels (-1, or -1.0 for STS-B)
    if task.is_regression:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: expected a numeric score, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < task.num_labels:
        raise DataError(f"{where}: unknown label {value!r}; expected 0..{task.num_labels - 1} or -1 (unlabeled)")
    return value
