"""Generation benchmark for `softprompt serve`: mixed continuous batching vs one adapter per forward vs no prompts.

For each adapter count (default 1, 10, 100) this writes untrained adapters (prompt tuning, prefix
tuning and ID-SPAM in turn, random but seeded), starts a real server process on 127.0.0.1 and
runs a load generator in its own process: `--streams` concurrent streaming /v1/completions
requests (greedy, `ignore_eos`, `"stop": []`, `--new-tokens` each), each naming a random adapter.
Modes: (a) `mixed` (--generation-batching mixed: one decode batch across adapters), (b)
`per-adapter` (one adapter's requests per forward), (c) `base` (a server with no prompts; model =
the base). Reported per run: generated tokens/s, time to first token p50/p99 and inter-token
latency p50/p99 (client side, from the SSE chunks). Bounded: `--requests` per run and
`--time-limit` seconds per run. Loopback only.

    python benchmarks/serve_generate.py                           # smollm2-135m, 1/10/100 adapters
    python benchmarks/serve_generate.py --base tiny-gpt2 --adapters 1,4 --requests 32 --out /tmp/gen_smoke

Writes <out>.md and <out>.json (default benchmarks/results/serve_generate) from the run it made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process  # noqa: E402
from server_process import stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("prompt-tuning", "prefix-tuning", "id-spam")
PROMPTS = ["Write a short note about the weather today.", "The three most important things about a good film are",
           "Once upon a time, in a small village by the sea,", "Explain why the sky is blue in simple words:",
           "List some fruits that are red:", "A recipe for a quick lunch:"]


def make_adapters(base: str, count: int, folder: Path, seed: int = 0) -> list[str]:
    import torch

    from softprompt.adapter import save_adapter
    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    backbone = load_backbone(base)
    names = []
    for i in range(count):
        method = METHODS[i % len(METHODS)]
        torch.manual_seed(seed + i)
        model = SoftPromptModel(backbone, method_config(method), num_labels=2, generative=True)
        g = torch.Generator().manual_seed(10_000 + seed + i)
        with torch.no_grad():  # random but seeded, not trivial
            for p in model.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        name = f"a{i:03d}"
        save_adapter(model, folder / name, task="bench")
        names.append(name)
    return names


def start_server(args, prompts: Path, batching: str, extra: list[str] | None = None, env_extra=None):
    serve_args = ["--base", args.base, "--prompts", str(prompts), "--max-batch", str(args.max_batch),
                  "--generation-batching", batching, "--log-level", "warning", *(extra or [])]
    return server_process.start_server(serve_args, args.threads, args.device, env_extra)


# -- the load generator (its own process) -------------------------------------------------------------
async def generate_load(url: str, models: list[str], requests: int, streams: int, new_tokens: int,
                        time_limit: float, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    plan = [(rng.choice(models), rng.choice(PROMPTS)) for _ in range(requests)]
    ttft, itl, tokens, completed, errors = [], [], [0], [0], []
    deadline = time.monotonic() + time_limit

    async def one(http, model, prompt) -> None:
        body = {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "stop": [],
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        sent = time.perf_counter()
        last, streamed = None, 0  # text chunks seen: a request cut at the deadline still counts them
        try:
            async with http.stream("POST", "/v1/completions", json=body) as resp:
                if resp.status_code != 200:
                    errors.append(f"{resp.status_code}: {(await resp.aread())[:200]!r}")
                    return
                async for line in resp.aiter_lines():
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    if "error" in chunk:
                        errors.append(str(chunk["error"])[:200])
                        return
                    if chunk.get("usage"):
                        streamed = chunk["usage"]["completion_tokens"]
                    if chunk["choices"] and chunk["choices"][0]["text"]:
                        now = time.perf_counter()
                        if last is None:
                            ttft.append(now - sent)
                        else:
                            itl.append(now - last)
                        last = now
                        streamed += 1
                completed[0] += 1
        finally:
            tokens[0] += streamed

    async def worker(http) -> None:
        while plan and time.monotonic() < deadline:
            model, prompt = plan.pop()
            try:
                await asyncio.wait_for(one(http, model, prompt), timeout=max(deadline - time.monotonic(), 1))
            except Exception as err:  # a timeout at the deadline, or a broken connection
                errors.append(f"{type(err).__name__}: {err}"[:200])

    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(streams)))
        wall = time.perf_counter() - start

    def pct(values, q):
        if not values:
            return float("nan")
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"requests": requests - len(plan), "completed": completed[0], "errors": len(errors),
            "error_samples": errors[:5], "tokens": tokens[0], "wall_s": wall, "tokens_per_s": tokens[0] / wall,
            "ttft_p50_ms": 1000 * pct(ttft, 0.5), "ttft_p99_ms": 1000 * pct(ttft, 0.99),
            "itl_p50_ms": 1000 * pct(itl, 0.5), "itl_p99_ms": 1000 * pct(itl, 0.99)}


def run_load(args, url: str, models: list[str]) -> dict:
    """The load generator in its own process (so the client does not share the server's interpreter)."""
    spec = json.dumps({"url": url, "models": models, "requests": args.requests, "streams": args.streams,
                       "new_tokens": args.new_tokens, "time_limit": args.time_limit, "seed": args.seed})
    out = subprocess.run([sys.executable, __file__, "--load-generator", spec], capture_output=True, text=True,
                         timeout=args.time_limit + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_up(url: str, model: str) -> None:
    import httpx

    httpx.post(url + "/v1/completions", json={"model": model, "prompt": "hello", "max_tokens": 4, "temperature": 0},
               timeout=300).raise_for_status()


def fmt(row: dict) -> str:
    return (f"| {row['adapters']} | {row['mode']} | {row['completed']}/{row['requests']} | {row['errors']} | "
            f"{row['tokens_per_s']:.1f} | {row['ttft_p50_ms']:.0f} | {row['ttft_p99_ms']:.0f} | "
            f"{row['itl_p50_ms']:.1f} | {row['itl_p99_ms']:.1f} |")


HEADER = ("| adapters | mode | done/sent | errors | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--adapters", default="1,10,100", help="adapter counts, comma separated")
    parser.add_argument("--modes", default="mixed,per-adapter,base")
    parser.add_argument("--streams", type=int, default=32, help="concurrent streams")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=128, help="requests per run (bounded)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per run (bounded)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_generate"))
    parser.add_argument("--load-generator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        spec = json.loads(args.load_generator)
        print(json.dumps(asyncio.run(generate_load(**spec))))
        return 0

    counts = [int(x) for x in args.adapters.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    rows = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="serve_generate_") as tmp:
        tmp = Path(tmp)
        for count in counts:
            folder = tmp / f"prompts{count}"
            names = make_adapters(args.base, count, folder, args.seed)
            for mode in modes:
                if mode == "base":
                    if count != counts[0]:
                        continue  # no prompts: the adapter count does not matter; measured once
                    empty = tmp / "empty"
                    empty.mkdir(exist_ok=True)
                    proc, url = start_server(args, empty, "mixed")
                    models = [args.base]  # the base's served name is the name it was loaded by
                else:
                    proc, url = start_server(args, folder, mode)
                    models = names
                try:
                    warm_up(url, models[0])
                    result = run_load(args, url, models)
                finally:
                    stop_server(proc)
                row = {"adapters": 0 if mode == "base" else count, "mode": mode, **result}
                rows.append(row)
                print(fmt(row), flush=True)
    write_report(Path(args.out), args, rows)
    return 0


def ratio_lines(rows: list[dict]) -> list[str]:
    """The goals: mixed / per-adapter >= 5x at 100 adapters, mixed / base >= 0.8."""
    rate = {(r["mode"], r["adapters"]): r["tokens_per_s"] for r in rows}
    base = next((v for (m, _), v in rate.items() if m == "base"), None)
    lines = []
    for (mode, n), value in sorted(rate.items(), key=lambda kv: kv[0][1]):
        if mode != "mixed":
            continue
        parts = [f"{n} adapter{'s' if n != 1 else ''}: mixed {value:.1f} tok/s"]
        if rate.get(("per-adapter", n)):
            parts.append(f"mixed / per-adapter = {value / rate[('per-adapter', n)]:.2f}x (goal >= 5 at 100)")
        if base:
            parts.append(f"mixed / base = {value / base:.2f} (goal >= 0.8)")
        lines.append("- " + "; ".join(parts))
    return lines


def write_report(out: Path, args, rows: list[dict]) -> None:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/serve_generate.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    device = args.device or "cpu"  # the server loads the base where it is (cpu) unless told
    machine += f", device {torch.cuda.get_device_name(torch.device(device)) if device.startswith('cuda') else device}"
    lines = [f"# serve generation benchmark ({args.base}, {machine.rsplit(', ', 1)[1]})", "",
             f"`{command}` on {machine}, {time.strftime('%Y-%m-%d')}.", "",
             f"{args.streams} concurrent streams, {args.new_tokens} new tokens each (greedy, eos ignored), "
             f"{args.requests} requests per run (at most {args.time_limit:.0f} s), adapters: untrained prompt tuning / "
             "prefix tuning / ID-SPAM in turn, each request naming a random one. mixed = one decode batch across "
             "adapters; per-adapter = one adapter's requests per forward; base = no prompts (model = base). "
             "TTFT and ITL are measured by the client from the SSE chunks.", "", HEADER]
    lines += [fmt(r) for r in rows]
    lines += ["", "Requests still running at the time limit end there and count the tokens they streamed "
              "(a TimeoutError below); tokens/s = all streamed tokens / wall time.", ""] + ratio_lines(rows)
    errors = [r for r in rows if r["errors"]]
    if errors:
        lines += ["", "Errors: " + "; ".join(f"{r['mode']}/{r['adapters']}: {r['error_samples']}" for r in errors)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
