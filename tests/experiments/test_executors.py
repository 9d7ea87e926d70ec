"""bench --executor ray|slurm: the same cell files as the local pool, a killed worker retried, --commit by the
submitting process, option errors. Ray and submitit are optional extras (`make install` installs both)."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
import torch

from softprompt.commands import bench
from softprompt.errors import ConfigError
from softprompt.experiments import expand, load_spec, run_grid
from softprompt.experiments.cell_run import KILL_HOOK, Outcome
from softprompt.experiments.executor_options import resolve
from softprompt.experiments.executors import Waiting
from softprompt.experiments.store import Store

from tests.experiments.helpers import tiny_spec

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed: pip install 'softprompt[ray]' (make install does)")
needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None,
    reason="submitit is not installed: pip install 'softprompt[slurm]' (make install does)")

# a training cell and an evaluation that needs its adapter (each cell in a fresh process costs seconds here)
TRAIN, EVAL = "prompt-tuning_sst2_tiny-bert_s0", "prompt-tuning_sst2_tiny-bert_s0__fpb-binary-test"


def grid_spec(tmp_path):
    return tiny_spec(tmp_path, methods=("prompt-tuning",), eval_tasks=[{"task": "fpb-binary", "split": "test"}])


def cell_files(results):
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "tiny" / "cells").glob("*.json"))}


def scores(records):
    return {cid: (r["score"], r["scores"], r["examples"]) for cid, r in records.items()}


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory, data_dir):
    """The grid on the local executor (its one worker in this process), one torch thread as every ray/slurm cell
    here (and every worker of `--workers N`)."""
    tmp = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_grid(grid_spec(tmp), "quick", data_dir=data_dir, results=tmp / "results", runs=tmp / "runs",
                       log=None)
    finally:
        torch.set_num_threads(threads)
    assert res["ran"] == [TRAIN, EVAL] and not res["failed"]
    return cell_files(tmp / "results")


def started(runs, executor):
    """cell id -> how many times a process started it (bench.log)."""
    lines = (runs / "tiny" / "bench.log").read_text().splitlines()
    return {cid: sum(f"[{executor}] " in line and line.split("] ", 2)[-1].split(" (pid")[0].endswith(f" {cid}")
                     for line in lines) for cid in (TRAIN, EVAL)}


@needs_ray
def test_ray_gives_the_local_pools_cell_files_and_retries_a_killed_worker(tmp_path, data_dir, local_pool, monkeypatch):
    killed = tmp_path / "killed"
    monkeypatch.setenv(KILL_HOOK, f"{EVAL}@{killed}")  # its worker ends (os._exit) before writing the cell file
    res = run_grid(grid_spec(tmp_path), "quick", data_dir=data_dir, results=tmp_path / "results",
                   runs=tmp_path / "runs", log=None, poll_s=0.2, executor="ray", executor_flags={"local_cpus": 2})
    assert killed.exists() and not res["failed"] and res["ran"] == [TRAIN, EVAL]
    records = cell_files(tmp_path / "results")
    assert scores(records) == scores(local_pool)
    assert {r["executor"] for r in records.values()} == {"ray"} and all(r["machine"]["threads"] == 1
                                                                       for r in records.values())
    # the killed cell ran again; nothing finished was lost or run twice
    assert started(tmp_path / "runs", "ray") == {TRAIN: 1, EVAL: 2}
    run = json.loads((tmp_path / "results" / "tiny" / "manifest.json").read_text())["runs"][-1]
    assert run["status"] == "complete" and run["executor"] == "ray" and run["executor_options"]["retries"] == 2


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@needs_submitit
def test_submitit_local_runs_the_same_grid_resubmits_a_killed_job_and_commits(tmp_path, data_dir, local_pool,
                                                                            monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"],
                 ["commit", "-q", "--allow-empty", "-m", "init"]):
        git(repo, *args)
    killed = tmp_path / "killed"
    monkeypatch.setenv(KILL_HOOK, f"{EVAL}@{killed}")  # its job ends (os._exit) before writing the cell file
    runs = tmp_path / "runs"
    assert bench.main([str(grid_spec(tmp_path)), "--results", str(repo / "results"), "--runs", str(runs),
                       "--data-dir", str(data_dir), "--executor", "slurm", "--slurm-local", "--commit"]) == 0
    assert killed.exists()
    records = cell_files(repo / "results")
    assert scores(records) == scores(local_pool) and {r["executor"] for r in records.values()} == {"slurm"}
    assert started(runs, "slurm") == {TRAIN: 1, EVAL: 2}  # the killed job submitted again, nothing finished lost
    assert list((runs / "tiny" / "submitit").glob("*_log.out"))  # submitit's job files
    assert git(repo, "log", "--format=%s").splitlines() == [f"results: tiny {EVAL}", f"results: tiny {TRAIN}", "init"]
    for rev, cid in (("HEAD", EVAL), ("HEAD~1", TRAIN)):  # each commit holds its cell file only
        assert git(repo, "show", "--name-only", "--format=", rev).split() == [f"results/tiny/cells/{cid}.json"]


def test_executor_options_from_the_spec_profile_and_flags(tmp_path):
    spec = load_spec(tiny_spec(tmp_path, executors={"slurm": {"partition": "cpu", "time_min": 30}},
                               profiles={"quick": {"executors": {"slurm": {"time_min": 90, "gpus": 1}}}}))
    quick = spec.for_profile("quick")
    opts = resolve("slurm", quick.executors, {"partition": "gpu", "cpus": None}, "spec")
    assert (opts.partition, opts.time_min, opts.gpus, opts.cpus) == ("gpu", 90, 1, 1)  # flag > profile > spec
    with pytest.raises(ConfigError, match=r"executors\.slurm\.partiton: unknown field"):
        load_spec(tiny_spec(tmp_path, name="bad", executors={"slurm": {"partiton": "gpu"}}))
    with pytest.raises(ConfigError, match=r"executors\.ray\.gpus: expected float of at least 0"):
        load_spec(tiny_spec(tmp_path, name="bad2", executors={"ray": {"gpus": -1}}))


@pytest.mark.parametrize("argv, message", [
    (["--executor", "ray", "--partition", "gpu"], "bench: --partition: not an option of --executor ray "
                                                  "(it is for --executor slurm)"),
    (["--address", "auto"], "bench: --address: for --executor ray or slurm, not local (local: --workers N)"),
    (["--executor", "slurm", "--workers", "2"], "bench: --workers is for --executor local"),
    (["--executor", "slurm", "--time-min", "0"], "bench: --time-min: expected int of at least 1, got 0"),
])
def test_executor_option_errors_name_the_flag_in_one_line_exit_2(tmp_path, data_dir, capsys, argv, message):
    assert bench.main([str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--data-dir", str(data_dir),
                       *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_cell_waits_for_its_source_and_fails_with_it(tmp_path, data_dir):
    spec = grid_spec(tmp_path)
    cells = expand(spec, "quick", data_dir)
    store = Store("tiny", tmp_path / "results", tmp_path / "runs")
    waiting = Waiting(cells, store)
    ready, dropped = waiting.release(0)
    assert [c.id for c in ready] == [TRAIN] and not dropped  # the evaluation waits for its training
    assert waiting.release(1) == ([], [])
    waiting.settle(Outcome(TRAIN, "failed", reason="boom"))
    assert waiting.release(0) == ([], [Outcome(EVAL, "failed", reason=f"needs {TRAIN}, which failed")])
    assert not waiting
    # a source neither finished nor part of this run: the same rule as the local pool's
    ready, dropped = Waiting([cells[1]], store).release(0)
    assert not ready and dropped[0].reason == f"needs {TRAIN}, which is neither finished nor part of this run"
    store.write({"cell": TRAIN, "score": 50.0})
    assert Waiting([cells[1]], store).release(0) == ([cells[1]], [])  # finished earlier (a committed cell file)
