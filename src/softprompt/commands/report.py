"""softprompt report: paper-style tables and plots from a bench results folder.

Also `python -m softprompt.commands.report ...` (same arguments).
"""

from __future__ import annotations

import sys

HELP = "write Markdown tables (mean ± std, best soft prompt in bold) and index.html with plots from bench results"


def add_arguments(parser) -> None:
    parser.add_argument("results_dir", help="the cell files' folder, e.g. results/medium (or one spec's folder in it, or a bench --out folder)")
    parser.add_argument("--out", default=None, help="report folder (default RESULTS_DIR/report)")


def run(args) -> int:
    from softprompt.experiments.report import build_report

    prog = getattr(args, "_prog", None) or "softprompt report"
    command = prog + " " + " ".join(getattr(args, "_argv", None) or sys.argv[2:])
    build_report(args.results_dir, args.out, command=command)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python -m softprompt.commands.report ...` (same arguments as `softprompt report`)."""
    from softprompt.commands._common import module_main

    return module_main("report", HELP, add_arguments, run, argv, prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m softprompt.commands.report"))
