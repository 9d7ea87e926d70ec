"""matplotlib PNGs: sweep lines (score vs layer m or prompt length), learning curves (from the cell files), score vs trainable parameters."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from softprompt.experiments.report.results import SpecResults, ordered, sweeps, unique


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(sr: SpecResults, img_dir: Path) -> list[Path]:
    """Score against each swept value (layer m, prompt length t): one panel per task, a line per series."""
    plt = _plt()
    paths = []
    for sw in sweeps(sr):
        for backbone in unique(p["backbone"] for p in sw.points):
            ps = [p for p in sw.points if p["backbone"] == backbone and p["score"] is not None]
            tasks = ordered(unique(p["task"] for p in ps), sr.manifest.get("tasks"))
            fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
            for ax, task in zip(axes[0], tasks):
                for series in sw.series([p for p in ps if p["task"] == task]):
                    pts: dict = {}
                    for p in ps:
                        if p["series"] == series and p["task"] == task:
                            pts.setdefault(p["x"], []).append(p["score"])
                    xs = sorted(pts)
                    ys = [statistics.fmean(pts[x]) for x in xs]
                    es = [statistics.stdev(pts[x]) if len(pts[x]) > 1 else 0 for x in xs]
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=series)
                metric = unique(p["metric"] for p in ps if p["task"] == task)[0]
                ax.set_title(f"{task} ({backbone})")
                ax.set_xlabel(sw.x_label)
                xs = sw.xs(backbone)
                if xs and min(xs) > 0 and max(xs) / min(xs) >= 20:  # prompt lengths 1..100 (layers start at 0)
                    ax.set_xscale("log")
                    ax.set_xticks(xs, [str(x) for x in xs])
                ax.set_ylabel(metric or "score")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7 if len(ax.get_lines()) > 6 else None)
            paths.append(_save(plt, fig, img_dir / f"{sr.name}-{sw.name}-{_safe(backbone)}.png"))
    return paths


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _safe(text: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in str(text))


def _curve(result: dict) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(eval score by step, training loss by step): the cell file's curve, else the run's metrics.jsonl."""
    stored = result.get("curve")
    if isinstance(stored, dict) and (stored.get("eval") or stored.get("loss")):
        return [tuple(p) for p in stored.get("eval") or []], [tuple(p) for p in stored.get("loss") or []]
    run = Path(result.get("_dir", ".")) / (result.get("run_dir") or "run") / "metrics.jsonl"
    if not run.exists():
        return [], []
    evals, losses = [], []
    for line in run.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "eval" in row:
            ev = row["eval"]
            evals.append((row["step"], ev.get(result.get("metric") or "main", ev.get("main"))))
        elif "loss" in row:
            losses.append((row["step"], row["loss"]))
    return evals, losses


def plot_learning_curves(sr: SpecResults, img_dir: Path) -> list[Path]:
    train = [r for r in sr.results if r.get("kind") in ("train", "few-shot") and r.get("layer") is None]
    plt = _plt()
    paths = []
    for backbone in unique(r.get("backbone") for r in train):
        groups = unique((r["kind"], r.get("eval_task") or r["task"]) for r in train if r.get("backbone") == backbone)
        for kind, task in groups:
            order = sr.method_order
            rs = sorted((r for r in train if r.get("backbone") == backbone and r["kind"] == kind
                         and (r.get("eval_task") or r["task"]) == task),
                        key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["method"]))
            curves = [(r, *_curve(r)) for r in rs]
            curves = [c for c in curves if c[1] or c[2]]
            if not curves:
                continue
            fig, (ax, lx) = plt.subplots(1, 2, figsize=(11, 4))
            colors: dict[str, str] = {}
            for r, evals, losses in curves:
                label = r["method"] + (f" (from {r['task']})" if kind == "few-shot" else "")
                first = label not in colors
                color = colors.setdefault(label, f"C{len(colors) % 10}")
                alpha = 0.9 if (r.get("seed") or 0) == 0 else 0.45
                if evals:
                    ax.plot([p[0] for p in evals], [p[1] for p in evals], marker=".", color=color,
                            label=label if first else "_nolegend_", alpha=alpha)
                if losses:
                    lx.plot([p[0] for p in losses], [p[1] for p in losses], color=color, alpha=alpha,
                            label=label if first else "_nolegend_")
            prefix = "few-shot " if kind == "few-shot" else ""
            ax.set_title(f"{prefix}{task} — {backbone}: {rs[0].get('split')} score")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(rs[0].get("metric") or "score")
            lx.set_title(f"{prefix}{task} — {backbone}: training loss")
            lx.set_xlabel("optimizer step")
            lx.set_ylabel("loss (mean over the logging window)")
            for a in (ax, lx):
                a.grid(alpha=0.3)
                if a.get_lines():
                    a.legend(fontsize=8)
            paths.append(_save(plt, fig, img_dir / f"{sr.name}-curve-{kind}-{_safe(task)}-{_safe(backbone)}.png"))
    return paths


def plot_score_vs_params(sr: SpecResults, img_dir: Path) -> list[Path]:
    train = [r for r in sr.results if r.get("kind") == "train" and r.get("layer") is None
             and r.get("trainable_params") and r.get("score") is not None]
    plt = _plt()
    paths = []
    for backbone in unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = unique(r["task"] for r in rs)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, m in enumerate(ordered(unique(r["method"] for r in rs), sr.method_order)):
            per_task = [statistics.fmean([r["score"] for r in rs if r["method"] == m and r["task"] == t])
                        for t in tasks if any(r["method"] == m and r["task"] == t for r in rs)]
            params = statistics.fmean([r["trainable_params"] for r in rs if r["method"] == m])
            y = statistics.fmean(per_task)
            marker = "o" if sr.soft_prompt(m) else "s"
            ax.scatter([params], [y], s=50, marker=marker, color=f"C{i % 10}")
            ax.annotate(m, (params, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(f"mean score over {len(tasks)} task(s)")
        ax.set_title(f"{sr.name} — {backbone}: score vs trainable parameters")
        ax.grid(alpha=0.3)
        paths.append(_save(plt, fig, img_dir / f"{sr.name}-score-vs-params-{_safe(backbone)}.png"))
    return paths
