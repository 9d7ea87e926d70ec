"""Prompt producers, by kind: how the prompt vectors are made."""

from __future__ import annotations

from softprompt.producers.attention import AttentionConfig, AttentionPromptGenerator
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.decomposed import DecomposedConfig, DecomposedPrompt
from softprompt.producers.lstm import EncoderConfig, PromptEncoder
from softprompt.producers.mlp import MLPConfig, MLPPrompt
from softprompt.producers.pooled import PooledConfig, PooledPromptGenerator
from softprompt.producers.router import RoutedPrompt, RouterConfig
from softprompt.producers.static import StaticConfig, StaticPrompt

# kind -> (config class, producer class)
PRODUCERS: dict[str, tuple[type[ProducerConfig], type[Producer]]] = {
    "static": (StaticConfig, StaticPrompt),
    "mlp": (MLPConfig, MLPPrompt),
    "encoder": (EncoderConfig, PromptEncoder),
    "router": (RouterConfig, RoutedPrompt),
    "decomposed": (DecomposedConfig, DecomposedPrompt),
    "attention": (AttentionConfig, AttentionPromptGenerator),
    "pooled": (PooledConfig, PooledPromptGenerator),
}

__all__ = ["PRODUCERS", "Producer", "ProducerConfig", "ProducerInput"]
