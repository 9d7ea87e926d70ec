"""Load test of `softprompt serve --replicas N` (issue #27 item 3) against one process on the same adapters.

Writes `--adapters` untrained adapters (prompt tuning, prefix tuning, ID-SPAM in turn, seeded), starts
`softprompt serve` twice on loopback (one process; `--replicas N` on Ray Serve, a local Ray runtime), and
runs the same load on each: `--streams` concurrent clients, `--requests` streamed greedy /v1/completions
(`--new-tokens` each, ignore_eos) naming the adapters in turn. Checked: 0 errors, every streamed text
from the replicas equal to the one process's, every adapter's requests on one replica (the answer's
x-softprompt-replica header). Reported: wall time, generated tokens/s, request latency p50/p99.

    python benchmarks/serve_replicas.py                       # tiny-gpt2, 100 adapters, 32 streams, 2 replicas
    python benchmarks/serve_replicas.py --adapters 10 --requests 40 --streams 8

Writes <out>.md and <out>.json (default benchmarks/results/serve_replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process  # noqa: E402
from serve_generate import make_adapters  # noqa: E402


async def one_stream(client, url: str, model: str, prompt: str, new_tokens: int) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stop": []}
    start, text, error = time.perf_counter(), [], None
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as answer:
            replica = answer.headers.get("x-softprompt-replica")
            if answer.status_code != 200:
                error = f"HTTP {answer.status_code}"
            async for line in answer.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if "error" in event:
                        error = event["error"]["message"]
                    else:
                        text.append(event["choices"][0]["text"])
    except Exception as err:  # noqa: BLE001 - counted as an error of the run
        replica, error = None, repr(err)
    return {"model": model, "prompt": prompt, "text": "".join(text), "replica": replica, "error": error,
            "latency_s": time.perf_counter() - start}


async def run_load(url: str, jobs: list[tuple[str, str]], streams: int, new_tokens: int) -> tuple[list[dict], float]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    results: list[dict] = []

    async def client_loop(client):
        while not queue.empty():
            model, prompt = queue.get_nowait()
            results.append(await one_stream(client, url, model, prompt, new_tokens))

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=httpx.Limits(max_connections=streams)) as c:
        await asyncio.gather(*(client_loop(c) for _ in range(streams)))
    return results, time.perf_counter() - start


def summary(results: list[dict], wall_s: float, new_tokens: int) -> dict:
    latencies = sorted(r["latency_s"] for r in results)
    ok = [r for r in results if r["error"] is None]
    return {"requests": len(results), "errors": len(results) - len(ok), "wall_s": round(wall_s, 2),
            "tokens_per_s": round(len(ok) * new_tokens / wall_s, 1),
            "latency_p50_s": round(latencies[len(latencies) // 2], 3),
            "latency_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3)}


def serve_and_load(args, prompts: Path, jobs, extra: list[str]) -> tuple[list[dict], float]:
    serve_args = ["--base", args.base, "--prompts", str(prompts), "--log-level", "warning", *extra]
    proc, url = server_process.start_server(serve_args, args.threads)
    try:
        return asyncio.run(run_load(url, jobs, args.streams, args.new_tokens))
    finally:
        server_process.stop_server(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="tiny-gpt2")
    ap.add_argument("--adapters", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "serve_replicas"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        names = make_adapters(args.base, args.adapters, Path(tmp))
        jobs = [(names[i % len(names)], f"request {i} of the load test:") for i in range(args.requests)]
        one, one_wall = serve_and_load(args, Path(tmp), jobs, [])
        many, many_wall = serve_and_load(args, Path(tmp), jobs, ["--replicas", str(args.replicas)])
    reference = {(r["model"], r["prompt"]): r["text"] for r in one if r["error"] is None}
    homes: dict[str, set] = {}
    for r in many:
        homes.setdefault(r["model"], set()).add(r["replica"])
    report = {
        "base": args.base, "adapters": args.adapters, "replicas": args.replicas, "streams": args.streams,
        "new_tokens": args.new_tokens, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "one_process": summary(one, one_wall, args.new_tokens),
        "replicas_run": summary(many, many_wall, args.new_tokens),
        "texts_equal": sum(reference.get((r["model"], r["prompt"])) == r["text"] for r in many),
        "adapters_on_one_replica": sum(len(h) == 1 for h in homes.values()), "adapters_used": len(homes),
        "requests_per_replica": {k: sum(r["replica"] == k for r in many) for k in {r["replica"] for r in many}},
        "first_errors": [r["error"] for r in one + many if r["error"]][:5],
    }
    write_report(Path(args.out), report)
    print(json.dumps(report, indent=1))
    ok = (report["one_process"]["errors"] == report["replicas_run"]["errors"] == 0
          and report["texts_equal"] == args.requests)
    return 0 if ok else 1


def write_report(out: Path, r: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")
    rows = [f"| {name} | {s['requests']} | {s['errors']} | {s['wall_s']} | {s['tokens_per_s']} | "
            f"{s['latency_p50_s']} | {s['latency_p99_s']} |"
            for name, s in (("one process", r["one_process"]), (f"{r['replicas']} replicas", r["replicas_run"]))]
    out.with_suffix(".md").write_text("\n".join([
        f"# softprompt serve --replicas {r['replicas']}: load test ({r['machine']})", "",
        f"{r['base']}, {r['adapters']} adapters, {r['streams']} concurrent streams, {r['new_tokens']} new tokens "
        "per request (greedy, streamed); `python benchmarks/serve_replicas.py`", "",
        "| server | requests | errors | wall s | tokens/s | latency p50 s | latency p99 s |",
        "|---|---|---|---|---|---|---|", *rows, "",
        f"- streamed texts equal to one process: {r['texts_equal']} of {r['replicas_run']['requests']}",
        f"- adapters served by one replica only: {r['adapters_on_one_replica']} of {r['adapters_used']}",
        f"- requests per replica: {r['requests_per_replica']}",
        f"- first errors: {r['first_errors'] or 'none'}", "",
        "Both servers run on the same machine. The replicas share its cores with Ray's proxy, the Router and "
        "the Ray runtime, every streamed chunk crosses two more processes (proxy -> Router -> Replica -> the "
        "replica's loopback server), and each replica reads its adapters on first use (the one process reads "
        "them at start-up): on a small machine N replicas are slower than one process. They pay off when "
        "each replica has its own cores or device (num_cpus = --threads, one GPU with --device cuda).", ""]))


if __name__ == "__main__":
    sys.exit(main())
