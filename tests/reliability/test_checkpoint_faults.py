"""A failing write during checkpointing (disk full) leaves the previous checkpoint usable."""

import errno

import pytest
import torch

from softprompt.train import checkpoint as ckpt


def write(run, step):
    return ckpt.save_checkpoint(run, step, {"w": torch.full((4,), float(step))}, {"w::exp_avg": torch.zeros(4)},
                                {"global_step": step}, keep=2)


@pytest.mark.parametrize("fail_on", ["trainable.safetensors", "optimizer.safetensors", "state.json"])
def test_disk_full_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, fail_on):
    write(tmp_path, 1)
    real_save, real_write = ckpt.save_file, type(tmp_path).write_text

    def failing_save(tensors, path, *a, **k):
        if path.endswith(fail_on):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *a, **k)

    def failing_write(self, *a, **k):
        if self.name == fail_on:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *a, **k)

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    monkeypatch.setattr(type(tmp_path), "write_text", failing_write)
    with pytest.raises(OSError, match="No space left"):
        write(tmp_path, 2)
    monkeypatch.undo()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000001"]
    assert not list(tmp_path.glob(".ckpt-*"))  # no half-written folder left behind
    latest = ckpt.latest_valid(tmp_path)
    trainable, _, state = ckpt.load_checkpoint(latest)
    assert state["global_step"] == 1 and torch.equal(trainable["w"], torch.full((4,), 1.0))


def test_truncated_file_fails_its_checksum(tmp_path):
    write(tmp_path, 1)
    newest = write(tmp_path, 2)
    path = newest / "optimizer.safetensors"
    path.write_bytes(path.read_bytes()[:-3])
    assert ckpt.latest_valid(tmp_path).name == "ckpt-00000001"


def test_rotation_keeps_the_newest(tmp_path):
    for step in range(1, 6):
        write(tmp_path, step)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000004", "ckpt-00000005"]
