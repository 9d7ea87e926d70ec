"""bf16 autocast keeps fp32 master weights: updates far below bf16's resolution are not lost."""

import torch

from softprompt.train.config import TrainConfig
from softprompt.train.trainer import Trainer


def test_tiny_updates_survive_bf16_training(tmp_path, data_dir):
    cfg = TrainConfig(backbone="tiny-bert", task="sst2", method={"name": "prompt-tuning", "producer": {"init": "random"}},
                      data_dir=str(data_dir), train_limit=16, eval_limit=8, epochs=1, batch_size=8, lr=1e-6, head_lr=1e-6,
                      warmup_ratio=0.0, mixed_precision="bf16", output_dir=str(tmp_path / "r"), progress=False)
    trainer = Trainer(cfg, log=lambda *a: None).setup()
    prompt = trainer.unwrapped.producer.prompt
    before = prompt.detach().clone()
    trainer.train()
    after = prompt.detach()
    assert prompt.dtype == torch.float32
    changed = after != before
    assert changed.float().mean() > 0.9  # the updates landed in fp32
    # ...and almost all of them would have vanished had the prompt been stored in bf16
    lost_in_bf16 = (after.bfloat16() == before.bfloat16()) & changed
    assert lost_in_bf16.float().mean() > 0.9
