"""Training throughput from the frozen model: ID-SPAM and LPT at m = L/2 (layers below m cached
after epoch 1) against prompt tuning at m = 0, same data, batch and epochs, in one run.

    python benchmarks/train_cache_speed.py --data-dir ../shared/data [--train-limit 2000 --epochs 3]

Writes benchmarks/results/train_cache_speed.{json,md}. The physical expectation for epochs
after the first is about L / (L - m) times the prompt-tuning rate (less the producer's cost).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from softprompt.backbones import load_backbone
from softprompt.train.config import TrainConfig
from softprompt.train.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cache_speed"))
    args = ap.parse_args()
    backbone = load_backbone(args.backbone)
    layers = backbone.model.config.num_hidden_layers
    m = layers // 2
    runs = [
        ("prompt-tuning", {"name": "prompt-tuning"}, "memory"),
        ("id-spam m=L/2 cached", {"name": "id-spam", "site": {"kind": "layer", "layer": m}}, "memory"),
        ("id-spam m=L/2 no cache", {"name": "id-spam", "site": {"kind": "layer", "layer": m}}, "none"),
        ("lpt m=L/2 cached", {"name": "lpt", "site": {"kind": "layer", "layer": m}}, "memory"),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, method, cache in runs:
            cfg = TrainConfig(backbone=args.backbone, task="sst2", method=method, data_dir=args.data_dir,
                              train_limit=args.train_limit, eval_limit=64, epochs=args.epochs, batch_size=args.batch_size,
                              cache=cache, output_dir=f"{tmp}/{len(rows)}", checkpoint_every=0, progress=False)
            t0 = time.perf_counter()
            s = train(cfg, backbone=backbone, log=lambda *a: None)
            rows.append({"run": label, "cache": cache, "epoch_samples_per_s": s["epoch_samples_per_s"],
                         "boundary": s["boundary_layer"], "wall_s": time.perf_counter() - t0})
            print(label, [round(x, 1) for x in s["epoch_samples_per_s"]])
    base = rows[0]["epoch_samples_per_s"]
    for r in rows:
        r["ratio_vs_prompt_tuning"] = [a / b for a, b in zip(r["epoch_samples_per_s"], base)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"command": "python benchmarks/train_cache_speed.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "backbone": args.backbone, "layers": layers, "m": m, "expected_ratio_later_epochs": layers / (layers - m),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "torch": torch.__version__, "commit": commit}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Training throughput with the frozen-state cache ({args.backbone}, SST-2)", "",
             f"`{meta['command']}` — commit {commit}, {meta['machine']}, torch {torch.__version__}", "",
             f"L = {layers}, m = {m}; expected ratio after epoch 1 ≈ L/(L-m) = {meta['expected_ratio_later_epochs']:.2f}", "",
             "| run | " + " | ".join(f"epoch {i + 1} samples/s" for i in range(args.epochs)) + " | later epochs vs prompt tuning |",
             "|---|" + "---:|" * args.epochs + "---:|"]
    for r in rows:
        later = sum(r["ratio_vs_prompt_tuning"][1:]) / max(1, len(r["ratio_vs_prompt_tuning"]) - 1)
        lines.append(f"| {r['run']} | " + " | ".join(f"{x:.1f}" for x in r["epoch_samples_per_s"]) + f" | {later:.2f}× |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
