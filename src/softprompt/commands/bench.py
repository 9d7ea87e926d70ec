"""softprompt bench: run an experiment spec (experiments/*.yaml) as a resumable grid of cells."""

from __future__ import annotations

import sys

HELP = "run an experiment spec as a resumable grid (one result.json per finished cell)"


def add_arguments(parser) -> None:
    parser.add_argument("spec", nargs="+", help="spec file(s), e.g. experiments/glue.yaml")
    parser.add_argument("--profile", default="quick", help="quick (subsampled, minutes) or full (the papers' protocol)")
    parser.add_argument("--out", default="runs/bench", help="results folder; each spec writes RESULTS_DIR/<spec>/")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder (default $SOFTPROMPT_DATA, else the hub)")
    parser.add_argument("--only", default=None, help="comma-separated globs over cell ids (dependencies are added)")
    parser.add_argument("--list", action="store_true", help="print the cells and their state, run nothing")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep ckpt-* folders of finished cells")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")


def _list(spec_path: str, args) -> None:
    from pathlib import Path

    from softprompt.experiments.grid import RESULT, expand, select
    from softprompt.experiments.spec import load_spec

    spec = load_spec(spec_path).for_profile(args.profile)
    cells = select(expand(spec, None, args.data_dir), args.only)
    print(f"{spec.name} (profile {args.profile}): {len(cells)} cells")
    for cell in cells:
        state = "done" if (Path(args.out) / spec.name / cell.id / RESULT).exists() else (
            "skip" if cell.skip else "todo")
        print(f"  {state:<5}{cell.kind:<10}{cell.id}" + (f"  ({cell.skip})" if cell.skip else ""))


def run(args) -> int:
    from softprompt.experiments.grid import run_grid

    prog = getattr(args, "_prog", None) or "softprompt bench"
    command = prog + " " + " ".join(getattr(args, "_argv", None) or sys.argv[2:])
    code = 0
    for spec_path in args.spec:
        if args.list:
            _list(spec_path, args)
            continue
        res = run_grid(spec_path, args.profile, args.out, args.data_dir, args.only, keep_checkpoints=args.keep_checkpoints,
                       fail_fast=args.fail_fast, command=command)
        if res["failed"]:
            code = 1
    return code


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python -m softprompt.experiments.grid ...` (same arguments as `softprompt bench`)."""
    from softprompt.commands._common import module_main

    return module_main("bench", HELP, add_arguments, run, argv, prog)
