"""A tiny spec (tiny-bert, a few dozen SST-2 examples) that a grid runs in seconds."""

from __future__ import annotations

import yaml


def tiny_spec(tmp_path, name="tiny", methods=("prompt-tuning", "id-spam"), **extra):
    spec = {
        "name": name,
        "title": "tiny grid",
        "methods": list(methods),
        "tasks": ["sst2"],
        "backbones": ["tiny-bert"],
        "seeds": [0],
        "train": {"batch_size": 8, "max_length": 32, "checkpoint_every": 2},
        "profiles": {"quick": {"train": {"train_limit": 32, "eval_limit": 16, "epochs": 1}, "eval_limit": 12}},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
