"""Which kind a model is (encoder, decoder, encoder-decoder), read from its config before any weights load."""

from __future__ import annotations

from softprompt.errors import UnsupportedModelError
from softprompt.runners import supported_line


def kind_of_model_type(model_type: str) -> str | None:
    """From transformers' own auto mappings: masked-LM architectures are encoders, causal-LM ones decoders."""
    from transformers.models.auto import modeling_auto as auto

    if model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "encoder-decoder"
    if model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "decoder"
    if model_type in auto.MODEL_MAPPING_NAMES:
        return "encoder"
    return None


def kind_of_config(config) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    kind = kind_of_model_type(config.model_type)
    if kind is None:
        raise UnsupportedModelError(f"architecture {config.model_type!r}: transformers knows no encoder, decoder or "
                                    f"encoder-decoder model of this type; {supported_line()}")
    return kind
