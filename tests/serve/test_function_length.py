"""The server stays made of small parts: no function in serve/ is longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SERVE = Path(__file__).resolve().parents[2] / "src" / "softprompt" / "serve"
LIMIT = 80


def function_lengths(text: str) -> list[tuple[int, int, str]]:
    """(lines from `def` to the last line of the body, first line, name) of every function and method,
    nested ones included."""
    return [(node.end_lineno - node.lineno + 1, node.lineno, node.name) for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_in_serve_is_longer_than_80_lines():
    files = sorted(SERVE.rglob("*.py"))
    assert len(files) > 10 and (SERVE / "routes").is_dir()
    long = [f"{path.relative_to(SERVE)}:{line} {name}: {n} lines"
            for path in files for n, line, name in function_lengths(path.read_text(encoding="utf-8")) if n > LIMIT]
    assert not long, f"functions in serve/ longer than {LIMIT} lines (split them):\n" + "\n".join(long)


def test_the_measure_counts_nested_functions_and_methods():
    text = "class A:\n    def m(self):\n        def inner():\n" + "\n".join(f"            x{i} = {i}" for i in range(81)) \
        + "\n        return 1\n"
    lengths = {name: n for n, _, name in function_lengths(text)}
    assert lengths == {"m": 84, "inner": 82}
