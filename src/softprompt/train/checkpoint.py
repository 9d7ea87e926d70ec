"""Atomic, checksummed training checkpoints (safetensors + JSON; nothing is unpickled).

A checkpoint is a folder `ckpt-<step>` holding trainable.safetensors, optimizer.safetensors,
state.json and manifest.json (sha256 of each file). It is written into a temporary folder
and renamed into place, so a kill or a failed write leaves the previous one intact; a
folder whose manifest does not verify is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FILES = ("trainable.safetensors", "optimizer.safetensors", "state.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    """Split optimizer state into tensors (by parameter name) and JSON-able group settings."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{names[pid]}::{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: dict, names: dict[int, str]) -> None:
    by_name = {v: k for k, v in names.items()}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        pname, field = key.split("::", 1)
        state.setdefault(by_name[pname], {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def save_checkpoint(run_dir: Path, step: int, trainable: dict, optim_tensors: dict, state: dict, keep: int) -> Path:
    run_dir = Path(run_dir)
    final = run_dir / f"ckpt-{step:08d}"
    tmp = run_dir / f".ckpt-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / FILES[0]))
        save_file({k: v.detach().contiguous().cpu() for k, v in optim_tensors.items()}, str(tmp / FILES[1]))
        (tmp / FILES[2]).write_text(json.dumps(state))
        manifest = {name: _sha256(tmp / name) for name in FILES}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        _fsync_dir(tmp)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        _discard(old)
    for stale in run_dir.glob(".ckpt-*"):  # left by a kill during an earlier write or deletion
        shutil.rmtree(stale, ignore_errors=True)
    return final


def drop_all(run_dir: Path) -> None:
    for ckpt in list_checkpoints(run_dir):
        _discard(ckpt)


def _discard(ckpt: Path) -> None:
    """Hide a checkpoint by one rename, then delete it: a kill mid-delete never leaves a broken visible one."""
    hidden = ckpt.with_name(f".{ckpt.name}.discarded")
    shutil.rmtree(hidden, ignore_errors=True)
    os.replace(ckpt, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for name in os.listdir(path):
        with open(path / name, "rb") as fh:
            os.fsync(fh.fileno())


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in Path(run_dir).glob("ckpt-*") if p.is_dir())


def verify(ckpt: Path) -> bool:
    try:
        manifest = json.loads((ckpt / "manifest.json").read_text())
        return all(_sha256(ckpt / name) == manifest[name] for name in FILES)
    except (OSError, ValueError, KeyError):
        return False


def latest_valid(run_dir: Path) -> Path | None:
    """The newest checkpoint whose files match their checksums."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        if verify(ckpt):
            return ckpt
    return None


def load_checkpoint(ckpt: Path) -> tuple[dict, dict, dict]:
    return (
        load_file(str(ckpt / FILES[0])),
        load_file(str(ckpt / FILES[1])),
        json.loads((ckpt / FILES[2]).read_text()),
    )
