"""Soak test for `softprompt serve`: steady streaming load while adapters are added and removed.

Starts a real server on 127.0.0.1 (admin token set), runs a load generator in its own process
for `--minutes` (default 10): `--streams` concurrent streaming /v1/completions requests naming a
random adapter from the server's current /v1/models (or the base), some of them disconnecting
mid-stream on purpose. Meanwhile this process loads a new adapter through the admin API and
unloads an old one every `--churn-s` seconds. At the end it reports:

  - requests that failed and were NOT intentionally refused (404 for an adapter just unloaded and
    503 + Retry-After for a full queue are intentional; anything else, 5xx, a broken stream, a
    timeout, counts as a failure), and
  - the server's resident memory after warm-up and at the end (growth).

    python benchmarks/soak.py                                   # smollm2-135m, 10 minutes
    python benchmarks/soak.py --base tiny-gpt2 --minutes 1      # a smoke run

Exit code 1 when any request failed unintentionally. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_generate import PROMPTS, make_adapters, start_server, stop_server  # noqa: E402

TOKEN = "soak-token"


async def load(url: str, base: str, seconds: float, streams: int, new_tokens: int, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    counts = {"ok": 0, "refused_404": 0, "refused_503": 0, "disconnected": 0, "failed": 0}
    failures: list[str] = []
    models = [base]
    deadline = time.monotonic() + seconds

    async def refresh(http) -> None:
        while time.monotonic() < deadline:
            try:
                models[:] = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
            except Exception as err:
                counts["failed"] += 1
                failures.append(f"GET /v1/models: {type(err).__name__}: {err}"[:300])
            await asyncio.sleep(1.0)

    async def one(http) -> None:
        model = rng.choice(models)
        hang_up = rng.random() < 0.1  # some clients go away mid-stream, on purpose
        body = {"model": model, "prompt": rng.choice(PROMPTS), "max_tokens": new_tokens, "stream": True,
                "temperature": rng.choice([0, 0.7]), "seed": rng.randrange(1000), "ignore_eos": True}
        async with http.stream("POST", "/v1/completions", json=body) as resp:
            if resp.status_code == 404 and model != base:
                counts["refused_404"] += 1  # unloaded after we read the list: intentional
                return
            if resp.status_code == 503 and "retry-after" in resp.headers:
                counts["refused_503"] += 1
                return
            if resp.status_code != 200:
                counts["failed"] += 1
                failures.append(f"{model}: HTTP {resp.status_code} {(await resp.aread())[:200]!r}")
                return
            seen, done = 0, False
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                    break
                if line.startswith("data:"):
                    if "error" in json.loads(line[5:]):
                        break
                    seen += 1
                    if hang_up and seen == 3:
                        counts["disconnected"] += 1
                        return
            if done:
                counts["ok"] += 1
            else:
                counts["failed"] += 1
                failures.append(f"{model}: stream ended without [DONE] after {seen} chunks")

    async def worker(http) -> None:
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(one(http), timeout=120)
            except Exception as err:
                counts["failed"] += 1
                failures.append(f"{type(err).__name__}: {err}"[:300])

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=streams + 8)) as http:
        await asyncio.gather(refresh(http), *(worker(http) for _ in range(streams)))
    return {**counts, "failure_samples": failures[:10]}


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=8, help="adapters served at the start")
    parser.add_argument("--pool", type=int, default=8, help="extra adapters loaded and unloaded during the run")
    parser.add_argument("--churn-s", type=float, default=10.0, help="seconds between an admin load and an unload")
    parser.add_argument("--warmup-fraction", type=float, default=0.15, help="share of the run before memory is read")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load-generator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        spec = json.loads(args.load_generator)
        print(json.dumps(asyncio.run(load(**spec))))
        return 0

    import httpx

    seconds = args.minutes * 60
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        tmp = Path(tmp)
        served = make_adapters(args.base, args.adapters, tmp / "prompts", args.seed)
        pool = make_adapters(args.base, args.pool, tmp / "pool", args.seed + 1000)
        args.generation_batching = "mixed"
        proc, url = start_server(args, tmp / "prompts", "mixed", env_extra={"SOFTPROMPT_TOKEN": TOKEN})
        try:
            spec = json.dumps({"url": url, "base": args.base, "seconds": seconds, "streams": args.streams,
                               "new_tokens": args.new_tokens, "seed": args.seed})
            gen = subprocess.Popen([sys.executable, __file__, "--load-generator", spec], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            start = time.monotonic()
            rng = random.Random(args.seed)
            live, spare = list(served), [f"p{i:03d}" for i in range(len(pool))]
            paths = {f"p{i:03d}": tmp / "pool" / name for i, name in enumerate(pool)}
            admin_failures, churns, warm_rss = [], 0, None
            while time.monotonic() - start < seconds and gen.poll() is None:
                time.sleep(min(args.churn_s, max(seconds - (time.monotonic() - start), 0.1)))
                if warm_rss is None and time.monotonic() - start >= args.warmup_fraction * seconds:
                    warm_rss = rss_mb(proc.pid)
                if spare:  # load one from the pool
                    name = spare.pop(rng.randrange(len(spare)))
                    r = httpx.post(f"{url}/v1/adapters/{name}", json={"path": str(paths[name])}, headers=auth, timeout=60)
                    if r.status_code != 201:
                        admin_failures.append(f"load {name}: {r.status_code} {r.text[:200]}")
                    live.append(name)
                if len(live) > 1:  # and unload one (it may be a start-up adapter or a pool one)
                    name = live.pop(rng.randrange(len(live)))
                    r = httpx.delete(f"{url}/v1/adapters/{name}", headers=auth, timeout=60)
                    if r.status_code != 200:
                        admin_failures.append(f"unload {name}: {r.status_code} {r.text[:200]}")
                    if name in paths:
                        spare.append(name)
                churns += 1
            out, err = gen.communicate(timeout=300)
            if gen.returncode != 0:
                raise RuntimeError(f"load generator failed: {err[-2000:]}")
            result = json.loads(out.strip().splitlines()[-1])
            end_rss = rss_mb(proc.pid)
            metrics = httpx.get(url + "/metrics", timeout=30).text
        finally:
            stop_server(proc)
    warm_rss = warm_rss if warm_rss is not None else end_rss
    failed = result["failed"] + len(admin_failures)
    print(f"soak: {args.base}, {args.minutes:g} min, {args.streams} streams, {churns} admin load/unload rounds")
    print(f"  completed {result['ok']}, refused on purpose: 404 after unload {result['refused_404']}, "
          f"503 queue full {result['refused_503']}; client hang-ups on purpose {result['disconnected']}")
    print(f"  FAILED (not intentionally refused): {failed}")
    for line in result["failure_samples"] + admin_failures[:10]:
        print(f"    {line}")
    print(f"  server resident memory: {warm_rss:.0f} MiB after warm-up, {end_rss:.0f} MiB at the end "
          f"(growth {end_rss - warm_rss:+.0f} MiB)")
    running = [line for line in metrics.splitlines() if line.startswith("softprompt_generation_running ")]
    print(f"  engine at the end: {running[0] if running else 'no running gauge'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
