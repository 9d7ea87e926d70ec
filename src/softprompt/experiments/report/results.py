"""Reading a grid's cell files (RESULTS_DIR/<spec>/cells/<cell>.json, or the old <cell>/result.json) into
SpecResults, and the ordering helpers every table uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT = "result.json"  # the old layout's per-cell file
CELLS = "cells"


@dataclass
class SpecResults:
    name: str
    dir: Path
    manifest: dict[str, Any]
    results: list[dict[str, Any]]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method_order(self) -> list[str]:
        return [m["label"] for m in self.manifest.get("methods") or []]

    def soft_prompt(self, label: str) -> bool:
        for m in self.manifest.get("methods") or []:
            if m["label"] == label:
                return bool(m.get("soft_prompt"))
        for r in self.results:
            if r.get("method") == label:
                return bool(r.get("soft_prompt"))
        return False


def read_spec_dir(spec_dir: Path) -> SpecResults:
    spec_dir = Path(spec_dir)
    manifest = _read_json(spec_dir / "manifest.json") or {}
    results: dict[str, dict] = {}
    for path in sorted(spec_dir.glob(f"*/{RESULT}")):  # the old layout, next to the run folder
        data = _read_json(path)
        if isinstance(data, dict):
            data.setdefault("cell", path.parent.name)
            data["_dir"] = str(path.parent)
            results[data["cell"]] = data
    for path in sorted((spec_dir / CELLS).glob("*.json")):  # cell files win
        data = _read_json(path)
        if isinstance(data, dict):
            data.setdefault("cell", path.stem)
            data["_dir"] = str(path.parent)
            results[data["cell"]] = data
    skipped = _read_json(spec_dir / "skipped.json") or []
    return SpecResults(manifest.get("spec") or spec_dir.name, spec_dir, manifest, list(results.values()), skipped)


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _is_spec_dir(path: Path) -> bool:
    return ((path / "manifest.json").exists() or any((path / CELLS).glob("*.json"))
            or any(path.glob(f"*/{RESULT}")))


def find_specs(results_dir: Path) -> list[Path]:
    results_dir = Path(results_dir)
    if _is_spec_dir(results_dir):
        return [results_dir]  # pointed at one spec's folder
    return sorted(p for p in results_dir.iterdir() if p.is_dir() and _is_spec_dir(p))


def spec_position(sr: SpecResults, r: dict) -> tuple[int, int]:
    """Where a transfer/eval result's column sits in the spec: eval_tasks order, then pairs order."""
    m = sr.manifest
    for i, t in enumerate(m.get("eval_tasks") or []):
        if t.get("task") == r.get("eval_task") and t.get("split") in (None, r.get("split")):
            return 0, i
    pairs = list(m.get("pairs") or []) + list((m.get("few_shot") or {}).get("pairs") or [])
    for i, p in enumerate(pairs):
        if p.get("train") == r.get("task") and p.get("eval") == r.get("eval_task"):
            return 1, i
    return 2, 0


def ordered(seen: list[str], preferred: list[str] | None) -> list[str]:
    preferred = [p for p in (preferred or []) if p in seen]
    return preferred + [s for s in seen if s not in preferred]


def unique(items) -> list:
    out = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
