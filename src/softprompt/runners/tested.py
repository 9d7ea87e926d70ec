"""The architectures the test matrix drives (tests/core/test_architectures.py; docs/models.md), by kind.

Runners find a model's parts by structure, so others built the same way work too; these are
the ones checked, each as a tiny random model built from transformers' own config class.
"""

from __future__ import annotations

TESTED: dict[str, tuple[str, ...]] = {
    "decoder": ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
                "phi", "phi3", "olmo2", "granite", "gpt2", "gpt_neox", "opt", "falcon", "bloom"),
    "encoder": ("bert", "roberta", "xlm-roberta", "mpnet", "electra", "deberta-v2", "modernbert"),
    "encoder-decoder": ("t5", "mt5", "bart"),
}


def supported_line() -> str:
    kinds = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in TESTED.items())
    return f"tested architectures ({kinds}); see docs/models.md"
