"""TweetEval sentiment: <data>/tweeteval/sentiment/{val,test}_{text,labels}.txt.

Line i of *_text.txt is a tweet, line i of *_labels.txt its label 0 negative / 1 neutral /
2 positive; both files must have the same number of lines. Tweets are kept verbatim (the
trailing space of the distribution included). The training text is not distributed offline.
"""

from __future__ import annotations

from pathlib import Path

from softprompt.errors import DataError
from softprompt.settings import DATA_ENV
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import parse_label, read_lines, relative_uid
from softprompt.tasks.registry import Task

FILE_PREFIX = {"validation": "val", "test": "test"}
LABELS = {"0": 0, "1": 1, "2": 2}


def folder(root: Path) -> Path:
    return root / "tweeteval" / "sentiment"


def load(task: Task, split: str, root: Path) -> list[Example]:
    if split not in FILE_PREFIX:
        raise DataError(
            f"TweetEval sentiment {split} text is not available offline (only val/test under {folder(root)}); "
            f"unset ${DATA_ENV} / --data-dir to load it from the datasets hub (tweet_eval/sentiment)"
        )
    text_path = folder(root) / f"{FILE_PREFIX[split]}_text.txt"
    label_path = folder(root) / f"{FILE_PREFIX[split]}_labels.txt"
    texts = read_lines(text_path, what="TweetEval sentiment text")
    labels = read_lines(label_path, what="TweetEval sentiment labels")
    if len(texts) != len(labels):
        raise DataError(
            f"{text_path} has {len(texts):,} lines but {label_path} has {len(labels):,}; "
            f"expected one label line per text line"
        )
    return [
        Example(
            text,
            None,
            parse_label(label_path, index + 1, label.strip(), LABELS),
            None,
            relative_uid(text_path, root, index + 1),
        )
        for index, (text, label) in enumerate(zip(texts, labels))
    ]
