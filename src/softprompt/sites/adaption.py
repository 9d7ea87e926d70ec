"""Adaption site: a gated attention over prompt keys/values in chosen layers (LLaMA-Adapter).

At each adapted layer l the prompt P_l (t, D) becomes K_p = W_k P_l, V_p = W_v P_l through the layer's frozen
projections (no positions), and the layer's attention output gains g_l · softmax(q K_pᵀ · s) V_p with the
model's own query and scale, a softmax of its own, and the gate g_l (Zhang et al. 2023, eq. 6-8; the term is
added before the output projection, as in the reference code). Text positions do not move. A producer gives
per layer [D prompt columns | 1 gate column] (gate read at token 0); `adaption` zero-inits the gates.
Encoder-decoders: the encoder's layers (the decoder reads the adapted encoder states).
"""

from __future__ import annotations

from softprompt.errors import ConfigError
from softprompt.runners import attention_terms
from softprompt.sites.base import Flow, LayersSite

PEFT_FAMILIES = ("llama", "mistral", "gpt2")  # where peft's AdaptionPrompt runs


class AdaptionSite(LayersSite):
    kind = "adaption"
    peft_type = "ADAPTION_PROMPT"

    def prompt_dim(self, runner) -> int:
        why = attention_terms.unfit(runner.model, [runner.layers[i] for i in self.layers])
        if why:
            raise ConfigError(f"method.site.kind: 'adaption' cannot run on {runner.config.model_type}: {why}")
        return len(self.layers) * (runner.hidden_size + 1)

    def peft_obstacle(self, runner) -> str | None:
        if runner.config.model_type not in PEFT_FAMILIES:
            return f"peft's adaption prompt runs on {', '.join(PEFT_FAMILIES)} only, not {runner.config.model_type}"
        if self.layers != list(range(runner.num_layers - len(self.layers), runner.num_layers)):
            return f"peft adapts the top layers; these are {self.layers}"
        return None

    def enter_layer(self, layer: int, flow: Flow) -> None:
        if layer != self.boundary:
            return
        runner = flow.runner
        prompt = flow.prompt()
        heads, head_dim = runner.prefix_shape()
        width = runner.hidden_size + 1
        terms = {}
        for j, i in enumerate(self.layers):
            block = prompt[..., j * width:(j + 1) * width]
            keys, values = attention_terms.keys_values(runner.layers[i], block[..., :-1], heads, head_dim)
            terms[i] = (keys, values, block[:, 0, -1])
        flow.add_attention_terms(terms)

    def describe(self) -> str:
        return f"gated prompt attention at layers {self.where()}"
