"""Subprocess entry for the FSDP test: softprompt's trainer on tiny-llama, the base sharded by accelerate's FSDP2.

    python fsdp_worker.py OUT DATA_DIR METHODS PER_PROCESS_BATCH FSDP[0|1] [BACKBONE]               (one process)
    torchrun --standalone --nproc_per_node 2 fsdp_worker.py ... 1                               (FSDP, gloo on CPU)

SST-2, 24 examples, 2 epochs, gradient checkpointing on, dropout off. Before training, a probe: the
loss and the trainable gradients on the first 8 training rows (every process the whole probe batch,
gradients averaged as in training). For each of the comma-separated METHODS, writes OUT/METHOD/:
probe.safetensors (gradients), final.safetensors (the trained adapter), adapter/ (the trainer's saved
adapter) and worker.json, from rank 0.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

from softprompt.train.batches import collate
from softprompt.train.config import TrainConfig
from softprompt.train.evaluate import padding_side
from softprompt.train.sharding import average_trainable_grads, is_fsdp
from softprompt.train.trainer import Trainer

out_root, data_dir, methods, batch_size = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
fsdp = sys.argv[5] == "1"
backbone = sys.argv[6] if len(sys.argv) > 6 else "tiny-llama"
torch.set_num_threads(1)


def run(method: str, out_dir: str) -> None:
    producer = {"num_tokens": 4} if method == "prompt-tuning" else {"num_tokens": 4, "hidden": 16}
    cfg = TrainConfig(
        backbone=backbone, task="sst2", data_dir=data_dir, output_dir=out_dir, train_limit=24, eval_limit=8,
        method={"name": method, "producer": producer, "head": {"dropout": 0.0}}, backbone_dropout=False,
        epochs=2, batch_size=batch_size, max_length=32, checkpoint_every=0, progress=False, cache="none",
        gradient_checkpointing=True, fsdp=fsdp, lr=0.05,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(cfg, log=lambda *a: None).setup()
    acc = trainer.accelerator
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    probe = collate(trainer.train_enc, list(range(8)), trainer.backbone.tokenizer.pad_token_id,
                    padding_side(trainer.backbone.tokenizer))
    loss = trainer._batch_loss(probe)
    acc.backward(loss)
    if is_fsdp(acc):
        average_trainable_grads(acc, params)
    names = {id(p): n for n, p in trainer.unwrapped.named_parameters()}
    grads = {names[id(p)]: p.grad.detach().cpu().clone() for p in params if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    sharded = [n for n, p in trainer.unwrapped.named_parameters() if type(p).__name__ == "DTensor"]
    info = {"world": acc.num_processes, "distributed_type": str(acc.distributed_type), "probe_loss": loss.item(),
            "sharded_params": len(sharded), "sharded_example": sharded[:1],
            "trainable_dtypes": sorted({str(p.dtype) for p in params}),
            "trainable_sharded": any(type(p).__name__ == "DTensor" for p in params),
            "device": str(acc.device), "peak_gpu_mb": None}
    summary = trainer.train()
    if acc.device.type == "cuda":
        info["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if acc.is_main_process:
        save_file({k: v.contiguous() for k, v in grads.items()}, os.path.join(out_dir, "probe.safetensors"))
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.unwrapped.adapter_state().items()}
        save_file(state, os.path.join(out_dir, "final.safetensors"))
        info.update(steps=summary["steps"], train_seconds=summary["train_seconds"])
        with open(os.path.join(out_dir, "worker.json"), "w") as fh:
            json.dump(info, fh)


for name in methods:
    run(name, os.path.join(out_root, name))
