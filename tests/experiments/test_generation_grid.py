"""Generation tasks in a grid: text-to-text cross-domain cells and E2E with a peft baseline and a zero-shot
instruction model, all scored by generated output with per-example outputs next to the scores."""

from __future__ import annotations

import json

import pytest
import yaml

from softprompt.errors import ConfigError
from softprompt.experiments import build_report, expand, load_spec, run_grid
from softprompt.experiments.runner import GridRunner


@pytest.fixture(autouse=True)
def no_meteor(monkeypatch):
    monkeypatch.setattr(GridRunner, "with_meteor", False)  # METEOR starts Java (~20 s); scored elsewhere


def write(tmp_path, name, **fields):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **fields}, sort_keys=False))
    return path


def lines(path):
    return [json.loads(x) for x in open(path).read().splitlines()]


def test_text_to_text_cross_domain_cells_generate_and_write_outputs(tmp_path, data_dir):
    spec = write(tmp_path, "t2t", methods=["prompt-tuning"], tasks=["sst2-t2t"], backbones=["tiny-llama"], seeds=[0],
                 train={"batch_size": 8, "max_length": 48, "checkpoint_every": 0},
                 profiles={"quick": {"train": {"epochs": 1, "train_limit": 24, "eval_limit": 6}, "eval_limit": 5}},
                 eval_tasks=[{"task": "sst2-t2t", "split": "validation"}, {"task": "fpb-binary-t2t", "split": "all"}],
                 zero_shot={"backbone": "tiny-llama", "max_length": 96})
    out = tmp_path / "out"
    res = run_grid(spec, "quick", out, data_dir, log=None)
    assert not res["failed"] and len(res["ran"]) == 5
    cells = out / "t2t" / "cells"
    train = json.loads((cells / "prompt-tuning_sst2-t2t_tiny-llama_s0.json").read_text())
    assert train["kind"] == "train" and {"accuracy", "unparseable"} <= set(train["scores"])
    assert train["outputs_match_trainer"] is True  # the re-scored test split is the trainer's greedy output
    assert train["trainer_test_main"] is not None and train["trainer_test_main"] == pytest.approx(train["scores"]["main"])
    assert len(lines(train["outputs"])) == train["examples"] == 6
    ev = json.loads((cells / "prompt-tuning_sst2-t2t_tiny-llama_s0__fpb-binary-t2t-all.json").read_text())
    assert ev["kind"] == "eval" and ev["examples"] == 5 and ev["decoding"] == "greedy"
    assert 0 <= ev["scores"]["unparseable"] <= 5 and ev["score"] == ev["scores"]["accuracy"]
    records = lines(ev["outputs"])
    assert len(records) == 5 and {"id", "input", "prediction", "label", "parsed"} <= set(records[0])
    assert ev["scores"]["unparseable"] == sum(r["parsed"] is None for r in records)
    assert ev["score"] == pytest.approx(100 * sum(r["parsed"] == r["label"] for r in records) / 5)
    assert records[0]["input"].startswith("Sentence: ") and ev["outputs"].startswith(str(out / "t2t"))
    assert sum(r["parsed"] is None for r in records) == ev["scores"]["unparseable"]
    zs = json.loads((cells / "zero-shot_tiny-llama__fpb-binary-t2t-all.json").read_text())
    assert zs["kind"] == "zero-shot" and zs["examples"] == 5 and "unparseable" in zs["scores"]
    # the classification zero-shot prompt: natural question, the answer generated after the answer prefix
    assert "Is the sentiment of this text positive or negative?\n\n" in zs["instruction_example"]
    assert zs["instruction_example"].endswith("The sentiment of this text is") and len(lines(zs["outputs"])) == 5
    build_report(out, log=None)
    md = (out / "report" / "t2t.md").read_text()
    assert "fpb-binary-t2t all (accuracy)" in md and "Unparseable generated answers" in md
    assert "zero-shot (tiny-llama)" in md


def test_e2e_grid_with_peft_baseline_and_zero_shot_instruction(tmp_path, data_dir):
    spec = write(tmp_path, "e2e", tasks=["e2e"], backbones=["tiny-llama"], seeds=[0],
                 methods=["prefix-tuning", {"label": "peft-prompt-tuning",
                                            "peft": {"peft_type": "prompt_tuning", "num_virtual_tokens": 4,
                                                     "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Say:"}}],
                 train={"batch_size": 8, "max_length": 64, "selection_split": "validation", "eval_split": "test",
                        "checkpoint_every": 0},
                 profiles={"quick": {"train": {"epochs": 1, "train_limit": 16, "eval_limit": 3}}},
                 zero_shot={"backbone": "tiny-llama", "tasks": [{"task": "e2e", "split": "test", "limit": 3}],
                            "instruction": "Describe: {input}", "max_new_tokens": 8})
    cells = expand(load_spec(spec), "quick", data_dir)
    assert [c.kind for c in cells] == ["train", "peft", "zero-shot"]
    assert cells[1].id == "peft-prompt-tuning_e2e_tiny-llama_s0" and cells[1].method_config["peft"]["peft_type"] == "PROMPT_TUNING"
    out = tmp_path / "out"
    res = run_grid(spec, "quick", out, data_dir, log=None)
    assert not res["failed"] and len(res["ran"]) == 3
    files = out / "e2e" / "cells"
    for cid in ("prefix-tuning_e2e_tiny-llama_s0", "peft-prompt-tuning_e2e_tiny-llama_s0"):
        r = json.loads((files / f"{cid}.json").read_text())
        assert r["metric"] == "bleu" and r["score"] == r["scores"]["bleu"] and r["examples"] == 3
        assert {"rouge_l", "meteor", "cider"} <= set(r["scores"]) and r["train_examples"] == 16
        assert "not requested" in r["scores"]["unavailable"]["meteor"]
        assert len(lines(r["outputs"])) == 3 and "references" in lines(r["outputs"])[0]
    peft = json.loads((files / "peft-prompt-tuning_e2e_tiny-llama_s0.json").read_text())
    assert peft["kind"] == "peft" and peft["lr"] == 3e-2 and peft["library"].startswith("peft ")
    assert peft["summary"]["selection"]["split"] == "validation" and peft["trainable_params"] == 4 * 64
    zs = json.loads((files / "zero-shot_tiny-llama__e2e-test.json").read_text())
    assert zs["max_new_tokens"] == 8 and zs["instruction_example"].startswith("Describe: name[")
    build_report(out, log=None)
    md = (out / "report" / "e2e.md").read_text()
    assert "e2e test — tiny-llama: generation metrics" in md and "| BLEU | ROUGE-L | METEOR | CIDEr |" in md
    assert "| peft-prompt-tuning |" in md and "| zero-shot (tiny-llama) |" in md and "unavailable: not requested" in md


def test_generation_spec_errors_name_the_field(tmp_path):
    base = dict(tasks=["sst2-t2t"], backbones=["tiny-llama"], methods=["prompt-tuning"])
    with pytest.raises(ConfigError, match=r"eval_tasks\[0\]: imdb is a classification task"):
        load_spec(write(tmp_path, "a", eval_tasks=[{"task": "imdb", "split": "test"}], **base))
    with pytest.raises(ConfigError, match=r"methods\[1\].peft.peft_type"):
        load_spec(write(tmp_path, "b", **{**base, "methods": ["prompt-tuning", {"label": "p", "peft": {"peft_type": "x"}}]}))
    with pytest.raises(ConfigError, match="peft baselines\\) train generation tasks"):
        load_spec(write(tmp_path, "c", **{**base, "tasks": ["sst2"],
                                          "methods": [{"label": "p", "peft": {"peft_type": "PROMPT_TUNING"}}]}))
    with pytest.raises(ConfigError, match=r"zero_shot.instruction: expected a template with \{input\}"):
        load_spec(write(tmp_path, "d", zero_shot={"backbone": "tiny-llama", "instruction": "no slot",
                                                  "tasks": ["e2e"]}, **base))
    with pytest.raises(ConfigError, match="peft baseline trains decoders"):
        expand(load_spec(write(tmp_path, "e", **{**base, "backbones": ["tiny-t5"], "methods": [
            {"label": "p", "peft": {"peft_type": "PROMPT_TUNING"}}]})), "quick")
