"""Subprocess entry for the distributed test: softprompt's trainer on tiny-bert, 32 SST-2 examples.

    python ddp_worker.py OUT DATA_DIR PER_PROCESS_BATCH [TRAIN_LIMIT]      (one process)
    torchrun --standalone --nproc_per_node 2 ddp_worker.py ...             (DDP, gloo on CPU)

Writes OUT/final.safetensors (the trained adapter tensors) and OUT/worker.json from rank 0.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file


from softprompt.train.config import TrainConfig
from softprompt.train.trainer import Trainer


out_dir, data_dir, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
train_limit = int(sys.argv[4]) if len(sys.argv) > 4 else 32  # 32 = 4 full global batches of 8
torch.set_num_threads(1)
cfg = TrainConfig(
    backbone="tiny-bert", task="sst2", data_dir=data_dir, output_dir=out_dir, train_limit=train_limit, eval_limit=8,
    # dropout off (head and backbone): each process would draw its own dropout masks
    method={"name": "prompt-tuning", "producer": {"num_tokens": 4}, "head": {"dropout": 0.0}}, backbone_dropout=False,
    epochs=2, batch_size=batch_size, max_length=48, checkpoint_every=0, progress=False, cache="none",
)
trainer = Trainer(cfg, log=lambda *a: None).setup()
world = trainer.accelerator.num_processes
info = {"world": world, "backend": str(getattr(trainer.accelerator.state, "backend", None)),
        "total_steps": trainer.total_steps}
if trainer.accelerator.is_main_process:
    initial = {k: v.detach().cpu().clone().contiguous() for k, v in trainer.unwrapped.adapter_state().items()}
    save_file(initial, os.path.join(out_dir, "initial.safetensors"))
summary = trainer.train()
if trainer.accelerator.is_main_process:
    state = {k: v.detach().cpu().contiguous() for k, v in trainer.unwrapped.adapter_state().items()}
    save_file(state, os.path.join(out_dir, "final.safetensors"))
    info.update(steps=summary["steps"], lr_end=trainer.scheduler.get_last_lr())
    with open(os.path.join(out_dir, "worker.json"), "w") as fh:
        json.dump(info, fh)
