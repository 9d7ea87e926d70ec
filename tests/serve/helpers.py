"""Helpers for serving tests: adapters on tiny models, a real uvicorn server on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx
import torch

from softprompt.adapter import save_adapter
from softprompt.methods import PRESETS, method_config
from softprompt.model import SoftPromptModel

# every soft prompt that can share the served frozen base (a method training the backbone is refused: store.check_meta)
METHODS = [name for name, preset in PRESETS.items()
           if preset.get("producer") and preset.get("backbone", "frozen") == "frozen"] + ["head-only"]
TEXTS = ["a gripping, beautifully acted film", "dull", "not bad at all, really",
         "the plot goes nowhere and the jokes fall flat", "ok", "I would watch it again tomorrow"]


def make_model(backbone, method: str, seed: int = 0, num_labels: int = 2, fold: bool = True, **kwargs) -> SoftPromptModel:
    """A SoftPromptModel with seeded, non-trivial adapter weights (zero-initialised parts perturbed too)."""
    torch.manual_seed(seed)
    run = {"producer": {"max_length": 128}} if method == "dept" else {}  # a run's fit(max_length): DePT sizes A by it
    model = SoftPromptModel(backbone, method_config(method, **run), num_labels=num_labels, **kwargs)
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in model.adapter_params().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    if fold and model.producer is not None:
        model.fold()
        model.folded = True
    return model.eval()


def make_adapter(backbone, method: str, folder: Path, seed: int = 0, labels=("negative", "positive"), **kwargs) -> Path:
    model = make_model(backbone, method, seed, num_labels=len(labels), **kwargs)
    return save_adapter(model, folder, task="test", label_names=list(labels))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} not ready after {timeout}s")


@contextlib.contextmanager
def serve_in_thread(app, timeout: float = 30.0):
    """Run `app` with a real uvicorn server on 127.0.0.1 (pre-bound socket) in a thread; yields the URL."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
