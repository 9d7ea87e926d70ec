"""Turn a grid's cell files (RESULTS_DIR/<spec>/cells/<cell>.json) into paper-style tables and plots.

`softprompt report results/medium` needs only the committed cell files (and manifest.json, when
present, for titles and published numbers); learning curves come from the cell files too. Folders of
the old layout (RESULTS_DIR/<spec>/<cell>/result.json) are read as well.

Per spec: `<spec>.md` with
* the main table (methods as rows, tasks as columns, mean ± std over seeds as `84.8 ± 0.4`, a
  Mean column, the best soft-prompt method per column in bold, as in ID-SPAM Table 2),
  one per backbone;
* generation tasks: data-to-text (E2E) methods x BLEU / ROUGE-L / METEOR / CIDEr (peft baselines
  and the zero-shot instruction model as rows); text-to-text views: the unparseable answers;
* extras when present: cross-domain / transfer evaluations (with the zero-shot baseline as a
  row), few-shot transfer, the layer sweep (score per prompt layer m), trainable parameters,
  train / inference time per sample and time to the best validation score;
* the published numbers the spec quotes, skipped cells with their reason, failures;
* provenance: the bench command(s), git commit, machine (platform, cores), backbones, profile.

Plus `index.html` (every spec, with matplotlib PNGs: layer sweep lines, learning curves from
metrics.jsonl, score vs trainable parameters), `README.md` (all specs' Markdown) and
`results.csv` (one row per finished cell).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULT = "result.json"  # the old layout's per-cell file
CELLS = "cells"


# -- tables --------------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    values: dict[str, list[float]]  # column -> one value per seed
    eligible: bool = True  # may be bold (soft-prompt methods; baselines are not)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row]
    mean_column: bool = True
    better: str | None = "high"  # "high" | "low" | None (no bold)
    decimals: int = 1
    integer: bool = False  # counts (trainable parameters): 1,234,567, no std
    note: str = ""
    first_header: str = "Method"

    def stats(self, row: Row, col: str) -> tuple[float, float | None, int] | None:
        vals = [v for v in row.values.get(col, []) if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            return None
        std = statistics.stdev(vals) if len(vals) > 1 else None
        return statistics.fmean(vals), std, len(vals)

    def row_mean(self, row: Row) -> tuple[float, bool] | None:
        """Mean over the row's column means; complete is False when some column has no value."""
        means = [s[0] for s in (self.stats(row, c) for c in self.columns) if s is not None]
        if not means:
            return None
        return statistics.fmean(means), len(means) == len(self.columns)

    def _fmt(self, x: float) -> str:
        if self.integer:
            return f"{int(round(x)):,}"
        return f"{x:.{self.decimals}f}"

    def _best(self, values: list[tuple[Row, float]]) -> set[str]:
        if self.better is None:
            return set()
        pool = [(r, round(v, self.decimals)) for r, v in values if r.eligible]
        if not pool:
            return set()
        target = max(v for _, v in pool) if self.better == "high" else min(v for _, v in pool)
        return {r.label for r, v in pool if v == target}

    def grid(self) -> tuple[list[str], list[list[tuple[str, bool]]]]:
        """Header and rows of (text, bold) cells."""
        header = [self.first_header] + self.columns + (["Mean"] if self.mean_column else [])
        bold: dict[str, set[str]] = {}
        for col in self.columns:
            vals = [(r, s[0]) for r in self.rows if (s := self.stats(r, col)) is not None]
            bold[col] = self._best(vals)
        if self.mean_column:
            # only complete rows compete: a mean over fewer columns is not comparable
            vals = [(r, m[0]) for r in self.rows if (m := self.row_mean(r)) is not None and m[1]]
            bold["Mean"] = self._best(vals)
        body = []
        most = max((s[2] for r in self.rows for c in self.columns if (s := self.stats(r, c)) is not None), default=0)
        for r in self.rows:
            cells = [(r.label, False)]
            for col in self.columns:
                s = self.stats(r, col)
                if s is None:
                    text = "–"
                elif s[1] is None or self.integer:
                    text = self._fmt(s[0])
                else:
                    text = f"{self._fmt(s[0])} ± {s[1]:.{self.decimals}f}"
                if s is not None and s[2] < most and not self.integer:
                    text += f" (n={s[2]})"  # fewer seeds than the table's other cells
                cells.append((text, r.label in bold[col] and s is not None))
            if self.mean_column:
                m = self.row_mean(r)
                text = "–" if m is None else self._fmt(m[0]) + ("" if m[1] else " †")
                cells.append((text, m is not None and r.label in bold["Mean"]))
            body.append(cells)
        return header, body

    def markdown(self) -> str:
        header, body = self.grid()
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for cells in body:
            lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in cells) + " |")
        notes = []
        if self.mean_column and any(t.endswith("†") for cells in body for t, _ in cells[-1:]):
            notes.append("† mean over the columns that have a result (never bold)")
        if self.note:
            notes.append(self.note)
        if notes:
            lines += [""] + [f"_{n}_  " for n in notes]
        return "\n".join(lines)

    def html(self) -> str:
        header, body = self.grid()
        out = [f"<h3>{html.escape(self.title)}</h3>", "<table>", "<tr>" + "".join(
            f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        for cells in body:
            tds = []
            for i, (t, b) in enumerate(cells):
                t = html.escape(t)
                tds.append(f"<td{' class=l' if i == 0 else ''}>{'<b>' + t + '</b>' if b else t}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</table>")
        if self.note:
            out.append(f"<p class=note>{html.escape(self.note)}</p>")
        return "\n".join(out)


def _spec_position(sr: "SpecResults", r: dict) -> tuple[int, int]:
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


def _order(seen: list[str], preferred: list[str] | None) -> list[str]:
    preferred = [p for p in (preferred or []) if p in seen]
    return preferred + [s for s in seen if s not in preferred]


def _unique(items) -> list:
    out = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


# -- reading results -----------------------------------------------------------------------------

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


# -- the tables of one spec ----------------------------------------------------------------------

def main_tables(sr: SpecResults) -> list[Table]:
    """Methods x tasks per backbone, from train cells outside a layer sweep."""
    train = [r for r in sr.results if r.get("kind") in ("train", "peft") and r.get("layer") is None]
    tables = []
    for backbone in _unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = _order(_unique(r["task"] for r in rs), sr.manifest.get("tasks"))
        methods = _order(_unique(r["method"] for r in rs), sr.method_order)
        metrics = {t: _unique(r.get("metric") for r in rs if r["task"] == t) for t in tasks}
        cols = [f"{t} ({metrics[t][0]})" if metrics[t] and metrics[t][0] else t for t in tasks]
        rows = []
        for m in methods:
            vals = {c: [r["score"] for r in rs if r["method"] == m and r["task"] == t and r.get("score") is not None]
                    for c, t in zip(cols, tasks)}
            rows.append(Row(m, vals, sr.soft_prompt(m)))
        split = _unique(r.get("split") for r in rs)
        picked = _unique(((r.get("summary") or {}).get("selection") or {}).get("split") for r in rs)
        picked = [p for p in picked if p and p not in split]
        where = "a validation split carved from train" if picked == ["carved validation"] else f"the {'/'.join(picked)} split"
        tables.append(Table(
            f"{sr.manifest.get('title') or sr.name} — {backbone}", cols, rows, mean_column=len(cols) > 1,
            note=f"score on the {'/'.join(s for s in split if s)} split"
                 f"{f' (checkpoints picked on {where})' if picked else ''}, mean ± std over seeds "
                 f"{', '.join(str(s) for s in sorted(_unique(r.get('seed') for r in rs), key=str))}; "
                 f"bold: best soft-prompt method per column"))
    return tables


def transfer_tables(sr: SpecResults) -> list[Table]:
    """Trained runs evaluated elsewhere (cross-domain, zero-shot transfer), zero-shot baselines as rows."""
    evals = [r for r in sr.results if r.get("kind") == "eval"]
    zs = [r for r in sr.results if r.get("kind") == "zero-shot" and not _data_to_text(r)]  # those: generation_tables
    if not evals and not zs:
        return []
    tables = []
    groups = _unique((r.get("backbone"), r.get("layer")) for r in evals) or [(None, None)]
    for backbone, layer in groups:
        rs = [r for r in evals if r.get("backbone") == backbone and r.get("layer") == layer]
        sources = _unique(r["task"] for r in rs)

        def col(r, single=len(sources) <= 1):
            head = f"{r['eval_task']} {r.get('split') or ''}".strip() if single else f"{r['task']}→{r['eval_task']}"
            head += f", up to {r['eval_max_length']} tokens" if r.get("eval_max_length") else ""
            return head + (f" ({r['metric']})" if r.get("metric") else "")

        cols = _unique(col(r) for r in sorted(rs, key=lambda r: _spec_position(sr, r)))
        methods = _order(_unique(r["method"] for r in rs), sr.method_order)
        rows = [Row(m, {c: [r["score"] for r in rs if r["method"] == m and col(r) == c] for c in cols},
                    sr.soft_prompt(m)) for m in methods]
        for label in _unique(r["method"] for r in zs):
            vals: dict[str, list[float]] = {c: [] for c in cols}
            for r in zs:
                if r["method"] != label:
                    continue
                for c in cols:
                    if any(e["eval_task"] == r["eval_task"] and e.get("split") == r.get("split") and col(e) == c
                           for e in rs) or (not rs and c == col(r)):
                        vals[c].append(r["score"])
                if not rs:
                    c = col(r)
                    if c not in cols:
                        cols.append(c)
                        vals[c] = [r["score"]]
            if any(vals.values()):
                rows.append(Row(label, vals, False))
        where = f" — {backbone}" if backbone else ""
        if layer is not None:
            where += f", m={layer}"
        title = ("Cross-domain evaluation" if len(sources) <= 1 else "Zero-shot task / domain transfer") + where
        src = f"trained on {sources[0]}; " if len(sources) == 1 else ""
        tables.append(Table(title, cols, rows, note=f"{src}mean ± std over seeds; bold: best soft-prompt method"))
        unparseable = [Row(row.label, {c: [r["scores"]["unparseable"] for r in rs + zs
                                           if _label(r) == row.label and col(r) == c
                                           and (r.get("scores") or {}).get("unparseable") is not None]
                                       for c in cols}, False) for row in rows]
        if any(v for row in unparseable for v in row.values.values()):
            tables.append(Table(f"Unparseable generated answers (no label word){where}", cols, unparseable,
                                mean_column=False, better=None, decimals=0,
                                note="examples whose generated text contains no label word (scored as wrong); "
                                     "mean over seeds"))
    return tables


def _label(r: dict) -> str:
    return r.get("method") or ""


def _data_to_text(r: dict) -> bool:
    """A generation cell scored by corpus metrics (E2E), not by parsed labels."""
    return "bleu" in (r.get("scores") or {})


GENERATION_METRICS = (("bleu", "BLEU"), ("rouge_l", "ROUGE-L"), ("meteor", "METEOR"), ("cider", "CIDEr"))


def generation_tables(sr: SpecResults) -> list[Table]:
    """Data-to-text (E2E): methods (trained, peft baselines, zero-shot) x BLEU, ROUGE-L, METEOR, CIDEr."""
    cells = [r for r in sr.results if r.get("kind") in ("train", "peft", "zero-shot") and r.get("layer") is None
             and _data_to_text(r)]
    tables = []
    for task, split, backbone in _unique((r.get("eval_task") or r["task"], r.get("split"), r.get("backbone"))
                                         for r in cells if r.get("kind") != "zero-shot"):
        rs = [r for r in cells if (r.get("eval_task") or r["task"]) == task and r.get("split") == split
              and (r.get("backbone") == backbone or r.get("kind") == "zero-shot")]
        cols = [name for _, name in GENERATION_METRICS]
        rows = []
        for m in _order(_unique(r["method"] for r in rs), sr.method_order):
            vals = {name: [r["scores"][key] for r in rs if r["method"] == m and r["scores"].get(key) is not None]
                    for key, name in GENERATION_METRICS}
            rows.append(Row(m, vals, sr.soft_prompt(m)))
        missing = _unique(reason for r in rs for reason in ((r.get("scores") or {}).get("unavailable") or {}).values())
        tables.append(Table(
            f"{task} {split} — {backbone}: generation metrics", cols, rows, mean_column=False, decimals=2,
            note=("greedy decoding; BLEU: corpus BLEU on lowercased whitespace tokens, multi-reference; ROUGE-L F1; "
                  "METEOR 1.5 and CIDEr-D (pycocoevalcap), x100 except CIDEr; mean ± std over seeds; bold: best "
                  "soft-prompt method" + (f"; unavailable: {'; '.join(missing)}" if missing else ""))))
    if not tables:  # zero-shot only
        for task, split in _unique((r.get("eval_task"), r.get("split")) for r in cells):
            rs = [r for r in cells if r.get("eval_task") == task and r.get("split") == split]
            rows = [Row(m, {name: [r["scores"][key] for r in rs if r["method"] == m
                                   and r["scores"].get(key) is not None] for key, name in GENERATION_METRICS}, False)
                    for m in _unique(r["method"] for r in rs)]
            tables.append(Table(f"{task} {split}: generation metrics", [n for _, n in GENERATION_METRICS], rows,
                                mean_column=False, decimals=2, better=None))
    return tables


def few_shot_tables(sr: SpecResults) -> list[Table]:
    fs = [r for r in sr.results if r.get("kind") == "few-shot"]
    tables = []
    for backbone in _unique(r.get("backbone") for r in fs):
        rs = [r for r in fs if r.get("backbone") == backbone]

        def col(r):
            return f"{r['task']}→{r['eval_task']} ({r.get('few_shot_examples') or '?'}-shot, {r.get('metric')})"

        cols = _unique(col(r) for r in sorted(rs, key=lambda r: _spec_position(sr, r)))
        methods = _order(_unique(r["method"] for r in rs), sr.method_order)
        rows = [Row(m, {c: [r["score"] for r in rs if r["method"] == m and col(r) == c] for c in cols},
                    sr.soft_prompt(m)) for m in methods]
        tables.append(Table(f"Few-shot task transfer — {backbone}", cols, rows, note=_few_shot_note(rs)))
    return tables


def _few_shot_note(rs: list[dict]) -> str:
    """Say how the few-shot checkpoint was chosen, from what the cells recorded."""
    selections = [((r.get("summary") or {}).get("selection") or {}) for r in rs]
    carved = sorted({s.get("examples") for s in selections if s.get("split") == "carved validation"})
    if carved and all(s.get("split") == "carved validation" for s in selections):
        how = (f"checkpoint picked on {' / '.join(map(str, carved))} of B's examples carved off before training "
               "(the column counts the examples trained on)")
    elif carved:
        how = "checkpoint picked on examples carved from B where a cell could carve them, else the last epoch's model"
    else:
        how = "the model after the last epoch (no model selection on the scored split)"
    return f"trained on A, training continued on a few examples of B, scored on B's held split; {how}; mean ± std over seeds"


def sweep_tables(sr: SpecResults) -> list[Table]:
    sw = [r for r in sr.results if r.get("kind") == "train" and r.get("layer") is not None]
    tables = []
    for backbone in _unique(r.get("backbone") for r in sw):
        rs = [r for r in sw if r.get("backbone") == backbone]
        layers = sorted(_unique(r["layer"] for r in rs))
        cols = [f"m={m}" for m in layers]
        rows = []
        for task in _order(_unique(r["task"] for r in rs), sr.manifest.get("tasks")):
            for m in _order(_unique(r["method"] for r in rs), sr.method_order):
                vals = {f"m={layer}": [r["score"] for r in rs if r["method"] == m and r["task"] == task
                                       and r["layer"] == layer] for layer in layers}
                if any(vals.values()):
                    metric = _unique(r.get("metric") for r in rs if r["task"] == task)[0]
                    rows.append(Row(f"{m} — {task} ({metric})", vals, True))
        tables.append(Table(f"Layer sweep — {backbone}: score vs prompt layer m", cols, rows, mean_column=True,
                            better=None, first_header="Method — task",
                            note="m = 0: the input embeddings; m = i: the hidden states entering layer i"))
    return tables


def params_tables(sr: SpecResults) -> list[Table]:
    ps = [r for r in sr.results if r.get("kind") == "params"]
    if not ps:
        return []
    backbones = _unique(r["backbone"] for r in ps)
    methods = _unique(row["method"] for r in ps for row in r.get("rows") or [])
    rows = []
    for m in methods:
        vals = {b: [row["trainable"] for r in ps if r["backbone"] == b for row in r["rows"] if row["method"] == m]
                for b in backbones}
        rows.append(Row(m, vals, True))
    sizes = ", ".join(f"{r['backbone']} {r.get('backbone_params', 0):,}" for r in ps)
    t1 = Table("Trainable parameters (incl. the classification head)", backbones, rows, mean_column=False,
               better=None, integer=True, note=f"backbone parameters: {sizes}")
    pct_rows = [Row(m, {b: [row["percent_of_backbone"] for r in ps if r["backbone"] == b for row in r["rows"]
                            if row["method"] == m] for b in backbones}, True) for m in methods]
    t2 = Table("Trainable parameters, % of the backbone", backbones, pct_rows, mean_column=False, better=None,
               decimals=3)
    return [t1, t2]


def timing_tables(sr: SpecResults) -> list[Table]:
    """Train/inference seconds per sample and time to the best validation score (ID-SPAM Tables 14-15)."""
    train = [r for r in sr.results if r.get("kind") == "train" and r.get("layer") is None]
    if not train or not any(r.get("infer_s_per_sample") is not None for r in train):
        return []
    tables = []
    for backbone in _unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = _order(_unique(r["task"] for r in rs), sr.manifest.get("tasks"))
        methods = _order(_unique(r["method"] for r in rs), sr.method_order)
        specs = [
            ("train_s_per_sample_epoch1", 1000, "Training time per sample (ms, epoch 1: no frozen-state cache)", 2),
            ("train_s_per_sample", 1000, "Training time per sample (ms, mean over epochs)", 2),
            ("infer_s_per_sample", 1000, "Inference time per sample (ms, eval split)", 2),
            ("time_to_best_s", 1, "Training time to the best validation score (s)", 1),
        ]
        for key, scale, title, dec in specs:
            rows = [Row(m, {t: [r[key] * scale for r in rs if r["method"] == m and r["task"] == t
                                and r.get(key) is not None] for t in tasks}, True) for m in methods]
            tables.append(Table(f"{title} — {backbone}", tasks, rows, mean_column=True, better="low", decimals=dec,
                                note="bold: fastest; mean ± std over seeds"))
    return tables


def published_tables(sr: SpecResults) -> list[Table]:
    tables = []
    for pub in sr.manifest.get("published") or []:
        cols = [str(c) for c in pub["columns"]]
        rows = []
        for label, values in pub["rows"].items():
            vals = {c: ([float(v)] if isinstance(v, (int, float)) else []) for c, v in zip(cols, values)}
            rows.append(Row(str(label), vals, label not in (pub.get("baselines") or [])))
        tables.append(Table(f"Published: {pub.get('title', '')}", cols, rows,
                            mean_column=bool(pub.get("mean", False)), better="high",
                            note=str(pub.get("note") or "as printed in the paper; shown for comparison")))
    return tables


# -- plots ---------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(sr: SpecResults, img_dir: Path) -> list[Path]:
    sw = [r for r in sr.results if r.get("kind") == "train" and r.get("layer") is not None]
    if not sw:
        return []
    plt = _plt()
    paths = []
    for backbone in _unique(r.get("backbone") for r in sw):
        rs = [r for r in sw if r.get("backbone") == backbone]
        tasks = _order(_unique(r["task"] for r in rs), sr.manifest.get("tasks"))
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for m in _order(_unique(r["method"] for r in rs), sr.method_order):
                pts = {}
                for r in rs:
                    if r["method"] == m and r["task"] == task and r.get("score") is not None:
                        pts.setdefault(r["layer"], []).append(r["score"])
                if not pts:
                    continue
                xs = sorted(pts)
                ys = [statistics.fmean(pts[x]) for x in xs]
                es = [statistics.stdev(pts[x]) if len(pts[x]) > 1 else 0 for x in xs]
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
            metric = _unique(r.get("metric") for r in rs if r["task"] == task)[0]
            ax.set_title(f"{task} ({backbone})")
            ax.set_xlabel("prompt layer m (0 = input embeddings)")
            ax.set_ylabel(metric or "score")
            ax.grid(alpha=0.3)
            ax.legend()
        paths.append(_save(plt, fig, img_dir / f"{sr.name}-layer-sweep-{_safe(backbone)}.png"))
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
    for backbone in _unique(r.get("backbone") for r in train):
        groups = _unique((r["kind"], r.get("eval_task") or r["task"]) for r in train if r.get("backbone") == backbone)
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
    for backbone in _unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = _unique(r["task"] for r in rs)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, m in enumerate(_order(_unique(r["method"] for r in rs), sr.method_order)):
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


# -- assembling ----------------------------------------------------------------------------------

def provenance(sr: SpecResults) -> list[str]:
    m = sr.manifest
    runs = m.get("runs") or []
    lines = []
    if m.get("reference"):
        lines.append(f"- Mirrors: {m['reference']}")
    if m.get("description"):
        lines.append(f"- {m['description']}")
    profile = m.get("profile") or _unique(r.get("profile") for r in sr.results)
    lines.append(f"- Profile: {profile if isinstance(profile, str) else ', '.join(map(str, profile)) or 'not recorded'}")
    backbones = _unique([*(m.get("backbones") or []), *(r.get("backbone") for r in sr.results)])
    lines.append(f"- Backbone(s): {', '.join(str(b) for b in backbones if b) or 'not recorded'}")
    if m.get("seeds"):
        lines.append(f"- Seeds: {', '.join(map(str, m['seeds']))}")
    commits = _unique([*(r.get("git_commit") for r in runs), *(r.get("git_commit") for r in sr.results)])
    commits = [c for c in commits if c]
    dirty = any(r.get("git_dirty") for r in runs)
    lines.append(f"- Git commit: {', '.join(c[:12] for c in commits) or 'not recorded'}"
                 + (" (working tree had uncommitted changes)" if dirty else ""))
    for i, run in enumerate(runs, 1):
        mach = run.get("machine") or {}
        lines.append(
            f"- Run {i}: `{run.get('command', '?')}` — {run.get('started', '?')} → {run.get('finished', '?')}, "
            f"wall {_duration(run.get('wall_s'))}, status {_run_status(run, last=i == len(runs))}, "
            f"ran {run.get('ran', '?')} cell(s)"
            + (f", failed {len(run['failed'])}" if run.get("failed") else "")
            + (f"; machine: {mach.get('platform', '?')}, {mach.get('cores', '?')} cores, {mach.get('device', '?')}, "
               f"torch {mach.get('torch', '?')}" if mach else ""))
    if not runs:  # cell files alone (e.g. a fresh clone): each names its command and machine
        commands = _unique(r.get("command") for r in sr.results if r.get("command"))
        machines = _unique(_machine(r["machine"]) for r in sr.results if isinstance(r.get("machine"), dict))
        lines += [f"- Bench command (from the cell files): `{c}`" for c in commands]
        lines += [f"- Machine (from the cell files): {m}" for m in machines]
        if not commands and not machines:
            lines.append("- Bench command / machine: not recorded (no manifest.json)")
    total = sum(r.get("wall_s") or 0 for r in runs)
    cell_wall = sum(r.get("wall_s") or 0 for r in sr.results)
    lines.append(f"- Finished cells: {len(sr.results)}"
                 + (f" of {m['cells']}" if m.get("cells") else "")
                 + f"; compute in cells {_duration(cell_wall)}" + (f", bench wall time {_duration(total)}" if runs else ""))
    return lines


def _machine(m: dict) -> str:
    return (f"{m.get('platform', '?')}, {m.get('cores', '?')} cores, {m.get('threads', '?')} thread(s), "
            f"{m.get('device', '?')}, torch {m.get('torch', '?')}")


def constant_predictions(sr: SpecResults) -> list[str]:
    """Cells of binary tasks whose predictions were (almost surely) a single class; trained cells at the
    majority floor are listed by `at_floor` instead, with their curves."""
    out = []
    floor = {id(r) for r in floor_cells(sr)}
    for r in sr.results:
        scores = r.get("scores") or {}
        if "mcc" in scores and scores["mcc"] == 0.0 and "f1" in scores and id(r) not in floor:
            out.append(r.get("cell"))
    return out


FLOOR_MARGIN = 0.5  # points above the majority-class score still counted as "at the floor"


def floor_cells(sr: SpecResults) -> list[dict]:
    """Trained cells scoring at most FLOOR_MARGIN above the majority-class score of their split (recorded in
    the task's headline metric, so cells scored in another metric are not compared with it)."""
    return [r for r in sr.results
            if _trained(r) and "majority" in (r.get("scores") or {}) and _scored_in_headline_metric(r)
            and r["score"] <= r["scores"]["majority"] + FLOOR_MARGIN]


CORRELATIONS = ("pearson", "spearman", "pearson_spearman")


def uncorrelated_cells(sr: SpecResults) -> list[str]:
    """Trained regression cells whose correlation lies within the 95% band of zero for their number of examples
    (±1.96/√n, in points): a constant prediction's floor, which a regression has instead of a majority class."""
    out = []
    for r in sr.results:
        n, score = r.get("examples"), r.get("score")
        if _trained(r) and r.get("metric") in CORRELATIONS and isinstance(n, int) and n > 0:
            band = 196 / math.sqrt(n)
            if abs(score) <= band:
                out.append(f"- `{r.get('cell')}`: {score:.1f} on {n} examples (the band is ±{band:.1f}); "
                           f"{floor_reason(r)}")
    return out


def _trained(r: dict) -> bool:
    """A training cell (ours or peft's) with a numeric score."""
    return r.get("kind") in ("train", "peft") and isinstance(r.get("score"), (int, float))


def _scored_in_headline_metric(r: dict) -> bool:
    from softprompt.errors import ConfigError
    from softprompt.tasks import get_task

    try:
        return r.get("metric") in (None, get_task(r.get("task", "")).metric)
    except ConfigError:  # a task this install does not know: its metric cannot be checked
        return False


def at_floor(sr: SpecResults) -> list[str]:
    """The floor cells, each with what its curves say."""
    return [f"- `{r.get('cell')}`: {r['score']:.1f} vs {r['scores']['majority']:.1f} for always answering the most "
            f"frequent label; {floor_reason(r)}" for r in floor_cells(sr)]


def floor_reason(r: dict) -> str:
    """Why a cell stayed at the floor, read from its selection and loss curves."""
    curve = r.get("curve") or {}
    evals = [v for _, v in curve.get("eval") or []]
    losses = [v for _, v in curve.get("loss") or []]
    parts = []
    if (r.get("scores") or {}).get("mcc") == 0.0:
        parts.append("it predicts one class for every example")
    if evals:
        where = f"{len(evals)} evaluation(s) over {r.get('epochs_run', '?')} epoch(s)"
        if max(evals) <= evals[0]:
            parts.append(f"the selection score never rose above its first value ({evals[0]:.1f}) in {where}")
        else:
            parts.append(f"the selection score went from {evals[0]:.1f} to at best {max(evals):.1f} in {where}")
    if len(losses) >= 4:
        k = max(1, len(losses) // 10)
        head, tail = losses[:k], losses[-k:]
        last = sum(tail) / len(tail)
        parts.append(f"training loss {sum(head) / len(head):.3f} → {last:.3f} "
                     f"(first / last tenth of the logged steps{_loss_reference(r, last)})")
    return "; ".join(parts) or "no curves recorded"


def _loss_reference(r: dict, last: float) -> str:
    """The loss a binary classifier reaches without reading its input: ln 2 for a guess, or, for a cell that
    answers one class, the entropy of the label frequencies (its accuracy is that class's share)."""
    scores = r.get("scores") or {}
    if "mcc" not in scores:
        return ""
    if scores["mcc"] != 0.0 or "accuracy" not in scores:
        return "; a two-way guess is ln 2 = 0.693"
    selection = (r.get("summary") or {}).get("selection") or {}
    carved = "accuracy" in (selection.get("scores") or {})
    p = (selection["scores"] if carved else scores)["accuracy"] / 100
    prior = -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)
    where = "on the split carved from train" if carved else f"on {r.get('split', 'the scored split')}"
    verdict = (": the prompt learned the class frequencies and nothing more" if abs(last - prior) <= 0.02
               else "")
    return (f"; predicting only the label frequencies ({100 * p:.1f}% / {100 * (1 - p):.1f}% {where}) "
            f"gives {prior:.3f}{verdict}")


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
                     f"{f'{score:.2f}' if isinstance(score, (int, float)) else ''} | {_duration(r.get('wall_s'))} |")
    return lines + ["", "</details>", ""]


def _run_status(run: dict, last: bool) -> str:
    """A run still marked "running" was killed before it could record its end (SIGKILL, lost machine)."""
    status = run.get("status", "?")
    if status != "running":
        return status
    return "running, or killed (no end recorded)" if last else "killed (no end recorded; its finished cells are kept)"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def versus_tables(sr: SpecResults) -> list[Table]:
    """Seed-paired differences a - b on the main score, for the spec's `versus` pairs (same task, backbone, seed)."""
    tables = []
    cells = [r for r in sr.results if r.get("kind") in ("train", "peft") and r.get("layer") is None
             and r.get("score") is not None]
    for backbone, task in _unique((r.get("backbone"), r["task"]) for r in cells):
        score = {(r["method"], r.get("seed")): r["score"] for r in cells
                 if r.get("backbone") == backbone and r["task"] == task}
        seeds = sorted(_unique(seed for _, seed in score), key=str)
        rows = []
        for a, b in sr.manifest.get("versus") or []:
            diffs = {f"seed {s}": [score[a, s] - score[b, s]] for s in seeds if (a, s) in score and (b, s) in score}
            if diffs:
                ahead = sum(v[0] > 0 for v in diffs.values())
                rows.append(Row(f"{a} − {b} (ahead on {ahead} of {len(diffs)})", diffs, False))
        if rows:
            metric = _unique(r.get("metric") for r in cells if r["task"] == task)
            tables.append(Table(f"Seed-paired differences — {task} ({'/'.join(m for m in metric if m)}), {backbone}",
                                [f"seed {s}" for s in seeds], rows, better=None, decimals=2, first_header="a − b",
                                note="a − b on the same seed (same data order and batches); Mean: over the seeds "
                                     "both have"))
    return tables


def spec_tables(sr: SpecResults) -> list[Table]:
    return (main_tables(sr) + versus_tables(sr) + generation_tables(sr) + transfer_tables(sr) + few_shot_tables(sr) + sweep_tables(sr) + params_tables(sr)
            + timing_tables(sr) + published_tables(sr))


def build_report(results_dir: str | Path, out: str | Path | None = None, command: str | None = None,
                 log: Callable[[str], Any] | None = print) -> Path:
    """Write <spec>.md per spec, README.md, index.html, img/*.png and results.csv; returns index.html."""
    from softprompt.experiments.cells import git_commit, machine

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        from softprompt.errors import ConfigError

        raise ConfigError(f"results folder {results_dir} does not exist")
    out = Path(out) if out else results_dir / "report"
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    specs = [read_spec_dir(p) for p in find_specs(results_dir) if p.resolve() != out.resolve()]
    here = git_commit()
    mach = machine()
    command = command or "softprompt report " + " ".join(sys.argv[1:])
    made = (f"Report made by `{command}` at commit {here['commit'][:12]}"
            f"{' (uncommitted changes)' if here['dirty'] else ''} on {mach['platform']} ({mach['cores']} cores).")
    md_all = [f"# Experiment results", "", made, ""]
    html_parts = []
    csv_rows = []
    for sr in specs:
        tables = spec_tables(sr)
        images = plot_sweep(sr, img_dir) + plot_score_vs_params(sr, img_dir) + plot_learning_curves(sr, img_dir)
        title = sr.manifest.get("title") or sr.name
        md = [f"# {title}", "", f"Spec `{sr.name}`" + (f" (`{sr.manifest['path']}`)" if sr.manifest.get("path") else ""),
              "", *provenance(sr), f"- {made}", ""]
        for t in tables:
            md += [t.markdown(), ""]
        flat = constant_predictions(sr)
        if flat:
            md += ["**One class for every example** (binary tasks with MCC exactly 0: the score is the majority "
                   "or minority class rate, not learned behaviour)", ""] + [f"- `{c}`" for c in flat] + [""]
        floor = at_floor(sr)
        if floor:
            md += [f"**At the majority-class floor** (within {FLOOR_MARGIN} points; selection curves are on the "
                   "split carved from train)", ""] + floor + [""]
        flat_regression = uncorrelated_cells(sr)
        if flat_regression:
            md += ["**No correlation to speak of** (regressions within the 95% band of zero correlation, ±1.96/√n; "
                   "selection curves are on the split carved from train)", ""] + flat_regression + [""]
        if sr.skipped:
            md += ["**Skipped here**", ""] + skipped_lines(sr) + [""]
        last = (sr.manifest.get("runs") or [{}])[-1]
        if last.get("failed"):
            md += ["**Failed in the last run**", ""] + [f"- `{k}`: {v}" for k, v in last["failed"].items()] + [""]
        for img in images:
            md += [f"![{img.stem}](img/{img.name})", ""]
        md += cell_times(sr)
        text = "\n".join(md)
        (out / f"{sr.name}.md").write_text(text + "\n")
        md_all += [text.replace("\n# ", "\n## ").replace("# ", "## ", 1), ""]
        html_parts.append(_spec_html(sr, title, tables, images))
        for r in sr.results:
            csv_rows.append({k: r.get(k) for k in ("spec", "cell", "kind", "method", "backbone", "task", "eval_task",
                                                   "split", "seed", "layer", "metric", "score", "trainable_params",
                                                   "time_to_best_s", "train_s_per_sample", "infer_s_per_sample",
                                                   "wall_s", "profile", "git_commit")} | {"spec": sr.name})
        if log:
            log(f"{sr.name}: {len(sr.results)} result(s), {len(tables)} table(s), {len(images)} plot(s) -> {out / (sr.name + '.md')}")
    (out / "README.md").write_text("\n".join(md_all) + "\n")
    index = out / "index.html"
    index.write_text(_page(made, specs, html_parts))
    with open(out / "results.csv", "w", newline="") as fh:
        fields = ["spec", "cell", "kind", "method", "backbone", "task", "eval_task", "split", "seed", "layer", "metric",
                  "score", "trainable_params", "time_to_best_s", "train_s_per_sample", "infer_s_per_sample", "wall_s",
                  "profile", "git_commit"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(csv_rows)
    if log:
        log(f"report: {len(specs)} spec(s) -> {index}")
    return index


def _spec_html(sr: SpecResults, title: str, tables: list[Table], images: list[Path]) -> str:
    parts = [f"<h2 id='{html.escape(sr.name)}'>{html.escape(title)}</h2>", "<ul>"]
    parts += [f"<li>{_inline(line[2:])}</li>" for line in provenance(sr)]
    parts.append("</ul>")
    parts += [t.html() for t in tables]
    if sr.skipped:
        parts.append("<h3>Skipped here</h3><ul>" + "".join(
            f"<li><code>{html.escape(s['cell'])}</code>: {html.escape(str(s['reason']))}</li>" for s in sr.skipped)
            + "</ul>")
    for img in images:
        parts.append(f"<figure><img src='img/{html.escape(img.name)}' alt='{html.escape(img.stem)}'>"
                     f"<figcaption>{html.escape(img.stem)}</figcaption></figure>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """`code` spans of a Markdown line as <code>, the rest escaped."""
    pieces = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(pieces))


def _page(made: str, specs: list[SpecResults], parts: list[str]) -> str:
    toc = "".join(f"<li><a href='#{html.escape(s.name)}'>{html.escape(s.manifest.get('title') or s.name)}</a></li>"
                  for s in specs)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td.l,th:first-child{text-align:left}th{background:#f3f3f3}"
             "figure{display:inline-block;margin:.5em}img{max-width:100%}.note{color:#666;font-size:90%}"
             "code{background:#f5f5f5;padding:0 3px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>softprompt experiment results</title>"
            f"<style>{style}</style></head><body><h1>softprompt experiment results</h1>"
            f"<p>{_inline(made)}</p><ul>{toc}</ul>{''.join(parts)}</body></html>\n")
