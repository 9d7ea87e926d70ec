"""softprompt's trainer with the frozen base sharded by accelerate's FSDP2: 2 CPU processes (torchrun, gloo) = 1 process.

tiny-llama on 24 SST-2 rows, 2 epochs, gradient checkpointing on, for a prompt at the embeddings
(prompt tuning) and key/value prefixes in every layer (prefix tuning, through its MLP). The single
process (no FSDP) uses batch_size 8; the two FSDP processes batch_size 4 each (the same global
batches, as in test_distributed.py). Checked: the layers' weights really are sharded (DTensors)
and the trainable tensors are not (replicated, fp32); a probe batch gives the same loss and
trainable gradients; training ends at the same adapter (1e-5: the two halves' gradients are summed
in another order than one batch's, so the last bits may differ, as under DDP) and the saved
adapter files hold the same tensors and metadata. Dropout off (each process would draw its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.interop.two_processes import run_both

WORKER = Path(__file__).with_name("fsdp_worker.py")
METHODS = ("prompt-tuning", "prefix-tuning")
TOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("fsdp")
    run_both(WORKER, root, "fsdp", [str(data_dir), ",".join(METHODS), "4", "1"],
             [str(data_dir), ",".join(METHODS), "8", "0"])
    return root


def read(root: Path, run: str, method: str) -> dict:
    folder = root / run / method
    return {"info": json.loads((folder / "worker.json").read_text()), "probe": load_file(str(folder / "probe.safetensors")),
            "final": load_file(str(folder / "final.safetensors")),
            "saved": load_file(str(folder / "adapter" / "adapter.safetensors")),
            "meta": json.loads((folder / "adapter" / "adapter.json").read_text())}


def close(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), what
    for name in a:
        diff = (a[name] - b[name]).abs().max().item()
        assert diff < TOL, f"{what} {name}: FSDP differs from one process by {diff}"


@pytest.mark.parametrize("method", METHODS)
def test_fsdp_two_processes_match_one_process(runs, method):
    sharded, one = read(runs, "fsdp", method), read(runs, "single", method)
    info = sharded["info"]
    assert info["world"] == 2 and info["distributed_type"] == "DistributedType.FSDP"
    assert one["info"]["world"] == 1 and one["info"]["sharded_params"] == 0
    # tiny-llama: 2 layers x 9 weight tensors (q, k, v, o, gate, up, down, 2 norms), each a DTensor shard
    assert info["sharded_params"] == 18 and ".layers.0." in info["sharded_example"][0]
    assert not info["trainable_sharded"] and info["trainable_dtypes"] == ["torch.float32"]
    assert info["steps"] == one["info"]["steps"] == 6  # 24 rows less 10% for selection: 2 epochs x 3 batches
    assert abs(info["probe_loss"] - one["info"]["probe_loss"]) < TOL
    close(sharded["probe"], one["probe"], "probe gradient")
    close(sharded["final"], one["final"], "trained adapter")
    close(sharded["saved"], one["saved"], "saved adapter")
    drop = ("created", "run_dir", "output_dir")
    assert {k: v for k, v in sharded["meta"].items() if k not in drop} == {k: v for k, v in one["meta"].items() if k not in drop}
    prompt = "producer.prompt" if method == "prompt-tuning" else "producer.embedding.weight"
    assert prompt in one["probe"] and one["probe"][prompt].abs().max().item() > 0  # the prompt does get a gradient
