"""Methods: named presets of producer x site, plus the baselines."""

from softprompt.methods.config import LoraSettings, MethodConfig, method_config, method_from_dict
from softprompt.methods.presets import PRESETS
from softprompt.methods.config import ResolvedMethod

__all__ = ["LoraSettings", "MethodConfig", "PRESETS", "ResolvedMethod", "method_config", "method_from_dict"]
