"""Soft prompts trained for generation: the loss counts target tokens only; decoders and T5 train end to end."""

import json

import pytest
import torch
import torch.nn.functional as F

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import load_split
from softprompt.train.batches import collate
from softprompt.train.config import TrainConfig
from softprompt.train.text_batches import encode_generation
from softprompt.train.trainer import train
from softprompt.tasks import get_task


def generative(name, method, seed=0):
    torch.manual_seed(seed)
    return SoftPromptModel(load_backbone(name), method_config(method), 0, generative=True).eval()


def encoded_batch(model, data_dir, side, n=3):
    task = get_task("sst2-t2t")
    examples = load_split(task, "validation", data_dir, limit=n, seed=0)
    enc = encode_generation(model.backbone.tokenizer, task, examples, 64, model.backbone.kind)
    return enc, collate(enc, list(range(n)), model.backbone.tokenizer.pad_token_id, side)


@pytest.mark.parametrize("name,side", [("tiny-llama", "left"), ("tiny-gpt2", "right"), ("tiny-gemma3", "left")])
def test_decoder_loss_is_the_masked_cross_entropy_of_the_target_tokens(data_dir, name, side):
    model = generative(name, "prompt-tuning")
    enc, batch = encoded_batch(model, data_dir, side)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert all(t[-1] == model.backbone.tokenizer.eos_token_id for t in enc.targets)
    assert int((labels != -100).sum()) == sum(len(t) for t in enc.targets)  # only target tokens carry labels
    with torch.no_grad():
        loss = model(ids, mask, labels=labels, source_mask=batch["source_mask"]).loss
        hidden, seq = model.from_state(model.frozen_state(ids, mask), ids, source_mask=batch["source_mask"])
        logits = model.runner.lm_head()(hidden).log_softmax(-1)
        total, count = 0.0, 0
        for b in range(ids.shape[0]):  # by hand: walk each row's text positions
            cols = seq.text_mask[b].nonzero().squeeze(1).tolist()
            inputs = mask[b].nonzero().squeeze(1).tolist()
            for j in range(len(inputs) - 1):
                target = int(labels[b, inputs[j + 1]])
                if target != -100:
                    total -= float(logits[b, cols[j], target])
                    count += 1
    assert count == int((labels != -100).sum())
    assert abs(float(loss) - total / count) < 1e-5


def test_t5_loss_goes_through_the_decoder(data_dir):
    model = generative("tiny-t5", "prefix-tuning")
    with torch.no_grad():
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    enc, batch = encoded_batch(model, data_dir, "right")
    with torch.no_grad():
        loss = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        encoded, enc_mask, prefixes = model.encode(batch["input_ids"], batch["attention_mask"])
        assert prefixes is not None and prefixes.get_seq_length() == model.producer.num_tokens  # decoder prefixes
        labels = batch["labels"]
        start = torch.full((labels.shape[0], 1), model.backbone.model.config.decoder_start_token_id)
        dec_in = torch.cat([start, labels[:, :-1].clamp(min=0)], 1)
        logits = model.decoder_logits(encoded, enc_mask, dec_in, past_key_values=prefixes)
        ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert abs(float(loss) - float(ref)) < 1e-5


def test_input_dependent_prompts_never_read_the_target(data_dir):
    model = generative("tiny-llama", "id-spam")
    seen = []
    model.producer.register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    enc, batch = encoded_batch(model, data_dir, "left")
    other = batch["input_ids"].clone()
    other[batch["labels"] != -100] = 5  # a different answer
    with torch.no_grad():
        model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], source_mask=batch["source_mask"])
        model(other, batch["attention_mask"], labels=batch["labels"], source_mask=batch["source_mask"])
    assert torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("backbone,method", [("tiny-gpt2", "id-spam"), ("tiny-t5", "prompt-tuning")])
def test_text_to_text_training_runs_and_reports_generated_labels(tmp_path, data_dir, backbone, method):
    cfg = TrainConfig(backbone=backbone, task="sst2-t2t", method=method, data_dir=data_dir, train_limit=40,
                      eval_limit=16, epochs=1, batch_size=8, max_length=64, output_dir=str(tmp_path / "run"),
                      progress=False, checkpoint_every=0)
    summary = train(cfg, log=lambda *a: None)
    assert summary["metric"] == "accuracy"
    test = summary["test"]["scores"]
    assert set(test) >= {"accuracy", "unparseable", "main"} and 0 <= test["accuracy"] <= 100
    meta = json.loads((tmp_path / "run" / "adapter" / "adapter.json").read_text())
    assert meta["generative"] is True
    # the saved adapter, loaded and decoded again, gives the reported scores; each output's label is parsed
    from softprompt.adapter import load_adapter
    from softprompt.train.generation_eval import evaluate_generation

    again = evaluate_generation(load_adapter(tmp_path / "run" / "adapter"), "sst2-t2t", summary["test"]["split"],
                                data_dir, 16, max_length=64, out_dir=tmp_path / "again", with_meteor=False)
    assert again["scores"]["accuracy"] == pytest.approx(test["accuracy"])
    rows = [json.loads(line) for line in (tmp_path / "again" / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    assert test["accuracy"] == pytest.approx(100 * sum(r["parsed"] == r["label"] for r in rows) / 16)
    assert test["unparseable"] == sum(r["parsed"] is None for r in rows)  # a count
