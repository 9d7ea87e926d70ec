"""`softprompt data ...`: look at the benchmark data. `data stats` counts rows per task and split.

Counts are examples: for E2E, train has one per (MR, reference) pair and validation/test one per
MR; the notes give MRs and references per split.
"""

from __future__ import annotations

import argparse
import sys
import time

from softprompt import settings
from softprompt.errors import DataError
from softprompt.tasks import SPLITS, TASKS, get_task, load_split_with_report

HELP = "Inspect the benchmark data (row counts per task and split)."

HUB_ONLY = "hub only"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    stats = sub.add_parser(
        "stats",
        help="print a table of row counts per task and split, read from the local files",
        description="Row counts per task and split, read from the original files under the data dir "
        "(IMDB from its parsed cache after the first run).",
    )
    stats.add_argument("--data-dir", help=f"benchmark data folder (default: ${settings.DATA_ENV})")
    stats.add_argument(
        "--task", dest="tasks", action="extend", nargs="+", metavar="T", choices=list(TASKS),
        help="task(s) to count (repeatable; default: all)",
    )
    stats.add_argument("--agreement", help="Financial PhraseBank agreement file: 50, 66, 75 or all (default all)")
    stats.set_defaults(_data_run=run_stats)


def run(args: argparse.Namespace) -> int:
    return args._data_run(args)


def run_stats(args: argparse.Namespace) -> int:
    root = settings.data_dir(args.data_dir)
    if root is None:
        raise DataError(f"data stats reads the local files: pass --data-dir or set ${settings.DATA_ENV}")
    if not root.is_dir():
        raise DataError(f"data dir {root} does not exist; pass --data-dir or set ${settings.DATA_ENV}")
    started = time.perf_counter()
    rows: list[list[str]] = []
    errors: list[str] = []
    for name in args.tasks or list(TASKS):
        task = get_task(name, agreement=args.agreement if TASKS[name].benchmark == "fpb" else None)
        cells: list[str] = []
        dropped: dict[str, list[str]] = {}  # reason -> ["train 1,113", ...]
        by_mr: list[str] = []  # data-to-text: "train 438 MRs / 3,777 references"
        for split in SPLITS:
            if split not in task.splits:
                cells.append("-")
            elif split not in task.offline_splits:
                cells.append(HUB_ONLY)
            else:
                try:
                    examples, report = load_split_with_report(task, split, root, labeled=False)
                except DataError as err:
                    cells.append("error")
                    errors.append(str(err))
                    continue
                cells.append(f"{len(examples):,}" + ("*" if split in task.unlabeled_splits else ""))
                if task.is_generation and not task.label_names:
                    by_mr.append(mr_counts(split, examples))
                for reason, count in report.dropped.items():
                    dropped.setdefault(reason, []).append(f"{split} {count:,}")
        notes = [f"agreement {task.agreement}"] if task.agreement else []
        if task.is_text_to_text:
            notes.append(f"text-to-text, targets {'/'.join(task.verbalizer)}")
        if by_mr:
            notes.append("by MR: " + ", ".join(by_mr))
        notes += [f"dropped {', '.join(counts)} ({reason})" for reason, counts in dropped.items()]
        rows.append([task.name, *cells, "; ".join(notes)])

    print(format_table(["task", *SPLITS, "notes"], rows))
    print(f"* unlabeled (hidden test labels).  data dir: {root}  ({time.perf_counter() - started:.1f}s)")
    for message in errors:
        print(f"softprompt data stats: error: {message}", file=sys.stderr)
    return 1 if errors else 0


def mr_counts(split: str, examples: list) -> str:
    """'train 438 MRs / 3,777 references': distinct MRs (Example.group) and references of one split."""
    if split == "train":
        references = len(examples)  # one example per (MR, reference) pair
    else:
        references = sum(len(example.references) for example in examples)
    return f"{split} {len({example.group for example in examples}):,} MRs / {references:,} references"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned table: text columns left-aligned, count columns right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = [0 < i < len(header) - 1 for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
