"""Parallel workers and claims, a grid continued from a fresh clone, --commit, the medium profile, layering."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from softprompt.commands import bench, report
from softprompt.experiments import expand, load_spec, run_grid
from softprompt.experiments import grid as grid_module
from softprompt.experiments.claims import Claim
from softprompt.experiments.store import Store
from softprompt.experiments.workers import Job, next_cell, work
from softprompt.train import trainer as trainer_module

from tests.experiments.helpers import tiny_spec

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = {"best": 60.0, "best_scores": {"accuracy": 60.0, "main": 60.0}, "epoch_samples_per_s": [10.0],
           "trainable_params": 5, "train_examples": 29, "eval_examples": 16, "steps": 4}


def slow_fake_train(calls, seconds=0.3):
    lock = threading.Lock()

    def train(cfg, backbone=None, resume=False, log=print, callbacks=()):
        with lock:
            calls.append((threading.current_thread().name, cfg.output_dir))
        time.sleep(seconds)
        return dict(SUMMARY)

    return train


def test_two_workers_share_the_grid_and_never_run_the_same_cell(tmp_path, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "train", slow_fake_train(calls))
    spec = load_spec(tiny_spec(tmp_path, methods=("prompt-tuning", "id-spam", "lpt"), seeds=[0, 1])).for_profile("quick")
    cells = expand(spec, None, data_dir)
    store = Store("tiny", tmp_path / "results", tmp_path / "runs")
    job = Job(spec, store, cells, {c.id: c for c in cells}, str(data_dir), echo=False, poll_s=0.05)
    with ThreadPoolExecutor(2) as pool:  # flock claims exclude each other between threads as between processes
        outcomes = list(pool.map(lambda k: work(job, k), [1, 2]))
    ran = [outcomes[0]["ran"], outcomes[1]["ran"]]
    assert ran[0] and ran[1] and not set(ran[0]) & set(ran[1])
    assert sorted(ran[0] + ran[1]) == sorted(c.id for c in cells)
    assert sorted(out for _, out in calls) == sorted(str(store.run_dir(c.id)) for c in cells)  # each trained once
    for k in (1, 2):
        assert all(json.loads(store.cell_file(cid).read_text())["worker"] == k for cid in ran[k - 1])


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path, data_dir):
    spec = load_spec(tiny_spec(tmp_path)).for_profile("quick")
    cells = expand(spec, None, data_dir)
    store = Store("tiny", tmp_path / "results", tmp_path / "runs")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom softprompt.experiments.claims import Claim\n"
         "c = Claim.acquire(sys.argv[1])\nprint('held' if c else 'busy', flush=True)\ntime.sleep(120)",
         str(store.claim_path(cells[0].id))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert Claim.acquire(store.claim_path(cells[0].id)) is None
        cell, claim, _ = next_cell(cells, {c.id for c in cells}, store, print)
        assert cell.id == cells[1].id  # the claimed cell is left to its holder
        claim.release()
    finally:
        holder.kill()  # a killed worker: the kernel drops its lock
        holder.wait()
    cell, claim, _ = next_cell(cells, {c.id for c in cells}, store, print)
    assert cell.id == cells[0].id
    claim.release()


def test_two_worker_processes_with_one_thread_each_finish_the_grid(tmp_path, data_dir):
    # two cells, the evaluation waiting for its training (claims and dependencies across processes)
    spec = tiny_spec(tmp_path, methods=("id-spam",), eval_tasks=[{"task": "fpb-binary", "split": "test"}])
    res = run_grid(spec, "quick", data_dir=data_dir, results=tmp_path / "results", runs=tmp_path / "runs", workers=2,
                   log=None, poll_s=0.2)
    ids = [c.id for c in expand(spec, "quick", data_dir)]
    assert sorted(res["ran"]) == sorted(ids) and not res["failed"]
    records = [json.loads((tmp_path / "results" / "tiny" / "cells" / f"{cid}.json").read_text()) for cid in ids]
    assert {r["worker"] for r in records} <= {1, 2} and all(r["machine"]["threads"] == 1 for r in records)
    log = (tmp_path / "runs" / "tiny" / "bench.log").read_text()
    for cid in ids:  # started once, by one worker
        assert sum(line.endswith(f"] train {cid}") or line.endswith(f"] eval {cid}") for line in log.splitlines()) == 1
    manifest = json.loads((tmp_path / "results" / "tiny" / "manifest.json").read_text())
    assert manifest["runs"][-1]["status"] == "complete" and manifest["runs"][-1]["workers"] == 2


def test_a_fresh_clone_skips_committed_cells_and_retrains_a_missing_source(tmp_path, data_dir, monkeypatch):
    spec = tiny_spec(tmp_path, methods=["id-spam"], eval_tasks=[{"task": "fpb-binary", "split": "test"}])
    train_id, eval_id = "id-spam_sst2_tiny-bert_s0", "id-spam_sst2_tiny-bert_s0__fpb-binary-test"
    run_grid(spec, "quick", data_dir=data_dir, results=tmp_path / "a" / "results", runs=tmp_path / "a" / "runs", log=None)
    made = tmp_path / "a" / "results" / "tiny" / "cells"
    real_train = trainer_module.train
    calls = []
    monkeypatch.setattr(trainer_module, "train", lambda cfg, **kw: (calls.append(cfg.output_dir), real_train(cfg, **kw))[1])

    # clone 1: every committed cell file, no run folders -> nothing runs
    full = tmp_path / "b" / "results" / "tiny" / "cells"
    shutil.copytree(made, full)
    res = run_grid(spec, "quick", data_dir=data_dir, results=tmp_path / "b" / "results", runs=tmp_path / "b" / "runs",
                   log=None)
    assert res["ran"] == [] and sorted(res["already_finished"]) == sorted([train_id, eval_id]) and calls == []
    shutil.rmtree(tmp_path / "b" / "runs")
    (tmp_path / "b" / "results" / "tiny" / "manifest.json").unlink()  # the cell files alone make the report
    assert report.main([str(tmp_path / "b" / "results"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "tiny.md").read_text()
    assert "| id-spam |" in md and "fpb-binary test (accuracy)" in md and "Bench command (from the cell files)" in md
    assert (tmp_path / "rep" / "img" / "tiny-curve-train-sst2-tiny-bert.png").exists()  # curve from the cell file

    # clone 2: the training's cell file only -> the evaluation runs, its source is trained again for it
    partial = tmp_path / "c" / "results" / "tiny" / "cells"
    partial.mkdir(parents=True)
    shutil.copy(made / f"{train_id}.json", partial)
    before = (partial / f"{train_id}.json").read_text()
    res = run_grid(spec, "quick", data_dir=data_dir, results=tmp_path / "c" / "results", runs=tmp_path / "c" / "runs",
                   log=None)
    assert res["ran"] == [eval_id] and res["already_finished"] == [train_id]
    assert calls == [str(tmp_path / "c" / "runs" / "tiny" / train_id / "run")]
    ev = json.loads((partial / f"{eval_id}.json").read_text())
    assert ev["source_retrained"] is True
    assert ev["score"] == json.loads((made / f"{eval_id}.json").read_text())["score"]  # same seed, same adapter
    assert (partial / f"{train_id}.json").read_text() == before  # the committed source file is left alone


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_commit_commits_exactly_each_cell_file(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(trainer_module, "train", slow_fake_train([], 0))
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "init")
    (repo / "staged.txt").write_text("someone else's work\n")
    git(repo, "add", "staged.txt")
    spec = tiny_spec(tmp_path)
    assert bench.main([str(spec), "--results", str(repo / "results" / "quick"), "--runs", str(tmp_path / "runs"),
                       "--data-dir", str(data_dir), "--commit"]) == 0
    shas = git(repo, "log", "--format=%H %s").splitlines()
    assert [s.split(" ", 1)[1] for s in shas] == ["results: tiny id-spam_sst2_tiny-bert_s0",
                                                  "results: tiny prompt-tuning_sst2_tiny-bert_s0", "init"]
    for line, cell in zip(shas, ["id-spam_sst2_tiny-bert_s0", "prompt-tuning_sst2_tiny-bert_s0"]):
        files = git(repo, "show", "--name-only", "--format=", line.split()[0]).split()
        assert files == [f"results/quick/tiny/cells/{cell}.json"]
    assert git(repo, "diff", "--cached", "--name-only").split() == ["staged.txt"]  # still staged, not committed
    assert "results/quick/tiny/manifest.json" in git(repo, "status", "--porcelain", "--untracked-files=all")


def test_medium_profile_cells(data_dir, monkeypatch):
    monkeypatch.setitem(grid_module._LAYER_COUNTS, "minilm-l6", 6)
    specs = {p.stem: load_spec(p) for p in sorted((ROOT / "experiments").glob("*.yaml"))}
    for spec in specs.values():
        spec.for_profile("medium")
    glue = [c for c in expand(specs["glue"], "medium", data_dir) if not c.skip]
    methods = len(specs["glue"].methods)
    assert methods >= 15 and len(glue) == 5 * methods * 3 and {c.seed for c in glue} == {0, 1, 2}  # 5 offline tasks
    assert {c.task: c.train["train_limit"] for c in glue} == {"sst2": 4000, "cola": 4000, "mrpc": 2000, "rte": 2000,
                                                              "stsb": 2000}
    assert all(c.train["epochs"] == 6 and c.train["patience"] == 2 and c.train["eval_limit"] == 1000 for c in glue)
    for name in ("glue", "layer_sweep", "transfer", "ablation"):
        assert {c.backbone for c in expand(specs[name], "medium", data_dir)} == {"minilm-l6"}, name
    assert len(expand(specs["layer_sweep"], "medium", data_dir)) == 2 * 2 * 6 * 3
    assert len([c for c in expand(specs["ablation"], "medium", data_dir) if not c.skip]) == 7 * 3 * 3  # QQP hub-only
    imdb = [c for c in expand(specs["cross_domain"], "medium", data_dir) if c.eval_task == "imdb"]
    assert imdb and all(c.max_length == 512 and c.limit == 1000 for c in imdb)  # reviews read whole
    cross = [c for c in expand(specs["cross_domain"], "medium", data_dir) if c.kind in ("train", "eval")]
    assert {c.backbone for c in cross} == {"mpnet-base"} and {c.seed for c in cross} == {0, 1, 2}
    assert {c.method for c in cross} == {"prefix-tuning", "prompt-tuning", "id-spam", "lora", "full-finetune"}
    assert sum(c.kind == "train" for c in cross) == 15


def test_library_modules_never_import_commands():
    src = ROOT / "src" / "softprompt"
    offenders = []
    for path in src.rglob("*.py"):
        if path.parent.name == "commands" or path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            offenders += [f"{path.relative_to(src)}: {n}" for n in names
                          if n.startswith("softprompt.commands") or n == "softprompt.commands"]
    assert offenders == []


def test_one_in_process_worker_runs_cells_with_one_thread_and_gives_the_threads_back(tmp_path, data_dir):
    """--workers 1 runs in the bench process: one thread as every executor's cells (the same numbers as
    ray/slurm cells), and the process's own thread settings afterwards."""
    import torch

    torch.set_num_threads(2)
    spec = tiny_spec(tmp_path, methods=("id-spam",))
    res = run_grid(spec, "quick", data_dir=data_dir, results=tmp_path / "results", runs=tmp_path / "runs", workers=1,
                   log=None)
    (cid,) = res["ran"]
    record = json.loads((tmp_path / "results" / "tiny" / "cells" / f"{cid}.json").read_text())
    assert record["machine"]["threads"] == 1
    assert torch.get_num_threads() == 2
