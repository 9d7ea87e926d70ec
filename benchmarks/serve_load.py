"""Load test for `softprompt serve`: mixed-task batching vs one adapter per forward pass.

For each adapter count (default 1, 10, 100) and each batching mode (mixed, per-adapter) this
starts a real server process on 127.0.0.1, sends a fixed number of /v1/classify requests from
N concurrent clients (each request names a random adapter), and records throughput, p50/p99
latency, errors and the batch sizes the server reports at /metrics. Adapters are randomly
initialised prompt-tuning / id-spam adapters (alternating) generated into a temporary folder.
Texts are SST-2 dev sentences when the benchmark data folder is there, else synthetic.
Loopback only; the request count is bounded.

    python benchmarks/serve_load.py                          # minilm-l6, 1/10/100 adapters, 64 clients
    python benchmarks/serve_load.py --base tiny-bert --requests 200 --out /tmp/serve_smoke

Writes <out>.json and <out>.md (default benchmarks/results/serve_load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process  # noqa: E402
from server_process import stop_server  # noqa: E402

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the film was a quiet triumph with sharp writing and a lead performance that stays with you long after "
         "credits roll but the second half drags and several jokes land flat while the score swells at all the "
         "wrong moments still it is worth seeing on a big screen with friends who like slow careful dramas").split()


def default_texts() -> Path | None:
    """SST-2 dev sentences from the benchmark data folder, when it is there."""
    root = os.environ.get("SOFTPROMPT_DATA") or str(ROOT.parent / "shared" / "data")
    path = Path(root) / "glue" / "SST-2" / "dev.tsv"
    return path if path.is_file() else None


def load_texts(path: Path | None, n: int, seed: int = 0) -> tuple[list[str], str]:
    """Texts to send: first column of a TSV (header skipped), else synthetic 8-40 word sentences."""
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        texts = [line.split("\t")[0].strip() for line in lines if line.strip()][:n]
        return texts, f"{path.name} from {path.parent.name} ({len(texts)} sentences)"
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) for _ in range(n)]
    return texts, f"{n} synthetic sentences of 8-40 words"


def make_adapters(base: str, count: int, folder: Path, seed: int = 0) -> list[str]:
    """`count` random adapters (prompt-tuning / id-spam alternating) for `base`, saved under `folder`."""
    import torch

    from softprompt.adapter import save_adapter
    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    backbone = load_backbone(base)
    names = []
    for i in range(count):
        method = "prompt-tuning" if i % 2 == 0 else "id-spam"
        torch.manual_seed(seed + i)
        model = SoftPromptModel(backbone, method_config(method), num_labels=2)
        with torch.no_grad():  # not trivial: perturb the fresh weights
            for p in model.adapter_params().values():
                p.add_(torch.randn_like(p) * 0.02)
        name = f"a{i:03d}"
        save_adapter(model, folder / name, task="bench", label_names=["negative", "positive"])
        names.append(name)
    return names


def subset_dir(all_dir: Path, names: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(all_dir / name, target_is_directory=True)
    return folder


def start_server(args, prompts: Path, mode: str) -> tuple[subprocess.Popen, str]:
    serve_args = ["--base", args.base, "--prompts", str(prompts), "--batching", mode, "--max-batch",
                  str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--max-queue", str(args.max_queue),
                  "--log-level", "warning"]
    return server_process.start_server(serve_args, args.threads, args.device, ready_s=300)


async def load(url: str, names: list[str], texts: list[str], requests: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    plan = [(rng.choice(names), rng.choice(texts)) for _ in range(requests)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < len(plan):
            adapter, text = plan[next_index]
            next_index += 1
            t0 = time.perf_counter()
            try:
                resp = await http.post("/v1/classify", json={"adapter": adapter, "text": text})
                key = None if resp.status_code == 200 else f"HTTP {resp.status_code}"
            except httpx.HTTPError as err:
                key = type(err).__name__
            if key is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": requests, "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
            "seconds": elapsed, "throughput_rps": len(latencies) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan")}


def batch_stats(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=10).text

    def value(name: str) -> float:
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else float("nan")

    batches = value("softprompt_batch_size_count")
    return {"batches": batches, "mean_batch_size": value("softprompt_batch_size_sum") / max(batches, 1),
            "mean_adapters_per_batch": value("softprompt_batch_adapters_sum") / max(batches, 1)}


def write_report(out: Path, args, rows: list[dict], ratios: dict, command: str) -> None:
    import torch

    info = {"command": command, "base": args.base, "concurrency": args.concurrency, "requests": args.requests,
            "texts": args.text_source, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "threads": args.threads or torch.get_num_threads(),
            "device": args.device or "cpu", "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"info": info, "results": rows, "mixed_over_per_adapter": ratios},
                                                   indent=2))
    lines = ["# softprompt serve: mixed-task batching vs one adapter per forward", "",
             f"Command: `{command}`", "",
             f"Base `{args.base}`, {args.concurrency} concurrent clients, {args.requests} requests per run "
             f"(texts: {args.text_source}; each request names a random adapter), "
             f"max-batch {args.max_batch}, max-wait-ms {args.max_wait_ms}, torch threads {info['threads']}, "
             f"device {info['device']}, {info['cpu_count']} CPU cores shared by server and load generator, torch {info['torch']}, "
             f"{info['date']}.", "",
             "| adapters | batching | ok | errors | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | adapters/batch |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['adapters']} | {r['mode']} | {r['ok']} | {r['errors']} | {r['throughput_rps']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch_size']:.1f} | {r['mean_adapters_per_batch']:.1f} |")
    lines += ["", "Throughput ratio, mixed / per-adapter:", ""]
    lines += [f"- {n} adapter{'' if n == '1' else 's'}: {ratio:.2f}x" for n, ratio in ratios.items()]
    lines += ["", f"Errors in total: {sum(r['errors'] for r in rows)}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="minilm-l6")
    parser.add_argument("--adapters", default="1,10,100", help="comma-separated adapter counts")
    parser.add_argument("--modes", default="mixed,per-adapter")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (bounded)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="server torch threads")
    parser.add_argument("--device", default=None, help="server torch device (default cpu)")
    parser.add_argument("--texts", default=None,
                        help="TSV whose first column holds the texts (default: SST-2 dev from $SOFTPROMPT_DATA, else synthetic)")
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load"))
    args = parser.parse_args(argv)
    if args.requests > 100_000:
        parser.error("--requests is capped at 100000")
    counts = [int(x) for x in args.adapters.split(",")]
    modes = args.modes.split(",")
    command = "python benchmarks/serve_load.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    texts, args.text_source = load_texts(Path(args.texts) if args.texts else default_texts(), 1000, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="softprompt-bench-") as tmp:
        tmp = Path(tmp)
        print(f"generating {max(counts)} adapters for {args.base} ...", flush=True)
        names = make_adapters(args.base, max(counts), tmp / "all", args.seed)
        for n in counts:
            prompts = subset_dir(tmp / "all", names[:n], tmp / f"n{n}")
            for mode in modes:
                proc, url = start_server(args, prompts, mode)
                try:
                    asyncio.run(load(url, names[:n], texts, args.warmup, min(args.concurrency, args.warmup), 99))
                    before = batch_stats(url)
                    res = asyncio.run(load(url, names[:n], texts, args.requests, args.concurrency, args.seed))
                    after = batch_stats(url)
                finally:
                    stop_server(proc)
                batches = after["batches"] - before["batches"]
                res.update({
                    "adapters": n, "mode": mode, "batches": batches,
                    "mean_batch_size": (after["mean_batch_size"] * after["batches"]
                                        - before["mean_batch_size"] * before["batches"]) / max(batches, 1),
                    "mean_adapters_per_batch": (after["mean_adapters_per_batch"] * after["batches"]
                                                - before["mean_adapters_per_batch"] * before["batches"]) / max(batches, 1),
                })
                rows.append(res)
                print(f"{n:>4} adapters {mode:<12} {res['throughput_rps']:8.1f} req/s  p50 {res['p50_ms']:7.1f} ms  "
                      f"p99 {res['p99_ms']:7.1f} ms  errors {res['errors']}  batch {res['mean_batch_size']:.1f}", flush=True)
    ratios = {}
    for n in counts:
        by = {r["mode"]: r for r in rows if r["adapters"] == n}
        if "mixed" in by and "per-adapter" in by:
            ratios[str(n)] = by["mixed"]["throughput_rps"] / by["per-adapter"]["throughput_rps"]
    write_report(Path(args.out), args, rows, ratios, command)
    print(json.dumps({"mixed_over_per_adapter": ratios, "errors": sum(r["errors"] for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
