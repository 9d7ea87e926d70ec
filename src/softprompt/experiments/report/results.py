"""Reading a grid's cell files (RESULTS_DIR/<spec>/cells/<cell>.json, or the old <cell>/result.json) into
SpecResults, the sweeps in them (score against the prompt layer m, or a swept producer field such as the
prompt length), and the ordering helpers every table uses."""

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


@dataclass
class Sweep:
    """Training scores against one swept value: a line per series (method, or method x the other swept values)."""

    name: str  # file and table key: "layer-sweep", "num_tokens"
    title: str  # "Layer sweep", "Prompt length"
    x_label: str
    column: str  # table column prefix: "m" -> "m=3"
    note: str
    points: list[dict[str, Any]]  # {backbone, task, series, x, score, metric, seed, rank (in the method order)}

    def xs(self, backbone: str) -> list:
        return sorted(unique(p["x"] for p in self.points if p["backbone"] == backbone))

    def series(self, points: list[dict[str, Any]]) -> list[str]:
        """The series among `points`, in the spec's method order."""
        first: dict[str, int] = {}
        for p in points:
            first[p["series"]] = min(first.get(p["series"], p["rank"]), p["rank"])
        return sorted(first, key=lambda s: (first[s], s))


SWEEP_AXES = {  # swept producer field -> (title, x label, column prefix, note)
    "num_tokens": ("Prompt length", "prompt length t (num_tokens)", "t",
                   "t: prompt vectors (num_tokens); one row per method and initialisation"),
}


def sweeps(sr: SpecResults) -> list[Sweep]:
    """The layer sweep (train cells with a layer m) and each method sweep with an integer-valued field."""
    out = []
    layered = [r for r in sr.results if r.get("kind") == "train" and r.get("layer") is not None]
    if layered:
        out.append(Sweep("layer-sweep", "Layer sweep", "prompt layer m (0 = input embeddings)", "m",
                         "m = 0: the input embeddings; m = i: the hidden states entering layer i",
                         [_point(sr, r, r["method"], r["layer"]) for r in layered]))
    swept = {m["label"]: m["sweep"] for m in sr.manifest.get("methods") or [] if m.get("sweep")}
    axes = unique(next((k for k, v in s["values"].items() if isinstance(v, int) and not isinstance(v, bool)), None)
                  for s in swept.values())
    for axis in [a for a in axes if a]:
        points = []
        for r in sr.results:
            s = swept.get(r.get("method"))
            if r.get("kind") != "train" or r.get("layer") is not None or not s or axis not in s["values"]:
                continue
            rest = [str(v) for k, v in s["values"].items() if k != axis]
            points.append(_point(sr, r, " ".join([s["of"], *rest]), s["values"][axis]))
        if points:
            title, x_label, column, note = SWEEP_AXES.get(axis, (axis, axis, axis, f"{axis}: the swept value"))
            out.append(Sweep(axis.replace("_", "-"), title, x_label, column, note, points))
    return out


def _point(sr: SpecResults, r: dict, series: str, x) -> dict[str, Any]:
    order = sr.method_order
    rank = order.index(r["method"]) if r.get("method") in order else len(order)
    return {"backbone": r.get("backbone"), "task": r["task"], "series": series, "x": x, "score": r.get("score"),
            "metric": r.get("metric"), "seed": r.get("seed"), "rank": rank}
