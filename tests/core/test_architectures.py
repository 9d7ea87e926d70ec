"""The architecture matrix: every tested architecture, as a tiny random model from transformers' own config
class, passes every check (softprompt.checks.architectures; the same figures as docs/models.md)."""

from __future__ import annotations

import pytest
import torch

from softprompt.checks.architectures import all_architectures, check_architecture
from softprompt.errors import UnsupportedModelError
from softprompt.runners import TESTED

# sites an architecture's runner refuses, with the reason's start (everything else must train)
NOT_ROUTED = "method.site.kind: 'adaption' cannot run on {}: {} does not route its attention through transformers'"
REFUSED: dict[str, dict[str, str]] = {  # the adaption site needs the model's own query, inside its attention call
    "falcon": {"adaption": NOT_ROUTED.format("falcon", "FalconForCausalLM")},
    "bloom": {"adaption": NOT_ROUTED.format("bloom", "BloomForCausalLM")},
    "mpnet": {"adaption": NOT_ROUTED.format("mpnet", "MPNetModel")},
    "deberta-v2": {"adaption": NOT_ROUTED.format("deberta-v2", "DebertaV2Model")},
}


@pytest.mark.parametrize("arch", all_architectures())
def test_architecture_passes_every_check(arch):
    r = check_architecture(arch)
    assert r.parity is not None and r.parity <= 1e-5, f"no-prompt forward differs from HF's by {r.parity}"
    for site, result in r.training.items():
        if site in REFUSED.get(arch, {}):
            assert isinstance(result, str) and result.startswith(REFUSED[arch][site]), result
            continue
        assert isinstance(result, tuple), f"{site}: {result}"
        first, last = result
        assert last < first, f"{site}: loss did not fall over 5 steps ({first:.4f} -> {last:.4f})"
    if r.kind != "encoder":
        assert isinstance(r.cached, float) and r.cached <= 1e-5, f"cached decoding differs by {r.cached}"
        for preset, same in r.peft.items():
            assert same is True or isinstance(same, str) and "prefixes only" in same, f"peft {preset}: {same}"
    assert isinstance(r.mixed, float) and r.mixed <= 1e-5, f"mixed batch differs from per-request by {r.mixed}"
    assert isinstance(r.round_trip, float) and r.round_trip <= 1e-6, f"round trip: {r.round_trip}"


def test_every_required_architecture_is_in_the_matrix():
    required = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text", "phi",
                "phi3", "olmo2", "granite", "gpt2", "gpt_neox", "opt", "falcon", "bert", "roberta", "xlm-roberta",
                "deberta-v2", "electra", "mpnet", "modernbert", "t5", "mt5", "bart"}
    assert required <= set(all_architectures()) and len(all_architectures()) >= 20
    assert set(TESTED) == {"decoder", "encoder", "encoder-decoder"}


def test_moe_routers_stay_deterministic_while_prompts_train():
    """Mixtral's router jitters its input in training mode; the runner keeps MoE blocks in eval mode."""
    from softprompt.checks.architectures import build
    from softprompt.backbones import load_backbone

    bb = load_backbone("tiny-mixtral")
    assert bb.model.config.router_jitter_noise > 0
    model = build(bb, "prompt-tuning")
    model.train()
    ids = bb.tokenizer(["a b c d"], return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        first, again = (model.from_state(model.frozen_state(ids, mask), ids)[0] for _ in range(2))
    assert torch.equal(first, again)
    assert not any(m.training for m in bb.model.modules() if hasattr(m, "experts"))


def _tiny_mpt():
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("mpt", d_model=32, n_heads=2, n_layers=2, vocab_size=100, max_seq_len=64)
    return AutoModelForCausalLM.from_config(cfg)


def test_unsupported_architecture_is_refused_in_one_line_naming_it_and_the_supported_list():
    import softprompt
    from softprompt.backbones.tiny import build_tokenizer

    with pytest.raises(UnsupportedModelError) as info:
        softprompt.wrap(_tiny_mpt(), build_tokenizer("gpt2"), method="prefix-tuning")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("architecture 'mpt' (MptForCausalLM) cannot be driven: its layers take an ALiBi "
                          "position_bias tensor (MPT style)")
    assert "qwen3" in msg and "deberta-v2" in msg and "docs/models.md" in msg


def test_cli_refuses_an_unsupported_model_folder_with_exit_2_and_one_line(tmp_path, capsys):
    from softprompt.backbones.tiny import build_tokenizer
    from softprompt.cli import main

    _tiny_mpt().save_pretrained(tmp_path / "mpt")
    build_tokenizer("gpt2").save_pretrained(tmp_path / "mpt")
    capsys.readouterr()  # saving printed progress bars
    code = main(["params", "--backbone", str(tmp_path / "mpt"), "--method", "prompt-tuning"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "architecture 'mpt' (MptForCausalLM) cannot be driven" in err


def test_models_matrix_command_writes_the_table(tmp_path, capsys):
    from softprompt.cli import main

    out = tmp_path / "models.md"
    assert main(["models", "matrix", "--only", "gpt2", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `gpt2`")]
    assert len(rows) == 1 and rows[0].count("✓") == 11 and "✗" not in rows[0]
    assert "softprompt models matrix --only gpt2" in out.read_text()
