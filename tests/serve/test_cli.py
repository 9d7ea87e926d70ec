"""`softprompt serve` as a real process: start, serve a mixed batch, shut down gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.serve.helpers import TEXTS, free_port, make_adapter, wait_ready


def test_serve_command_answers_in_flight_requests_before_exiting(tmp_path, tiny_bert):
    for i, method in enumerate(["prompt-tuning", "lpt", "dept"]):
        make_adapter(tiny_bert, method, tmp_path / "prompts" / f"a{i}", seed=i)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "softprompt.commands.serve", "--base", "tiny-bert", "--prompts",
           str(tmp_path / "prompts"), "--port", str(port), "--max-wait-ms", "1500", "--threads", "1",
           "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(url, timeout=90, proc=proc)
        assert httpx.get(url + "/healthz").json()["adapters"] == 3

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                sends = [c.post("/v1/classify", json={"adapter": f"a{i % 3}", "text": TEXTS[i]}) for i in range(6)]
                tasks = [asyncio.ensure_future(s) for s in sends]
                await asyncio.sleep(0.5)  # all six are queued, waiting for the batch window
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        started = time.monotonic()
        responses = asyncio.run(main())
        assert [r.status_code for r in responses] == [200] * 6
        assert time.monotonic() - started < 20
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert "Traceback" not in log, log


def test_sigterm_drains_generation_streams_and_refuses_new_requests(tmp_path, tiny_gpt2):
    import json

    make_adapter(tiny_gpt2, "prompt-tuning", tmp_path / "prompts" / "pt", seed=1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "softprompt.commands.serve", "--base", "tiny-gpt2", "--prompts",
           str(tmp_path / "prompts"), "--port", str(port), "--threads", "1", "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    body = {"model": "pt", "prompt": "go", "max_tokens": 240, "temperature": 1.0, "seed": 1, "stream": True,
            "ignore_eos": True}
    try:
        wait_ready(url, timeout=90, proc=proc)

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                async def stream():
                    async with c.stream("POST", "/v1/completions", json=body) as resp:
                        return [line async for line in resp.aiter_lines() if line.startswith("data:")]

                tasks = [asyncio.ensure_future(stream()) for _ in range(4)]
                while httpx.get(url + "/healthz").json()["generation"]["running"] < 4:
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.2)
                refused = await c.post("/v1/completions", json={**body, "stream": False, "max_tokens": 2})
                return refused, await asyncio.gather(*tasks)

        refused, streams = asyncio.run(main())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        assert refused.json()["error"]["code"] == "shutting_down"
        for lines in streams:  # every stream in flight ran to its end
            assert lines[-1] == "data: [DONE]"
            assert json.loads(lines[-2][5:])["choices"][0]["finish_reason"] == "length"
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert "Traceback" not in log, log
