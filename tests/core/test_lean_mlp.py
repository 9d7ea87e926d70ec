"""Lean gated MLPs: the same outputs and gradients as the model's own MLPs, bit for bit, with one
(tokens x intermediate) activation fewer kept for backward per layer."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from softprompt.runners.decoder import DecoderRunner
from softprompt.runners.lean_mlp import adopt_lean_mlps

INTER = 48


def tiny(model_type: str) -> nn.Module:
    cfg = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=16, intermediate_size=INTER, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval().requires_grad_(False)  # a frozen base


def loss_grads_and_saved(model: nn.Module, embeds: torch.Tensor):
    leaf = embeds.clone().requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        logits = model(inputs_embeds=leaf).logits
    loss = logits.square().mean()
    (grad,) = torch.autograd.grad(loss, leaf)
    return logits, grad, sum(1 for s in saved if len(s) == 3 and s[-1] == INTER)


def test_lean_mlps_give_the_same_outputs_and_gradients_and_keep_fewer_activations():
    for model_type in ("llama", "qwen3", "gemma2"):  # SiLU and GELU-tanh gates
        own = tiny(model_type)
        lean = copy.deepcopy(own)
        assert adopt_lean_mlps(lean) == 2
        embeds = torch.randn(2, 5, 16)
        out_own, grad_own, kept_own = loss_grads_and_saved(own, embeds)
        out_lean, grad_lean, kept_lean = loss_grads_and_saved(lean, embeds)
        assert torch.equal(out_own, out_lean) and torch.equal(grad_own, grad_lean), model_type
        assert (kept_own, kept_lean) == (6, 4), model_type  # gate, act(gate), up -> gate, up; per layer


def test_an_mlp_with_other_arithmetic_keeps_its_own_forward():
    class Doubled(nn.Module):  # exposes the parts, computes something else
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 4)
            self.act_fn = nn.SiLU()

        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x) * 2)

    block = nn.Sequential(Doubled())
    assert adopt_lean_mlps(block) == 0
    assert "forward" not in vars(block[0])


def test_the_decoder_runner_adopts_every_gated_mlp_once():
    model = tiny("qwen2")
    assert DecoderRunner(model).lean_mlps == 2
    assert DecoderRunner(model).lean_mlps == 2  # a second runner on the same model finds them adopted
    gpt2 = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", n_layer=2, n_embd=16, n_head=2, vocab_size=64))
    assert DecoderRunner(gpt2).lean_mlps == 0  # c_fc / c_proj: not a gated MLP


def test_backward_does_not_reenter_autograd_so_module_hooks_work():
    """FlopCounterMode puts multi-grad hooks on every module; a backward calling autograd.grad would fail under it."""
    from torch.utils.flop_counter import FlopCounterMode

    lean = tiny("llama")
    adopt_lean_mlps(lean)
    counter = FlopCounterMode(display=False)
    leaf = torch.randn(2, 5, 16, requires_grad=True)
    with counter:
        lean(inputs_embeds=leaf).logits.square().mean().backward()
    assert counter.get_total_flops() > 0 and leaf.grad.abs().sum() > 0
