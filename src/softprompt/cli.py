"""`softprompt` command line: one entry, each subcommand lives in softprompt.commands.<name>.

A command module defines `HELP`, `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from softprompt.commands.reference import ReferenceHelpFormatter
from softprompt.errors import SoftPromptError

# subcommand name -> module under softprompt.commands
COMMANDS: dict[str, str] = {
    "data": "data",
    "train": "train",
    "eval": "eval",
    "predict": "predict",
    "params": "params",
    "demo": "demo",
    "models": "models",
    "zero-shot": "zeroshot",
    "serve": "serve",
    "explain": "explain",
    "tune": "tune",
    "bench": "bench",
    "report": "report",
    "export": "export",
    "import-peft": "import_peft",
    "mpt-distill": "mpt_distill",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softprompt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"softprompt.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=ReferenceHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SoftPromptError as err:
        print(f"softprompt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
