"""Write a report folder: <spec>.md per spec, README.md, index.html, img/*.png and results.csv."""

from __future__ import annotations

import csv
import html
import sys
from pathlib import Path
from typing import Any, Callable

from softprompt.experiments.report.floors import (FLOOR_MARGIN, at_floor, constant_predictions, floor_cells,
                                                   uncorrelated_cells)
from softprompt.experiments.report.plots import plot_learning_curves, plot_score_vs_params, plot_sweep
from softprompt.experiments.report.provenance import cell_times, provenance, skipped_lines
from softprompt.experiments.report.results import SpecResults, find_specs, read_spec_dir
from softprompt.experiments.report.table import Table
from softprompt.experiments.report.tables import spec_tables


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
    md_all = ["# Experiment results", "", made, ""]
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
        floor_rows = floor_cells(sr)  # computed once: both lists below use it
        flat = constant_predictions(sr, floor_rows)
        if flat:
            md += ["**One class for every example** (binary tasks with MCC exactly 0: the score is the majority "
                   "or minority class rate, not learned behaviour)", ""] + [f"- `{c}`" for c in flat] + [""]
        floor = at_floor(floor_rows)
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
