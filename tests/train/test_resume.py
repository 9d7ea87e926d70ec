"""A training process killed with SIGKILL mid-epoch resumes to the same adapter and metrics."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def launch(out, data_dir, delay, mode, method="id-spam"):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(HERE / "run_tiny.py"), str(out), str(data_dir), str(delay), mode, method],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    return max((json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()), default=0)


def kill_after(proc, run: Path, step: int, timeout=120, extra: float = 0.0):
    start = time.time()
    while steps_logged(run) < step:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - start < timeout
        time.sleep(0.02)
    time.sleep(extra)  # lands anywhere in the step: forward, backward, or a checkpoint being written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def final(run: Path):
    tensors = load_file(str(run / "adapter" / "adapter.safetensors"))
    summary = json.loads((run / "summary.json").read_text())
    evals = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    return tensors, summary, evals


@pytest.mark.parametrize("method,kill_steps", [("id-spam", [11, 23]), ("prefix-tuning", [17])])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, data_dir, method, kill_steps):
    ref = launch(tmp_path / "ref", data_dir, 0.0, "fresh", method)
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    run = tmp_path / "killed"
    proc = launch(run, data_dir, 0.05, "fresh", method)
    kill_after(proc, run, kill_steps[0])
    for step in kill_steps[1:]:  # kill the resumed process too
        proc = launch(run, data_dir, 0.05, "resume", method)
        kill_after(proc, run, step)
    assert not (run / "summary.json").exists(), "the run was supposed to be killed before finishing"
    proc = launch(run, data_dir, 0.0, "resume", method)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ref_t, ref_s, ref_e = final(tmp_path / "ref")
    got_t, got_s, got_e = final(run)
    assert ref_t.keys() == got_t.keys()
    for k in ref_t:
        assert torch.equal(ref_t[k], got_t[k]), k
    assert got_e == ref_e
    for key in ("best", "best_step", "steps", "best_scores"):
        assert got_s[key] == ref_s[key], key


def test_corrupted_latest_checkpoint_is_skipped(tmp_path, data_dir):
    from softprompt.train import checkpoint as ckpt

    run = tmp_path / "r"
    proc = launch(run, data_dir, 0.0, "fresh")
    proc.communicate(timeout=300)
    valid = ckpt.list_checkpoints(run)
    assert len(valid) == 2  # keep_checkpoints default rotates older ones away
    newest = valid[-1]
    data = bytearray((newest / "trainable.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "trainable.safetensors").write_bytes(bytes(data))
    assert not ckpt.verify(newest)
    assert ckpt.latest_valid(run) == valid[-2]


def test_sigkill_at_seeded_random_points_never_loads_a_broken_checkpoint(tmp_path, data_dir):
    from softprompt.train import checkpoint as ckpt

    ref = launch(tmp_path / "ref", data_dir, 0.0, "fresh")
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    ref_t, ref_s, ref_e = final(tmp_path / "ref")
    # 108 training rows (12 carved off for selection) = 28 steps, a checkpoint every 3:
    # two kills per seed at random steps and offsets, early enough that the run is still going
    for seed in (0, 1, 2):
        rng = random.Random(seed)
        run, mode = tmp_path / f"killed-{seed}", "fresh"
        for step in sorted(rng.sample(range(2, 25), 2)):
            kill_after(launch(run, data_dir, 0.05, mode), run, step, extra=rng.uniform(0.0, 0.05))
            mode = "resume"
            assert all(ckpt.verify(c) for c in ckpt.list_checkpoints(run)), f"seed {seed}: a visible checkpoint is broken"
        proc = launch(run, data_dir, 0.0, "resume")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        got_t, got_s, got_e = final(run)
        assert all(torch.equal(ref_t[k], got_t[k]) for k in ref_t), f"seed {seed}"
        assert got_e == ref_e and got_s["best"] == ref_s["best"], f"seed {seed}"
