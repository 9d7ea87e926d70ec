"""softprompt serve: one frozen base model, many soft prompts, mixed-task batches over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "serve every adapter in a folder over HTTP (FastAPI + uvicorn) with mixed-task batching"


# flag -> argparse settings beyond the field's own documentation (help comes from serve.config.ServeSettings)
FLAGS: dict[str, dict] = {
    "base": {"required": True}, "prompts": {"required": True}, "host": {}, "port": {"type": int},
    "max_batch": {"type": int}, "max_wait_ms": {"type": float}, "max_queue": {"type": int}, "token_env": {},
    "protect_reads": {"action": "store_true"}, "max_body_bytes": {"type": int}, "max_text_chars": {"type": int},
    "max_length": {"type": int}, "batching": {"choices": ["mixed", "per-adapter"]},
    "generation_batching": {"choices": ["mixed", "per-adapter"]}, "adapter_memory_mb": {"type": float},
    "max_tokens_limit": {"type": int}, "max_gen_queue": {"type": int}, "threads": {"type": int}, "device": {},
    "graceful_timeout": {"type": float}, "retry_after_s": {"type": int},
    "replicas": {"type": int},
}


def add_arguments(parser) -> None:
    import dataclasses

    from softprompt.commands.reference import config_help
    from softprompt.serve.config import ServeSettings

    defaults = {f.name: f.default for f in dataclasses.fields(ServeSettings)}
    for name, extra in FLAGS.items():
        kwargs = dict(extra) if extra.get("required") else {"default": defaults[name], **extra}
        if kwargs.get("action") == "store_true":
            kwargs.pop("default", None)
        shown = "none, required" if extra.get("required") else None
        parser.add_argument("--" + name.replace("_", "-"), help=config_help(ServeSettings, name, shown), **kwargs)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log verbosity")


def settings_from_args(args):
    from softprompt.serve.config import ServeSettings

    return ServeSettings(**{name: getattr(args, name) for name in FLAGS})


def run(args) -> int:
    import torch
    import uvicorn

    from softprompt.backbones import load_backbone
    from softprompt.serve.app import create_app
    from softprompt.serve.store import AdapterStore

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    settings.validate()
    if settings.replicas > 1:
        return run_replicas(settings)
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


def run_replicas(settings) -> int:
    """--replicas N > 1: N servers behind one endpoint on Ray Serve (softprompt.serve.replicas)."""
    from softprompt.errors import ConfigError

    try:
        from softprompt.serve.replicas import serve_replicas
    except ImportError as err:
        raise ConfigError(f"--replicas {settings.replicas} needs Ray Serve: pip install 'softprompt[ray]' ({err})")
    serve_replicas(settings)
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
