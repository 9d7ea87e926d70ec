"""softprompt vs the peft library: same method, backbone, data order, batch and steps.

    python benchmarks/train_vs_peft.py --data-dir ../shared/data [--backbone minilm-l6 --train-limit 4000 --epochs 3]
    python benchmarks/train_vs_peft.py --mode decoder --data-dir ../shared/data --backbone smollm2-135m --batch-size 16 --train-limit 256 --bleu-limit 50

Decoder mode: prompt tuning and prefix tuning (10 tokens; prefix through a 512-wide MLP on both sides,
as experiments/e2e.yaml) on E2E with the LM loss on target tokens only, softprompt (logits at target
positions only) vs peft PROMPT_TUNING / PREFIX_TUNING CAUSAL_LM (logits at every position), same batches
(`encode_generation` rows in `batch_order`), one epoch, gradient checkpointing off then on for both,
`--dtype bf16` for a bf16 base, `--device cuda` on a GPU (peak GPU memory reported too); training samples/s, peak RSS per subprocess and BLEU on unseen test
MRs (`--bleu-limit`). Goal (issue #24): >= 1.2x peft's speed, <= 0.8x its peak memory. Writes
benchmarks/results/train_vs_peft_decoder_<backbone>[_bf16].{json,md}.

Each (library, method) trains in its own subprocess (so peak memory is its own), alternating
softprompt and peft, with one plain AdamW loop over identical batches: only the model differs.
Reported: training samples/s, peak RSS, inference samples/s and SST-2 dev accuracy.
Heads differ by design: peft's SEQ_CLS model uses BERT's pooler + a classifier on [CLS];
softprompt's head is a linear map of the mean-pooled text states.
Writes benchmarks/results/train_vs_peft_<backbone>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = {  # name -> (softprompt preset overrides, peft config builder name)
    "prompt-tuning": ({"name": "prompt-tuning", "producer": {"init": "random"}}, "prompt"),
    "p-tuning-v2": ({"name": "p-tuning-v2"}, "prefix"),
}


def build_peft(backbone, kind: str, num_tokens: int):
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(backbone.source, num_labels=2)
    cls = PromptTuningConfig if kind == "prompt" else PrefixTuningConfig
    return get_peft_model(base, cls(task_type=TaskType.SEQ_CLS, num_virtual_tokens=num_tokens))


def worker(args) -> dict:
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel
    from softprompt.tasks import compute_metrics, load_split
    from softprompt.train.batches import batch_order, collate, encode

    torch.manual_seed(0)
    bb = load_backbone(args.backbone)
    tok = bb.tokenizer
    train = encode(tok, load_split("sst2", "train", args.data_dir, args.train_limit, 0), args.max_length)
    dev = encode(tok, load_split("sst2", "validation", args.data_dir, args.eval_limit, 0), args.max_length)
    sp_method, peft_kind = METHODS[args.method]
    if args.library == "softprompt":
        model = SoftPromptModel(bb, method_config(sp_method), 2)
        params = list(model.adapter_params().values())

        def forward(b):
            return model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).logits
    else:
        model = build_peft(bb, peft_kind, 10)
        params = [p for p in model.parameters() if p.requires_grad]

        def forward(b):
            return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                         token_type_ids=b.get("token_type_ids")).logits
    lr = 3e-2
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    steps = args.epochs * ((len(train) + args.batch_size - 1) // args.batch_size)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    # dropout on: peft keeps its frozen model in train mode, softprompt its layers above the boundary;
    # off: both train with every dropout off (the engines compared alone)
    model.train(args.dropout == "on")
    seen, t0 = 0, time.perf_counter()
    for epoch in range(args.epochs):
        for idx in batch_order(train.lengths, args.batch_size, 0, epoch, True, True):
            b = collate(train, idx, tok.pad_token_id, tok.padding_side)
            loss = torch.nn.functional.cross_entropy(forward(b), b["labels"].long())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            seen += len(idx)
    train_sps = seen / (time.perf_counter() - t0)
    model.eval()
    preds, t1 = np.zeros(len(dev), dtype=np.int64), time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(dev), 64):
            idx = list(range(start, min(start + 64, len(dev))))
            preds[idx] = forward(collate(dev, idx, tok.pad_token_id, tok.padding_side)).argmax(-1).numpy()
    infer_sps = len(dev) / (time.perf_counter() - t1)
    acc = compute_metrics("sst2", preds, dev.labels.astype(np.int64))["accuracy"]
    return {"library": args.library, "method": args.method, "train_samples_per_s": train_sps,
            "infer_samples_per_s": infer_sps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "accuracy": acc, "trainable_params": sum(p.numel() for p in params)}


DECODER_METHODS = {  # name -> (softprompt preset, peft config, learning rate): the e2e spec's settings
    "prompt-tuning": ({"name": "prompt-tuning", "producer": {"num_tokens": 10}},
                      ("PROMPT_TUNING", {}), 3e-2),
    "prefix-tuning": ({"name": "prefix-tuning", "producer": {"num_tokens": 10, "hidden": 512}},
                      ("PREFIX_TUNING", {"prefix_projection": True, "encoder_hidden_size": 512}), 1e-3),
}
DECODER_VARIANTS = ("plain", "checkpointing")  # gradient checkpointing off / on


def decoder_worker(args) -> dict:
    import torch
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel
    from softprompt.tasks import get_task, load_split
    from softprompt.train.batches import batch_order, collate
    from softprompt.train.text_batches import encode_generation

    method, variant = args.method.split(":")
    checkpointing = variant == "checkpointing"
    preset, (peft_type, peft_extra), lr = DECODER_METHODS[method]
    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    bb = load_backbone(args.backbone, dtype=dtype, device=args.device)
    tok, task = bb.tokenizer, get_task("e2e")
    train = encode_generation(tok, task, load_split(task, "train", args.data_dir, args.train_limit, 0),
                              args.max_length, bb.kind)
    if args.library == "softprompt":
        model = SoftPromptModel(bb, method_config(preset), 0, generative=True)
        model.gradient_checkpointing = checkpointing
        params = list(model.adapter_params().values())

        def loss_of(b):
            return model(b["input_ids"], b["attention_mask"], labels=b["labels"], source_mask=b["source_mask"]).loss
        side = "left"
    else:
        if checkpointing:  # HF's own checkpointing; inputs need grads so the prompt's gradient flows
            bb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        cls = PromptTuningConfig if peft_type == "PROMPT_TUNING" else PrefixTuningConfig
        model = get_peft_model(bb.model, cls(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=10, **peft_extra))
        model.to(args.device)  # the prompt encoder with the base
        params = [p for p in model.parameters() if p.requires_grad]

        def loss_of(b):
            return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        side = "right"
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    batches = batch_order(train.lengths, args.batch_size, 0, 0, True, True)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * len(batches)), len(batches))
    model.train()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seen, losses, t0 = 0, [], time.perf_counter()
    for idx in batches:
        b = {k: v.to(args.device) for k, v in collate(train, idx, tok.pad_token_id, side).items()}
        loss = loss_of(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        seen += len(idx)
        losses.append(float(loss.detach()))  # a sync per step on CUDA: both libraries pay it
    train_sps = seen / (time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training's peak, before decoding
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    model.eval()
    bleu = decoder_bleu(args, model, bb, task) if args.bleu_limit else None
    return {"library": args.library, "checkpointing": checkpointing, "method": method, "dtype": args.dtype,
            "train_samples_per_s": train_sps, "peak_rss_mb": peak, "peak_gpu_mb": peak_gpu, "first_loss": losses[0], "last_loss": losses[-1],
            "steps": len(batches), "trainable_params": sum(p.numel() for p in params), "bleu": bleu}


def decoder_bleu(args, model, bb, task) -> float:
    """Corpus BLEU (the E2E metric) of greedy outputs on the first `--bleu-limit` test MRs (unseen in training)."""
    import torch

    from softprompt.tasks import load_split, score_predictions
    from softprompt.train.text_batches import encode_generation

    tok = bb.tokenizer
    examples = load_split(task, "test", args.data_dir, args.bleu_limit, 0)
    enc = encode_generation(tok, task, examples, args.max_length, bb.kind)
    predictions = []
    with torch.no_grad():
        for src in enc.sources:  # one unpadded source at a time: both libraries see the same input
            ids = torch.tensor([src], device=args.device)
            if args.library == "softprompt":
                out = model.generate_text(ids, torch.ones_like(ids), max_new_tokens=40, stop=["\n"])
                predictions.append(out.texts[0])
            else:
                new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                                     do_sample=False, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
                predictions.append(tok.decode(new, skip_special_tokens=True).split("\n")[0])
    return float(score_predictions(task, enc.examples, predictions, with_meteor=False)["bleu"])


def run_decoder(args, flags: list[str]) -> None:
    import peft
    import torch

    rows = []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/train_vs_peft.py " + " ".join(flags)
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else args.device
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, device {device}"
    meta = {"command": command, "commit": commit, "machine": machine, "device": args.device,
            "torch": torch.__version__, "peft": peft.__version__}
    name = f"train_vs_peft_decoder_{args.backbone}" + ("" if args.dtype == "fp32" else f"_{args.dtype}")
    for method in args.methods.split(","):
        for variant in args.variants.split(","):
            for library in ("softprompt", "peft"):  # alternated
                job = f"{method}:{variant}"
                try:
                    proc = subprocess.run([sys.executable, __file__, *flags, "--worker", library, job],
                                          capture_output=True, text=True, timeout=args.timeout)
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else
                                {"library": library, "method": method, "checkpointing": variant == "checkpointing",
                                 "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                except subprocess.TimeoutExpired:
                    rows.append({"library": library, "method": method, "checkpointing": variant == "checkpointing",
                                 "error": f"timed out after {args.timeout}s"})
                print(rows[-1], flush=True)
                write_decoder_results(args, meta, name, rows)  # nothing finished is lost
    print(write_decoder_results(args, meta, name, rows))


def write_decoder_results(args, meta: dict, name: str, rows: list[dict]) -> str:
    out = Path(__file__).parent / "results"
    if args.out:  # a path stem: <out>.json and <out>.md
        out, name = Path(args.out).parent, Path(args.out).name
        out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# softprompt vs peft, decoder soft prompts on E2E ({args.backbone}, {args.dtype}, batch {args.batch_size}, "
             f"{meta['machine']})",
             "", f"`{meta['command']}`", "",
             f"commit {meta['commit']}; {meta['machine']}; torch {meta['torch']}; peft {meta['peft']}", "",
             "Same rows, batches, order, optimizer and schedule; each row its own subprocess (peak RSS of training:",
             "weights, activations, optimizer). Gradient checkpointing: softprompt's layer loop; peft through HF's",
             "`gradient_checkpointing_enable()`. BLEU: greedy outputs on the first "
             f"{args.bleu_limit} E2E test meaning representations (unseen in training).", "",
             "| method | library | gradient checkpointing | train samples/s | peak RSS MB | peak GPU MB | first loss "
             "| last loss | BLEU | trainable |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gc = "on" if r["checkpointing"] else "off"
        if "error" in r:
            lines.append(f"| {r['method']} | {r['library']} | {gc} | fails: {r['error']} | | | | | | |")
            continue
        bleu = "-" if r.get("bleu") is None else f"{r['bleu']:.1f}"
        gpu = "-" if r.get("peak_gpu_mb") is None else f"{r['peak_gpu_mb']:.0f}"
        lines.append(f"| {r['method']} | {r['library']} | {gc} | {r['train_samples_per_s']:.2f} | {r['peak_rss_mb']:.0f} "
                     f"| {gpu} | {r['first_loss']:.3f} | {r['last_loss']:.3f} | {bleu} | {r['trainable_params']:,} |")
    ok = {(r["method"], r["library"], r["checkpointing"]): r for r in rows if "error" not in r}
    lines.append("")
    for method in args.methods.split(","):
        for gc in [v == "checkpointing" for v in args.variants.split(",")]:
            sp, pf = ok.get((method, "softprompt", gc)), ok.get((method, "peft", gc))
            if sp and pf:
                mem = "peak_gpu_mb" if sp.get("peak_gpu_mb") and pf.get("peak_gpu_mb") else "peak_rss_mb"
                lines.append(f"- {method}, checkpointing {'on' if gc else 'off'} on both sides: training speed "
                             f"{sp['train_samples_per_s'] / pf['train_samples_per_s']:.2f}x peft (goal >= 1.2x), "
                             f"peak {'GPU ' if mem == 'peak_gpu_mb' else ''}memory {sp[mem] / pf[mem]:.2f}x (goal <= 0.8x)")
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    return text


def run_worker(flags: list[str], library: str, method: str) -> dict:
    """One (library, method) training in a subprocess; a failure becomes a row with the error's last line."""
    proc = subprocess.run([sys.executable, __file__, *flags, "--worker", library, method], capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return {"library": library, "method": method, "error": lines[-1] if lines else f"exit code {proc.returncode}"}


def median_row(runs: list[dict]) -> dict:
    """Speeds are the median over repeats; accuracy and memory come from the first run (same seed)."""
    row = dict(runs[0])
    if "error" not in row:
        for key in ("train_samples_per_s", "infer_samples_per_s"):
            row[key] = statistics.median(r[key] for r in runs)
        row["repeats"] = len(runs)
    return row


def write_results(args, flags: list[str], rows: list[dict]) -> str:
    import peft
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/train_vs_peft.py " + " ".join(flags)
    meta = {"command": command, "commit": commit, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "peft": peft.__version__}
    out_dir = Path(__file__).parent / "results"
    suffix = "" if args.dropout == "on" else "_dropout-off"
    (out_dir / f"train_vs_peft_{args.backbone}{suffix}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# softprompt vs peft (SST-2, same batches and steps)", "", f"`{command}`", "",
             f"commit {commit}; {meta['machine']}; torch {meta['torch']}; peft {meta['peft']}; "
             f"speeds: median of {args.repeats} alternated run(s)", "",
             "| method | library | train samples/s | inference samples/s | peak RSS MB | SST-2 dev acc | trainable |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['library']} | fails: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['library']} | {r['train_samples_per_s']:.1f} | {r['infer_samples_per_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['accuracy']:.2f} | {r['trainable_params']:,} |")
    lines += ["", "Heads differ by design: peft trains the model's own SEQ_CLS classifier (BERT: a linear map of the "
              "pooler; MPNet: dense + tanh + linear, about 0.59M parameters) with the prompt at the same learning rate; "
              "softprompt's head is one linear map of the mean-pooled text states. `fails:` rows are what peft raises.", ""]
    for method in METHODS:
        pair = [next((r for r in rows if r["method"] == method and r["library"] == lib), None) for lib in ("softprompt", "peft")]
        if None in pair or any("error" in r for r in pair):
            continue
        sp, pf = pair
        lines.append(f"- {method}: training speed {sp['train_samples_per_s'] / pf['train_samples_per_s']:.2f}× peft, "
                     f"inference {sp['infer_samples_per_s'] / pf['infer_samples_per_s']:.2f}×, peak memory "
                     f"{sp['peak_rss_mb'] / pf['peak_rss_mb']:.2f}×, accuracy {sp['accuracy'] - pf['accuracy']:+.2f} points")
    text = "\n".join(lines) + "\n"
    suffix = "" if args.dropout == "on" else "_dropout-off"
    (out_dir / f"train_vs_peft_{args.backbone}{suffix}.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--eval-limit", type=int, default=None, help="seeded subsample of SST-2 dev (default: all 872)")
    ap.add_argument("--repeats", type=int, default=1, help="alternated runs per (library, method); speeds are medians")
    ap.add_argument("--mode", choices=("encoder", "decoder"), default="encoder",
                    help="decoder: prompt and prefix tuning on E2E with a causal LM, one epoch, then BLEU")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="decoder mode: the frozen base's dtype")
    ap.add_argument("--bleu-limit", type=int, default=0, help="decoder mode: E2E test MRs scored after training")
    ap.add_argument("--timeout", type=int, default=1800, help="decoder mode: seconds per subprocess")
    ap.add_argument("--dropout", choices=("on", "off"), default="on",
                    help="encoder mode: train with dropout on (as each library does by default) or off in both")
    ap.add_argument("--methods", default=None, help="comma-separated methods (encoder mode: "
                    f"{', '.join(METHODS)}; decoder mode: {', '.join(DECODER_METHODS)})")
    ap.add_argument("--device", default="cpu", help="decoder mode: where the base trains (cpu, cuda, cuda:1); "
                    "on CUDA the peak GPU memory (torch.cuda.max_memory_allocated) is reported too")
    ap.add_argument("--out", default=None, help="decoder mode: results path stem, writes <out>.json and <out>.md "
                    "(default benchmarks/results/train_vs_peft_decoder_<backbone>[_bf16])")
    ap.add_argument("--variants", default=",".join(DECODER_VARIANTS),
                    help="decoder mode: gradient checkpointing off (plain) and/or on (checkpointing), comma-separated")
    ap.add_argument("--worker", nargs=2, metavar=("LIBRARY", "METHOD"))
    args = ap.parse_args()
    args.methods = args.methods or ",".join(DECODER_METHODS if args.mode == "decoder" else METHODS)
    if args.worker:
        args.library, args.method = args.worker
        print(json.dumps(decoder_worker(args) if args.mode == "decoder" else worker(args)))
        return
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "worker" and v is not None]
    if args.mode == "decoder":
        run_decoder(args, flags)
        return
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):
        for method in args.methods.split(","):
            for library in ("softprompt", "peft"):  # alternated
                if any("error" in r for r in runs.get((library, method), [])):
                    continue  # failed once: it will fail again
                runs.setdefault((library, method), []).append(run_worker(flags, library, method))
                print(runs[(library, method)][-1], flush=True)
                write_results(args, flags, [median_row(r) for r in runs.values()])  # nothing finished is lost
    print(write_results(args, flags, [median_row(r) for r in runs.values()]))


if __name__ == "__main__":
    main()
