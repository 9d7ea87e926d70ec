"""Training with the frozen base sharded by accelerate's FSDP2 (`softprompt train --fsdp`) vs one plain process.

    python benchmarks/fsdp_check.py --base smollm2-135m --device cuda --nproc 1 --data-dir ../shared/data --out benchmarks/results/gpu_fsdp
    python benchmarks/fsdp_check.py --base tiny-llama --device cpu --nproc 2 --data-dir ../shared/data --out /tmp/gpu_fsdp

Runs tests/interop/fsdp_worker.py (SST-2, 24 rows, 2 epochs, gradient checkpointing on; prompt tuning
and prefix tuning) once as one process without FSDP (global batch 8) and once under
`torchrun --nproc_per_node NPROC` with `fsdp: true` (batch 8 / NPROC each: the same global batches),
then compares the probe loss, the probe gradients and the trained adapters (max |difference|),
with the sharded parameter count, seconds and peak GPU memory per run. CUDA_VISIBLE_DEVICES is
emptied for `--device cpu` (gloo). Writes <out>.md and <out>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "interop" / "fsdp_worker.py"
METHODS = ("prompt-tuning", "prefix-tuning")


def launch(cmd: list[str], env: dict, log: Path, timeout: int) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, time.perf_counter() - start


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a) if sorted(a) == sorted(b) else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="tiny-llama")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--timeout", type=int, default=200)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated: prompt-tuning, prefix-tuning")
    ap.add_argument("--out", required=True, help="path stem: writes <out>.md and <out>.json")
    args = ap.parse_args()
    import torch
    from safetensors.torch import load_file

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    batch = 8 // args.nproc
    rows, logs = [], {}
    with tempfile.TemporaryDirectory(prefix="fsdp_check_") as tmp:
        tmp = Path(tmp)
        common = [str(tmp), args.data_dir, args.methods]
        single_rc, single_s = launch([sys.executable, str(WORKER), str(tmp / "single"), *common[1:], "8", "0", args.base],
                                     env, tmp / "single.log", args.timeout)
        fsdp_rc, fsdp_s = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                  str(args.nproc), str(WORKER), str(tmp / "fsdp"), *common[1:], str(batch), "1", args.base],
                                 env, tmp / "fsdp.log", args.timeout)
        for name in ("single", "fsdp"):
            lines = [line for line in (tmp / f"{name}.log").read_text().splitlines() if line.strip()]
            logs[name] = [line for line in lines if "Error" in line][-3:] or lines[-3:]
        for method in args.methods.split(","):
            row = {"method": method}
            try:
                one = {f: load_file(str(tmp / "single" / method / f"{f}.safetensors")) for f in ("probe", "final")}
                many = {f: load_file(str(tmp / "fsdp" / method / f"{f}.safetensors")) for f in ("probe", "final")}
                info1 = json.loads((tmp / "single" / method / "worker.json").read_text())
                info2 = json.loads((tmp / "fsdp" / method / "worker.json").read_text())
            except FileNotFoundError as e:
                row["error"] = f"missing {Path(e.filename).name}: see the logs below"
                rows.append(row)
                continue
            row.update(world=info2["world"], distributed_type=info2["distributed_type"],
                       sharded_params=info2["sharded_params"], trainable_sharded=info2["trainable_sharded"],
                       trainable_dtypes=info2["trainable_dtypes"],
                       probe_loss_diff=abs(info1["probe_loss"] - info2["probe_loss"]),
                       probe_grad_diff=max_diff(one["probe"], many["probe"]),
                       adapter_diff=max_diff(one["final"], many["final"]),
                       single_peak_gpu_mb=info1.get("peak_gpu_mb"), fsdp_peak_gpu_mb=info2.get("peak_gpu_mb"),
                       single_train_s=info1.get("train_seconds"), fsdp_train_s=info2.get("train_seconds"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, torch {torch.__version__}, device {device}"
    result = {"machine": machine, "nproc": args.nproc, "base": args.base, "single_rc": single_rc, "fsdp_rc": fsdp_rc,
              "single_s": single_s, "fsdp_s": fsdp_s, "rows": rows, "logs": logs}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# FSDP2 training check ({args.base}, {args.nproc} process{'es' if args.nproc > 1 else ''}, device {device})",
             "", f"`python benchmarks/fsdp_check.py {' '.join(sys.argv[1:])}` on {machine}, {time.strftime('%Y-%m-%d')}.",
             "", f"One process without FSDP (exit {single_rc}, {single_s:.0f} s with start-up) vs `torchrun "
             f"--nproc_per_node {args.nproc}` with `fsdp: true` (exit {fsdp_rc}, {fsdp_s:.0f} s): SST-2, 24 rows, "
             "2 epochs, gradient checkpointing on, fp32. Differences are max |one process - FSDP|.", "",
             "| method | sharded base tensors | trainable sharded | trainable dtype | probe loss diff | probe grad diff "
             "| adapter diff | train s (1 / FSDP) | peak GPU MB (1 / FSDP) |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | fails: {r['error']} | | | | | | | |")
            continue
        gpu = ("-" if r["single_peak_gpu_mb"] is None else
               f"{r['single_peak_gpu_mb']:.0f} / {r['fsdp_peak_gpu_mb']:.0f}")
        lines.append(f"| {r['method']} | {r['sharded_params']} | {'yes' if r['trainable_sharded'] else 'no'} | "
                     f"{', '.join(r['trainable_dtypes'])} | {r['probe_loss_diff']:.1e} | {r['probe_grad_diff']:.1e} | "
                     f"{r['adapter_diff']:.1e} | {r['single_train_s']:.1f} / {r['fsdp_train_s']:.1f} | {gpu} |")
    if single_rc or fsdp_rc:
        lines += ["", "Last log lines:", ""] + [f"- {k}: `{' / '.join(v)}`" for k, v in logs.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = not single_rc and not fsdp_rc and all("error" not in r and r["adapter_diff"] < 1e-4 for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
