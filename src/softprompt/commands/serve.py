"""softprompt serve: one frozen base model, many soft prompts, mixed-task batches over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "serve every adapter in a folder over HTTP (FastAPI + uvicorn) with mixed-task batching"


def add_arguments(parser) -> None:
    parser.add_argument("--base", required=True, help="base model (short name, folder or hub id), e.g. minilm-l6")
    parser.add_argument("--prompts", required=True,
                        help="folder of adapter folders (adapter.json + adapter.safetensors) or training run folders "
                             "(served from their adapter/ under the run's name); new folders are served without a restart")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument("--max-batch", type=int, default=32, help="requests per forward pass")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    parser.add_argument("--max-queue", type=int, default=1024, help="queued requests beyond this get 503 + Retry-After")
    parser.add_argument("--token-env", default="SOFTPROMPT_TOKEN",
                        help="environment variable holding the bearer token for adapter management")
    parser.add_argument("--protect-reads", action="store_true", help="classify, adapters and metrics need the token too")
    parser.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="larger request bodies get 413")
    parser.add_argument("--max-text-chars", type=int, default=20_000, help="longer texts get 422")
    parser.add_argument("--max-length", type=int, default=256, help="token limit; longer inputs are truncated")
    parser.add_argument("--batching", choices=["mixed", "per-adapter"], default="mixed",
                        help="mixed: all adapters in one forward (default); per-adapter: one forward per adapter")
    parser.add_argument("--generation-batching", choices=["mixed", "per-adapter"], default="mixed",
                        help="generation (decoder bases): mixed continuous batching across adapters (default), or "
                             "per-adapter: one adapter's requests per decode forward (baseline)")
    parser.add_argument("--adapter-memory-mb", type=float, default=None,
                        help="memory budget for adapters in memory; least recently used ones are evicted above it "
                             "and reloaded on their next request (default: no limit)")
    parser.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask for")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="torch device for the model, e.g. cuda (default: cpu)")
    parser.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get on shutdown")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log verbosity")


def settings_from_args(args):
    from softprompt.serve.config import ServeSettings

    return ServeSettings(
        base=args.base, prompts=args.prompts, host=args.host, port=args.port, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, token_env=args.token_env,
        protect_reads=args.protect_reads, max_body_bytes=args.max_body_bytes, max_text_chars=args.max_text_chars,
        max_length=args.max_length, batching=args.batching, threads=args.threads,
        graceful_timeout=args.graceful_timeout, device=args.device, generation_batching=args.generation_batching,
        adapter_memory_mb=args.adapter_memory_mb, max_tokens_limit=args.max_tokens_limit,
    )


def run(args) -> int:
    import torch
    import uvicorn

    from softprompt.backbones import load_backbone
    from softprompt.serve.app import create_app
    from softprompt.serve.store import AdapterStore

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    backbone = load_backbone(settings.base, device=settings.device)
    store = AdapterStore(backbone, settings.max_length, settings.adapter_memory_bytes)
    store.load_dir(settings.prompts)
    app = create_app(settings, store)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=args.log_level,
        timeout_graceful_shutdown=settings.graceful_timeout,
        # a second bound besides --max-queue: connections beyond this get uvicorn's plain 503
        limit_concurrency=settings.max_queue + settings.max_batch + 256,
    )
    draining_server(app, settings.graceful_timeout)(config).run()
    return 0


def draining_server(app, timeout: float):
    """A uvicorn Server whose first SIGTERM / SIGINT drains before exiting: new requests get 503 while
    in-flight requests and streams finish (at most `timeout` seconds); a second signal exits at once."""
    import threading

    import uvicorn

    class DrainingServer(uvicorn.Server):
        draining = False

        def handle_exit(self, sig, frame) -> None:
            service = getattr(app.state, "service", None)
            if self.draining or service is None:
                return super().handle_exit(sig, frame)
            self.draining = True
            service.begin_drain()
            logging.getLogger("softprompt.serve").info(
                "draining: %d generation requests in flight; new requests get 503", service.active)

            def wait_then_exit() -> None:
                service.wait_idle(timeout)
                super(DrainingServer, self).handle_exit(sig, None)

            threading.Thread(target=wait_then_exit, name="softprompt-drain", daemon=True).start()

    return DrainingServer


def main(argv: list[str] | None = None) -> int:
    """`python -m softprompt.commands.serve ...` (same flags as `softprompt serve`)."""
    from softprompt.errors import SoftPromptError

    from softprompt.commands.reference import ReferenceHelpFormatter

    parser = argparse.ArgumentParser(prog="softprompt serve", description=HELP, formatter_class=ReferenceHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SoftPromptError as err:
        print(f"softprompt serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
