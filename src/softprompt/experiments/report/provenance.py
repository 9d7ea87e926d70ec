"""Where a spec's numbers come from: command, commit, machine, skipped and timed cells."""

from __future__ import annotations

import re
from typing import Any

from softprompt.experiments.report.results import SpecResults, unique


def provenance(sr: SpecResults) -> list[str]:
    m = sr.manifest
    runs = m.get("runs") or []
    lines = []
    if m.get("reference"):
        lines.append(f"- Mirrors: {m['reference']}")
    if m.get("description"):
        lines.append(f"- {m['description']}")
    profile = m.get("profile") or unique(r.get("profile") for r in sr.results)
    lines.append(f"- Profile: {profile if isinstance(profile, str) else ', '.join(map(str, profile)) or 'not recorded'}")
    backbones = unique([*(m.get("backbones") or []), *(r.get("backbone") for r in sr.results)])
    lines.append(f"- Backbone(s): {', '.join(str(b) for b in backbones if b) or 'not recorded'}")
    if m.get("seeds"):
        lines.append(f"- Seeds: {', '.join(map(str, m['seeds']))}")
    commits = unique([*(r.get("git_commit") for r in runs), *(r.get("git_commit") for r in sr.results)])
    commits = [c for c in commits if c]
    dirty = any(r.get("git_dirty") for r in runs)
    lines.append(f"- Git commit: {', '.join(c[:12] for c in commits) or 'not recorded'}"
                 + (" (working tree had uncommitted changes)" if dirty else ""))
    for i, run in enumerate(runs, 1):
        mach = run.get("machine") or {}
        lines.append(
            f"- Run {i}: `{run.get('command', '?')}` — {run.get('started', '?')} → {run.get('finished', '?')}, "
            f"wall {duration(run.get('wall_s'))}, status {_run_status(run, last=i == len(runs))}, "
            f"ran {run.get('ran', '?')} cell(s)"
            + (f", failed {len(run['failed'])}" if run.get("failed") else "")
            + (f"; machine: {mach.get('platform', '?')}, {mach.get('cores', '?')} cores, {mach.get('device', '?')}, "
               f"torch {mach.get('torch', '?')}" if mach else ""))
    if not runs:  # cell files alone (e.g. a fresh clone): each names its command and machine
        commands = unique(r.get("command") for r in sr.results if r.get("command"))
        machines = unique(_machine(r["machine"]) for r in sr.results if isinstance(r.get("machine"), dict))
        lines += [f"- Bench command (from the cell files): `{c}`" for c in commands]
        lines += [f"- Machine (from the cell files): {m}" for m in machines]
        if not commands and not machines:
            lines.append("- Bench command / machine: not recorded (no manifest.json)")
    total = sum(r.get("wall_s") or 0 for r in runs)
    cell_wall = sum(r.get("wall_s") or 0 for r in sr.results)
    lines.append(f"- Finished cells: {len(sr.results)}"
                 + (f" of {m['cells']}" if m.get("cells") else "")
                 + f"; compute in cells {duration(cell_wall)}" + (f", bench wall time {duration(total)}" if runs else ""))
    return lines


def _machine(m: dict) -> str:
    return (f"{m.get('platform', '?')}, {m.get('cores', '?')} cores, {m.get('threads', '?')} thread(s), "
            f"{m.get('device', '?')}, torch {m.get('torch', '?')}")



def skipped_lines(sr: SpecResults) -> list[str]:
    """Skipped cells grouped by reason (a reason names its task), so 72 hub-only cells read as a few lines;
    reasons that differ only in the seed of the cells they name read as one, with `_s*`."""
    by_reason: dict[str, list[str]] = {}
    for s in sr.skipped:
        by_reason.setdefault(re.sub(r"_s\d+(?=_|\b)", "_s*", s["reason"]), []).append(s["cell"])
    return [f"- {len(cells)} cell(s) ({_cell_span(cells)}): {reason}" for reason, cells in by_reason.items()]


def _cell_span(cells: list[str]) -> str:
    return f"`{cells[0]}`" if len(cells) == 1 else f"`{cells[0]}` … `{cells[-1]}`"


def cell_times(sr: SpecResults) -> list[str]:
    """Every finished cell with its score and wall time (Markdown, folded)."""
    if not sr.results:
        return []
    lines = ["<details><summary>Cells: score and wall time</summary>", "",
             "| cell | kind | metric | score | wall |", "|---|---|---|---:|---:|"]
    for r in sorted(sr.results, key=lambda r: r.get("finished") or ""):
        score = r.get("score")
        lines.append(f"| {r.get('cell')} | {r.get('kind')} | {r.get('metric') or ''} | "
                     f"{f'{score:.2f}' if isinstance(score, (int, float)) else ''} | {duration(r.get('wall_s'))} |")
    return lines + ["", "</details>", ""]


def _run_status(run: dict, last: bool) -> str:
    """A run still marked "running" was killed before it could record its end (SIGKILL, lost machine)."""
    status = run.get("status", "?")
    if status != "running":
        return status
    return "running, or killed (no end recorded)" if last else "killed (no end recorded; its finished cells are kept)"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
