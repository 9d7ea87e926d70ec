"""Peak memory with and without gradient checkpointing: smollm2-135m, key/value prefixes (p-tuning-v2),
batch 16 of 256 tokens, one forward + backward; the loss and the prompt gradients must agree (1e-5).

    python benchmarks/grad_checkpointing.py [--backbone smollm2-135m --batch-size 16 --length 256 --timeout 600]

Each configuration runs in its own subprocess (peak RSS is its own; ru_maxrss) under a time limit.
Same seed and batch in both: random token ids (fixed seed), loss on the second half of each row
(target tokens), dropout masks fixed by the seed (torch.utils.checkpoint restores the RNG state).
Writes benchmarks/results/grad_checkpointing.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def worker(args) -> dict:
    import torch

    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    torch.manual_seed(0)
    bb = load_backbone(args.backbone)
    model = SoftPromptModel(bb, method_config({"name": args.method}), 0, generative=True)
    model.gradient_checkpointing = args.checkpointing == "on"
    model.train()
    g = torch.Generator().manual_seed(1)
    vocab = model.runner.word_embeddings.weight.shape[0]
    ids = torch.randint(10, vocab, (args.batch_size, args.length), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[:, args.length // 2:] = ids[:, args.length // 2:]
    source = torch.zeros_like(ids, dtype=torch.bool)
    source[:, : args.length // 2] = True
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(7)
    t0 = time.perf_counter()
    loss = model(ids, mask, labels=labels, source_mask=source).loss
    loss.backward()
    seconds = time.perf_counter() - t0
    grads = {n: p.grad.detach().double() for n, p in model.adapter_params().items()}
    torch.save(grads, args.grads_out)
    return {"checkpointing": args.checkpointing, "loss": float(loss), "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_load_mb": base_rss,
            "trainable_params": sum(p.numel() for p in model.adapter_params().values())}


def run(flags: list[str], setting: str, grads: Path, timeout: int) -> dict:
    try:
        proc = subprocess.run([sys.executable, __file__, *flags, "--worker", setting, "--grads-out", str(grads)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"checkpointing": setting, "error": f"timed out after {timeout}s"}
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    return {"checkpointing": setting, "error": lines[-1] if lines else f"exit code {proc.returncode}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--method", default="p-tuning-v2")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
    ap.add_argument("--worker", choices=("on", "off"))
    ap.add_argument("--grads-out")
    args = ap.parse_args()
    if args.worker:
        args.checkpointing = args.worker
        print(json.dumps(worker(args)))
        return
    import tempfile

    import torch

    flags = [f"--backbone={args.backbone}", f"--method={args.method}", f"--batch-size={args.batch_size}",
             f"--length={args.length}"]
    tmp = Path(tempfile.mkdtemp())
    rows = [run(flags, s, tmp / f"{s}.pt", args.timeout) for s in ("off", "on")]
    print(rows, flush=True)
    check = {}
    if not any("error" in r for r in rows):
        off, on = torch.load(tmp / "off.pt"), torch.load(tmp / "on.pt")
        check = {"loss_diff": abs(rows[0]["loss"] - rows[1]["loss"]),
                 "max_grad_diff": max(float((off[k] - on[k]).abs().max()) for k in off),
                 "same_grad_names": sorted(off) == sorted(on)}
        check["equal_within_1e-5"] = check["loss_diff"] <= 1e-5 and check["max_grad_diff"] <= 1e-5
        check["memory_ratio_on_vs_off"] = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/grad_checkpointing.py " + " ".join(flags)
    meta = {"command": command, "commit": commit, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__}
    out = Path(__file__).parent / "results"
    (out / "grad_checkpointing.json").write_text(json.dumps({"meta": meta, "rows": rows, "check": check}, indent=2))
    lines = [f"# Gradient checkpointing: {args.backbone}, {args.method}, batch {args.batch_size} x {args.length} tokens",
             "", f"`{command}`", "", f"commit {commit}; {meta['machine']}; torch {meta['torch']}", "",
             "| gradient_checkpointing | peak RSS MB | forward+backward s | loss |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['checkpointing']} | fails: {r['error']} | | |" if "error" in r else
                     f"| {r['checkpointing']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | {r['loss']:.6f} |")
    if check:
        lines += ["", f"loss difference {check['loss_diff']:.2e}, largest prompt-gradient difference "
                      f"{check['max_grad_diff']:.2e} (equal within 1e-5: {check['equal_within_1e-5']}); peak memory "
                      f"with checkpointing {check['memory_ratio_on_vs_off']:.2f}x without"]
    (out / "grad_checkpointing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
