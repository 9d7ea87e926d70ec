"""Frozen backbones: short names for packaged offline weights and tiny test models, or any HF model.

    load_backbone("minilm-l6" | "mpnet-base" | "smollm2-135m" | "gemma3-270m"
                  | "tiny-bert" | ... | "tiny-t5" | hub id | folder | file.gguf) -> Backbone
    list_backbones() -> [BackboneSpec]
    weights_fingerprint(model, full=False) -> hex digest
"""

from softprompt.backbones.core import Backbone, load_backbone
from softprompt.backbones.fingerprint import weights_fingerprint
from softprompt.backbones.kinds import kind_of_config
from softprompt.backbones.registry import BackboneSpec, list_backbones


def prepare_backbone(name: str):
    """Extract / convert a packaged backbone into the cache without loading it; returns its folder."""
    from softprompt.backbones import packaged
    from softprompt.errors import BackboneError

    if name not in packaged.PREPARERS:
        raise BackboneError(f"{name!r} is not a packaged backbone; packaged: {', '.join(packaged.PREPARERS)}")
    return packaged.PREPARERS[name]()


__all__ = [
    "Backbone",
    "BackboneSpec",
    "kind_of_config",
    "list_backbones",
    "load_backbone",
    "prepare_backbone",
    "weights_fingerprint",
]
