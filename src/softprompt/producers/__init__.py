"""Prompt producers, by kind: how the prompt vectors are made."""

from __future__ import annotations

from softprompt.producers.adaption import AdaptionConfig, AdaptionPrompt
from softprompt.producers.adept import ADePTConfig, ADePTPrompt
from softprompt.producers.attempt import AttemptConfig, AttemptPromptGenerator
from softprompt.producers.attention import AttentionConfig, AttentionPromptGenerator
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.cartridge import CartridgeConfig, CartridgePrompt
from softprompt.producers.cpt import CPTConfig, CPTPrompt
from softprompt.producers.decomposed import DecomposedConfig, DecomposedPrompt
from softprompt.producers.idpg import IDPGPromptGenerator
from softprompt.producers.lopa import LoPAConfig, LoPAPromptGenerator
from softprompt.producers.lstm import EncoderConfig, PromptEncoder
from softprompt.producers.mlp import MLPConfig, MLPPrompt
from softprompt.producers.mpt import MPTConfig, MultitaskPrompt
from softprompt.producers.pooled import PooledConfig, PooledPromptGenerator
from softprompt.producers.router import RoutedPrompt, RouterConfig
from softprompt.producers.static import StaticConfig, StaticPrompt
from softprompt.producers.ulpt import ULPTConfig, ULPTPrompt

PRODUCERS: dict[str, type[Producer]] = {}


def register(cls: type[Producer]) -> type[Producer]:
    """Add a producer class under its `kind` (a new producer is one file plus one line below)."""
    if not cls.kind or cls.kind in PRODUCERS:
        raise ValueError(f"producer kind {cls.kind!r} is empty or registered twice")
    PRODUCERS[cls.kind] = cls
    return cls


register(StaticPrompt)
register(MLPPrompt)
register(PromptEncoder)
register(RoutedPrompt)
register(DecomposedPrompt)
register(AttentionPromptGenerator)
register(PooledPromptGenerator)
register(IDPGPromptGenerator)
register(ULPTPrompt)
register(ADePTPrompt)
register(LoPAPromptGenerator)
register(CartridgePrompt)
register(AttemptPromptGenerator)
register(MultitaskPrompt)
register(CPTPrompt)
register(AdaptionPrompt)

__all__ = ["PRODUCERS", "Producer", "ProducerConfig", "ProducerInput", "register"]
