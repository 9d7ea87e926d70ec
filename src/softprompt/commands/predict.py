"""softprompt predict: label single inputs with a trained adapter (or a running server); a generative
adapter generates text for them instead (greedy unless --sample), one JSON line per input:

    {"text": ..., "label": ..., "scores": {...}}                      classification adapter
    {"text": ..., "generated": ..., "finish_reason": "stop"|"length"}  generative adapter

Generative inputs go through the trained task's input template (and the chat template when the
run trained with one), as in training.
"""

from __future__ import annotations

import json
import os

HELP = ("predict the label of one or more texts with a trained adapter (a generative adapter: generate text "
        "for them), locally or on a server")


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder; with --server: the adapter's name")
    parser.add_argument("text", nargs="+", help="input text(s)")
    parser.add_argument("--pair", default=None, help="second text for pair tasks")
    parser.add_argument("--max-length", type=int, default=None,
                        help="truncate inputs to N tokens (default: 256; generative adapters: the run's max_length)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="generative adapters: tokens generated per input at most (default: the trained "
                             "task's, 64 for data-to-text)")
    parser.add_argument("--sample", action="store_true", help="generative adapters: sample instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0, help="with --sample: softmax temperature")
    parser.add_argument("--top-p", type=float, default=1.0, help="with --sample: nucleus probability mass")
    parser.add_argument("--seed", type=int, default=None, help="with --sample: random seed")
    parser.add_argument("--stop", action="append", default=[], help="generative adapters: stop string (repeatable)")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="ask a running `softprompt serve` (e.g. http://127.0.0.1:8000) instead of loading the adapter")
    parser.add_argument("--generate", action="store_true",
                        help="with --server: generate text with a generative adapter (/v1/generate) instead of classifying")
    parser.add_argument("--token-env", default="SOFTPROMPT_TOKEN", help="env var with the server's bearer token, if any")


def run(args) -> int:
    if args.server:
        return _ask_server(args)
    from softprompt.train.inference import load_run_adapter, predict_texts

    model, meta = load_run_adapter(args.run)
    if meta.get("generative"):
        results = _generate(args, model)
    else:
        results = predict_texts(model, meta, args.text, args.pair, args.max_length or 256)
    for text, result in zip(args.text, results):
        print(json.dumps({"text": text, **result}, ensure_ascii=False))
    return 0


def _generate(args, model) -> list[dict]:
    from softprompt.train.generation_eval import generate_for_texts, run_settings

    settings = run_settings(args.run)
    options = {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed} \
        if args.sample else {}
    if args.stop:
        options["stop"] = list(args.stop)
    return generate_for_texts(model, args.text, args.pair, args.max_length or settings.get("max_length"),
                              bool(settings.get("chat_template", False)), args.max_new_tokens, **options)


def _served_generation(result: dict) -> dict:
    """/v1/generate's answer in the local output's fields (its "text" is the generated text)."""
    rest = {k: v for k, v in result.items() if k not in ("text", "finish_reason")}
    return {"generated": result.get("text", ""), "finish_reason": result.get("finish_reason", ""), **rest}


def _ask_server(args) -> int:
    from softprompt.serve.client import Client, ServeError

    with Client(args.server, token=os.environ.get(args.token_env) or None) as client:
        for text in args.text:
            try:
                result = _served_generation(client.generate(args.run, text, args.max_new_tokens or 32)) \
                    if args.generate else client.classify(args.run, text, args.pair)
            except ServeError as err:
                raise SystemExit(f"softprompt predict: {args.server} answered {err.status}: {err.detail}") from None
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
    return 0
