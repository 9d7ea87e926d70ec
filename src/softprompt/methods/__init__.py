"""Methods: named presets of producer x site, plus the baselines."""

from softprompt.methods.config import LoraSettings, MethodConfig, method_from_dict
from softprompt.methods.presets import PRESETS, SOFT_PROMPT_METHODS, method_config

__all__ = ["LoraSettings", "MethodConfig", "PRESETS", "SOFT_PROMPT_METHODS", "method_config", "method_from_dict"]
