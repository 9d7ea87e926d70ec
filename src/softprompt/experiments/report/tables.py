"""The tables of one spec: methods x tasks, seed-paired differences, layer sweep, parameters, timing,
published numbers (plus the evaluation tables)."""

from __future__ import annotations

from softprompt.experiments.report.evaluations import few_shot_tables, generation_tables, transfer_tables
from softprompt.experiments.report.results import SpecResults, ordered, sweeps, unique
from softprompt.experiments.report.table import Row, Table


def main_tables(sr: SpecResults) -> list[Table]:
    """Methods x tasks per backbone, from train cells outside a layer sweep."""
    train = [r for r in sr.results if r.get("kind") in ("train", "peft") and r.get("layer") is None]
    tables = []
    for backbone in unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = ordered(unique(r["task"] for r in rs), sr.manifest.get("tasks"))
        methods = ordered(unique(r["method"] for r in rs), sr.method_order)
        metrics = {t: unique(r.get("metric") for r in rs if r["task"] == t) for t in tasks}
        cols = [f"{t} ({metrics[t][0]})" if metrics[t] and metrics[t][0] else t for t in tasks]
        rows = []
        for m in methods:
            vals = {c: [r["score"] for r in rs if r["method"] == m and r["task"] == t and r.get("score") is not None]
                    for c, t in zip(cols, tasks)}
            rows.append(Row(m, vals, sr.soft_prompt(m)))
        split = unique(r.get("split") for r in rs)
        picked = unique(((r.get("summary") or {}).get("selection") or {}).get("split") for r in rs)
        picked = [p for p in picked if p and p not in split]
        where = "a validation split carved from train" if picked == ["carved validation"] else f"the {'/'.join(picked)} split"
        tables.append(Table(
            f"{sr.manifest.get('title') or sr.name} — {backbone}", cols, rows, mean_column=len(cols) > 1,
            note=f"score on the {'/'.join(s for s in split if s)} split"
                 f"{f' (checkpoints picked on {where})' if picked else ''}, mean ± std over seeds "
                 f"{', '.join(str(s) for s in sorted(unique(r.get('seed') for r in rs), key=str))}; "
                 f"bold: best soft-prompt method per column"))
    return tables



def sweep_tables(sr: SpecResults) -> list[Table]:
    """Score per swept value (layer m, prompt length t): a row per series and task, per backbone."""
    tables = []
    for sw in sweeps(sr):
        for backbone in unique(p["backbone"] for p in sw.points):
            ps = [p for p in sw.points if p["backbone"] == backbone]
            xs = sw.xs(backbone)
            cols = [f"{sw.column}={x}" for x in xs]
            rows = []
            for task in ordered(unique(p["task"] for p in ps), sr.manifest.get("tasks")):
                metric = unique(p["metric"] for p in ps if p["task"] == task)[0]
                for series in sw.series([p for p in ps if p["task"] == task]):
                    vals = {f"{sw.column}={x}": [p["score"] for p in ps if p["task"] == task and p["series"] == series
                                                 and p["x"] == x and p["score"] is not None] for x in xs}
                    if any(vals.values()):
                        rows.append(Row(f"{series} — {task} ({metric})", vals, True))
            tables.append(Table(f"{sw.title} — {backbone}: score vs {sw.x_label}", cols, rows, mean_column=True,
                                better=None, first_header="Method — task", note=sw.note))
    return tables


def params_tables(sr: SpecResults) -> list[Table]:
    ps = [r for r in sr.results if r.get("kind") == "params"]
    if not ps:
        return []
    backbones = unique(r["backbone"] for r in ps)
    methods = unique(row["method"] for r in ps for row in r.get("rows") or [])
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
    for backbone in unique(r.get("backbone") for r in train):
        rs = [r for r in train if r.get("backbone") == backbone]
        tasks = ordered(unique(r["task"] for r in rs), sr.manifest.get("tasks"))
        methods = ordered(unique(r["method"] for r in rs), sr.method_order)
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


def versus_tables(sr: SpecResults) -> list[Table]:
    """Seed-paired differences a - b on the main score, for the spec's `versus` pairs (same task, backbone, seed)."""
    tables = []
    cells = [r for r in sr.results if r.get("kind") in ("train", "peft") and r.get("layer") is None
             and r.get("score") is not None]
    for backbone, task in unique((r.get("backbone"), r["task"]) for r in cells):
        score = {(r["method"], r.get("seed")): r["score"] for r in cells
                 if r.get("backbone") == backbone and r["task"] == task}
        seeds = sorted(unique(seed for _, seed in score), key=str)
        rows = []
        for a, b in sr.manifest.get("versus") or []:
            diffs = {f"seed {s}": [score[a, s] - score[b, s]] for s in seeds if (a, s) in score and (b, s) in score}
            if diffs:
                ahead = sum(v[0] > 0 for v in diffs.values())
                rows.append(Row(f"{a} − {b} (ahead on {ahead} of {len(diffs)})", diffs, False))
        if rows:
            metric = unique(r.get("metric") for r in cells if r["task"] == task)
            tables.append(Table(f"Seed-paired differences — {task} ({'/'.join(m for m in metric if m)}), {backbone}",
                                [f"seed {s}" for s in seeds], rows, better=None, decimals=2, first_header="a − b",
                                note="a − b on the same seed (same data order and batches); Mean: over the seeds "
                                     "both have"))
    return tables


def spec_tables(sr: SpecResults) -> list[Table]:
    return (main_tables(sr) + versus_tables(sr) + generation_tables(sr) + transfer_tables(sr) + few_shot_tables(sr) + sweep_tables(sr) + params_tables(sr)
            + timing_tables(sr) + published_tables(sr))
