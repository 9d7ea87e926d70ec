"""peft interop: exported adapters run in real peft models with softprompt's outputs, and back.

What is compared (text positions of right-padded batches, atol 1e-5):
  encoders  (FEATURE_EXTRACTION)  last hidden states
  decoders  (CAUSAL_LM)           LM logits, and the final hidden states
  T5        (SEQ_2_SEQ_LM)        encoder last hidden states
and softprompt's head applied to peft's final hidden states gives softprompt's logits.
"""

from __future__ import annotations

import argparse
import json
import warnings

import pytest
import torch
from safetensors import safe_open

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.interop.peft import (PEFT_CONFIG, PEFT_WEIGHTS, SIDECAR_META, PeftInteropError, export_peft,
                                     import_peft)
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel

TEXTS = ["a gripping, beautifully acted film", "dull", "not bad at all, really", "the plot goes nowhere"]
ATOL = 1e-5


def build(name: str, method: str, num_tokens: int = 4, seed: int = 0, **overrides) -> SoftPromptModel:
    torch.manual_seed(seed)
    model = SoftPromptModel(load_backbone(name), method_config(method, producer={"num_tokens": num_tokens}, **overrides), 2)
    with torch.no_grad():  # away from the init, so a prompt that is dropped or misplaced shows
        for p in model.producer.parameters():
            p.normal_(0, 0.5)
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    return model.eval()


def encode(tokenizer, texts=TEXTS):
    tokenizer.padding_side = "right"
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")


def fresh_peft(name: str, directory):
    """The peft model peft itself builds from the folder, on a separately loaded copy of the base."""
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(load_backbone(name).model, str(directory)).eval()


def peft_outputs(pm, kind: str, ids, mask):
    """(final hidden states, LM logits or None) of a peft model, prompt columns dropped."""
    kw = {"decoder_input_ids": torch.zeros(ids.shape[0], 1, dtype=torch.long)} if kind == "encoder-decoder" else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        out = pm(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kw)
    if kind == "encoder":
        hidden, logits = out.last_hidden_state, None
    elif kind == "decoder":
        hidden, logits = out.hidden_states[-1], out.logits
    else:
        hidden, logits = out.encoder_last_hidden_state, None
    extra = hidden.shape[1] - ids.shape[1]  # prompt columns in front (prompt tuning), none for prefixes
    return hidden[:, extra:], (logits[:, extra:] if logits is not None else None)


def ours(model, ids, mask, types):
    """softprompt's final hidden states and LM logits moved to the text columns, and its logits."""
    with torch.no_grad():
        hidden, seq = model.from_state(model.frozen_state(ids, mask, types), ids)
        col = seq.text_mask.long().cumsum(1) - 1  # text token j of a row -> column j
        rows, cols = seq.text_mask.nonzero(as_tuple=True)
        aligned = torch.zeros(ids.shape[0], ids.shape[1], hidden.shape[-1])
        aligned[rows, col[rows, cols]] = hidden[rows, cols]
        lm = model.runner.lm_head() if model.backbone.kind == "decoder" else None
        return aligned, (lm(aligned) if lm is not None else None), model(ids, mask, types).logits


def max_diff(a, b, mask):
    return (a[mask.bool()] - b[mask.bool()]).abs().max().item()


CASES = [
    ("tiny-bert", "prompt-tuning"), ("tiny-bert", "prefix-tuning"), ("tiny-bert", "p-tuning"), ("tiny-bert", "p-tuning-v2"),
    ("tiny-gpt2", "prompt-tuning"), ("tiny-gpt2", "prefix-tuning"),
    ("tiny-llama", "prompt-tuning"), ("tiny-llama", "prefix-tuning"), ("tiny-llama", "p-tuning-v2"),
    ("tiny-t5", "prompt-tuning"),
]


def assert_same_outputs(pm, model, ids, mask, types):
    """peft's and softprompt's hidden states (and LM logits) agree; returns peft's hidden states and our logits."""
    ref_hidden, ref_lm = peft_outputs(pm, model.backbone.kind, ids, mask)
    hidden, lm, logits = ours(model, ids, mask, types)
    assert max_diff(hidden, ref_hidden, mask) < ATOL
    if ref_lm is not None:
        assert max_diff(lm, ref_lm, mask) < ATOL
    return ref_hidden, logits


@pytest.mark.parametrize("name,method", CASES)
def test_export_runs_in_peft_with_softprompt_outputs(tmp_path, name, method):
    model = build(name, method)
    bb = model.backbone
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    kv = method in ("prefix-tuning", "p-tuning-v2")
    assert cfg["peft_type"] == ("PREFIX_TUNING" if kv else "PROMPT_TUNING")
    assert cfg["task_type"] == {"encoder": "FEATURE_EXTRACTION", "decoder": "CAUSAL_LM", "encoder-decoder": "SEQ_2_SEQ_LM"}[bb.kind]
    assert cfg["num_virtual_tokens"] == 4 and cfg["num_transformer_submodules"] == 1
    if kv:
        assert cfg["prefix_projection"] is False
    with safe_open(str(tmp_path / "peft" / PEFT_WEIGHTS), "pt") as f:
        assert list(f.keys()) == ["prompt_embeddings"]
        heads, hd = model.runner.prefix_shape()
        width = model.runner.num_layers * 2 * heads * hd if kv else model.runner.hidden_size
        assert tuple(f.get_tensor("prompt_embeddings").shape) == (4, width)

    pm = fresh_peft(name, tmp_path / "peft")
    ids, mask, types = encode(bb.tokenizer)
    ref_hidden, logits = assert_same_outputs(pm, model, ids, mask, types)
    # softprompt's head on peft's hidden states = softprompt's logits (the head travels in the sidecar)
    with torch.no_grad():
        on_peft = model.head(ref_hidden, mask.bool())
    assert torch.allclose(on_peft, logits, atol=ATOL), (on_peft - logits).abs().max()
    # and the prompt matters: without it peft's base gives different states
    plain, _ = peft_outputs(pm.get_base_model(), bb.kind, ids, mask)
    assert max_diff(plain, ref_hidden, mask) > 1e-2

    # round trip through the sidecar: the same model, exactly
    back = import_peft(tmp_path / "peft")  # base model from the sidecar
    assert back.method.name == ("p-tuning-v2" if kv else "prompt-tuning")
    assert back.adapter_meta["imported_from"]["head"] == "sidecar"
    with torch.no_grad():
        assert torch.equal(back(ids, mask, types).logits, logits)


def native_config(kind: str, task_type: str, **kw):
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    cls = {"prompt": PromptTuningConfig, "prefix": PrefixTuningConfig, "p": PromptEncoderConfig}[kind]
    return cls(task_type=task_type, num_virtual_tokens=5, **kw)


NATIVE = [
    ("tiny-bert", "prompt", {}), ("tiny-bert", "prefix", {}), ("tiny-bert", "prefix", {"prefix_projection": True}),
    ("tiny-gpt2", "prompt", {}), ("tiny-gpt2", "p", {"encoder_hidden_size": 32}),
    ("tiny-llama", "prompt", {}), ("tiny-llama", "prefix", {}), ("tiny-llama", "prefix", {"prefix_projection": True}),
]


@pytest.mark.parametrize("name,kind,kw", NATIVE)
def test_import_adapter_made_by_peft(tmp_path, name, kind, kw):
    from peft import get_peft_model

    bb = load_backbone(name)
    task_type = "CAUSAL_LM" if bb.kind == "decoder" else "FEATURE_EXTRACTION"
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_backbone(name).model, native_config(kind, task_type, **kw))  # random init
        pm.save_pretrained(str(tmp_path / "native"))
    pm.eval()
    model = import_peft(tmp_path / "native", bb, num_labels=3)
    assert model.method.name == ("p-tuning-v2" if kind == "prefix" else "prompt-tuning")
    assert model.producer.num_tokens == 5 and model.num_labels == 3
    assert model.adapter_meta["imported_from"]["head"] == "new"
    assert_same_outputs(pm, model, *encode(bb.tokenizer))


def test_import_uses_base_model_name_from_peft_config(tmp_path):
    from peft import get_peft_model

    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_backbone("tiny-bert").model, native_config("prompt", "FEATURE_EXTRACTION"))
        pm.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / PEFT_CONFIG).read_text())["base_model_name_or_path"] == "tiny-bert"
    model = import_peft(tmp_path)
    assert model.backbone.name == "tiny-bert"
    assert torch.equal(model.producer.prompt, pm.prompt_encoder["default"].embedding.weight)


def test_import_seq_cls_decoder_keeps_score_head(tmp_path):
    """A peft SEQ_CLS adapter on LlamaForSequenceClassification: its `score` becomes a last-token head."""
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    bb = load_backbone("tiny-llama")
    cfg = bb.model.config.__class__.from_dict(bb.model.config.to_dict())
    cfg.num_labels = 3
    cls_model = AutoModelForSequenceClassification.from_config(cfg)
    cls_model.model.load_state_dict(bb.model.model.state_dict())
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(cls_model, native_config("prompt", "SEQ_CLS"))
        with torch.no_grad():
            pm.base_model.score.modules_to_save["default"].weight.normal_(0, 0.5)
        pm.save_pretrained(str(tmp_path))
    pm.eval()
    model = import_peft(tmp_path, bb)
    assert model.adapter_meta["imported_from"]["head"] == "peft score"
    assert model.num_labels == 3 and model.pooling == "last"
    for text in TEXTS:  # one row at a time: HF's SEQ_CLS reads the last column when given inputs_embeds
        ids = torch.tensor([bb.tokenizer(text)["input_ids"]])
        mask = torch.ones_like(ids)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = pm(input_ids=ids, attention_mask=mask).logits
            got = model(ids, mask).logits
        assert torch.allclose(got, ref, atol=ATOL), (got - ref).abs().max()


@pytest.mark.parametrize("method,why", [
    ("id-spam", "depends on the input"), ("lpt", "depends on the input"), ("smop", "depends on the input"),
    ("dept", "token embeddings"), ("lora", "no soft prompt"), ("head-only", "no soft prompt"),
])
def test_unsupported_methods_raise_with_the_supported_list(tmp_path, method, why):
    torch.manual_seed(0)
    run = {"producer": {"max_length": 128}} if method == "dept" else {}  # a run's fit(max_length)
    model = SoftPromptModel(load_backbone("tiny-bert"), method_config(method, **run), 2)
    with pytest.raises(PeftInteropError) as err:
        export_peft(model, tmp_path)
    msg = str(err.value)
    assert why in msg
    for name in ("prompt-tuning", "p-tuning", "prefix-tuning", "p-tuning-v2"):
        assert name in msg
    assert not (tmp_path / PEFT_CONFIG).exists()


def test_unsupported_sites_raise(tmp_path):
    bert = load_backbone("tiny-bert")
    some_layers = SoftPromptModel(bert, method_config("p-tuning-v2", site={"layers": [1]}), 2)
    with pytest.raises(PeftInteropError, match="only some layers"):
        export_peft(some_layers, tmp_path)
    hidden = SoftPromptModel(bert, method_config("prompt-tuning", site={"kind": "layer", "layer": 1}), 2)
    with pytest.raises(PeftInteropError, match="hidden layer"):
        export_peft(hidden, tmp_path)
    t5 = SoftPromptModel(load_backbone("tiny-t5"), method_config("p-tuning-v2"), 2)
    with pytest.raises(PeftInteropError, match="decoder"):
        export_peft(t5, tmp_path)


def test_import_refuses_pickles_other_types_and_wrong_bases(tmp_path):
    model = build("tiny-bert", "prompt-tuning")
    good = export_peft(model, tmp_path / "good")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / PEFT_CONFIG).write_text((good / PEFT_CONFIG).read_text())
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(PeftInteropError, match="pickle"):
        import_peft(pickled, model.backbone)

    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / PEFT_CONFIG).write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(PeftInteropError, match="PROMPT_TUNING, P_TUNING, PREFIX_TUNING"):
        import_peft(lora, model.backbone)

    with pytest.raises(PeftInteropError, match="fingerprint"):  # the sidecar pins the base weights
        import_peft(good, load_backbone("tiny-roberta"))
    roberta = import_peft(good, load_backbone("tiny-roberta"), check_base=False)  # same shapes: taken as asked
    assert roberta.backbone.family == "roberta"
    prefix = export_peft(build("tiny-bert", "p-tuning-v2"), tmp_path / "prefix")
    with pytest.raises(PeftInteropError, match="token_dim=64 does not fit"):  # Llama's kv_dim is 32 (GQA)
        import_peft(prefix, load_backbone("tiny-llama"), check_base=False)


def test_cli_export_and_import(tmp_path, capsys):
    from softprompt.commands import export, import_peft as import_cmd

    model = build("tiny-gpt2", "prefix-tuning")
    save_adapter(model, tmp_path / "run" / "adapter", task="sst2", label_names=["negative", "positive"])

    def call(module, argv):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return module.run(parser.parse_args(argv))

    assert call(export, ["--format", "peft", str(tmp_path / "run"), str(tmp_path / "peft")]) == 0
    assert "PREFIX_TUNING" in capsys.readouterr().out
    assert json.loads((tmp_path / "peft" / SIDECAR_META).read_text())["task"] == "sst2"
    assert call(import_cmd, [str(tmp_path / "peft"), str(tmp_path / "back")]) == 0
    back = load_adapter(tmp_path / "back").eval()
    assert back.adapter_meta["label_names"] == ["negative", "positive"]
    ids, mask, _ = encode(model.backbone.tokenizer)
    with torch.no_grad():
        assert torch.allclose(back(ids, mask).logits, model(ids, mask).logits, atol=ATOL)


def test_cli_entry_points(tmp_path, capsys):
    from softprompt.cli import main

    model = build("tiny-bert", "p-tuning")
    save_adapter(model, tmp_path / "run" / "adapter", task="sst2", label_names=["negative", "positive"])
    assert main(["export", "--format", "peft", str(tmp_path / "run"), str(tmp_path / "peft")]) == 0
    assert main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "back")]) == 0
    back = load_adapter(tmp_path / "back").eval()
    ids, mask, types = encode(model.backbone.tokenizer)
    with torch.no_grad():
        assert torch.allclose(back(ids, mask, types).logits, model(ids, mask, types).logits, atol=ATOL)
    torch.manual_seed(0)
    save_adapter(SoftPromptModel(load_backbone("tiny-bert"), method_config("id-spam"), 2), tmp_path / "idspam")
    capsys.readouterr()
    assert main(["export", "--format", "peft", str(tmp_path / "idspam"), str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "softprompt export: error:" in err and "prompt-tuning" in err and "depends on the input" in err
