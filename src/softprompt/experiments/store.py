"""Where a grid keeps its work: small cell files (committed) and run folders (git-ignored).

    <results>/<spec>/cells/<cell-id>.json   one finished cell: scores, config, timings, commit, machine
    <results>/<spec>/manifest.json          the spec as run and every bench invocation
    <results>/<spec>/skipped.json           cells that cannot run here, with the reason
    <runs>/<spec>/<cell-id>/run/            the cell's run folder (adapter, checkpoints, metrics.jsonl)
    <runs>/<spec>/bench.log                 plus .claims/ (one lock per cell), .failed/, .stop

Defaults: <results> = results/<profile> (cell files are committed to git), <runs> = runs/<profile>
(ignored). A cell is finished when its cell file exists, wherever it was made, so a fresh clone
with the committed cell files continues a grid. `--out DIR` puts both under DIR. The layout
before cell files (<out>/<spec>/<cell-id>/result.json) is read and copied to cell files.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

LEGACY_RESULT = "result.json"
CELLS = "cells"


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """A cell file's content: the result without bulky detail (the data reports stay in the run folder)."""
    out = dict(result)
    if isinstance(out.get("summary"), dict):
        out["summary"] = {k: v for k, v in out["summary"].items() if k != "data"}
    return out


@dataclass
class Store:
    spec: str
    results: Path  # root of the cell files, e.g. results/medium
    runs: Path  # root of the run folders, e.g. runs/medium

    def __post_init__(self):
        self.results, self.runs = Path(self.results), Path(self.runs)

    @classmethod
    def for_profile(cls, spec: str, profile: str, out=None, results=None, runs=None) -> "Store":
        if out is not None:
            return cls(spec, Path(out), Path(out))
        return cls(spec, Path(results or Path("results") / profile), Path(runs or Path("runs") / profile))

    # -- paths -----------------------------------------------------------------------------------
    @property
    def spec_dir(self) -> Path:
        return self.results / self.spec

    @property
    def cells_dir(self) -> Path:
        return self.spec_dir / CELLS

    @property
    def work_dir(self) -> Path:
        return self.runs / self.spec

    def cell_file(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def run_dir(self, cell_id: str) -> Path:
        return self.work_dir / cell_id / "run"

    def claim_path(self, name: str) -> Path:
        return self.work_dir / ".claims" / f"{name}.lock"

    # -- finished cells --------------------------------------------------------------------------
    def finished(self, cell_id: str) -> bool:
        return self.cell_file(cell_id).exists()

    def load(self) -> dict[str, dict]:
        out = {}
        for path in sorted(self.cells_dir.glob("*.json")):
            data = read_json(path)
            if isinstance(data, dict):
                out[path.stem] = data
        return out

    def write(self, result: dict[str, Any]) -> Path:
        path = self.cell_file(result["cell"])
        write_json_atomic(path, compact(result))
        return path

    def migrate_legacy(self) -> list[str]:
        """Copy results of the old layout (<dir>/<spec>/<cell>/result.json) to cell files; returns their ids."""
        moved = []
        for base in _unique([self.work_dir, self.spec_dir]):
            for path in sorted(base.glob(f"*/{LEGACY_RESULT}")):
                cell_id = path.parent.name
                data = read_json(path)
                if not isinstance(data, dict) or self.finished(cell_id):
                    continue
                run = path.parent / (data.get("run_dir") or "run")
                data["run_dir"] = str(run)
                self.write({**data, "cell": cell_id})
                moved.append(cell_id)
        return moved

    # -- failures and stop requests of the current invocation ------------------------------------
    def record_failure(self, cell_id: str, reason: str) -> None:
        write_json_atomic(self.work_dir / ".failed" / f"{cell_id}.json", {"cell": cell_id, "reason": reason})

    def failure(self, cell_id: str) -> str | None:
        data = read_json(self.work_dir / ".failed" / f"{cell_id}.json")
        return data.get("reason") if isinstance(data, dict) else None

    def failures(self) -> dict[str, str]:
        rows = [read_json(p) for p in sorted((self.work_dir / ".failed").glob("*.json"))]
        return {r["cell"]: r["reason"] for r in rows if isinstance(r, dict)}

    def request_stop(self) -> None:
        (self.work_dir / ".stop").parent.mkdir(parents=True, exist_ok=True)
        (self.work_dir / ".stop").write_text("stop\n")

    def stop_requested(self) -> bool:
        return (self.work_dir / ".stop").exists()

    def start_invocation(self) -> None:
        """Forget the failures and stop request of an earlier invocation: failed cells are tried again."""
        for path in (self.work_dir / ".failed").glob("*.json"):
            path.unlink(missing_ok=True)
        (self.work_dir / ".stop").unlink(missing_ok=True)


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def git_commit_file(path: Path, message: str, log: Callable[..., Any] | None = None, attempts: int = 30) -> bool:
    """`git add FILE && git commit -m MESSAGE -- FILE`: commits that file only (other staged changes stay staged).

    Retries while another git process holds index.lock (parallel workers commit too)."""
    path = Path(path)
    err = ""
    for _ in range(attempts):
        add = subprocess.run(["git", "add", "--", path.name], cwd=path.parent, capture_output=True, text=True)
        if add.returncode == 0:
            commit = subprocess.run(["git", "commit", "-q", "-m", message, "--", path.name], cwd=path.parent,
                                    capture_output=True, text=True)
            if commit.returncode == 0:
                return True
            err = (commit.stderr or commit.stdout).strip()
        else:
            err = add.stderr.strip()
        if "index.lock" not in err:
            break
        time.sleep(0.2 + random.random())
    if log:
        log(f"WARNING: could not commit {path}: {err}")
    return False
