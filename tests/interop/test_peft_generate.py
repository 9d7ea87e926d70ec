"""peft interop for generation: greedy tokens in peft (`PeftModel.generate`) = softprompt's (`model.generate`).

20 new tokens, greedy, eos disabled on both sides so all 20 are compared; one unpadded prompt
per call (HF decoders number positions by column, softprompt from each row's first token).
Each case also shows that the prompt changes the tokens (against the base without it).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.interop.peft import PEFT_CONFIG, PeftInteropError, export_peft, import_peft
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel

PROMPTS = ["The capital of France is", "hello"]
NEW = 20


def base(name: str):
    """A tiny backbone; T5's decoder is made livelier (cross-attention x2, self-attention x8) so that
    greedy decoding neither repeats one token nor ignores the encoder, where the prompt is."""
    bb = load_backbone(name)
    if bb.family == "t5":
        with torch.no_grad():
            for block in bb.model.decoder.block:
                block.layer[1].EncDecAttention.o.weight.mul_(2)
                block.layer[0].SelfAttention.o.weight.mul_(8)
    return bb


def build(name: str, method: str, seed: int = 0) -> SoftPromptModel:
    torch.manual_seed(seed)
    model = SoftPromptModel(base(name), method_config(method, producer={"num_tokens": 4}), 0, generative=True)
    with torch.no_grad():  # away from the init, so the prompt changes the tokens
        for p in model.producer.parameters():
            p.normal_(0, 1.0)
    return model.eval()


def hf_greedy(model, tokenizer, text: str, kind: str) -> torch.Tensor:
    """NEW greedy tokens from a HF / peft model, eos disabled (never stops early)."""
    from transformers import GenerationConfig

    enc = tokenizer([text], return_tensors="pt")
    cfg = GenerationConfig(max_new_tokens=NEW, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                           decoder_start_token_id=getattr(getattr(model, "config", None), "decoder_start_token_id", None))
    cfg.eos_token_id = None
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = target.generation_config.eos_token_id, target.config.eos_token_id
    target.generation_config.eos_token_id = target.config.eos_token_id = None  # no default eos to fall back on
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], generation_config=cfg)
    finally:
        target.generation_config.eos_token_id, target.config.eos_token_id = saved
    new = out[:, enc["input_ids"].shape[1]:] if kind == "decoder" else out[:, 1:]  # T5: drop the decoder start
    assert new.shape == (1, NEW), f"expected {NEW} new tokens, got {tuple(new.shape)}"
    return new


def ours_greedy(model, text: str) -> torch.Tensor:
    enc = model.backbone.tokenizer([text], return_tensors="pt")
    out = model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=NEW, eos_token_id=-1)
    assert out.shape == (1, NEW)
    return out


def peft_model(name: str, directory):
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base(name).model, str(directory)).eval()


def assert_same_and_prompt_matters(pm, model, kind: str) -> None:
    tok = model.backbone.tokenizer
    plain_differs = 0
    for text in PROMPTS:
        ours = ours_greedy(model, text)
        theirs = hf_greedy(pm, tok, text, kind)
        assert torch.equal(ours, theirs), f"{text!r}: softprompt {ours.tolist()} != peft {theirs.tolist()}"
        plain = hf_greedy(pm.get_base_model(), tok, text, kind)
        plain_differs += int((plain != ours).sum())
    assert plain_differs >= 5, "the prompt should change the greedy tokens"


GENERATE = [("tiny-llama", "prompt-tuning", "PROMPT_TUNING", "CAUSAL_LM"),
            ("tiny-llama", "prefix-tuning", "PREFIX_TUNING", "CAUSAL_LM"),
            ("tiny-t5", "prompt-tuning", "PROMPT_TUNING", "SEQ_2_SEQ_LM")]


@pytest.mark.parametrize("name,method,peft_type,task_type", GENERATE)
def test_exported_adapter_generates_the_same_tokens_in_peft(tmp_path, name, method, peft_type, task_type):
    model = build(name, method)
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert (cfg["peft_type"], cfg["task_type"]) == (peft_type, task_type)
    pm = peft_model(name, tmp_path / "peft")
    assert_same_and_prompt_matters(pm, model, model.backbone.kind)

    # and back: the sidecar says generative, the imported model generates the same tokens
    back = import_peft(tmp_path / "peft", base(name), check_base=False)  # T5's base was made livelier
    assert back.generative and back.adapter_meta["imported_from"]["head"].startswith("none")
    for text in PROMPTS:
        assert torch.equal(ours_greedy(back, text), ours_greedy(model, text))


def test_t5_prefix_export_is_refused(tmp_path):
    """peft puts PREFIX_TUNING key/values into T5's decoder; softprompt's prefix tuning has no such layout."""
    model = build("tiny-t5", "prefix-tuning")
    with pytest.raises(PeftInteropError, match=r"cannot be exported as a peft adapter: peft prefixes only T5's "
                                               r"decoder; softprompt prefixes its encoder and decoder"):
        export_peft(model, tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


NATIVE = [("tiny-llama", "prompt", "CAUSAL_LM"), ("tiny-llama", "prefix", "CAUSAL_LM"),
          ("tiny-t5", "prompt", "SEQ_2_SEQ_LM")]


@pytest.mark.parametrize("name,kind,task_type", NATIVE)
def test_import_of_an_adapter_made_by_peft_generates_peft_tokens(tmp_path, name, kind, task_type):
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    cls = PrefixTuningConfig if kind == "prefix" else PromptTuningConfig
    extra = {"num_transformer_submodules": 1} if task_type == "SEQ_2_SEQ_LM" else {}  # prompts on T5's encoder
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base(name).model, cls(task_type=task_type, num_virtual_tokens=5, **extra))  # random init
        pm.save_pretrained(str(tmp_path / "native"))
    pm.eval()
    model = import_peft(tmp_path / "native", base(name), generative=True, check_base=False)
    assert model.generative and model.method.name == ("p-tuning-v2" if kind == "prefix" else "prompt-tuning")
    assert_same_and_prompt_matters(pm, model.eval(), model.backbone.kind)
