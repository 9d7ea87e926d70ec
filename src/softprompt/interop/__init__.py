"""Interoperability with the Hugging Face stack.

    softprompt.interop.peft        export_peft / import_peft: real peft adapters (prompt and prefix tuning, CPT,
                                   cartridges, multitask prompt tuning; adaption prompt: export)
    softprompt.interop.hf_trainer  train a SoftPromptModel with an unchanged `transformers.Trainer`

Submodules import peft / transformers' Trainer lazily, so `import softprompt.interop` is cheap.
"""

__all__ = ["hf_trainer", "peft"]
