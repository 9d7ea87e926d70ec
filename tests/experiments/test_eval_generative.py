"""`softprompt eval` and `softprompt predict` on generative adapters: a bench-produced run scored again from
the command line gives the bench's figures and outputs; predict generates text; wrong task kinds are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from softprompt.cli import main
from softprompt.experiments import run_grid
from softprompt.experiments.runner import GridRunner

LIMIT = 3


def lines(path):
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, data_dir):
    """One tiny e2e train cell (tiny-llama, 16 rows, 1 epoch) run by the bench; its cell file and run folder."""
    tmp = tmp_path_factory.mktemp("e2e_eval")
    spec = tmp / "e2e.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "e2e", "tasks": ["e2e"], "backbones": ["tiny-llama"], "seeds": [0], "methods": ["prefix-tuning"],
        "train": {"batch_size": 8, "max_length": 64, "eval_batch_size": 2, "selection_split": "validation",
                  "eval_split": "test", "checkpoint_every": 0},
        "profiles": {"quick": {"train": {"epochs": 1, "train_limit": 16, "eval_limit": LIMIT}}},
    }, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GridRunner, "with_meteor", False)  # METEOR starts Java (~20 s)
        res = run_grid(spec, "quick", tmp / "out", data_dir, log=None)
    assert not res["failed"]
    cell = json.loads((tmp / "out" / "e2e" / "cells" / "prefix-tuning_e2e_tiny-llama_s0.json").read_text())
    run_dir = Path(cell["outputs"]).parent.parent  # <cell>/run/test/outputs.jsonl
    assert (run_dir / "adapter" / "adapter.json").is_file()
    return cell, run_dir


def test_eval_of_a_bench_run_equals_the_bench_figures_and_writes_outputs(bench_run, data_dir, tmp_path, capsys):
    cell, run_dir = bench_run
    out = tmp_path / "eval"
    assert main(["eval", str(run_dir), "--task", "e2e", "--split", "test", "--limit", str(LIMIT), "--data-dir",
                 str(data_dir), "--no-meteor", "--output-dir", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed[printed.index("["):])[0]
    assert res["task"] == "e2e" and res["split"] == "test" and res["examples"] == LIMIT
    assert res["scores"] == cell["scores"]  # every figure the bench reported for this run, BLEU first
    assert res["batch_size"] == 2 and res["max_length"] == 64  # the run's settings, as the bench used them
    records = lines(out / "outputs.jsonl")
    assert len(records) == LIMIT and records[0]["input"].startswith("name[")
    assert all(r["references"] and r["finish_reason"] in ("stop", "length") for r in records)
    bench_records = lines(cell["outputs"])
    assert [r["prediction"] for r in records] == [r["prediction"] for r in bench_records]
    assert [r["id"] for r in records] == [r["id"] for r in bench_records]
    assert json.loads((out / "scores.json").read_text()) == {"task": "e2e", **cell["scores"]}

    # the bench's scoring function called directly on the same adapter and data gives the same
    from softprompt.train.generation_eval import evaluate_generation
    from softprompt.train.inference import load_run_adapter

    model, _ = load_run_adapter(run_dir)
    direct = evaluate_generation(model, "e2e", "test", data_dir, LIMIT, 64, False, 2, with_meteor=False)
    assert direct["scores"] == res["scores"]


def test_eval_prints_bleu_and_writes_into_the_run_by_default(bench_run, data_dir, capsys):
    _, run_dir = bench_run
    assert main(["eval", str(run_dir / "adapter"), "--task", "e2e", "--split", "test", "--limit", "2",
                 "--data-dir", str(data_dir), "--no-meteor"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("e2e test (2 examples") and "bleu " in printed and "rouge_l " in printed
    assert "meteor: unavailable" in printed and "outputs: " in printed
    assert len(lines(run_dir / "adapter" / "eval" / "e2e-test" / "outputs.jsonl")) == 2


def test_predict_generates_text_with_a_generative_adapter(bench_run, capsys):
    _, run_dir = bench_run
    mr = "name[The Eagle], eatType[coffee shop], area[riverside]"
    assert main(["predict", str(run_dir), mr, "name[Alimentum], food[French]", "--max-new-tokens", "5"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["text"] for r in rows] == [mr, "name[Alimentum], food[French]"]
    assert all(isinstance(r["generated"], str) and r["finish_reason"] in ("stop", "length") for r in rows)

    from softprompt.train.generation_eval import encode_inputs
    from softprompt.train.evaluate import generate_with_reasons
    from softprompt.train.inference import load_run_adapter

    model, meta = load_run_adapter(run_dir)  # the same greedy text as generating from the encoded input
    enc = encode_inputs(model.backbone.tokenizer, meta["task"], [mr], None, 64, model.backbone.kind)
    assert generate_with_reasons(model, enc, 1, model.backbone.tokenizer, 5)[0] == [rows[0]["generated"]]


def test_eval_with_the_wrong_task_kind_is_a_one_line_error(bench_run, data_dir, tmp_path, capsys):
    _, run_dir = bench_run
    assert main(["eval", str(run_dir), "--task", "sst2", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "generates text" in err and "sst2-t2t" in err

    from softprompt.adapter import save_adapter
    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    classifier = SoftPromptModel(load_backbone("tiny-bert"), method_config("prompt-tuning"), 2)
    save_adapter(classifier, tmp_path / "clf", task="sst2", label_names=["negative", "positive"])
    assert main(["eval", str(tmp_path / "clf"), "--task", "e2e", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a classifier" in err and "generation task" in err


def test_eval_on_a_text_to_text_view_scores_the_parsed_labels(bench_run, data_dir, tmp_path, capsys):
    _, run_dir = bench_run  # any generation task: the e2e adapter answering sentiment questions
    out = tmp_path / "t2t"
    assert main(["eval", str(run_dir), "--task", "sst2-t2t", "--limit", "4", "--data-dir", str(data_dir),
                 "--output-dir", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed[printed.index("["):])[0]
    records = lines(out / "outputs.jsonl")
    assert res["split"] == "validation" and len(records) == 4 and {"label", "parsed", "finish_reason"} <= set(records[0])
    assert res["scores"]["unparseable"] == sum(r["parsed"] is None for r in records)
    assert res["scores"]["accuracy"] == pytest.approx(100 * sum(r["parsed"] == r["label"] for r in records) / 4)
