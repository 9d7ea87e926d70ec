"""Soft prompts for vLLM through `prompt_embeds` (vLLM's V1 engine has no prompt adapters).

vLLM's OpenAI server started with `--enable-prompt-embeds` takes, in `/v1/completions`, a
`prompt_embeds` field: the base64 of a `torch.save`d (sequence, hidden) tensor that replaces
the output of the model's token embedding module (HF's `inputs_embeds`). Requests with and
without embeddings share a batch. For a method whose prompt enters at the embeddings
(prompt tuning, P-Tuning, DePT, IDPG, SMoP, ID-SPAM at layer 0, ...) the whole effect of the
prompt is in that tensor:

    body = completion_request(model, "Review: dull. Sentiment:", max_tokens=5, temperature=0)
    requests.post("http://localhost:8000/v1/completions", json=body)

The tensor is taken from softprompt's own layer loop (`runners.loop.embedding_input`): token
embeddings with the prompt inserted and DePT's edits made, before the embedding-stage ops the
model does itself on `inputs_embeds` (Granite's multiplier, learned positions, embedding norms;
Gemma's sqrt(d) scale is inside its embedding module, so it is already in). Input-dependent
producers run on the text, so the payload is per request. Key/value prefixes and prompts at a
hidden layer m > 0 cannot be expressed as input embeddings and are refused.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import torch

from softprompt.errors import ConfigError

__all__ = ["prompt_embeds", "encode_payload", "completion_request", "vllm_obstacle", "export_vllm_embeds"]

EMBEDS_FILE = "vllm_prompt.safetensors"  # {"prompt_embeds": (P, d)}
EMBEDS_README = "vllm_prompt.json"


def vllm_obstacle(model) -> str | None:
    """Why `model`'s prompt cannot be sent as vLLM `prompt_embeds` (None: it can)."""
    if model.runner.kind != "decoder":
        return f"vLLM prompt_embeds need a decoder-only base; {model.backbone.name} is {model.runner.kind}"
    if model.method.backbone != "frozen":
        return (f"method.backbone is {model.method.backbone!r}: the base's weights changed, "
                "so the served base model would not match")
    site = model.site
    if model.producer is None or site is None:
        return None
    if not site.in_token_space():
        return (f"site {site.kind!r} puts prompts at {site.describe()}; vLLM prompt_embeds replace only the "
                "input embeddings (use a method whose prompt enters at the embeddings)")
    return None


def _check(model) -> None:
    why = vllm_obstacle(model)
    if why is not None:
        raise ConfigError(f"method.site: cannot send this prompt to vLLM: {why}")


@torch.no_grad()
def prompt_embeds(model, text: str) -> torch.Tensor:
    """(P + T, d) input embeddings of `text` with `model`'s prompt in place: what HF's
    `model(inputs_embeds=...)` and vLLM's `prompt_embeds` take to reproduce softprompt's logits.

    Tokenised as softprompt does (`backbone.tokenizer(text)`, special tokens included). Raises
    ConfigError for sites vLLM cannot take (key/value prefixes, layer m > 0).
    """
    from softprompt.runners.loop import embedding_input

    _check(model)
    enc = model.backbone.tokenizer(text, return_tensors="pt")
    device = model.runner.word_embeddings.weight.device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    seq = embedding_input(model.runner, model.groups, ids, mask)
    return seq.hidden[0][seq.mask[0]].detach().cpu().contiguous()


def encode_payload(tensor: torch.Tensor) -> str:
    """base64 of `torch.save` of a contiguous CPU tensor, as vLLM's `prompt_embeds` field expects."""
    buf = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def completion_request(model, text: str, **sampling: Any) -> dict[str, Any]:
    """A JSON body for vLLM's `/v1/completions`: {"model", "prompt_embeds", **sampling}.

    `sampling` holds any completion field (max_tokens, temperature, ...); `model=` names the
    served model (default: the backbone's name, i.e. what `vllm serve <name>` was given).
    """
    body: dict[str, Any] = {"model": sampling.pop("model", model.backbone.name)}
    body["prompt_embeds"] = encode_payload(prompt_embeds(model, text))
    body.update(sampling)
    return body


@torch.no_grad()
def export_vllm_embeds(model, directory) -> tuple[Path, int]:
    """Write a static prompt's (P, d) vectors (safetensors) and a json that says how to use them.

    Only input-independent producers at the embeddings (prompt tuning, P-Tuning once folded); others
    are a ConfigError: their payload depends on the text, build it per request (`completion_request`).
    """
    from safetensors.torch import save_file

    from softprompt.runners.loop import embedding_input

    _check(model)
    producer = model.producer
    if producer is None or producer.input_dependent or producer.edits_embeddings:
        what = "no prompt" if producer is None else (
            "an input-dependent prompt" if producer.input_dependent else "a prompt that edits the token embeddings")
        raise ConfigError(f"export --format vllm-embeds: method {model.method.name!r} has {what}; "
                          "build each request's payload with softprompt.interop.vllm.completion_request")
    model.fold()
    device = model.runner.word_embeddings.weight.device
    ids = torch.zeros(1, 1, dtype=torch.long, device=device)  # the loop's own insertion, on a one-token text
    seq = embedding_input(model.runner, model.groups, ids, torch.ones_like(ids))
    n = model.producer.num_tokens
    prompt = seq.hidden[0, :n].detach().cpu().contiguous()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeds": prompt}, str(out / EMBEDS_FILE))
    info = {
        "format": "vllm-embeds", "base_model": model.backbone.name, "method": model.method.name,
        "num_virtual_tokens": n, "hidden_size": prompt.shape[1], "dtype": str(prompt.dtype).replace("torch.", ""),
        "tensor": f"{EMBEDS_FILE}: 'prompt_embeds' ({n}, {prompt.shape[1]})",
        "usage": ("prompt_embeds = torch.cat([prompt, base.get_input_embeddings()(tokenizer(text, "
                  "return_tensors='pt').input_ids[0])]): the prompt goes before the first token (before BOS, as "
                  "softprompt trained it), on the output of the embedding module (HF inputs_embeds: Gemma's scale "
                  "already in, Granite's multiplier not); send base64(torch.save(prompt_embeds)) as 'prompt_embeds' "
                  "to vLLM /v1/completions (vllm serve --enable-prompt-embeds); "
                  "softprompt.interop.vllm.completion_request does all this"),
    }
    (out / EMBEDS_README).write_text(json.dumps(info, indent=2) + "\n")
    return out, n
