"""Methods: named presets of producer x site, plus the baselines."""

from softprompt.methods.config import LoraSettings, MethodConfig, method_config, method_from_dict
from softprompt.methods.presets import PRESETS

__all__ = ["LoraSettings", "MethodConfig", "PRESETS", "method_config", "method_from_dict"]
