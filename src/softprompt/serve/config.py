"""Server settings (the `softprompt serve` flags), with their checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from softprompt.config import option
from softprompt.errors import ConfigError


@dataclass
class ServeSettings:
    """The server's settings; each field is a `softprompt serve` flag (`--max-batch` for max_batch)."""

    base: str = option("tiny-bert", help="the frozen base model: a short name, a model folder or a hub id")
    prompts: str | None = option(None, help="folder of adapter folders (adapter.json + adapter.safetensors) or "
                                 "training run folders (served from their adapter/ under the run's name); new "
                                 "folders are served without a restart", unset="no adapters at start-up")
    host: str = option("127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    port: int = option(8000, help="TCP port to listen on")
    max_batch: int = option(32, help="classification requests per forward pass, and streams per decode batch",
                            unit="requests")
    max_wait_ms: float = option(5.0, help="how long the first queued request waits for others to batch with",
                                unit="ms")
    max_queue: int = option(1024, help="queued requests beyond this get 503 with Retry-After", unit="requests")
    token_env: str = option("SOFTPROMPT_TOKEN", help="environment variable holding the bearer token for "
                            "adapter management")
    protect_reads: bool = option(False, help="classify, adapters and metrics need the token too")
    max_body_bytes: int = option(64 * 1024, help="larger request bodies get 413", unit="bytes")
    max_text_chars: int = option(20_000, help="longer texts (text and text_pair each) get 422", unit="characters")
    max_length: int = option(256, help="token limit of an input; longer inputs are truncated", unit="tokens")
    batching: Literal["mixed", "per-adapter"] = option(
        "mixed", help="classification: mixed = all adapters in one forward; per-adapter = one forward per adapter "
        "(baseline)")
    threads: int | None = option(None, help="torch intra-op CPU threads", unset="torch's choice")
    device: str | None = option(None, help="torch device of the base and adapters, e.g. cuda", unset="cpu")
    graceful_timeout: float = option(30.0, help="time in-flight requests get to finish on shutdown", unit="s")
    retry_after_s: int = option(1, help="the Retry-After a 503 answer carries", unit="s")
    adapter_memory_mb: float | None = option(None, help="memory budget for adapters; least recently used ones "
                                             "are evicted above it and reloaded on their next request", unit="MiB",
                                             unset="no limit")
    generation_batching: Literal["mixed", "per-adapter"] = option(
        "mixed", help="generation: mixed = continuous batching across adapters; per-adapter = one adapter's "
        "requests per decode forward (baseline)")
    max_tokens_limit: int = option(4096, help="largest max_tokens a generation request may ask for", unit="tokens")
    max_gen_queue: int | None = option(None, help="generation requests waiting to join the decode batch",
                                       unit="requests", unset="max_queue")
    replicas: int = option(1, help="server replicas behind the one endpoint, on Ray Serve (needs softprompt[ray]): "
                           "an adapter's requests go to the replica that has it loaded, a new adapter to the one "
                           "with the fewest; 1 = one process, no Ray", unit="replicas")

    def validate(self) -> None:
        positive = {"max_batch": self.max_batch, "max_queue": self.max_queue, "max_body_bytes": self.max_body_bytes,
                    "max_text_chars": self.max_text_chars, "max_length": self.max_length}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.batching not in ("mixed", "per-adapter"):
            raise ConfigError(f"--batching must be 'mixed' or 'per-adapter', got {self.batching!r}")
        if self.generation_batching not in ("mixed", "per-adapter"):
            raise ConfigError(f"--generation-batching must be 'mixed' or 'per-adapter', got {self.generation_batching!r}")
        if self.adapter_memory_mb is not None and self.adapter_memory_mb <= 0:
            raise ConfigError(f"--adapter-memory-mb must be > 0, got {self.adapter_memory_mb}")
        if self.max_tokens_limit < 1:
            raise ConfigError(f"--max-tokens-limit must be >= 1, got {self.max_tokens_limit}")
        if self.max_gen_queue is not None and self.max_gen_queue < 1:
            raise ConfigError(f"--max-gen-queue must be >= 1, got {self.max_gen_queue}")
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be >= 1, got {self.replicas}")
        if self.protect_reads and not self.token():
            raise ConfigError(f"--protect-reads needs a token: set the environment variable ${self.token_env}")

    @property
    def adapter_memory_bytes(self) -> int | None:
        return None if self.adapter_memory_mb is None else int(self.adapter_memory_mb * 1024 * 1024)

    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None
