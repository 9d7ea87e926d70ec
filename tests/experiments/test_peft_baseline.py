"""The peft baseline: trains on softprompt's data and batches, target-token loss, greedy generation, same scoring."""

from __future__ import annotations

import json

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.experiments.peft_baseline import (build_peft_model, evaluate_peft, peft_config, peft_generate,
                                                  train_peft)
from softprompt.tasks import get_task, load_split
from softprompt.train.batches import collate
from softprompt.train.config import TrainConfig
from softprompt.train.text_batches import encode_generation

PROMPT = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4, "prompt_tuning_init": "TEXT",
          "prompt_tuning_init_text": "Describe it:"}
PREFIX = {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "prefix_projection": True, "encoder_hidden_size": 16}


def test_text_init_copies_the_init_text_embeddings_repeated_to_the_virtual_tokens():
    bb = load_backbone("tiny-llama")
    model, _ = build_peft_model(bb, {**PROMPT, "num_virtual_tokens": 7})
    ids = bb.tokenizer("Describe it:")["input_ids"]
    want = (ids * 7)[:7]
    words = bb.model.get_input_embeddings().weight
    got = model.prompt_encoder["default"].embedding.weight
    assert torch.equal(got, words[want])
    assert model.get_base_model() is not bb.model  # a copy: the caller's backbone is shared by other cells


def test_peft_loss_counts_target_tokens_only(data_dir):
    bb = load_backbone("tiny-llama")
    model, _ = build_peft_model(bb, PROMPT)
    task = get_task("e2e")
    enc = encode_generation(bb.tokenizer, task, load_split(task, "train", data_dir, limit=3, seed=0), 64, "decoder")
    batch = collate(enc, [0, 1, 2], bb.tokenizer.pad_token_id, "right")
    model.eval()
    with torch.no_grad():
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 4:]  # drop virtual
    logp = logits.log_softmax(-1)
    total, count = 0.0, 0
    for r, i in enumerate([0, 1, 2]):
        s, t = len(enc.sources[i]), enc.targets[i]
        for j, tok in enumerate(t):  # target token j sits at s + j and is predicted at s + j - 1
            total -= float(logp[r, s + j - 1, tok])
            count += 1
    assert count == int((batch["labels"] != -100).sum())
    assert abs(float(loss) - total / count) < 1e-5


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="peft.peft_type"):
        peft_config({"peft_type": "LORA"})
    with pytest.raises(ConfigError, match="num_virtual_tokenz"):
        peft_config({"peft_type": "PROMPT_TUNING", "num_virtual_tokenz": 3})
    with pytest.raises(ConfigError, match="prompt_tuning_init_text"):
        peft_config({"peft_type": "PROMPT_TUNING", "prompt_tuning_init": "TEXT"})


@pytest.mark.parametrize("values", [PROMPT, PREFIX], ids=["prompt", "prefix"])
def test_train_peft_runs_selects_tests_and_writes_outputs(tmp_path, data_dir, values):
    bb = load_backbone("tiny-llama")
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    cfg = TrainConfig(backbone="tiny-llama", task="e2e", data_dir=str(data_dir), train_limit=24, eval_limit=4,
                      epochs=2, batch_size=8, max_length=64, selection_split="validation", eval_split="test",
                      output_dir=str(tmp_path / "run"), progress=False, log_every=1)
    summary = train_peft(cfg, values, bb, log=lambda *a: None, with_meteor=False)  # Java: ~20 s to start
    assert summary["steps"] == 6 and summary["train_examples"] == 24 and summary["eval_examples"] == 4
    assert summary["selection"]["split"] == "validation" and summary["best_step"] in (3, 6)
    scores = summary["test"]["scores"]
    assert {"bleu", "rouge_l", "cider", "meteor", "main"} <= set(scores) and scores["n"] == 4
    assert "not requested" in scores["unavailable"]["meteor"]
    lines = (tmp_path / "run" / "test" / "outputs.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"id", "input", "prediction", "references"} <= set(json.loads(lines[0]))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7)) and sum("eval" in r for r in rows) == 2
    assert all(torch.equal(v, bb.model.state_dict()[k]) for k, v in before.items())  # the shared backbone is untouched
    again = evaluate_peft(tmp_path / "run", bb, "e2e", "test", data_dir, limit=4, max_length=64,
                          out_dir=tmp_path / "ev", with_meteor=False)
    assert again["scores"]["bleu"] == pytest.approx(scores["bleu"])  # the saved adapter is the selected one
    assert (tmp_path / "ev" / "outputs.jsonl").read_text() == (tmp_path / "run" / "test" / "outputs.jsonl").read_text()
