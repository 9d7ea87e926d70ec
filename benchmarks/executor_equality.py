"""Do the executors give the same cells? Compare the cell files of one grid run on several executors.

    python benchmarks/executor_equality.py local=/tmp/grid/local ray=/tmp/grid/ray slurm=/tmp/grid/slurm \
        --spec glue --out benchmarks/results/executors_quick_glue.md

Each folder is a `softprompt bench ... --out DIR` of the same spec and profile. A cell is equal when its main
score and every score of its test split are equal (bit for bit, as floats written to JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cells(folder: Path, spec: str) -> dict[str, dict]:
    return {f.stem: json.loads(f.read_text()) for f in sorted((folder / spec / "cells").glob("*.json"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="name=folder, the first is the reference")
    ap.add_argument("--spec", default="glue")
    ap.add_argument("--out", default=None, help="write the table here (Markdown)")
    args = ap.parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs)
    found = {name: cells(Path(folder), args.spec) for name, folder in runs.items()}
    ref_name, *others = list(found)
    ref = found[ref_name]
    lines = [f"# Executors: the same {args.spec} cells?", "",
             "`python benchmarks/executor_equality.py " + " ".join(args.runs) + f" --spec {args.spec}`", "",
             f"| cell | {' | '.join(found)} | equal |", "|---|" + "---|" * (len(found) + 1)]
    equal = missing = 0
    for cid in sorted(ref):
        row = [found[name].get(cid) for name in found]
        if any(r is None for r in row):
            missing += 1
            same = "missing"
        else:
            keys = [(r["score"], r.get("scores")) for r in row]
            ok = all(k == keys[0] for k in keys)
            equal += ok
            same = "yes" if ok else "NO"
        scores = ["–" if r is None else f"{r['score']:.2f}" for r in row]
        lines.append(f"| {cid} | {' | '.join(scores)} | {same} |")
    lines += ["", f"{equal} of {len(ref)} cells equal on every executor; {missing} missing on some; "
              f"{len(ref) - equal - missing} differ."]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if equal == len(ref) else 1


if __name__ == "__main__":
    sys.exit(main())
