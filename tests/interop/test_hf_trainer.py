"""A SoftPromptModel trains with an unchanged transformers.Trainer (tiny-bert, 16 SST-2 examples)."""

from __future__ import annotations

import warnings

import torch
from safetensors.torch import load_file

from softprompt.adapter import load_adapter
from softprompt.backbones import load_backbone, weights_fingerprint
from softprompt.interop.hf_trainer import SaveAdapterCallback, TrainerModel, encode_dataset
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import load_split


def eval_loss_and_logits(model, batch):
    model.eval()
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), labels=batch["labels"])
    return out.loss.item(), out.logits


def test_trainer_trains_saves_and_reloads(tmp_path, data_dir):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    bb = load_backbone("tiny-bert")
    tok = bb.tokenizer
    examples = load_split("sst2", "train", data_dir, limit=16, seed=0)
    torch.manual_seed(0)
    model = SoftPromptModel(bb, method_config("prompt-tuning", producer={"num_tokens": 4}), 2)
    features = encode_dataset(tok, examples)
    collator = DataCollatorWithPadding(tok)
    full = collator(features)
    before_fp = weights_fingerprint(bb.model, full=True)
    loss0, _ = eval_loss_and_logits(model, full)

    wrapped = TrainerModel(model)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=12, learning_rate=5e-2,
                             warmup_steps=0, use_cpu=True, report_to="none", save_strategy="steps", save_steps=12,
                             logging_steps=1, disable_tqdm=True, seed=0, dataloader_pin_memory=False)
    trainer = Trainer(model=wrapped, args=args, train_dataset=features, data_collator=collator,
                      callbacks=[SaveAdapterCallback(task="sst2", label_names=["negative", "positive"])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = trainer.train()
    assert result.global_step == 12

    loss1, logits = eval_loss_and_logits(model, full)
    assert loss1 < loss0 - 0.01, (loss0, loss1)  # 0.657 -> 0.634 here
    assert weights_fingerprint(bb.model, full=True) == before_fp  # the frozen base is untouched
    assert all(not p.requires_grad for p in bb.model.parameters())

    # the callback's softprompt adapter (end of training and inside the checkpoint) gives the same logits
    for folder in (tmp_path / "adapter", tmp_path / "checkpoint-12" / "adapter"):
        reloaded = load_adapter(folder, load_backbone("tiny-bert"))
        assert reloaded.adapter_meta["task"] == "sst2"
        assert torch.equal(eval_loss_and_logits(reloaded, full)[1], logits)

    # the Trainer's own checkpoint holds the adapter only, and loads back through load_state_dict
    saved = load_file(str(tmp_path / "checkpoint-12" / "model.safetensors"))
    assert sorted(saved) == ["head.out.bias", "head.out.weight", "producer.prompt"]
    torch.manual_seed(1)
    fresh = TrainerModel(SoftPromptModel(load_backbone("tiny-bert"), method_config("prompt-tuning", producer={"num_tokens": 4}), 2))
    result = fresh.load_state_dict(saved, False)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(eval_loss_and_logits(fresh.model, full)[1], logits)
    # and save_pretrained writes a regular softprompt adapter
    wrapped.save_pretrained(tmp_path / "again")
    assert torch.equal(eval_loss_and_logits(load_adapter(tmp_path / "again", bb), full)[1], logits)


def test_wrapper_state_and_optimizer_groups():
    from softprompt.interop.hf_trainer import build_optimizer

    torch.manual_seed(0)
    model = SoftPromptModel(load_backbone("tiny-bert"), method_config("prefix-tuning", producer={"num_tokens": 3}), 2)
    wrapped = TrainerModel(model)
    names = sorted(model.adapter_state())
    assert sorted(wrapped.state_dict()) == names
    live = wrapped.state_dict(keep_vars=True)
    assert sorted(live) == names and all(isinstance(v, torch.nn.Parameter) for v in live.values())
    assert not any(k.startswith(("runner.", "backbone.")) for k in wrapped.state_dict())
    opt = build_optimizer(wrapped)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == [1e-3]  # reparameterised (MLP) prompt: 1e-3, head 1e-3, as softprompt's trainer
    opt = build_optimizer(TrainerModel(SoftPromptModel(model.backbone, method_config("prompt-tuning"), 2)))
    assert sorted({g["lr"] for g in opt.param_groups}) == [1e-3, 3e-2]
    out = wrapped(torch.tensor([[2, 40, 41, 3]]), labels=torch.tensor([1]))
    assert out["loss"] is out.loss and out.logits.shape == (1, 2)
