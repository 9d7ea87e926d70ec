"""Subprocess entry for training tests: tiny-bert on an SST-2 slice, optionally slowed per step.

133 rows: 13 carved for selection, 120 trained on = 15 steps of 8 per epoch, 30 in all."""

import json
import sys
import time

from softprompt.train.config import TrainConfig
from softprompt.train.trainer import train

out_dir, data_dir, delay, resume = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "resume"
method = sys.argv[5] if len(sys.argv) > 5 else "id-spam"
cfg = TrainConfig(backbone="tiny-bert", task="sst2", method={"name": method}, data_dir=data_dir, train_limit=133,
                  eval_limit=40, epochs=2, batch_size=8, checkpoint_every=3, eval_every=5, output_dir=out_dir,
                  progress=False, max_length=48)
summary = train(cfg, resume=resume, log=lambda *a: None, callbacks=[lambda t, p: time.sleep(delay)])
print(json.dumps(summary))
