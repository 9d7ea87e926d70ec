"""Interoperability with the Hugging Face stack.

    softprompt.interop.peft        export_peft / import_peft: real peft prompt-tuning and prefix-tuning adapters
    softprompt.interop.hf_trainer  train a SoftPromptModel with an unchanged `transformers.Trainer`

Submodules import peft / transformers' Trainer lazily, so `import softprompt.interop` is cheap.
"""

__all__ = ["hf_trainer", "peft"]
