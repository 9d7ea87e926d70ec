"""Server settings (the `softprompt serve` flags), with their checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from softprompt.errors import ConfigError


@dataclass
class ServeSettings:
    base: str = "tiny-bert"
    prompts: str | None = None  # folder of adapter folders loaded at start-up
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32  # requests per forward pass
    max_wait_ms: float = 5.0  # how long the first queued request waits for company
    max_queue: int = 1024  # queued requests beyond this get 503 + Retry-After
    token_env: str = "SOFTPROMPT_TOKEN"  # env var holding the bearer token
    protect_reads: bool = False  # classify / adapters / metrics need the token too
    max_body_bytes: int = 64 * 1024  # 413 above this
    max_text_chars: int = 20_000  # 422 above this (text and text_pair each)
    max_length: int = 256  # tokens; longer inputs are truncated (as `softprompt predict` does)
    batching: Literal["mixed", "per-adapter"] = "mixed"  # per-adapter: one adapter per forward (baseline)
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    device: str | None = None  # torch device of the base model and adapters (None: cpu)
    graceful_timeout: float = 30.0  # seconds in-flight requests get to finish on shutdown
    retry_after_s: int = 1
    adapter_memory_mb: float | None = None  # LRU budget for adapters in memory (None: no limit)
    generation_batching: Literal["mixed", "per-adapter"] = "mixed"  # per-adapter: one adapter per decode forward
    max_tokens_limit: int = 4096  # max_tokens above this get 400
    max_gen_queue: int | None = None  # generation requests waiting to join the batch (None: max_queue)

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
        if self.protect_reads and not self.token():
            raise ConfigError(f"--protect-reads needs a token: set the environment variable ${self.token_env}")

    @property
    def adapter_memory_bytes(self) -> int | None:
        return None if self.adapter_memory_mb is None else int(self.adapter_memory_mb * 1024 * 1024)

    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None
