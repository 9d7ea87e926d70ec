"""Shared file reading: missing-file errors, strict decoding, line and TSV iteration.

Every error is a DataError that names the file, the 1-based line and what was expected.
Lines are split on "\\n" only (never str.splitlines, which also breaks on \\x0b, \\x1c, U+2028
that occur inside real sentences); one final empty line after a trailing newline is not a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from softprompt.errors import DataError
from softprompt.settings import DATA_ENV

BOM = "\ufeff"


def require_file(path: Path, what: str) -> Path:
    """The path if it is a file, else a DataError with the full expected path and how to fix it."""
    if not path.is_file():
        raise DataError(
            f"missing {what} file: expected {path} "
            f"(set ${DATA_ENV} or pass --data-dir to the folder that holds the benchmark data)"
        )
    return path


def decode(path: Path, raw: bytes, encoding: str) -> str:
    """Decode strictly; on failure name the line and byte offset of the bad bytes."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end].hex(" ")
        raise DataError(
            f"{path} line {line}: cannot decode byte(s) {bad} at column {column}; expected {encoding} text"
        ) from None


def read_lines(path: Path, encoding: str = "utf-8", what: str = "data") -> list[str]:
    """All lines of a text file, decoded strictly, without terminators (\\r\\n tolerated)."""
    raw = require_file(path, what).read_bytes()
    text = decode(path, raw, encoding)
    if text.startswith(BOM):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_tsv(
    path: Path,
    columns: Sequence[str],
    header: bool,
    what: str,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, cells) for each data row of a tab-separated file.

    header=True: line 1 must equal `columns` exactly. Every row must have len(columns) cells.
    No quoting is interpreted: GLUE files contain bare quote characters.
    """
    lines = read_lines(path, what=what)
    expected = "\t".join(columns)
    start = 0
    if header:
        if not lines or lines[0] != expected:
            got = lines[0] if lines else "an empty file"
            raise DataError(
                f"{path} line 1: expected header {expected!r} ({len(columns)} tab-separated columns), got {got!r}"
            )
        start = 1
    for index in range(start, len(lines)):
        cells = lines[index].split("\t")
        if len(cells) != len(columns):
            raise DataError(
                f"{path} line {index + 1}: expected {len(columns)} tab-separated columns "
                f"({', '.join(columns)}), got {len(cells)}"
            )
        yield index + 1, cells


def parse_label(path: Path, line: int, value: str, mapping: dict[str, int], column: str = "label") -> int:
    """Map a label string to its class index, or a DataError listing the accepted strings."""
    try:
        return mapping[value]
    except KeyError:
        accepted = ", ".join(repr(key) for key in mapping)
        raise DataError(f"{path} line {line}: unknown {column} {value!r}; expected one of {accepted}") from None


def relative_uid(path: Path, root: Path, line: int) -> str:
    """'glue/SST-2/train.tsv:17' style id, relative to the data dir when possible."""
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = path.as_posix()
    return f"{name}:{line}"
