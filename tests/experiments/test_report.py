"""softprompt report from crafted result.json files: mean ± std, bold best soft prompt, Mean column, plots."""

from __future__ import annotations

import json

from softprompt.commands import report
from softprompt.experiments.report import Row, Table

METHODS = [("lora", False), ("prompt-tuning", True), ("id-spam", True)]
SCORES = {  # method -> task -> one score per seed
    "lora": {"sst2": [95.0, 95.0, 95.0], "mrpc": [70.0, 72.0, 74.0]},
    "prompt-tuning": {"sst2": [80.0, 82.0, 84.0], "mrpc": [60.0, 60.0, 60.0]},
    "id-spam": {"sst2": [84.0, 85.0, 86.0], "mrpc": [70.0, 72.0]},  # one seed missing
}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def craft(root):
    spec = root / "crafted"
    write(spec / "manifest.json", {
        "spec": "crafted", "title": "Crafted GLUE", "profile": "full", "tasks": ["sst2", "mrpc"],
        "backbones": ["tiny-bert"], "seeds": [0, 1, 2],
        "methods": [{"label": m, "soft_prompt": sp} for m, sp in METHODS],
        "runs": [{"command": "softprompt bench crafted.yaml --profile full", "git_commit": "abcdef1234567890",
                  "machine": {"platform": "Linux-test", "cores": 2, "device": "cpu", "torch": "2.13"},
                  "wall_s": 3600, "status": "complete", "ran": 17}],
        "published": [{"title": "Paper", "columns": ["sst2"], "rows": {"id-spam": [92.7]}}],
    })
    soft = dict(METHODS)
    for method, tasks in SCORES.items():
        for task, scores in tasks.items():
            for seed, score in enumerate(scores):
                cell = f"{method}_{task}_tiny-bert_s{seed}"
                write(spec / cell / "result.json", {
                    "cell": cell, "kind": "train", "method": method, "soft_prompt": soft[method], "task": task,
                    "backbone": "tiny-bert", "seed": seed, "layer": None, "split": "validation",
                    "metric": "accuracy" if task == "sst2" else "acc_macro_f1", "score": score,
                    "trainable_params": {"lora": 4000, "prompt-tuning": 700, "id-spam": 190000}[method],
                    "profile": "full", "git_commit": "abcdef1234567890", "run_dir": "run"})
                if seed == 0:
                    (spec / cell / "run").mkdir()
                    (spec / cell / "run" / "metrics.jsonl").write_text("".join(
                        json.dumps({"step": s, "eval": {"main": score - 4 + s, "accuracy": score - 4 + s,
                                                        "acc_macro_f1": score - 4 + s}}) + "\n" for s in (1, 2, 3)))
    write(spec / "zero-shot_tiny-llama__sst2-validation" / "result.json", {
        "kind": "zero-shot", "method": "zero-shot (tiny-llama)", "backbone": "tiny-llama", "eval_task": "sst2",
        "split": "validation", "metric": "accuracy", "score": 50.9,
        "scores": {"accuracy": 50.9, "f1": 0.0, "mcc": 0.0, "main": 50.9}})
    sweep = root / "sweep"
    for m, scores in (("id-spam", [60.0, 66.0, 63.0]), ("lpt", [55.0, 61.0, 64.0])):
        for layer, score in enumerate(scores):
            write(sweep / f"{m}_rte_tiny-bert_s0_m{layer}" / "result.json", {
                "kind": "train", "method": m, "soft_prompt": True, "task": "rte", "backbone": "tiny-bert",
                "seed": 0, "layer": layer, "metric": "accuracy", "score": score})
    return spec


def test_table_with_mean_std_bold_best_soft_prompt_and_mean_column(tmp_path):
    craft(tmp_path)
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "crafted.md").read_text()
    assert "| Method | sst2 (accuracy) | mrpc (acc_macro_f1) | Mean |" in md
    # LoRA is a baseline: the highest numbers, never bold
    assert "| lora | 95.0 ± 0.0 | 72.0 ± 2.0 | 83.5 |" in md
    # sample std over seeds; the best soft-prompt method per column (and in Mean) in bold
    assert "| prompt-tuning | 82.0 ± 2.0 | 60.0 ± 0.0 | 71.0 |" in md
    assert "| id-spam | **85.0 ± 1.0** | **71.0 ± 1.4 (n=2)** | **78.0** |" in md  # one seed missing: counted
    # provenance: command, commit, machine, backbone, profile
    for text in ("softprompt bench crafted.yaml --profile full", "abcdef123456", "Linux-test, 2 cores",
                 "Backbone(s): tiny-bert", "Profile: full"):
        assert text in md, text
    assert "Published: Paper" in md and "| id-spam | **92.7** |" in md
    # the zero-shot baseline is a row of its own, never bold, flagged as predicting one class
    assert "| zero-shot (tiny-llama) | 50.9 | 50.9 |" in md
    assert "One class for every example" in md and "- `zero-shot_tiny-llama__sst2-validation`" in md

    sweep_md = (tmp_path / "rep" / "sweep.md").read_text()
    assert "| Method — task | m=0 | m=1 | m=2 | Mean |" in sweep_md
    assert "| id-spam — rte (accuracy) | 60.0 | 66.0 | 63.0 | 63.0 |" in sweep_md

    html = (tmp_path / "rep" / "index.html").read_text()
    assert "<b>85.0 ± 1.0</b>" in html and "Crafted GLUE" in html
    img = tmp_path / "rep" / "img"
    for name in ("sweep-layer-sweep-tiny-bert.png", "crafted-score-vs-params-tiny-bert.png",
                 "crafted-curve-train-sst2-tiny-bert.png"):
        assert (img / name).stat().st_size > 1000, name
        assert f"img/{name}" in html


def test_ties_are_all_bold_and_lower_is_better_tables():
    t = Table("t", ["a"], [Row("x", {"a": [1.04]}), Row("y", {"a": [1.0]}), Row("z", {"a": [2.0]}, eligible=False)],
              mean_column=False)
    assert "| x | **1.0** |" in t.markdown() and "| y | **1.0** |" in t.markdown() and "| z | 2.0 |" in t.markdown()
    fast = Table("t", ["a"], [Row("x", {"a": [3.0]}), Row("y", {"a": [1.0, 2.0]})], better="low", mean_column=False)
    assert "| x | 3.0 (n=1) |" in fast.markdown() and "| y | **1.5 ± 0.7** |" in fast.markdown()
    incomplete = Table("t", ["a", "b"], [Row("x", {"a": [9.0], "b": []}), Row("y", {"a": [1.0], "b": [3.0]})])
    # a partial mean (9.0 over one column) never wins the Mean column over a complete one
    assert "| x | **9.0** | – | 9.0 † |" in incomplete.markdown()
    assert "| y | 1.0 | **3.0** | **2.0** |" in incomplete.markdown()


def one_method_spec(root, name, task, method, **fields):
    """A spec folder with one soft-prompt method on one task; returns it and the fields every cell shares."""
    spec = root / name
    write(spec / "manifest.json", {"spec": name, "tasks": [task], "backbones": ["tiny-bert"], "seeds": [0],
                                   "methods": [{"label": method, "soft_prompt": True}]})
    return spec, {"kind": "train", "method": method, "soft_prompt": True, "task": task, "backbone": "tiny-bert",
                  "layer": None, "split": "validation", **fields}


def test_cells_at_the_majority_floor_are_listed_with_their_curves_and_skips_are_grouped(tmp_path):
    spec, common = one_method_spec(tmp_path, "floor", "rte", "lpt", metric="accuracy", epochs_run=3)
    write(spec / "lpt_rte_tiny-bert_s0" / "result.json", {
        **common, "cell": "lpt_rte_tiny-bert_s0", "seed": 0, "score": 52.9,
        "scores": {"accuracy": 52.9, "mcc": 0.0, "majority": 52.7, "main": 52.9},
        "curve": {"eval": [[10, 50.0], [20, 50.0], [30, 49.0]], "loss": [[s, 0.70 - s / 1000] for s in range(1, 41)]}})
    write(spec / "lpt_rte_tiny-bert_s1" / "result.json", {  # clear of the floor: not listed
        **common, "cell": "lpt_rte_tiny-bert_s1", "seed": 1, "score": 60.0,
        "scores": {"accuracy": 60.0, "mcc": 20.0, "majority": 52.7, "main": 60.0}})
    write(spec / "lpt_rte_tiny-bert_s2" / "result.json", {  # scored in another metric than the recorded floor's
        **common, "cell": "lpt_rte_tiny-bert_s2", "seed": 2, "metric": "acc_macro_f1", "score": 51.7,
        "scores": {"accuracy": 53.0, "acc_macro_f1": 51.7, "mcc": 5.0, "majority": 52.7, "main": 53.0}})
    write(spec / "skipped.json", [{"cell": f"lpt_mnli_tiny-bert_s{i}", "reason": "mnli is hub-only"} for i in range(3)]
          + [{"cell": f"lpt_mrpc_tiny-bert_s{i}", "reason": f"only needed for lpt_mrpc_tiny-bert_s{i}__qqp-validation"}
             for i in range(3)])
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "floor.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("- `lpt_rte_tiny-bert_s0`"))
    assert "52.9 vs 52.7 for always answering the most frequent label" in line
    assert "predicts one class for every example" in line
    assert "never rose above its first value (50.0) in 3 evaluation(s) over 3 epoch(s)" in line
    assert "training loss 0.698 → 0.661" in line  # means of the first and last 4 of 40 logged losses
    floor = md.split("**At the majority-class floor**")[1].split("**Skipped")[0]
    assert "lpt_rte_tiny-bert_s1" not in floor
    assert "lpt_rte_tiny-bert_s2" not in floor  # 51.7 macro-F1-and-accuracy is not below a 52.7 accuracy floor
    assert "- 3 cell(s) (`lpt_mnli_tiny-bert_s0` … `lpt_mnli_tiny-bert_s2`): mnli is hub-only" in md
    # reasons naming one cell per seed read as one line
    assert ("- 3 cell(s) (`lpt_mrpc_tiny-bert_s0` … `lpt_mrpc_tiny-bert_s2`): only needed for "
            "lpt_mrpc_tiny-bert_s*__qqp-validation") in md


def test_a_one_class_cell_is_measured_against_the_loss_of_its_label_frequencies(tmp_path):
    spec, common = one_method_spec(tmp_path, "cola", "cola", "lpt", metric="mcc", score=0.0, epochs_run=2)
    write(spec / "lpt_cola_tiny-bert_s0" / "result.json", {  # loss settles near the prior's entropy, 0.607
        **common, "cell": "lpt_cola_tiny-bert_s0", "seed": 0,
        "scores": {"accuracy": 69.2, "mcc": 0.0, "majority": 0.0, "main": 0.0},
        "summary": {"selection": {"scores": {"accuracy": 70.5, "mcc": 0.0}}},
        "curve": {"eval": [[10, 0.0], [20, 0.0]], "loss": [[s, 0.64] for s in range(5)] + [[5, 0.60]] * 5}})
    write(spec / "lpt_cola_tiny-bert_s1" / "result.json", {  # no selection record, loss far below the prior
        **common, "cell": "lpt_cola_tiny-bert_s1", "seed": 1,
        "scores": {"accuracy": 50.0, "mcc": 0.0, "majority": 0.0, "main": 0.0},
        "curve": {"eval": [[10, 0.0], [20, 0.0]], "loss": [[s, 0.5] for s in range(10)]}})
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    lines = (tmp_path / "rep" / "cola.md").read_text().splitlines()
    s0 = next(x for x in lines if x.startswith("- `lpt_cola_tiny-bert_s0`"))
    assert ("training loss 0.640 → 0.600 (first / last tenth of the logged steps; predicting only the label "
            "frequencies (70.5% / 29.5% on the split carved from train) gives 0.607: the prompt learned the class "
            "frequencies and nothing more)") in s0
    s1 = next(x for x in lines if x.startswith("- `lpt_cola_tiny-bert_s1`"))
    assert "(50.0% / 50.0% on validation) gives 0.693)" in s1 and "nothing more" not in s1


def test_regressions_within_the_band_of_zero_correlation_are_listed_with_their_curves(tmp_path):
    spec, common = one_method_spec(tmp_path, "stsb", "stsb", "dept", metric="pearson_spearman", examples=1000,
                                   epochs_run=4)
    for seed, score in enumerate([3.8, -6.1, 6.3, 40.0]):  # band for 1,000 examples: 196 / sqrt(1000) = 6.20
        write(spec / f"dept_stsb_tiny-bert_s{seed}" / "result.json", {
            **common, "cell": f"dept_stsb_tiny-bert_s{seed}", "seed": seed, "score": score,
            "scores": {"pearson_spearman": score, "main": score},
            "curve": {"eval": [[10, 28.8], [20, 29.7], [30, 28.2]]}})
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "stsb.md").read_text()
    section = md.split("**No correlation to speak of**")[1].split("\n\n", 2)[1]
    listed = [x for x in section.splitlines() if x.startswith("- ")]
    assert [x.split("`")[1] for x in listed] == ["dept_stsb_tiny-bert_s0", "dept_stsb_tiny-bert_s1"]
    assert listed[0] == ("- `dept_stsb_tiny-bert_s0`: 3.8 on 1000 examples (the band is ±6.2); the selection score "
                         "went from 28.8 to at best 29.7 in 3 evaluation(s) over 4 epoch(s)")


def test_versus_pairs_give_seed_paired_differences(tmp_path):
    spec = craft(tmp_path)
    manifest = json.loads((spec / "manifest.json").read_text())
    manifest["versus"] = [["id-spam", "prompt-tuning"], ["prompt-tuning", "lora"]]
    (spec / "manifest.json").write_text(json.dumps(manifest))
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "crafted.md").read_text()
    assert "**Seed-paired differences — sst2 (accuracy), tiny-bert**" in md
    assert "| a − b | seed 0 | seed 1 | seed 2 | Mean |" in md
    # sst2: id-spam 84/85/86 vs prompt-tuning 80/82/84; lora 95 on every seed
    assert "| id-spam − prompt-tuning (ahead on 3 of 3) | 4.00 | 3.00 | 2.00 | 3.00 |" in md
    assert "| prompt-tuning − lora (ahead on 0 of 3) | -15.00 | -13.00 | -11.00 | -13.00 |" in md
    # mrpc: id-spam has no seed 2, so that difference is left out, not invented
    assert "| id-spam − prompt-tuning (ahead on 2 of 2) | 10.00 | 12.00 | – | 11.00 † |" in md


def test_versus_must_name_two_methods_of_the_spec(tmp_path):
    import pytest

    from softprompt.errors import ConfigError
    from softprompt.experiments.spec import parse_spec

    data = {"name": "v", "methods": ["prompt-tuning", "lora"], "tasks": ["sst2"], "backbones": ["tiny-bert"],
            "versus": [["prompt-tuning", "nope"]]}
    with pytest.raises(ConfigError, match=r"versus\[0\]: expected two different method labels \[a, b\] of this spec "
                                          r"\(prompt-tuning, lora\), got \['prompt-tuning', 'nope'\]"):
        parse_spec(data)


def test_a_run_without_an_end_record_is_reported_as_killed(tmp_path):
    spec = craft(tmp_path)
    manifest = json.loads((spec / "manifest.json").read_text())
    killed = {"command": "softprompt bench crafted.yaml --only '*_s0'", "status": "running", "started": "t0"}
    manifest["runs"] = [killed, *manifest["runs"], {**killed, "command": "softprompt bench crafted.yaml"}]
    (spec / "manifest.json").write_text(json.dumps(manifest))
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    runs = [line for line in (tmp_path / "rep" / "crafted.md").read_text().splitlines() if line.startswith("- Run ")]
    assert len(runs) == 3
    assert "status killed (no end recorded; its finished cells are kept)" in runs[0]
    assert "status complete, ran 17 cell(s)" in runs[1]
    assert "status running, or killed (no end recorded)" in runs[2]


def test_few_shot_table_says_how_its_checkpoints_were_picked(tmp_path):
    def few_shot(spec, method, selection):
        cell = f"{method}_rte_tiny-bert_s0__fewshot100-mrpc"
        write(tmp_path / spec / cell / "result.json", {
            "cell": cell, "kind": "few-shot", "method": method, "soft_prompt": True, "task": "rte",
            "eval_task": "mrpc", "backbone": "tiny-bert", "seed": 0, "layer": None, "metric": "acc_macro_f1",
            "score": 55.0, "few_shot_examples": 90, "summary": {"selection": selection}})

    for spec in ("carved", "last"):
        write(tmp_path / spec / "manifest.json", {"spec": spec, "tasks": [], "backbones": ["tiny-bert"], "seeds": [0],
                                                   "methods": [{"label": "lpt", "soft_prompt": True}]})
    few_shot("carved", "lpt", {"split": "carved validation", "examples": 10})
    few_shot("last", "lpt", {"split": "validation", "examples": 408})
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    carved = (tmp_path / "rep" / "carved.md").read_text()
    assert "| Method | rte→mrpc (90-shot, acc_macro_f1) | Mean |" in carved
    assert "checkpoint picked on 10 of B's examples carved off before training" in carved
    assert "after the last epoch" not in carved
    assert "the model after the last epoch (no model selection on the scored split)" in (
        tmp_path / "rep" / "last.md").read_text()


def test_a_prompt_length_sweep_is_a_table_and_a_plot_with_a_line_per_method_and_init(tmp_path, monkeypatch):
    from softprompt.experiments.report import plots

    spec = tmp_path / "design"
    swept = [("prompt-tuning", init, t) for init in ("random", "labels") for t in (1, 5, 20)]
    swept += [("prefix-tuning", "text", t) for t in (1, 5, 20)]
    methods = [{"label": f"{m}-{init}-t{t}", "soft_prompt": True,
                "sweep": {"of": m, "values": {"init": init, "num_tokens": t}}} for m, init, t in swept]
    write(spec / "manifest.json", {"spec": "design", "tasks": ["sst2"], "backbones": ["tiny-bert"], "seeds": [0, 1],
                                   "methods": methods + [{"label": "lora", "soft_prompt": False}]})
    score = {"random": 50.0, "labels": 60.0, "text": 70.0}
    for m, init, t in swept:
        for seed in (0, 1):
            if (m, init, t, seed) == ("prefix-tuning", "text", 20, 1):
                continue  # one seed missing: the mean of the other
            cell = f"{m}-{init}-t{t}_sst2_tiny-bert_s{seed}"
            write(spec / "cells" / f"{cell}.json", {
                "cell": cell, "kind": "train", "method": f"{m}-{init}-t{t}", "soft_prompt": True, "task": "sst2",
                "backbone": "tiny-bert", "seed": seed, "layer": None, "metric": "accuracy",
                "score": score[init] + t / 10 + seed})
    write(spec / "cells" / "lora_sst2_tiny-bert_s0.json", {
        "cell": "lora_sst2_tiny-bert_s0", "kind": "train", "method": "lora", "task": "sst2", "backbone": "tiny-bert",
        "seed": 0, "layer": None, "metric": "accuracy", "score": 90.0})
    drawn = []
    real_save = plots._save

    def record(plt, fig, path):  # each panel's legend and its lines' points (errorbar: mean, std over seeds)
        for ax in fig.axes:
            drawn.append((path.name, ax.get_xlabel(), sorted(t.get_text() for t in ax.get_legend().get_texts())))
            for bars in ax.containers:
                line = bars.lines[0]
                drawn.append((bars.get_label(), [int(x) for x in line.get_xdata()],
                              [round(float(y), 2) for y in line.get_ydata()]))
        return real_save(plt, fig, path)

    monkeypatch.setattr(plots, "_save", record)
    assert report.main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    png = tmp_path / "rep" / "img" / "design-num-tokens-tiny-bert.png"
    assert png.stat().st_size > 1000 and f"img/{png.name}" in (tmp_path / "rep" / "design.md").read_text()
    assert ("design-num-tokens-tiny-bert.png", "prompt length t (num_tokens)",
            ["prefix-tuning text", "prompt-tuning labels", "prompt-tuning random"]) in drawn
    lines = {d[0]: d[1:] for d in drawn if not str(d[0]).endswith(".png")}
    assert lines["prompt-tuning random"] == ([1, 5, 20], [50.6, 51.0, 52.5])  # mean of seeds 0 and 1
    assert lines["prefix-tuning text"] == ([1, 5, 20], [70.6, 71.0, 72.0])  # t = 20: seed 0 only
    md = (tmp_path / "rep" / "design.md").read_text()
    assert "| Method — task | t=1 | t=5 | t=20 | Mean |" in md
    assert "| prompt-tuning random — sst2 (accuracy) | 50.6 ± 0.7 | 51.0 ± 0.7 | 52.5 ± 0.7 | 51.4 |" in md
    assert "| prefix-tuning text — sst2 (accuracy) | 70.6 ± 0.7 | 71.0 ± 0.7 | 72.0 (n=1) | 71.2 |" in md
    assert "lora —" not in md  # not swept: only in the main table
