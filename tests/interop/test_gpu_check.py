"""benchmarks/gpu_check.sh --dry: every step of the GPU check runs on CPU (tiny-llama, tiny limits) and writes its result.

The GPU run itself needs a CUDA machine; this keeps the script and the benchmarks it calls working
in between (their --device/--out options, the FSDP and vLLM checks, the report naming the device).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("train_vs_peft", "serve_generate", "decode_roofline", "fsdp", "vllm")


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_result(tmp_path, data_dir):
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "GPU_CHECK_DATA": str(data_dir)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    report = (tmp_path / "gpu_check.md").read_text()
    assert proc.returncode == 0, report + proc.stderr[-3000:]
    assert "--dry" in report and "device: cpu" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert [r.split("|")[1].strip() for r in rows] == ["train", "serve", "roofline", "fsdp", "vllm"]
    assert all(r.split("|")[2].strip() == "0" for r in rows), report
    for name in STEPS:
        text = (tmp_path / f"gpu_{name}.md").read_text()
        assert "device cpu" in text, f"gpu_{name}.md does not name the device:\n{text[:400]}"
        assert (tmp_path / f"gpu_{name}.json").is_file()
    fsdp = (tmp_path / "gpu_fsdp.md").read_text()
    assert "| prefix-tuning | 18 | no | torch.float32 |" in fsdp  # the layers sharded, the prompt replicated fp32
    assert "| yes |" in (tmp_path / "gpu_vllm.md").read_text()  # HF on the payload = softprompt's greedy tokens
