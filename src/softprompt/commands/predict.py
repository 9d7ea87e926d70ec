"""softprompt predict: label single inputs with a trained adapter (or a running server)."""

from __future__ import annotations

import json

HELP = "predict the label of one or more texts with a trained adapter"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder")
    parser.add_argument("text", nargs="+", help="input text(s)")
    parser.add_argument("--pair", default=None, help="second text for pair tasks")
    parser.add_argument("--max-length", type=int, default=256)


def run(args) -> int:
    from softprompt.train.inference import load_run_adapter, predict_texts

    model, meta = load_run_adapter(args.run)
    for text, result in zip(args.text, predict_texts(model, meta, args.text, args.pair, args.max_length)):
        print(json.dumps({"text": text, **result}))
    return 0
