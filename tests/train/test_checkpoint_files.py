"""Checkpoint rotation: a kill while an old checkpoint is being deleted leaves no broken visible one."""

import shutil

import pytest
import torch

from softprompt.train import checkpoint as ckpt


class Killed(BaseException):
    pass


def _save(run, step, keep=2):
    return ckpt.save_checkpoint(run, step, {"w": torch.full((3,), float(step))}, {"w::m": torch.zeros(3)}, {"step": step}, keep)


def _rmtree_killed_after_one_file(real):
    def rmtree(path, ignore_errors=False):
        files = sorted(p for p in path.iterdir()) if path.exists() else []
        if files:
            files[0].unlink()  # the kill lands after the first file is gone
            raise Killed
        real(path, ignore_errors=ignore_errors)
    return rmtree


@pytest.mark.parametrize("resave", [False, True], ids=["rotation", "same-step-resave"])
def test_kill_during_deletion_never_leaves_a_broken_visible_checkpoint(tmp_path, monkeypatch, resave):
    for step in (3, 6):
        _save(tmp_path, step)
    monkeypatch.setattr(ckpt.shutil, "rmtree", _rmtree_killed_after_one_file(shutil.rmtree))
    with pytest.raises(Killed):
        _save(tmp_path, 6 if resave else 9)
    visible = ckpt.list_checkpoints(tmp_path)
    assert visible, "the previous checkpoints must survive"
    assert all(ckpt.verify(c) for c in visible), [c.name for c in visible if not ckpt.verify(c)]
    monkeypatch.undo()
    _save(tmp_path, 12)  # the next save clears what the kill left behind
    assert [c.name for c in ckpt.list_checkpoints(tmp_path)][-1] == "ckpt-00000012"
    assert not list(tmp_path.glob(".ckpt-*")), sorted(p.name for p in tmp_path.iterdir())
    assert ckpt.load_checkpoint(ckpt.latest_valid(tmp_path))[0]["w"].tolist() == [12.0] * 3
