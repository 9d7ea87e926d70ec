"""Train a softprompt method with an unchanged `transformers.Trainer`, then use the adapter.

    python examples/train_with_hf_trainer.py --backbone tiny-bert --method prompt-tuning \
        --data-dir ../shared/data --train-limit 256 --max-steps 100 --out runs/hf-trainer-demo

The Trainer sees a `TrainerModel` (forward(**batch) -> ModelOutput with `loss`), checkpoints
hold only the adapter, and `SaveAdapterCallback` writes softprompt adapter folders that
`softprompt eval` / `predict` / `serve` and `softprompt export --format peft` read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from softprompt.adapter import load_adapter
    from softprompt.backbones import load_backbone
    from softprompt.interop.hf_trainer import SaveAdapterCallback, TrainerModel, build_optimizer, encode_dataset
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel
    from softprompt.tasks import get_task, load_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tiny-bert")
    ap.add_argument("--method", default="prompt-tuning")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=256)
    ap.add_argument("--eval-limit", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/hf-trainer-demo")
    args = ap.parse_args(argv)

    task = get_task(args.task)
    backbone = load_backbone(args.backbone)
    tok = backbone.tokenizer
    train = load_split(task, "train", args.data_dir, args.train_limit, args.seed)
    dev = load_split(task, "validation", args.data_dir, args.eval_limit, 0)
    torch.manual_seed(args.seed)
    model = SoftPromptModel(backbone, method_config(args.method), task.num_labels, task.is_regression,
                            list(task.verbalizer))
    wrapped = TrainerModel(model)

    def accuracy(pred):
        logits, labels = pred.predictions, pred.label_ids
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    trainer = Trainer(
        model=wrapped,
        args=TrainingArguments(
            output_dir=args.out, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64, eval_strategy="steps", eval_steps=max(1, args.max_steps // 4),
            save_strategy="steps", save_steps=max(1, args.max_steps // 4), save_total_limit=2,
            logging_steps=max(1, args.max_steps // 10), warmup_steps=int(0.06 * args.max_steps),
            seed=args.seed, report_to="none", disable_tqdm=True,
        ),
        train_dataset=encode_dataset(tok, train),
        eval_dataset=encode_dataset(tok, dev),
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=None if task.is_regression else accuracy,
        optimizers=(build_optimizer(model), None),  # softprompt's per-group learning rates
        callbacks=[SaveAdapterCallback(task=task.name, label_names=list(task.label_names))],
    )
    trainer.train()
    metrics = trainer.evaluate()
    # <out>/adapter is a softprompt adapter folder: reload it and check it gives the same logits
    reloaded = load_adapter(Path(args.out) / "adapter", backbone).eval()
    model.eval()
    batch = tok([e.text for e in dev[:4]], padding=True, return_tensors="pt")
    with torch.no_grad():
        same = torch.equal(reloaded(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).logits,
                           model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).logits)
    result = {"eval": metrics, "adapter": str(Path(args.out) / "adapter"), "reloaded_logits_equal": same}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
