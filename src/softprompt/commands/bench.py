"""softprompt bench: run an experiment spec (experiments/*.yaml) as a resumable grid of cells.

Also `python -m softprompt.commands.bench ...` (same arguments).
"""

from __future__ import annotations

import sys

HELP = "run an experiment spec as a resumable grid (one committed cell file per finished cell)"


def add_arguments(parser) -> None:
    parser.add_argument("spec", nargs="+", help="spec file(s), e.g. experiments/glue.yaml")
    parser.add_argument("--profile", default="quick",
                        help="quick (subsampled, minutes), medium (a CPU afternoon, 3 seeds) or full (the papers')")
    parser.add_argument("--results", default=None,
                        help="cell files: RESULTS/<spec>/cells/<cell>.json (default results/<profile>; commit them)")
    parser.add_argument("--runs", default=None,
                        help="run folders with weights: RUNS/<spec>/<cell>/run (default runs/<profile>, git-ignored)")
    parser.add_argument("--out", default=None, help="both cell files and run folders under OUT (instead of the two above)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes with one thread each, each taking the next unfinished cell "
                             "(on GPUs: one GPU each)")
    parser.add_argument("--commit", action="store_true",
                        help="git add + commit every cell file as soon as it is written (only that file)")
    parser.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"],
                        help="for every training cell (e.g. bf16 on a GPU); not part of the cells' identity")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder (default $SOFTPROMPT_DATA, else the hub)")
    parser.add_argument("--only", default=None, help="comma-separated globs over cell ids (dependencies are added)")
    parser.add_argument("--list", action="store_true", help="print the cells and their state, run nothing")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep ckpt-* folders of finished cells")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    add_executor_arguments(parser)


def add_executor_arguments(parser) -> None:
    """--executor and its options; a value not given comes from the spec's `executors:` block, else its default."""
    group = parser.add_argument_group(
        "executors", "where the cells run: local (this machine's pool, --workers), ray (a Ray task per cell; "
        "pip install 'softprompt[ray]') or slurm (a Slurm job per cell through submitit, in job arrays; "
        "pip install 'softprompt[slurm]'). Options not given here come from the spec's `executors:` block")
    group.add_argument("--executor", default="local", choices=["local", "ray", "slurm"],
                       help="local: --workers processes here; ray: a Ray task per cell; slurm: a Slurm job per cell")
    group.add_argument("--address", default=None, metavar="ADDRESS",
                       help="ray: address of a running cluster (auto, ray://HOST:10001); default: start a local "
                            "Ray runtime for this grid")
    group.add_argument("--ray-cpus", dest="local_cpus", type=int, default=None, metavar="N",
                       help="ray: CPUs of the local runtime started here (default: every core)")
    group.add_argument("--cpus-per-cell", dest="cpus", type=float, default=None, metavar="N",
                       help="ray/slurm: CPUs of each cell, also its torch threads (default: 1)")
    group.add_argument("--gpus-per-cell", dest="gpus", type=float, default=None, metavar="N",
                       help="ray/slurm: GPUs of each cell (default: 0)")
    group.add_argument("--retries", type=int, default=None, metavar="N",
                       help="ray/slurm: times a cell whose process died is run again (default: 2)")
    group.add_argument("--slurm-local", dest="local", action="store_const", const=True, default=None,
                       help="slurm: run the jobs through submitit's local executor, here, without a cluster "
                            "(the same code path; default: off)")
    group.add_argument("--partition", default=None, help="slurm: partition (default: the cluster's default)")
    group.add_argument("--time-min", dest="time_min", type=int, default=None, metavar="MIN",
                       help="slurm: time limit of each cell's job in minutes (default: 60)")
    group.add_argument("--mem-gb", dest="mem_gb", type=float, default=None, metavar="GB",
                       help="slurm: memory of each cell's job (default: the partition's)")
    group.add_argument("--parallel", type=int, default=None, metavar="N",
                       help="slurm: cells running at once (array parallelism; default: Slurm's, or cores / CPUs "
                            "per cell with --slurm-local)")
    group.add_argument("--slurm-folder", dest="folder", default=None, metavar="DIR",
                       help="slurm: submitit's job files and logs (default: RUNS/<spec>/submitit)")


EXECUTOR_FLAGS = ("address", "local_cpus", "cpus", "gpus", "retries", "local", "partition", "time_min", "mem_gb",
                  "parallel", "folder")


def _executor_flags(args) -> dict:
    """Executor options given as flags (None: not given); whole CPU/GPU counts as ints (Slurm takes no fractions)."""
    flags = {name: getattr(args, name, None) for name in EXECUTOR_FLAGS}
    for key in ("cpus", "gpus"):
        if flags[key] is not None and float(flags[key]).is_integer():
            flags[key] = int(flags[key])
    return flags


def _list(spec_path: str, args) -> None:
    from softprompt.experiments.grid import expand, select
    from softprompt.experiments.spec import load_spec
    from softprompt.experiments.store import Store

    spec = load_spec(spec_path).for_profile(args.profile)
    store = Store.for_profile(spec.name, args.profile, args.out, args.results, args.runs)
    cells = select(expand(spec, None, args.data_dir), args.only)
    print(f"{spec.name} (profile {args.profile}): {len(cells)} cells in {store.cells_dir}")
    for cell in cells:
        state = "done" if store.finished(cell.id) else ("skip" if cell.skip else "todo")
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
        res = run_grid(spec_path, args.profile, args.out, args.data_dir, args.only,
                       keep_checkpoints=args.keep_checkpoints, fail_fast=args.fail_fast, command=command,
                       results=args.results, runs=args.runs, workers=args.workers, commit=args.commit,
                       mixed_precision=args.mixed_precision, executor=args.executor,
                       executor_flags=_executor_flags(args))
        if res["failed"]:
            code = 1
    return code


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python -m softprompt.commands.bench ...` (same arguments as `softprompt bench`)."""
    from softprompt.commands._common import module_main

    return module_main("bench", HELP, add_arguments, run, argv, prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m softprompt.commands.bench"))
