"""vLLM `prompt_embeds` payloads: the HF base run on the payload reproduces softprompt.

vLLM's `prompt_embeds` replace the output of the model's token embedding module, i.e. HF's
`inputs_embeds`; so for every method whose prompt enters at the embeddings, HF's
`model(inputs_embeds=payload)` must give softprompt's next-token logits (atol 1e-5) and HF's
greedy `generate(inputs_embeds=...)` softprompt's greedy tokens (5, eos disabled). Granite
(embedding multiplier applied by the model to `inputs_embeds`) and Gemma 3 (sqrt(d) scale inside
the embedding module) check the embedding-stage ops. Sites vLLM cannot take are refused.
"""

from __future__ import annotations

import base64
import io
import json
import warnings

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import BackboneError, ConfigError
from softprompt.interop.vllm import completion_request, encode_payload, prompt_embeds
from softprompt.methods import PRESETS, method_config
from softprompt.model import SoftPromptModel
from tests.core.helpers import with_run_settings

TEXT = "the plot goes nowhere and"
NEW = 5
ATOL = 1e-5

# every soft-prompt preset whose prompt enters at the input embeddings (id-spam moved to layer 0)
EMBEDDING_PRESETS = [name for name, p in PRESETS.items() if p.get("producer") and p["site"]["kind"] == "embeddings"
                     and p.get("backbone", "frozen") == "frozen"]  # prompt-lora: refused (tests/core/test_prompt_lora.py)
CASES = {name: {} for name in EMBEDDING_PRESETS} | {"id-spam": {"site": {"kind": "layer", "layer": 0}}}
REFUSED = {"prefix-tuning": ({}, "'kv'"), "p-tuning-v2": ({}, "'kv'"), "lpt": ({}, "entering layer 1"),
           "id-spam": ({}, "entering layer 1")}


def build(backbone: str, method: str, overrides: dict | None = None, seed: int = 0) -> SoftPromptModel:
    torch.manual_seed(seed)
    overrides = overrides or {}
    if PRESETS[method]["producer"]["kind"] == "decomposed":
        overrides = {**overrides, "producer": {"num_tokens": 8}}  # DePT's 60 tokens: slower, no more coverage
    model = SoftPromptModel(load_backbone(backbone), method_config(method, **with_run_settings(method, overrides)), 2,
                            generative=True)
    with torch.no_grad():  # away from the init, so the prompt matters
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def decode(payload: str) -> torch.Tensor:
    return torch.load(io.BytesIO(base64.b64decode(payload)), weights_only=True)


def hf_greedy(bb, embeds: torch.Tensor) -> list[int]:
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=NEW, do_sample=False, pad_token_id=bb.tokenizer.pad_token_id)
    cfg.eos_token_id = None
    saved = bb.model.generation_config.eos_token_id, bb.model.config.eos_token_id
    bb.model.generation_config.eos_token_id = bb.model.config.eos_token_id = None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = bb.model.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, len(embeds), dtype=torch.long),
                                    generation_config=cfg)
    finally:
        bb.model.generation_config.eos_token_id, bb.model.config.eos_token_id = saved
    return out[0, -NEW:].tolist()


def check(model: SoftPromptModel, atol: float = ATOL) -> float:
    """Asserts the payload reproduces softprompt; returns max |logit difference|."""
    bb = model.backbone
    body = completion_request(model, TEXT, max_tokens=NEW, temperature=0)
    assert json.loads(json.dumps(body)) == body and body["model"] == bb.name and body["max_tokens"] == NEW
    t = decode(body["prompt_embeds"])
    enc = bb.tokenizer([TEXT], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert t.dim() == 2 and t.is_floating_point() and t.shape[1] == bb.model.get_input_embeddings().embedding_dim
    assert t.shape[0] == ids.shape[1] + model.producer.num_tokens
    with torch.no_grad():
        hf = bb.model(inputs_embeds=t[None]).logits[0, -1]
    ours = model.lane(ids, mask).logits[0]
    diff = (hf - ours).abs().max().item()
    assert diff <= atol, diff
    with torch.no_grad():  # the prompt matters: the text alone gives other logits
        plain = bb.model(input_ids=ids).logits[0, -1]
    assert (plain - ours).abs().max().item() > 1e-3
    mine = model.generate(ids, mask, max_new_tokens=NEW, eos_token_id=-1)[0].tolist()
    assert hf_greedy(bb, t) == mine
    return diff


@pytest.mark.parametrize("method", list(CASES))
def test_payload_reproduces_softprompt_llama(method):
    check(build("tiny-llama", method, CASES[method]))


@pytest.mark.parametrize("backbone", ["tiny-granite", "tiny-gemma3"])
@pytest.mark.parametrize("method", ["prompt-tuning", "dept", "idpg"])
def test_payload_embedding_stage_ops(backbone, method):
    check(build(backbone, method))


def test_input_dependent_payload_is_per_request():
    model = build("tiny-llama", "idpg")
    a, b = prompt_embeds(model, "dull"), prompt_embeds(model, "great fun")
    assert not torch.equal(a[:model.producer.num_tokens], b[:model.producer.num_tokens])


def test_encode_payload_roundtrip():
    t = torch.randn(5, 8)[:, ::2]  # not contiguous
    back = decode(encode_payload(t))
    assert torch.equal(back, t) and back.is_contiguous()


@pytest.mark.parametrize("method", list(REFUSED))
def test_sites_vllm_cannot_take_are_refused(method):
    overrides, where = REFUSED[method]
    model = build("tiny-llama", method, overrides)
    with pytest.raises(ConfigError, match="cannot send this prompt to vLLM") as err:
        prompt_embeds(model, TEXT)
    assert where in str(err.value) and "input embeddings" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(CASES))
def test_payload_smollm2(method):
    try:
        load_backbone("smollm2-135m")
    except BackboneError as e:
        pytest.skip(str(e))
    overrides = CASES[method]
    if PRESETS[method]["producer"].get("kind") not in ("decomposed", "router"):
        overrides = {**overrides, "producer": {"num_tokens": 4}}
    # logits of magnitude ~17 through 30 layers: float32 rounding alone differs by up to ~2e-5 here (1e-6 relative)
    check(build("smollm2-135m", method, overrides), atol=1e-4)


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning"])
def test_cli_export_vllm_embeds(tmp_path, capsys, method):
    from safetensors.torch import load_file

    from softprompt.adapter import save_adapter
    from softprompt.cli import main

    model = build("tiny-llama", method)
    save_adapter(model, tmp_path / "run" / "adapter")
    assert main(["export", "--format", "vllm-embeds", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    prompt = load_file(tmp_path / "out" / "vllm_prompt.safetensors")["prompt_embeds"]
    info = json.loads((tmp_path / "out" / "vllm_prompt.json").read_text())
    assert info["num_virtual_tokens"] == prompt.shape[0] == model.producer.num_tokens and info["hidden_size"] == prompt.shape[1]
    bb = model.backbone
    ids = bb.tokenizer(TEXT, return_tensors="pt").input_ids[0]
    with torch.no_grad():  # the json's recipe: prompt first, then the embedding module's output for the text
        built = torch.cat([prompt, bb.model.get_input_embeddings()(ids)])
    assert torch.allclose(built, prompt_embeds(model, TEXT), atol=1e-6)


def test_cli_export_vllm_embeds_refuses_input_dependent(tmp_path, capsys):
    from softprompt.adapter import save_adapter
    from softprompt.cli import main

    save_adapter(build("tiny-llama", "idpg"), tmp_path / "run" / "adapter")
    capsys.readouterr()
    assert main(["export", "--format", "vllm-embeds", str(tmp_path / "run"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "input-dependent" in err and "completion_request" in err
