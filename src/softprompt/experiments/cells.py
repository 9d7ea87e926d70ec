"""A grid cell (one run of a spec), provenance of its result, and the grid's log."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SCHEMA = 1


@dataclass
class Cell:
    id: str
    kind: str  # "train" | "peft" | "eval" | "few-shot" | "zero-shot" | "params"
    backbone: str
    method: str | None = None  # the spec's method label
    method_config: dict[str, Any] | None = None
    soft_prompt: bool = False
    backbone_mode: str = "frozen"
    task: str | None = None  # the training task (few-shot / eval: the source task A)
    eval_task: str | None = None  # eval / few-shot / zero-shot: the task scored
    split: str | None = None  # the split scored
    seed: int | None = None
    layer: int | None = None
    train: dict[str, Any] | None = None  # TrainConfig keys (without backbone/task/method/seed/dirs)
    limit: int | None = None  # eval / zero-shot: examples scored
    needs: str | None = None  # id of the cell whose adapter this one uses
    same_labels: bool = False
    metric: str | None = None
    timing: bool = False
    params: dict[str, Any] | None = None
    max_length: int | None = None  # zero-shot
    generation: dict[str, Any] | None = None  # zero-shot on a generation task: instruction, max_new_tokens
    skip: str | None = field(default=None, compare=False)  # why it cannot run here

    def describe(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("skip")
        if d["generation"] is None:  # added later: cells without it keep their key
            d.pop("generation")
        return d

    def key(self) -> str:
        """Digest of everything that defines the cell's result (not where the data lives)."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- provenance ----------------------------------------------------------------------------------

def git_commit() -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def machine() -> dict[str, Any]:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cores": cores, "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": "cpu"}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (cell and log timestamps)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- running -------------------------------------------------------------------------------------

class Log:
    """Timestamped lines to the console (or a callback) and RESULTS_DIR/<spec>/bench.log."""

    def __init__(self, path: Path | None, echo: Callable[[str], Any] | None = print):
        self.path, self.echo = path, echo

    def __call__(self, *parts: Any) -> None:
        line = f"[{_dt.datetime.now().strftime('%H:%M:%S')}] " + " ".join(str(p) for p in parts)
        if self.echo:
            self.echo(line)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(line + "\n")
