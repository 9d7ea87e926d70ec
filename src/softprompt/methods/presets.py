"""Named methods as presets of producer x site (data only; `method_config` reads them). Any field can be overridden."""

from __future__ import annotations

from typing import Any

# a cartridge's default corpus: a task-neutral text (a run names its own corpus in init_text)
CARTRIDGE_TEXT = ("The following is a short passage. Read it carefully, then answer the question or classify the "
                  "text that comes after it, using what the passage and the text say.")

# CPT's default context: one example that only shows the template (a run gives its own training examples)
CPT_CONTEXT = [["a text to read", "its label"]]

PRESETS: dict[str, dict[str, Any]] = {
    # soft prompts
    "prompt-tuning": {"producer": {"kind": "static", "init": "vocab"}, "site": {"kind": "embeddings"}},
    "prefix-tuning": {"producer": {"kind": "mlp", "hidden": 512}, "site": {"kind": "kv"}},
    "p-tuning": {"producer": {"kind": "encoder", "encoder": "mlp"}, "site": {"kind": "embeddings"}},
    "p-tuning-v2": {"producer": {"kind": "static"}, "site": {"kind": "kv"}},
    # published defaults; sources in docs/methods-fidelity.md
    "lpt": {"producer": {"kind": "pooled", "generator": "npg", "num_tokens": 10}, "site": {"kind": "layer"}},
    "smop": {"producer": {"kind": "router", "num_tokens": 5, "num_prompts": 4, "top_k": 1},
             "site": {"kind": "embeddings"}},
    "dept": {"producer": {"kind": "decomposed", "num_tokens": 60, "rank": None, "init": "text",
                          "init_text": "Classify this text is postive or not:"}, "site": {"kind": "embeddings"}},
    "id-spam": {"producer": {"kind": "attention", "num_tokens": 10}, "site": {"kind": "layer"}},
    "idpg": {"producer": {"kind": "idpg"}, "site": {"kind": "embeddings"}},
    "ulpt": {"producer": {"kind": "ulpt", "num_tokens": 100, "rank": 2}, "site": {"kind": "embeddings"}},
    "adept": {"producer": {"kind": "adept", "num_tokens": 60, "rank": None, "init": "text",
                           "init_text": "Classify this text is postive or not:"}, "site": {"kind": "embeddings"}},
    "lopa": {"producer": {"kind": "lopa", "num_tokens": 10, "rank": 4}, "site": {"kind": "embeddings"}},
    "cartridge": {"producer": {"kind": "cartridge", "num_tokens": 16, "frozen_tokens": 1, "init": "prefill",
                               "init_text": CARTRIDGE_TEXT}, "site": {"kind": "kv"}},
    "attempt": {"producer": {"kind": "attempt", "num_tokens": 10, "placeholder_sources": 2},
                "site": {"kind": "embeddings"}},
    "mpt": {"producer": {"kind": "mpt", "num_tokens": 10, "rank": 1, "init": "vocab"}, "site": {"kind": "embeddings"}},
    "adaption-prompt": {"producer": {"kind": "adaption", "num_tokens": 10}, "site": {"kind": "adaption"}},
    "cpt": {"producer": {"kind": "cpt", "context": CPT_CONTEXT, "epsilon": 0.2, "format_epsilon": 0.1},
            "site": {"kind": "embeddings"}},
    "prefix-propagation": {"producer": {"kind": "static", "num_tokens": 8}, "site": {"kind": "propagate"}},
    "prompt-lora": {"producer": {"kind": "static", "init": "vocab"}, "site": {"kind": "embeddings"}, "backbone": "lora"},
    # baselines
    "full-finetune": {"producer": None, "backbone": "full"},
    "lora": {"producer": None, "backbone": "lora"},
    "head-only": {"producer": None},
    "zero-shot": {"producer": None, "zero_shot": True, "head": {"kind": "verbalizer"}},
}
