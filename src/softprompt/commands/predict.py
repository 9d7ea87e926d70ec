"""softprompt predict: label single inputs with a trained adapter (or a running server)."""

from __future__ import annotations

import json
import os

HELP = "predict the label of one or more texts with a trained adapter, locally or on a server"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder; with --server: the adapter's name")
    parser.add_argument("text", nargs="+", help="input text(s)")
    parser.add_argument("--pair", default=None, help="second text for pair tasks")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--server", default=None, metavar="URL",
                        help="ask a running `softprompt serve` (e.g. http://127.0.0.1:8000) instead of loading the adapter")
    parser.add_argument("--token-env", default="SOFTPROMPT_TOKEN", help="env var with the server's bearer token, if any")


def run(args) -> int:
    if args.server:
        return _ask_server(args)
    from softprompt.train.inference import load_run_adapter, predict_texts

    model, meta = load_run_adapter(args.run)
    for text, result in zip(args.text, predict_texts(model, meta, args.text, args.pair, args.max_length)):
        print(json.dumps({"text": text, **result}))
    return 0


def _ask_server(args) -> int:
    from softprompt.serve.client import Client, ServeError

    with Client(args.server, token=os.environ.get(args.token_env) or None) as client:
        for text in args.text:
            try:
                result = client.classify(args.run, text, args.pair)
            except ServeError as err:
                raise SystemExit(f"softprompt predict: {args.server} answered {err.status}: {err.detail}") from None
            print(json.dumps({"text": text, **result}))
    return 0
