"""peft interop for CPT: a cpt adapter on a decoder exports as peft's own CPT adapter (the context's token ids
and types, the epsilons, and prompt_embeddings = context + projected delta, which is what peft saves and
serves in inference mode), peft runs it with softprompt's outputs, and peft's CPT adapters import back as cpt.
Encoders and T5 export the materialised prompt as PROMPT_TUNING (peft's CPT is CAUSAL_LM only).
"""

from __future__ import annotations

import json
import warnings

import torch
from safetensors import safe_open

from softprompt.backbones import load_backbone
from softprompt.interop.peft import PEFT_CONFIG, PEFT_WEIGHTS, export_peft, import_peft
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.interop.test_peft import assert_same_outputs, encode, fresh_peft

EXAMPLES = [["a gripping film", "positive"], ["dull", "negative"]]


def build(name: str, seed: int = 0) -> SoftPromptModel:
    torch.manual_seed(seed)
    model = SoftPromptModel(load_backbone(name), method_config("cpt", producer={"context": EXAMPLES}), 2)
    with torch.no_grad():  # a delta partly outside its balls, projected as training leaves it
        model.producer.delta.normal_(0, 0.05)
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    model.producer.after_step()
    return model.eval()


def test_decoder_exports_as_peft_cpt_and_runs_in_peft(tmp_path):
    model = build("tiny-llama")
    producer = model.producer
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert cfg["peft_type"] == "CPT" and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["cpt_token_ids"] == producer.token_ids.tolist()
    assert cfg["cpt_tokens_type_mask"] == producer.token_types.tolist()
    assert cfg["num_virtual_tokens"] == producer.num_tokens
    assert (cfg["opt_projection_epsilon"], cfg["opt_projection_format_epsilon"]) == (0.2, 0.1)
    with safe_open(str(tmp_path / "peft" / PEFT_WEIGHTS), "pt") as f:
        assert list(f.keys()) == ["prompt_embeddings"]
        with torch.no_grad():
            assert torch.equal(f.get_tensor("prompt_embeddings"), producer()[0])

    pm = fresh_peft("tiny-llama", tmp_path / "peft")
    with torch.no_grad():
        assert torch.equal(pm.get_prompt(1)[0], producer()[0])  # peft's CPT in inference: the saved prompt
    ids, mask, types = encode(model.backbone.tokenizer)
    assert_same_outputs(pm, model, ids, mask, types)  # hidden states and LM logits

    back = import_peft(tmp_path / "peft")
    assert back.method.name == "cpt" and back.method.producer_kind == "cpt"
    assert torch.equal(back.producer.token_ids, producer.token_ids)
    assert torch.equal(back.producer.token_types, producer.token_types)
    assert torch.equal(back.producer.context, producer.context)
    with torch.no_grad():
        assert torch.allclose(back.producer()[0], producer()[0], atol=1e-6)
        assert torch.allclose(back(ids, mask, types).logits, model(ids, mask, types).logits, atol=1e-5)


def test_peft_cpt_in_training_mode_builds_our_prompt_from_the_same_context():
    from peft import CPTConfig, get_peft_model

    model = build("tiny-gpt2")
    producer = model.producer
    config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=producer.token_ids.tolist(),
                       cpt_tokens_type_mask=producer.token_types.tolist(), opt_projection_epsilon=0.2,
                       opt_projection_format_epsilon=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_backbone("tiny-gpt2").model, config)
    encoder = pm.prompt_encoder["default"]
    assert torch.equal(encoder.embedding.weight, producer.context)  # E[cpt_token_ids] of the frozen model
    with torch.no_grad():
        encoder.delta_embedding.weight.copy_(producer.delta)
        assert torch.allclose(pm.get_prompt(1)[0], producer()[0], atol=1e-6)
        assert torch.allclose(pm.get_prompt_embedding_to_save("default"), producer()[0], atol=1e-6)


def test_adapter_trained_by_peft_imports_as_cpt(tmp_path):
    from peft import CPTConfig, get_peft_model

    bb = load_backbone("tiny-llama")
    tok = bb.tokenizer
    ids, types = [], []
    for text, kind in (("input: ", 1), ("fine", 2), (" ", 0), ("output: ", 3), ("positive", 4)):  # peft's example
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids, types = ids + piece, types + [kind] * len(piece)
    config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=ids, cpt_tokens_type_mask=types,
                       opt_projection_epsilon=0.3, opt_projection_format_epsilon=0.05)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(bb.model, config)
        encoder = pm.prompt_encoder["default"]
        with torch.no_grad():
            encoder.delta_embedding.weight.normal_(0, 0.05)
            encoder.delta_embedding.weight.data = encoder.get_projection()
            encoder.delta_embedding.weight[torch.remainder(torch.tensor(types), 4) == 0] = 0  # its gradient mask
        saved = pm.get_prompt_embedding_to_save("default")
        pm.save_pretrained(str(tmp_path / "native"))
    model = import_peft(tmp_path / "native", load_backbone("tiny-llama"))
    assert model.method.producer_kind == "cpt" and model.producer.token_ids.tolist() == ids
    assert model.producer.cfg.epsilon == 0.3 and model.producer.cfg.format_epsilon == 0.05
    with torch.no_grad():
        assert torch.allclose(model.producer()[0], saved, atol=1e-6)


def test_encoder_and_t5_export_the_materialised_prompt_as_prompt_tuning(tmp_path):
    for name in ("tiny-bert", "tiny-t5"):
        model = build(name)
        export_peft(model, tmp_path / name)
        cfg = json.loads((tmp_path / name / PEFT_CONFIG).read_text())
        assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["num_virtual_tokens"] == model.producer.num_tokens
        pm = fresh_peft(name, tmp_path / name)
        ids, mask, types = encode(model.backbone.tokenizer)
        assert_same_outputs(pm, model, ids, mask, types)
