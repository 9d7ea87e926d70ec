"""Batched decode of the base model against the machine's matmul roofline.

    python benchmarks/decode_roofline.py [--base smollm2-135m --streams 32 --new-tokens 64 --threads 2]

The engine (`serve.engine.GenerationEngine`, in process, no HTTP) decodes `--streams` requests
of the base model at once (greedy, eos ignored). A decode step of B rows costs about 2·N·B FLOPs
(N = the parameters a token passes through: every weight matrix and the LM head; attention over
the short cache is small). The roofline is the fp32 matmul rate `benchmarks/roofline.py`
measures (square 1024 matrices) divided by 2·N: the tokens/s a step could reach if it ran at
that rate. Reported: decode tokens/s (steady state: from every stream's first token to its last),
end-to-end tokens/s (prefill included) and their fractions of the roofline. Also the mixed-prompt
ratio (prompts of `--adapters` untrained adapters vs no prompt) with the same engine.
Writes results/decode_roofline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import matmul_rate  # noqa: E402

from softprompt.backbones import load_backbone  # noqa: E402
from softprompt.decode import Finish, SamplingParams  # noqa: E402
from softprompt.methods import method_config  # noqa: E402
from softprompt.model import SoftPromptModel  # noqa: E402
from softprompt.serve.engine import GenerationEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short note about the weather today, number {}."


def step_params(model) -> int:
    """Weights a token's decode step multiplies by: all parameters, the input embedding counted only when
    it is also the LM head (tied); position tables are lookups."""
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    if embed.data_ptr() != head.data_ptr():
        total -= embed.numel()
    return total


def matmuls_alone_s(model, rows: int, reps: int = 5) -> float:
    """Seconds the step's weight matmuls take by themselves: every Linear (and the LM head) applied to
    `rows` random rows, as a decode step applies them (the same shapes, no attention, norms or Python)."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings().weight
    if all(w.data_ptr() != head.data_ptr() for w in weights):
        weights.append(head)
    inputs = [torch.randn(rows, w.shape[1], dtype=w.dtype, device=w.device) for w in weights]
    best = float("inf")
    with torch.inference_mode():
        for _ in range(reps):
            start = time.perf_counter()
            for x, w in zip(inputs, weights):
                torch.nn.functional.linear(x, w)
            if weights[0].is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best


def run(engine, models, tok, streams: int, new_tokens: int) -> dict:
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0)
    start = time.perf_counter()
    handles = [engine.submit(models[i % len(models)], tok(PROMPT.format(i))["input_ids"], params, ignore_eos=True)
               for i in range(streams)]
    finishes = [next(e for e in stream if isinstance(e, Finish)) for stream in handles]
    wall = time.perf_counter() - start
    tokens = sum(f.completion_tokens for f in finishes)
    decode_s = max(sum(f.itl_s) for f in finishes)
    return {"tokens": tokens, "wall_s": wall, "tok_s": tokens / wall,
            "decode_tok_s": (tokens - streams) / decode_s, "errors": sum(f.reason == "error" for f in finishes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--adapters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the base decodes (cpu, cuda); the roofline is that "
                        "device's matmul rate in the base's dtype (on CUDA, n = 4096 matrices)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_roofline"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bb = load_backbone(args.base, device=args.device)
    cuda = args.device.startswith("cuda")
    dtype = next(bb.model.parameters()).dtype

    def device_rate() -> float:
        return matmul_rate(4096, 50, args.device, dtype) if cuda else matmul_rate()
    tok = bb.tokenizer
    n = step_params(bb.model)
    methods = ("prompt-tuning", "prefix-tuning", "id-spam")
    adapters = []
    for i in range(args.adapters):  # distinct adapters (untrained, seeded): 100 prompt groups in a batch
        torch.manual_seed(i)
        adapters.append(SoftPromptModel(bb, method_config(methods[i % 3]), 2, generative=True, max_length=64).eval())
    engine = GenerationEngine(bb, max_batch=args.streams).start()
    try:
        run(engine, [None], tok, args.streams, 8)  # warm up
        rate = device_rate()
        base = max((run(engine, [None], tok, args.streams, args.new_tokens) for _ in range(args.repeats)),
                   key=lambda r: r["decode_tok_s"])
        mixed = max((run(engine, adapters, tok, args.streams, args.new_tokens) for _ in range(args.repeats)),
                    key=lambda r: r["decode_tok_s"]) if adapters else None
        rate = max(rate, device_rate())
        alone = matmuls_alone_s(bb.model, args.streams)
    finally:
        engine.stop()
    roof = rate / (2 * n)
    result = {"base": args.base, "streams": args.streams, "new_tokens": args.new_tokens, "step_params": n,
              "matmul_gflops": rate / 1e9, "roofline_tok_s": roof, "base_run": base, "mixed_run": mixed,
              "decode_fraction": base["decode_tok_s"] / roof, "end_to_end_fraction": base["tok_s"] / roof,
              "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, torch {torch.__version__}",
              "device": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "cpu"}
    result["matmuls_alone_tok_s"] = args.streams / alone  # the step's matmuls at their own shapes, nothing else
    result["decode_over_matmuls_alone"] = base["decode_tok_s"] / result["matmuls_alone_tok_s"]
    if mixed:
        result["mixed_over_base"] = mixed["decode_tok_s"] / base["decode_tok_s"]
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# decode vs matmul roofline ({args.base}, device {result['device']})", "",
             f"`python benchmarks/decode_roofline.py {' '.join(sys.argv[1:])}` on {result['machine']}, "
             f"{result['threads']} threads, device {result['device']}, {time.strftime('%Y-%m-%d')}.", "",
             f"- step parameters N = {n / 1e6:.1f} M; {str(dtype).replace('torch.', '')} matmul rate {rate / 1e9:.1f} GFLOP/s -> roofline "
             f"{roof:.0f} tokens/s (2·N·B FLOPs per step of B rows)",
             f"- base, {args.streams} streams x {args.new_tokens} tokens: decode {base['decode_tok_s']:.0f} tokens/s = "
             f"**{result['decode_fraction']:.0%} of the roofline**; end to end (prefill included) "
             f"{base['tok_s']:.0f} tokens/s = {result['end_to_end_fraction']:.0%}",
             f"- the step's weight matmuls alone, at their own shapes ({args.streams} rows): "
             f"{result['matmuls_alone_tok_s']:.0f} tokens/s = {result['matmuls_alone_tok_s'] / roof:.0%} of the "
             f"roofline; the decode reaches {result['decode_over_matmuls_alone']:.0%} of that"]
    if mixed:
        lines.append(f"- {args.adapters} adapters mixed in the batch: decode {mixed['decode_tok_s']:.0f} tokens/s = "
                     f"{result['mixed_over_base']:.2f}x the no-prompt batch")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
