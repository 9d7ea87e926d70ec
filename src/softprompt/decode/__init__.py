"""The one decode core: lanes (prefill / step / keep / join), a batched sampler, stop strings and
finish reasons, shared by offline generation, `wrap().generate`, the server and evaluation."""

from softprompt.decode.core import GenerationConfig, Generated, advance, generate, new_request
from softprompt.decode.lanes import DecoderLane, EncoderDecoderLane, Lane, open_lane
from softprompt.decode.request import FINISH_REASONS, Finish, Request, SamplingParams, Token

__all__ = ["FINISH_REASONS", "DecoderLane", "EncoderDecoderLane", "Finish", "GenerationConfig", "Generated", "Lane",
           "Request", "SamplingParams", "Token", "advance", "generate", "new_request", "open_lane"]
