"""softprompt's trainer under DDP: 2 CPU processes (torchrun, gloo) = 1 process with the same global batch.

tiny-bert, prompt tuning, 35 SST-2 examples, 2 epochs of 5 steps. The single process uses
batch_size 8; the two DDP processes use batch_size 4 each (the trainer's global batch is
batch_size * num_processes, split as batches[b][rank::world]), so both see the same batches;
the last, partial batch (3 examples) splits 2/1 and each rank's loss is weighted by its share.
Head dropout is off (each process would draw its own masks). Plain torchrun on CPU works: the
trainer asks accelerate for gloo DDP when WORLD_SIZE > 1 and there is no GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.interop.two_processes import run_both

WORKER = Path(__file__).with_name("ddp_worker.py")
TOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("ddp")
    run_both(WORKER, root, "ddp", [str(data_dir), "4", "35"], [str(data_dir), "8", "35"])
    out = {name: (json.loads((root / name / "worker.json").read_text()), load_file(str(root / name / "final.safetensors")))
           for name in ("ddp", "single")}
    out["initial"] = load_file(str(root / "single" / "initial.safetensors"))
    return out


def test_ddp_two_processes_match_one_process(runs):
    (ddp_info, ddp), (one_info, one) = runs["ddp"], runs["single"]
    assert ddp_info["world"] == 2 and ddp_info["backend"] == "gloo"
    assert one_info["world"] == 1
    # 35 rows, 10% carved off for model selection: 2 epochs x ceil(31 / 8) global batches
    assert ddp_info["steps"] == one_info["steps"] == 8
    assert ddp_info["total_steps"] == one_info["total_steps"] == 8  # the LR schedule counts global batches
    assert sorted(ddp) == sorted(one) == ["head.out.bias", "head.out.weight", "producer.prompt"]
    for name in one:
        diff = (ddp[name] - one[name]).abs().max().item()
        assert diff < TOL, f"{name}: DDP differs from one process by {diff}"
    moved = (one["producer.prompt"] - runs["initial"]["producer.prompt"]).abs().max().item()
    assert moved > 1e-3  # training did change the prompt, so the equality above means something
