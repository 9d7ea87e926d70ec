"""Run a worker script as 2 gloo processes (torchrun) beside the same worker as one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def run_both(worker: Path, root: Path, name: str, sharded_args: list[str], single_args: list[str]) -> None:
    """`worker root/<name> ...sharded_args` on 2 processes and `worker root/single ...single_args` on one,
    at the same time; raises with the tail of the failing side's log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": ""}
    log_path = root / f"{name}.log"
    log = open(log_path, "w")  # a file, not a pipe: nothing can block on a full buffer
    multi = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
         str(root / name), *sharded_args],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:  # the single-process reference runs meanwhile
        single = subprocess.run([sys.executable, str(worker), str(root / "single"), *single_args],
                                env=env, cwd=root, capture_output=True, text=True, timeout=300)
        multi.wait(timeout=300)
    finally:
        if multi.poll() is None:  # torchrun and its workers share a new session: stop them together
            os.killpg(multi.pid, signal.SIGKILL)
        log.close()
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert multi.returncode == 0, log_path.read_text()[-5000:]
