"""softprompt explain: what a trained soft prompt attends to and resembles."""

from __future__ import annotations

HELP = "show the ID-SPAM generator's attention over the input and the nearest vocabulary tokens of each prompt vector"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder")
    parser.add_argument("text", help="input text")
    parser.add_argument("--pair", default=None, help="second input text, for pair tasks (default: none)")
    parser.add_argument("--top-k", type=int, default=5, help="vocabulary tokens shown per prompt vector")
    parser.add_argument("--png", default=None, help="also write the attention heat map to this PNG file (default: none)")


def run(args) -> int:
    from softprompt.explain import attention_png, generator_attention, nearest_tokens
    from softprompt.train.inference import load_run_adapter

    model, _ = load_run_adapter(args.run)
    if model.producer is not None and hasattr(model.producer, "attention_weights") and model.producer.cfg.pooling == "attention":
        tokens, received = generator_attention(model, args.text, args.pair)
        print("attention received per input token (generator self-attention, mean over queries):")
        for token, w in zip(tokens, received.tolist()):
            print(f"  {token:<20} {w:.3f} {'#' * int(round(60 * w))}")
        if args.png:
            attention_png(tokens, received, args.png)
            print(f"heat map: {args.png}")
    try:
        neighbours = nearest_tokens(model, args.text, args.top_k)
    except ValueError as err:
        print(f"nearest tokens: {err}")
        return 0
    print("nearest vocabulary tokens per prompt vector (cosine):")
    for i, row in enumerate(neighbours):
        print(f"  p{i:<3} " + "  ".join(f"{t} {s:.2f}" for t, s in row))
    return 0
