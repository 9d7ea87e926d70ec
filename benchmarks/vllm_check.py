"""softprompt's prompt through vLLM's `prompt_embeds`, end to end: a vLLM server's greedy tokens vs softprompt's.

    python benchmarks/vllm_check.py --base smollm2-135m --device cuda --out benchmarks/results/gpu_vllm
    python benchmarks/vllm_check.py --base tiny-llama --no-server --out /tmp/vllm_dry      # CPU, no vLLM

A seeded, perturbed prompt-tuning adapter on `--base`; for a few texts its payload
(`softprompt.interop.vllm.completion_request`) is checked three ways: it decodes with
`torch.load(weights_only=True)` into a (P + T, hidden) tensor; HF's greedy `generate(inputs_embeds=...)`
gives softprompt's greedy tokens; and (unless `--no-server`) `vllm serve <the base's folder>
--enable-prompt-embeds` answers the same body at /v1/completions with the same tokens (temperature 0,
eos ignored). vLLM computes in its own kernels (bf16 on GPU by default; `--vllm-dtype`), so a token
may differ after a near tie: the report gives the matching prefix length per text.
Writes <out>.md and <out>.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import free_port  # noqa: E402

TEXTS = ["Review: a dull, lifeless film. Sentiment:", "The capital of France is", "Once upon a time,"]


def build_adapter(base: str, device: str):
    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    torch.manual_seed(0)
    bb = load_backbone(base, device=device)
    model = SoftPromptModel(bb, method_config("prompt-tuning", producer={"num_tokens": 8}), 2, generative=True)
    with torch.no_grad():  # away from the init, so the prompt matters
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def hf_greedy(bb, embeds: torch.Tensor, new: int) -> list[int]:
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=new, do_sample=False, pad_token_id=bb.tokenizer.pad_token_id)
    saved = bb.model.generation_config.eos_token_id, bb.model.config.eos_token_id
    bb.model.generation_config.eos_token_id = bb.model.config.eos_token_id = None
    try:
        device = bb.model.get_input_embeddings().weight.device
        with torch.no_grad():
            out = bb.model.generate(inputs_embeds=embeds[None].to(device),
                                    attention_mask=torch.ones(1, len(embeds), dtype=torch.long, device=device),
                                    generation_config=cfg)
    finally:
        bb.model.generation_config.eos_token_id, bb.model.config.eos_token_id = saved
    return out[0, -new:].tolist()


def start_vllm(python: str, folder: str, name: str, dtype: str, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--served-model-name", name,
           "--enable-prompt-embeds", "--port", str(port), "--dtype", dtype, "--gpu-memory-utilization", "0.3",
           "--max-model-len", "512"]
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm exited with {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise TimeoutError("vllm not ready after 300 s")


def main() -> int:
    from softprompt.interop.vllm import completion_request

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--device", default="cpu", help="where softprompt and HF run (the server picks its own GPU)")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--no-server", action="store_true", help="payload and HF checks only (no vLLM)")
    ap.add_argument("--vllm-dtype", default="float32", help="vllm serve --dtype (float32 compares most closely)")
    ap.add_argument("--vllm-python", default=sys.executable,
                    help="the interpreter that has vLLM (it pins its own torch: often a venv of its own)")
    ap.add_argument("--out", required=True, help="path stem: writes <out>.md and <out>.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = build_adapter(args.base, args.device)
    bb, tok = model.backbone, model.backbone.tokenizer
    device_name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    rows, server = [], None
    if not args.no_server:
        server = start_vllm(args.vllm_python, bb.source, bb.name, args.vllm_dtype, out.with_suffix(".vllm.log"))
    try:
        import httpx

        for text in TEXTS:
            body = completion_request(model, text, max_tokens=args.new_tokens, temperature=0)
            tensor = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"])), weights_only=True)
            enc = tok([text], return_tensors="pt").to(args.device)
            ok_shape = (tensor.dim() == 2 and tensor.shape[1] == bb.model.get_input_embeddings().embedding_dim
                        and tensor.shape[0] == enc["input_ids"].shape[1] + model.producer.num_tokens)
            mine = model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=args.new_tokens,
                                  eos_token_id=-1)[0].tolist()
            hf = hf_greedy(bb, tensor, args.new_tokens)
            row = {"text": text, "payload_shape": list(tensor.shape), "payload_ok": ok_shape,
                   "softprompt": tok.decode(mine), "hf_equal": hf == mine}
            if server:
                body["ignore_eos"] = True
                answer = httpx.post(server[1] + "/v1/completions", json=body, timeout=120).json()
                theirs = tok(answer["choices"][0]["text"], add_special_tokens=False)["input_ids"]
                same = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
                row.update(vllm=answer["choices"][0]["text"], vllm_matching_tokens=same)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if server:
            server[0].terminate()
            server[0].wait(timeout=60)
    machine = f"{platform.machine()}, torch {torch.__version__}, device {device_name}"
    if server:
        version = subprocess.run([args.vllm_python, "-c", "import vllm; print(vllm.__version__)"],
                                 capture_output=True, text=True).stdout.strip()
        machine += f", vllm {version}"
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [f"# vLLM prompt_embeds check ({args.base}, device {device_name})", "",
             f"`python benchmarks/vllm_check.py {' '.join(sys.argv[1:])}` on {machine}, {time.strftime('%Y-%m-%d')}.", "",
             f"Prompt tuning (8 tokens, seeded), greedy, {args.new_tokens} new tokens, eos ignored. "
             + ("No vLLM server (`--no-server`): payload and HF `inputs_embeds` checks only." if not server else
                f"vLLM server dtype {args.vllm_dtype}."), "",
             "| text | payload (P+T, d) | HF inputs_embeds = softprompt | vLLM tokens equal to softprompt's |",
             "|---|---|---|---|"]
    for r in rows:
        v = f"{r['vllm_matching_tokens']}/{args.new_tokens}" if "vllm" in r else "-"
        lines.append(f"| {r['text']} | {tuple(r['payload_shape'])}{'' if r['payload_ok'] else ' (wrong)'} | "
                     f"{'yes' if r['hf_equal'] else 'NO'} | {v} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["payload_ok"] and r["hf_equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
