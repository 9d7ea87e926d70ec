"""Start and stop `softprompt serve` in its own process on a free loopback port (shared by the serving benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(serve_args: list[str], threads: int | None = None, device: str | None = None,
                 env_extra: dict | None = None, ready_s: float = 600) -> tuple[subprocess.Popen, str]:
    """`python -m softprompt.commands.serve <serve_args> --port P`; returns once /healthz answers 200."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "softprompt.commands.serve", *serve_args, "--port", str(port)]
    if threads:
        cmd += ["--threads", str(threads)]
    if device:
        cmd += ["--device", device]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"server not ready after {ready_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the server drains its streams), then kill after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
