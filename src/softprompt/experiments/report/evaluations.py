"""Tables of runs scored elsewhere: cross-domain and zero-shot transfer, data-to-text generation, few-shot."""

from __future__ import annotations

from softprompt.experiments.report.results import SpecResults, ordered, spec_position, unique
from softprompt.experiments.report.table import Row, Table


def transfer_tables(sr: SpecResults) -> list[Table]:
    """Trained runs evaluated elsewhere (cross-domain, zero-shot transfer), zero-shot baselines as rows."""
    evals = [r for r in sr.results if r.get("kind") == "eval"]
    zs = [r for r in sr.results if r.get("kind") == "zero-shot" and not data_to_text(r)]  # those: generation_tables
    if not evals and not zs:
        return []
    tables = []
    groups = unique((r.get("backbone"), r.get("layer")) for r in evals) or [(None, None)]
    for backbone, layer in groups:
        rs = [r for r in evals if r.get("backbone") == backbone and r.get("layer") == layer]
        sources = unique(r["task"] for r in rs)

        def col(r, single=len(sources) <= 1):
            head = f"{r['eval_task']} {r.get('split') or ''}".strip() if single else f"{r['task']}→{r['eval_task']}"
            head += f", up to {r['eval_max_length']} tokens" if r.get("eval_max_length") else ""
            return head + (f" ({r['metric']})" if r.get("metric") else "")

        cols = unique(col(r) for r in sorted(rs, key=lambda r: spec_position(sr, r)))
        methods = ordered(unique(r["method"] for r in rs), sr.method_order)
        rows = [Row(m, {c: [r["score"] for r in rs if r["method"] == m and col(r) == c] for c in cols},
                    sr.soft_prompt(m)) for m in methods]
        for label in unique(r["method"] for r in zs):
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


def data_to_text(r: dict) -> bool:
    """A generation cell scored by corpus metrics (E2E), not by parsed labels."""
    return "bleu" in (r.get("scores") or {})


GENERATION_METRICS = (("bleu", "BLEU"), ("rouge_l", "ROUGE-L"), ("meteor", "METEOR"), ("cider", "CIDEr"))


def generation_tables(sr: SpecResults) -> list[Table]:
    """Data-to-text (E2E): methods (trained, peft baselines, zero-shot) x BLEU, ROUGE-L, METEOR, CIDEr."""
    cells = [r for r in sr.results if r.get("kind") in ("train", "peft", "zero-shot") and r.get("layer") is None
             and data_to_text(r)]
    tables = []
    for task, split, backbone in unique((r.get("eval_task") or r["task"], r.get("split"), r.get("backbone"))
                                         for r in cells if r.get("kind") != "zero-shot"):
        rs = [r for r in cells if (r.get("eval_task") or r["task"]) == task and r.get("split") == split
              and (r.get("backbone") == backbone or r.get("kind") == "zero-shot")]
        cols = [name for _, name in GENERATION_METRICS]
        rows = []
        for m in ordered(unique(r["method"] for r in rs), sr.method_order):
            vals = {name: [r["scores"][key] for r in rs if r["method"] == m and r["scores"].get(key) is not None]
                    for key, name in GENERATION_METRICS}
            rows.append(Row(m, vals, sr.soft_prompt(m)))
        missing = unique(reason for r in rs for reason in ((r.get("scores") or {}).get("unavailable") or {}).values())
        tables.append(Table(
            f"{task} {split} — {backbone}: generation metrics", cols, rows, mean_column=False, decimals=2,
            note=("greedy decoding; BLEU: corpus BLEU on lowercased whitespace tokens, multi-reference; ROUGE-L F1; "
                  "METEOR 1.5 and CIDEr-D (pycocoevalcap), x100 except CIDEr; mean ± std over seeds; bold: best "
                  "soft-prompt method" + (f"; unavailable: {'; '.join(missing)}" if missing else ""))))
    if not tables:  # zero-shot only
        for task, split in unique((r.get("eval_task"), r.get("split")) for r in cells):
            rs = [r for r in cells if r.get("eval_task") == task and r.get("split") == split]
            rows = [Row(m, {name: [r["scores"][key] for r in rs if r["method"] == m
                                   and r["scores"].get(key) is not None] for key, name in GENERATION_METRICS}, False)
                    for m in unique(r["method"] for r in rs)]
            tables.append(Table(f"{task} {split}: generation metrics", [n for _, n in GENERATION_METRICS], rows,
                                mean_column=False, decimals=2, better=None))
    return tables


def few_shot_tables(sr: SpecResults) -> list[Table]:
    fs = [r for r in sr.results if r.get("kind") == "few-shot"]
    tables = []
    for backbone in unique(r.get("backbone") for r in fs):
        rs = [r for r in fs if r.get("backbone") == backbone]

        def col(r):
            return f"{r['task']}→{r['eval_task']} ({r.get('few_shot_examples') or '?'}-shot, {r.get('metric')})"

        cols = unique(col(r) for r in sorted(rs, key=lambda r: spec_position(sr, r)))
        methods = ordered(unique(r["method"] for r in rs), sr.method_order)
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
