"""softprompt bench: a tiny grid end to end, resuming an interrupted grid, spec errors."""

from __future__ import annotations

import json

import pytest

from softprompt.commands import bench, report
from softprompt.errors import ConfigError
from softprompt.experiments import expand, load_spec, run_grid
from softprompt.train import trainer as trainer_module

from tests.experiments.helpers import tiny_spec

QUIET = dict(log=None)


def test_tiny_grid_runs_end_to_end_and_reports(tmp_path, data_dir, capsys):
    spec = tiny_spec(tmp_path, eval_tasks=[{"task": "fpb-binary", "split": "test"}])
    out = tmp_path / "results"
    assert bench.main([str(spec), "--profile", "quick", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    cells = ["prompt-tuning_sst2_tiny-bert_s0", "id-spam_sst2_tiny-bert_s0",
             "prompt-tuning_sst2_tiny-bert_s0__fpb-binary-test", "id-spam_sst2_tiny-bert_s0__fpb-binary-test"]
    for cell in cells:
        res = json.loads((out / "tiny" / "cells" / f"{cell}.json").read_text())
        assert res["cell"] == cell and res["profile"] == "quick" and res["metric"] == "accuracy"
        assert 0 <= res["score"] <= 100 and res["git_commit"]
    train = json.loads((out / "tiny" / "cells" / f"{cells[1]}.json").read_text())
    assert train["kind"] == "train" and 0 < train["train_examples"] <= 32 and train["examples"] == 16  # less the carved rows
    assert train["trainable_params"] > 0 and train["time_to_best_s"] is not None and train["soft_prompt"]
    run_dir = out / "tiny" / cells[1] / "run"
    assert (run_dir / "adapter" / "adapter.safetensors").exists() and (run_dir / "metrics.jsonl").exists()
    assert not list(run_dir.glob("ckpt-*"))  # finished cells drop their checkpoints
    assert train["run_dir"] == str(run_dir) and train["machine"]["cores"] >= 1 and "softprompt bench" in train["command"]
    assert train["curve"]["eval"] and train["train_config"]["train_limit"] == 32
    assert (out / "tiny" / "cells" / f"{cells[1]}.json").stat().st_size < 20_000  # small enough to commit
    summary = json.loads((run_dir / "summary.json").read_text())
    assert train["score"] == pytest.approx(summary["test"]["scores"]["accuracy"])  # the trainer's held-out score
    ev = json.loads((out / "tiny" / "cells" / f"{cells[3]}.json").read_text())
    assert ev["kind"] == "eval" and ev["eval_task"] == "fpb-binary" and ev["examples"] == 12 and ev["task"] == "sst2"
    from softprompt.train.inference import evaluate_adapter

    again = evaluate_adapter(str(run_dir / "adapter"), "fpb-binary", "test", data_dir, 12)
    assert ev["score"] == pytest.approx(again["scores"]["accuracy"])  # this cell's adapter on that split
    manifest = json.loads((out / "tiny" / "manifest.json").read_text())
    run = manifest["runs"][-1]
    assert run["status"] == "complete" and run["ran"] == 4 and "softprompt bench" in run["command"]
    assert run["machine"]["cores"] >= 1 and run["git_commit"]

    # a second bench run finds everything finished
    capsys.readouterr()
    assert bench.main([str(spec), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert "4 already finished" in capsys.readouterr().out

    assert report.main([str(out)]) == 0
    md = (out / "report" / "tiny.md").read_text()
    assert "| prompt-tuning |" in md and "| id-spam |" in md and "sst2 (accuracy)" in md
    assert f"| id-spam | {train['score']:.1f}" in md or f"| id-spam | **{train['score']:.1f}**" in md
    assert "fpb-binary test (accuracy)" in md and "softprompt bench" in md and "tiny-bert" in md and "quick" in md
    html = (out / "report" / "index.html").read_text()
    assert "<table>" in html and "img/tiny-curve-train-sst2-tiny-bert.png" in html
    assert (out / "report" / "img" / "tiny-score-vs-params-tiny-bert.png").stat().st_size > 1000
    assert (out / "report" / "results.csv").read_text().count("\n") == 5


def test_interrupted_grid_resumes_without_redoing_finished_cells(tmp_path, data_dir, monkeypatch):
    spec = tiny_spec(tmp_path)
    out = tmp_path / "results"
    real_train = trainer_module.train
    calls = []

    def interrupt_second_cell(cfg, backbone=None, resume=False, log=print, callbacks=()):
        calls.append((cfg.method_name, resume))
        if len(calls) == 2:  # Ctrl-C in the middle of the second cell, after its step-2 checkpoint
            def stop(trainer, progress):
                if progress["global_step"] == 3:
                    raise KeyboardInterrupt
            callbacks = [stop]
        return real_train(cfg, backbone=backbone, resume=resume, log=log, callbacks=callbacks)

    monkeypatch.setattr(trainer_module, "train", interrupt_second_cell)
    with pytest.raises(KeyboardInterrupt):
        run_grid(spec, "quick", out, data_dir, **QUIET)
    first = out / "tiny" / "cells" / "prompt-tuning_sst2_tiny-bert_s0.json"
    second = out / "tiny" / "id-spam_sst2_tiny-bert_s0"
    second_file = out / "tiny" / "cells" / "id-spam_sst2_tiny-bert_s0.json"
    assert first.exists() and not second_file.exists()
    assert [p.name for p in (second / "run").glob("ckpt-*")] == ["ckpt-00000002"]
    assert json.loads((out / "tiny" / "manifest.json").read_text())["runs"][-1]["status"] == "interrupted"
    before = (first.stat().st_mtime_ns, first.read_text())

    calls.clear()
    logs = []
    monkeypatch.setattr(trainer_module, "train", lambda cfg, **kw: (calls.append((cfg.method_name, kw["resume"])),
                                                                   real_train(cfg, **kw))[1])
    res = run_grid(spec, "quick", out, data_dir, log=logs.append)
    assert calls == [("id-spam", True)]  # only the unfinished cell, continued from its checkpoint
    assert res["ran"] == ["id-spam_sst2_tiny-bert_s0"] and res["already_finished"] == ["prompt-tuning_sst2_tiny-bert_s0"]
    assert any("resumed from ckpt-00000002" in line for line in logs)
    assert (first.stat().st_mtime_ns, first.read_text()) == before
    done = json.loads(second_file.read_text())
    assert done["steps"] == 4 and done["summary"]["steps"] == 4
    manifest = json.loads((out / "tiny" / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["interrupted", "complete"]


def test_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path, data_dir, monkeypatch):
    spec = tiny_spec(tmp_path)

    def broken_prompt_tuning(cfg, **kw):
        if cfg.method_name == "prompt-tuning":
            raise RuntimeError("boom")
        return {"best": 60.0, "best_scores": {"accuracy": 60.0, "main": 60.0}, "epoch_samples_per_s": [10.0],
                "trainable_params": 5, "train_examples": 32, "eval_examples": 16, "steps": 4}

    monkeypatch.setattr(trainer_module, "train", broken_prompt_tuning)
    res = run_grid(spec, "quick", tmp_path / "r", data_dir, **QUIET)
    assert list(res["failed"]) == ["prompt-tuning_sst2_tiny-bert_s0"] and "boom" in res["failed"]["prompt-tuning_sst2_tiny-bert_s0"]
    assert res["ran"] == ["id-spam_sst2_tiny-bert_s0"]
    done = json.loads((tmp_path / "r" / "tiny" / "cells" / "id-spam_sst2_tiny-bert_s0.json").read_text())
    assert done["score"] == 60.0 and done["train_s_per_sample"] == pytest.approx(0.1)
    assert bench.main([str(spec), "--out", str(tmp_path / "r"), "--data-dir", str(data_dir)]) == 1


def test_unknown_method_or_task_names_the_field(tmp_path, capsys):
    bad_method = tiny_spec(tmp_path, name="badm", methods=["id-spam", "bogus-method"])
    with pytest.raises(ConfigError, match=r"methods\[1\].*bogus-method"):
        load_spec(bad_method)
    assert bench.main([str(bad_method), "--list"]) == 2
    assert "methods[1]" in capsys.readouterr().err

    bad_task = tiny_spec(tmp_path, name="badt", tasks=["sst2", "nosuchtask"])
    with pytest.raises(ConfigError, match=r"tasks\[1\].*nosuchtask"):
        load_spec(bad_task)
    for extra, field in [({"method_overrides": {"lora": {"lr": 1}}}, "method_overrides.lora"),
                         ({"train": {"epochz": 2}}, "train: unknown training config key"),
                         ({"train": {"seed": 2}}, "train: seed"),
                         ({"colour": 1}, "unknown field(s) colour"),
                         ({"eval_tasks": [{"task": "imdb", "split": "dev2"}]}, "eval_tasks[0].split"),
                         ({"pairs": [{"train": "sst2", "eval": "tweeteval"}]}, "pairs[0]"),
                         ({"backbones": ["no-such-backbone"]}, "backbones[0]")]:
        with pytest.raises(ConfigError, match=r".*") as err:
            load_spec(tiny_spec(tmp_path, name="bad", **extra))
        assert field in str(err.value), (field, str(err.value))


def test_spec_change_after_results_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(trainer_module, "train", lambda cfg, **kw: pytest.fail("nothing may train"))
    spec = tiny_spec(tmp_path, methods=["id-spam"])
    cell = expand(spec, "quick", data_dir)[0]
    d = tmp_path / "r" / "tiny" / "cells"
    d.mkdir(parents=True)
    (d / f"{cell.id}.json").write_text(json.dumps({"cell": cell.id, "cell_key": "something-else", "score": 1.0}))
    with pytest.raises(ConfigError, match="another configuration"):
        run_grid(spec, "quick", tmp_path / "r", data_dir, **QUIET)


def test_scores_of_an_adapter_that_will_be_retrained_are_refused(tmp_path, data_dir, monkeypatch):
    """A removed (e.g. stale) training cell takes the cells that scored its adapter with it."""
    monkeypatch.setattr(trainer_module, "train", lambda cfg, **kw: pytest.fail("nothing may train"))
    spec = tiny_spec(tmp_path, methods=["id-spam"], eval_tasks=[{"task": "imdb", "split": "test", "limit": 8}])
    ev = next(c for c in expand(spec, "quick", data_dir) if c.kind == "eval")
    d = tmp_path / "r" / "tiny" / "cells"
    d.mkdir(parents=True)
    (d / f"{ev.id}.json").write_text(json.dumps({"cell": ev.id, "cell_key": ev.key(), "score": 1.0}))
    with pytest.raises(ConfigError, match=rf"score an adapter whose training cell is not finished "
                                          rf"\(e.g. {ev.id} needs {ev.needs}\); remove them too"):
        run_grid(spec, "quick", tmp_path / "r", data_dir, **QUIET)


def test_repository_specs_expand(data_dir):
    """Every spec in experiments/ loads under both profiles; hub-only tasks are skipped offline with a reason."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "experiments"
    specs = {p.stem: load_spec(p) for p in sorted(root.glob("*.yaml"))}
    assert {"glue", "superglue", "cross_domain", "transfer", "layer_sweep", "ablation", "efficiency"} <= set(specs)
    for name, spec in specs.items():
        for profile in ("quick", "full"):
            spec.for_profile(profile)
    glue = expand(specs["glue"], "quick", data_dir)
    skipped = {c.task for c in glue if c.skip}
    assert skipped == {"mnli", "qnli", "qqp"} and all("hub-only" in c.skip for c in glue if c.skip)
    assert sum(1 for c in glue if not c.skip) == 15 * 5  # 15 methods x the 5 offline tasks
    full = expand(specs["glue"], "full", data_dir)
    assert {c.seed for c in full} == {0, 1, 2} and all(c.train["epochs"] == 30 for c in full)
    assert all(c.train["train_limit"] is None for c in full)
    cross = expand(specs["cross_domain"], "quick", data_dir)
    assert {c.kind for c in cross} == {"train", "eval", "zero-shot"} and not any(c.skip for c in cross)
    assert all(c.limit <= 500 for c in cross if c.kind != "train")
    transfer = expand(specs["transfer"], "quick", data_dir)
    runnable = {c.id for c in transfer if not c.skip}
    assert "id-spam_sst2_minilm-l6_s0__imdb-test" in runnable and "id-spam_imdb_minilm-l6_s0__sst2-validation" in runnable
    assert "id-spam_mrpc_minilm-l6_s0__fewshot100-rte" in runnable
    assert not any(c.eval_task == "qqp" or c.task == "qqp" for c in transfer if not c.skip)
    ablation = expand(specs["ablation"], "quick", data_dir)
    assert {c.method for c in ablation} == {"mean-pooling", "id-spam", "id-spam-no-outer-relu", "lpt", "lpt-max-pool",
                                            "smop", "smop-no-noise"}
    producer = {c.method: c.method_config.get("producer") for c in ablation}
    assert producer["mean-pooling"] == {"pooling": "mean"} and producer["smop-no-noise"] == {"noise": "none"}
    assert producer["id-spam-no-outer-relu"] == {"output_activation": "none"} and not producer["id-spam"]
    assert {c.kind for c in expand(specs["efficiency"], "quick", data_dir)} == {"train", "params"}
    design = expand(specs["prompt_design"], "quick", data_dir)  # 2 methods x 4 inits x 6 lengths
    assert len(design) == 48 and not any(c.skip for c in design)
    pt = next(c for c in design if c.id == "prefix-tuning-labels-t100_sst2_minilm-l6_s0")
    assert pt.method_config["producer"]["init"] == "labels" and pt.method_config["producer"]["num_tokens"] == 100
    design_e2e = expand(specs["prompt_design_e2e"], "quick", data_dir)  # no label words: no `labels` init
    assert len(design_e2e) == 36 and not any("labels" in c.id for c in design_e2e)


def test_only_filter_adds_dependencies(tmp_path, data_dir):
    from softprompt.experiments.grid import select

    spec = tiny_spec(tmp_path, eval_tasks=["fpb-binary"])
    cells = expand(spec, "quick", data_dir)
    chosen = select(cells, "id-spam*fpb*")
    assert [c.id for c in chosen] == ["id-spam_sst2_tiny-bert_s0", "id-spam_sst2_tiny-bert_s0__fpb-binary-validation"]
    with pytest.raises(ConfigError, match="matches no cell"):
        select(cells, "nothing-like-this")


def test_eval_target_reads_its_own_number_of_tokens(tmp_path, data_dir):
    """`eval_tasks: [{..., max_length: N}]` scores long inputs (reviews) at N tokens, not the run's length."""
    spec = tiny_spec(tmp_path, methods=["id-spam"], eval_tasks=[{"task": "imdb", "split": "test", "limit": 6,
                                                                   "max_length": 20}])
    ev = next(c for c in expand(spec, "quick", data_dir) if c.kind == "eval")
    assert ev.max_length == 20 and ev.id == "id-spam_sst2_tiny-bert_s0__imdb-test"
    out = tmp_path / "r"
    run_grid(spec, "quick", out, data_dir, **QUIET)
    res = json.loads((out / "tiny" / "cells" / f"{ev.id}.json").read_text())
    assert res["max_length"] == 20 and res["eval_max_length"] == 20 and res["examples"] == 6
    from softprompt.train.inference import evaluate_adapter

    adapter = str(out / "tiny" / ev.needs / "run" / "adapter")
    at_20 = evaluate_adapter(adapter, "imdb", "test", data_dir, 6, max_length=20)
    assert res["score"] == pytest.approx(at_20["scores"]["accuracy"]) and res["truncated"] == at_20["truncated"]
    assert evaluate_adapter(adapter, "imdb", "test", data_dir, 6)["max_length"] == 32  # the run's, by default
    assert report.main([str(out)]) == 0
    assert "imdb test, up to 20 tokens (accuracy)" in (out / "report" / "tiny.md").read_text()
    with pytest.raises(ConfigError, match=r"eval_tasks\[0\]\.max_length: expected a positive integer, got 0"):
        load_spec(tiny_spec(tmp_path, name="bad", eval_tasks=[{"task": "imdb", "split": "test", "max_length": 0}]))


def test_a_sweep_entry_is_one_method_per_combination_of_producer_values(tmp_path, data_dir):
    sweep = {"name": "prompt-tuning", "producer": {"init_text": "Classify:"},
             "sweep": {"init": ["random", "text"], "num_tokens": [1, 5]}}
    spec = tiny_spec(tmp_path, methods=[sweep, "lora"], method_overrides={"prompt-tuning": {"lr": 0.3}})
    cells = expand(spec, "quick", data_dir)
    assert [c.id for c in cells] == [f"prompt-tuning-{i}-t{t}_sst2_tiny-bert_s0" for i in ("random", "text")
                                     for t in (1, 5)] + ["lora_sst2_tiny-bert_s0"]
    assert cells[3].method_config == {"name": "prompt-tuning", "producer": {"init_text": "Classify:", "init": "text",
                                                                            "num_tokens": 5}}
    assert all(c.train["lr"] == 0.3 for c in cells[:4]) and "lr" not in cells[4].train  # the entry's own label
    assert load_spec(spec).methods[1].sweep == {"of": "prompt-tuning", "values": {"init": "random", "num_tokens": 5}}
    for bad, field in [({"num_tokens": []}, r"methods\[0\]\.sweep\.num_tokens: expected a non-empty list"),
                       ({"init": ["random", "nonsense"]}, r"methods\[0\] \(init=nonsense\)"),
                       ({"no_such_field": [1]}, r"methods\[0\] \(no_such_field=1\)")]:
        with pytest.raises(ConfigError, match=field):
            load_spec(tiny_spec(tmp_path, name="bad", methods=[{**sweep, "sweep": bad}]))


def test_few_shot_methods_start_from_another_methods_run_on_the_source_task(tmp_path, data_dir):
    """few_shot.sources: SPoT / ATTEMPT / MPT get prompt-tuning's adapter on A wherever their config says {source}."""
    import torch
    from safetensors.torch import load_file

    methods = ["prompt-tuning", {"label": "spot", "name": "prompt-tuning",
                                 "producer": {"init": "transfer", "init_from": ["{source}"]}},
               {"label": "attempt", "name": "attempt", "producer": {"sources": ["{source}"]}},
               {"label": "mpt", "name": "mpt", "producer": {"shared_from": "{source}"}}]
    spec = tiny_spec(tmp_path, methods=methods, tasks=[], few_shot={
        "examples": 8, "methods": ["spot", "attempt", "mpt"], "pairs": [{"train": "sst2", "eval": "imdb",
                                                                          "split": "test"}],
        "sources": {"spot": "prompt-tuning", "attempt": "prompt-tuning", "mpt": "prompt-tuning"},
        "train": {"epochs": 1}})
    cells = expand(spec, "quick", data_dir)
    assert [(c.id, c.needs) for c in cells] == [("prompt-tuning_sst2_tiny-bert_s0", None)] + [
        (f"{m}_sst2_tiny-bert_s0__fewshot8-imdb", "prompt-tuning_sst2_tiny-bert_s0") for m in ("spot", "attempt", "mpt")]
    assert cells[2].method_config == {"name": "attempt", "producer": {"sources": ["{source}"]}}  # no path in the key
    out = tmp_path / "r"
    res = run_grid(spec, "quick", out, data_dir, **QUIET)
    assert not res["failed"] and len(res["ran"]) == 4
    source = out / "tiny" / "prompt-tuning_sst2_tiny-bert_s0" / "run" / "adapter"
    prompt = load_file(str(source / "adapter.safetensors"))["producer.prompt"]
    attempt = load_file(str(out / "tiny" / cells[2].id / "run" / "adapter" / "adapter.safetensors"))
    assert torch.equal(attempt["producer.sources"][0], prompt)  # the frozen source prompt is A's prompt
    config = (out / "tiny" / cells[3].id / "run" / "config.yaml").read_text()
    assert str(source) in config and "{source}" not in config
    for bad, match in [({"sources": {"spot": "nope"}}, r"few_shot.sources.spot: 'nope' must be one of"),
                       ({"sources": {"lora": "prompt-tuning"}}, r"few_shot.sources.lora: not one of few_shot.methods")]:
        with pytest.raises(ConfigError, match=match):
            load_spec(tiny_spec(tmp_path, name="bad", methods=methods + ["lora"], tasks=[], few_shot={
                "methods": ["spot", "attempt", "mpt"], "pairs": [{"train": "sst2", "eval": "imdb"}], **bad}))
