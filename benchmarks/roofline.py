"""Achieved fraction of the machine's matmul rate for one soft-prompt training step.

    python benchmarks/roofline.py --data-dir ../shared/data [--backbone mpnet-base --batch-size 32 --steps 8]

Work per step, counted on the padded batch actually computed (L tokens incl. prompt, d hidden,
f feed-forward width, per layer): forward = 2·(4d² + 2df)·L + 4·L²·d multiply-adds ×1.
Layers below the injection layer m run forward only; layers from m on run forward and a
backward that, with frozen weights, computes input gradients only (≈ 1× forward); the
producer runs forward + full backward (≈ 3× its forward). The limit is the measured fp32
matmul rate of this machine (torch.matmul, square matrices). Writes results/roofline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import load_split
from softprompt.train.batches import batch_order, collate, encode

METHODS = ["prompt-tuning", "p-tuning-v2", "lpt", "id-spam"]


def matmul_rate(n: int = 1024, reps: int = 20, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def layer_flops(tokens_per_row: int, rows: int, d: int, f: int, prefix: int = 0) -> float:
    length = tokens_per_row
    dense = 2 * (4 * d * d + 2 * d * f) * length
    attn = 4 * length * (length + prefix) * d
    return rows * (dense + attn)


def producer_flops(model, rows: int, length: int) -> float:
    n = sum(p.numel() for p in model.producer.parameters()) if model.producer is not None else 0
    extra = 0
    if model.method.producer_kind == "attention":  # three d×d projections over every token + attention
        d = model.runner.hidden_size
        extra = rows * (2 * 3 * d * d * length + 4 * length * length * d)
    return 3 * (2 * n * rows + extra)  # forward + backward (weights are trained)


def step_flops(model, batch) -> float:
    cfg = model.backbone.model.config
    d, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    rows, text_len = batch["input_ids"].shape
    t = model.producer.num_tokens if model.producer is not None else 0
    site = model.site
    total = 0.0
    for i in range(layers):
        inserted = site.kind == "layer" and i >= site.boundary
        length = text_len + (t if inserted else 0)
        prefix = t if site.kind == "kv" and i in site.layers else 0
        work = layer_flops(length, rows, d, f, prefix)
        total += work * (2 if i >= model.boundary else 1)
    return total + producer_flops(model, rows, text_len)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backbone", default="mpnet-base")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    limit = matmul_rate()
    bb = load_backbone(args.backbone)
    enc = encode(bb.tokenizer, load_split("sst2", "train", args.data_dir, args.batch_size * (args.steps + 2), 0), 128)
    batches = [collate(enc, idx, bb.tokenizer.pad_token_id, bb.tokenizer.padding_side)
               for idx in batch_order(enc.lengths, args.batch_size, 0, 0, True, True)]
    rows = []
    for name in METHODS:
        torch.manual_seed(0)
        model = SoftPromptModel(bb, method_config(name), 2).train()
        opt = torch.optim.AdamW(model.adapter_params().values(), lr=1e-3)
        flops, seconds = 0.0, 0.0
        for i, b in enumerate(batches[: args.steps + 2]):
            t0 = time.perf_counter()
            out = model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"), labels=b["labels"])
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            if i >= 2:  # first two are warm-up
                seconds += time.perf_counter() - t0
                flops += step_flops(model, b)
        achieved = flops / seconds
        rows.append({"method": name, "gflop_per_s": achieved / 1e9, "fraction_of_limit": achieved / limit,
                     "boundary": model.boundary})
        print(rows[-1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = f"python benchmarks/roofline.py --data-dir {args.data_dir} --backbone {args.backbone} --batch-size {args.batch_size} --steps {args.steps}"
    out = Path(__file__).parent / "results" / "roofline"
    out.with_suffix(".json").write_text(json.dumps({"command": command, "commit": commit, "matmul_gflop_per_s": limit / 1e9,
                                                    "machine": platform.machine(), "threads": torch.get_num_threads(),
                                                    "rows": rows}, indent=2))
    lines = [f"# Roofline: achieved fraction of the matmul limit ({args.backbone}, SST-2, batch {args.batch_size})", "",
             f"`{command}` — commit {commit}, {platform.machine()}, {torch.get_num_threads()} threads, "
             f"measured fp32 matmul limit {limit / 1e9:.1f} GFLOP/s", "",
             "| method | boundary layer | achieved GFLOP/s | fraction of limit |", "|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['boundary']} | {r['gflop_per_s']:.1f} | {100 * r['fraction_of_limit']:.0f}% |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
